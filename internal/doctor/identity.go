package doctor

import (
	"context"
	"strconv"
	"strings"

	"github.com/pve-autoscaler/pve-autoscaler/proxmox"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// checkIdentity matches our VMs and the managed Nodes by vmid and SMBIOS
// UUID, as the daemon does, and reports what the daemon would hold on:
// views that disagree wholesale (scaler.Observation.Disagreement), and
// single absences it would confirm before acting.
func checkIdentity(ctx context.Context, r *Report, px pveFacts, kx kubeFacts) {
	if px.client == nil || px.inv == nil || kx.nodes == nil {
		return // a check above failed and said why
	}
	var machines []scaler.Machine
	for _, v := range px.inv.Ours {
		m := scaler.Machine{VMID: v.VMID, Name: v.Name, Host: v.Host, Step: proxmox.Step(v)}
		if s, ok := strings.CutPrefix(m.Step, scaler.StandbyPrefix); ok {
			m.Step, m.ForStandby = s, true
		}
		if meta, err := px.client.Meta(ctx, v.VMID, v.Host); err == nil {
			m.UUID = meta.UUID
		}
		machines = append(machines, m)
	}
	var nodes []scaler.Node
	for _, n := range kx.nodes {
		sn := scaler.Node{Name: n.Name, Managed: n.Labels[scaler.LabelManaged] == "true", SystemUUID: scaler.NormalUUID(n.Status.NodeInfo.SystemUUID)}
		sn.VMID, _ = strconv.Atoi(n.Labels[scaler.LabelVMID])
		nodes = append(nodes, sn)
	}
	// The daemon's "kept" rule: a managed Node whose VM exists but is not
	// ours (a person removed our tags to keep the worker) lacks no VM; the
	// daemon leaves both alone, and says so.
	ours, all := map[int]bool{}, map[int]bool{}
	for _, v := range px.inv.Ours {
		ours[v.VMID] = true
	}
	for _, v := range px.inv.All {
		all[v.VMID] = true
	}
	kept := map[int]bool{}
	var keptNames []string
	for _, n := range nodes {
		if n.Managed && n.VMID != 0 && all[n.VMID] && !ours[n.VMID] && !kept[n.VMID] {
			kept[n.VMID] = true
			keptNames = append(keptNames, "VM "+strconv.Itoa(n.VMID)+" (Node "+n.Name+")")
		}
	}
	obs := scaler.Observation{Machines: machines, Nodes: nodes, Kept: kept}
	const fix = "find which view is wrong and mend it (the token's privileges, proxmox.url, the kubeconfig, tags removed by hand; README: Safety: what pve-autoscaler will never do); delete by hand what was deleted on one side only"
	if why := obs.Disagreement(); why != "" {
		r.add(areaKube, "identity", Fail, fix, "the daemon would do nothing destructive (a safety hold): %s", why)
		return
	}
	if len(keptNames) > 0 {
		r.add(areaKube, "identity", Warn, "add the tags pve-autoscaler and cluster-NAME back to let the daemon manage the worker again, or remove the Node's "+scaler.LabelManaged+" label",
			"%s: the VM exists but is not ours (our tags were removed): the daemon leaves it and its Node alone", strings.Join(keptNames, ", "))
	}
	orphans, nodeless := obs.Absences()
	if len(orphans)+len(nodeless) > 0 {
		var names []string
		for _, n := range orphans {
			names = append(names, "Node "+n.Name+" has no VM")
		}
		for _, m := range nodeless {
			names = append(names, "VM "+strconv.Itoa(m.VMID)+" has no Node")
		}
		r.add(areaKube, "identity", Warn, fix, "%s: the daemon acts only once direct reads a minute apart confirm it", strings.Join(names, "; "))
		return
	}
	if len(keptNames) > 0 {
		return
	}
	r.add(areaKube, "identity", OK, "", "%d VMs and %d managed Nodes agree by vmid and SMBIOS UUID", len(machines), countManaged(nodes))
}

func countManaged(nodes []scaler.Node) int {
	n := 0
	for _, x := range nodes {
		if x.Managed {
			n++
		}
	}
	return n
}
