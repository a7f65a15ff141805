package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox"
	"github.com/pve-autoscaler/pve-autoscaler/talos"
)

// pveFacts is what the Proxmox checks learnt, for the checks after them.
type pveFacts struct {
	client *proxmox.Client
	inv    *proxmox.Inventory
}

const roleDoc = "deploy/proxmox-role.md"

func checkProxmox(ctx context.Context, r *Report, c *config.Config, o Options) pveFacts {
	var f pveFacts
	p := c.Proxmox
	pc, err := proxmox.New(proxmox.Options{Proxmox: p, Pools: c.WorkerPools(), Cluster: c.Cluster.Name, Log: o.Log.Named("proxmox"), RequestTimeout: 10 * time.Second})
	if err != nil {
		r.add(areaProxmox, "api", Fail, "correct the proxmox section of the config", "%v", err)
		return f
	}
	version, err := pc.Version(ctx)
	if err != nil {
		r.add(areaProxmox, "api", Fail, apiFix(ctx, p, err), "%s: %v", p.URL, err)
		return f
	}
	f.client = pc
	r.add(areaProxmox, "api", OK, "", "PVE %s answers at %s with token %s", version, p.URL, p.TokenID)
	switch {
	case p.TLS.InsecureSkipVerify:
		fix := "pin the certificate: set proxmox.tls.fingerprint"
		if fp, err := proxmox.PeerFingerprint(ctx, p.URL); err == nil {
			fix += ` to "` + fp + `" (what PVE presents now; compare it with Datacenter > node > Certificates) and insecure_skip_verify to false`
		}
		r.add(areaProxmox, "tls", Warn, fix, "certificate not verified (proxmox.tls.insecure_skip_verify): anyone on the path can read the API token")
	case p.TLS.Fingerprint != "":
		r.add(areaProxmox, "tls", OK, "", "certificate verified against the pinned SHA-256 fingerprint")
	case p.TLS.CAFile != "":
		r.add(areaProxmox, "tls", OK, "", "certificate verified against the CA in %s", p.TLS.CAFile)
	default:
		r.add(areaProxmox, "tls", OK, "", "certificate verified against the system's roots")
	}

	agent := len(p.DHCPReservations) == 0
	inv, err := pc.Inventory(ctx)
	if err != nil {
		r.add(areaProxmox, "inventory", Fail, "grant the role on "+proxmox.VMPath(p)+" and /nodes ("+roleDoc+")", "%v", err)
		checkPrivileges(ctx, r, c, pc, version, nil, proxmox.TemplateInfo{})
		return f
	}
	f.inv = &inv
	tpl := checkTemplate(ctx, r, c, pc, inv, agent)
	checkPrivileges(ctx, r, c, pc, version, &inv, tpl)
	checkHosts(r, c, pc, inv)
	checkPools(ctx, r, c, pc, inv)
	checkStandby(ctx, r, c, pc, inv)
	return f
}

// checkPrivileges reads the token's effective privileges on every ACL path
// the steps need (GET /access/permissions?path=...) and names the pveum
// line that grants what is missing.
func checkPrivileges(ctx context.Context, r *Report, c *config.Config, pc *proxmox.Client, version string, inv *proxmox.Inventory, tpl proxmox.TemplateInfo) {
	p := c.Proxmox
	scope := proxmox.Scope{Proxmox: p, Version: version, Template: tpl.VMID, Bridge: tpl.Bridge, Storage: tpl.Storage}
	if p.CloneMode == "full" && p.Storage != "" {
		scope.Storage = p.Storage
	}
	if inv != nil {
		for _, h := range inv.Hosts {
			if hostAllowed(c, h.Name) {
				scope.Hosts = append(scope.Hosts, h.Name)
			}
		}
		slices.Sort(scope.Hosts)
	} else {
		scope.Hosts = p.Hosts
	}
	for _, pool := range c.WorkerPools() {
		for _, d := range pool.PCI {
			if !slices.Contains(scope.Mappings, d.Mapping) {
				scope.Mappings = append(scope.Mappings, d.Mapping)
			}
		}
	}
	slices.Sort(scope.Mappings)
	role := fmt.Sprintf("PVE %d names, see %s", proxmox.Major(version), roleDoc)
	for _, g := range proxmox.Grants(scope) {
		privs, err := pc.PermissionsOn(ctx, g.Path)
		if err != nil {
			r.add(areaProxmox, "privileges", Fail, "check that the token exists and may read its own permissions ("+roleDoc+")", "cannot read the token's permissions on %s (GET /access/permissions): %v", g.Path, err)
			return
		}
		var missing, why []string
		held := 0
		for _, n := range g.Needs {
			for _, priv := range n.Privileges {
				switch {
				case privs[priv]:
					held++
				case !slices.Contains(missing, priv):
					missing = append(missing, priv)
					why = append(why, priv+" ("+n.Step+")")
				}
			}
		}
		if len(missing) == 0 {
			r.add(areaProxmox, "privileges", OK, "", "token %s holds every privilege the steps need on %s", p.TokenID, g.Path)
			continue
		}
		var fix string
		switch {
		case strings.HasPrefix(g.Path, "/mapping/pci/"):
			// The built-in role PVEMappingUser holds Mapping.Use.
			fix = fmt.Sprintf("pveum acl modify %s --tokens '%s' --roles PVEMappingUser   (%s)", g.Path, p.TokenID, roleDoc)
		case held > 0:
			// Granted there, but the role lacks some privileges.
			fix = fmt.Sprintf(`pveum role modify PVEAutoscaler --append 1 --privs "%s"   (the role granted to %s on %s; %s)`, strings.Join(missing, " "), p.TokenID, g.Path, role)
		case strings.HasPrefix(g.Path, "/vms/") && p.ResourcePoolName() != "":
			// The template must be in the pool the grant covers.
			fix = fmt.Sprintf("pveum pool modify %s --vms %d   (the template joins the pool; %s)", p.ResourcePoolName(), tpl.VMID, roleDoc)
		default:
			fix = fmt.Sprintf("pveum acl modify %s --tokens '%s' --roles PVEAutoscaler   (%s)", g.Path, p.TokenID, role)
		}
		r.add(areaProxmox, "privileges", Fail, fix, "token %s lacks %s on %s", p.TokenID, strings.Join(why, ", "), g.Path)
	}
}

// checkStandby shows standby: its members, their ages and hosts, and
// whether each can be started now and is current.
func checkStandby(ctx context.Context, r *Report, c *config.Config, pc *proxmox.Client, inv proxmox.Inventory) {
	sb := c.Policy.Standby
	var members []proxmox.VM
	for _, v := range inv.Ours {
		if proxmox.Step(v) == "standby" {
			members = append(members, v)
		}
	}
	if sb.Size == 0 && len(members) == 0 {
		return
	}
	for _, h := range sb.Hosts {
		if !slices.ContainsFunc(inv.Hosts, func(x proxmox.Host) bool { return x.Name == h }) {
			r.add(areaProxmox, "standby", Fail, "correct policy.standby.hosts (pvecm nodes lists the cluster's nodes)", "policy.standby.hosts names %s, not a node of this PVE cluster", h)
		}
	}
	template, _ := pc.TemplateDigest(ctx, inv)
	var lines []string
	for _, v := range members {
		meta, err := pc.Meta(ctx, v.VMID, v.Host)
		age := "age unknown"
		if err == nil && !meta.Created.IsZero() {
			age = time.Since(meta.Created).Round(time.Minute).String() + " old"
		}
		lines = append(lines, fmt.Sprintf("%s on %s, %s", v.Name, v.Host, age))
		switch {
		case err == nil && meta.Template != "" && template != "" && meta.Template != template:
			r.add(areaProxmox, "standby "+v.Name, Warn, "nothing to do: the daemon replaces it (destroys it and builds a new one when the cluster is calm)", "cloned from a template whose configuration has changed since: it will not be started")
		case err == nil && !meta.Created.IsZero() && time.Since(meta.Created) > sb.MaxAge.D():
			r.add(areaProxmox, "standby "+v.Name, Warn, "nothing to do: the daemon replaces it", "older than policy.standby.max_age %s: it will not be started", sb.MaxAge.D())
		}
		for _, h := range inv.Hosts {
			if h.Name == v.Host && (!h.Online || pc.Room(h) < 1) {
				r.add(areaProxmox, "standby "+v.Name, Warn, "free memory on "+h.Name+" (a stopped standby worker reserves none): until then a scale-up clones instead", "its host %s has no room to start it now", h.Name)
			}
		}
	}
	st, fix := OK, ""
	if len(members) < sb.Size {
		st, fix = Warn, "nothing to do if the daemon runs: it refills standby when the cluster is calm (no pending pods, no cooldown)"
	}
	detail := "empty"
	if len(lines) > 0 {
		detail = strings.Join(lines, "; ")
	}
	r.add(areaProxmox, "standby", st, fix, "standby %d of %d (hosts: %s): %s", len(members), sb.Size, orAny(sb.Hosts), detail)
}

func orAny(hosts []string) string {
	if len(hosts) == 0 {
		return "any"
	}
	return strings.Join(hosts, ", ")
}

// apiFix says how to fix an unreachable or refusing API.
func apiFix(ctx context.Context, p config.Proxmox, err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "fingerprint"):
		return "if the certificate was renewed on purpose, set proxmox.tls.fingerprint to the fingerprint above (Datacenter > node > Certificates shows it); if not, something else answers at this address"
	case strings.Contains(msg, "x509") || strings.Contains(msg, "certificate"):
		fix := "PVE's default certificate is self-signed: pin it with proxmox.tls.fingerprint, or name its CA in proxmox.tls.ca_file (/etc/pve/pve-root-ca.pem)"
		if fp, ferr := proxmox.PeerFingerprint(ctx, p.URL); ferr == nil {
			fix += `; it presents ` + fp
		}
		return fix
	case strings.Contains(msg, "401"):
		return "check proxmox.token_id (USER@REALM!TOKENID) and that " + p.TokenSecretFile + " holds that token's secret (pveum user token list)"
	case strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") || strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline"):
		return "check proxmox.url (https://HOST:8006) and that this machine reaches it"
	}
	return "check proxmox.url and the token"
}

func checkTemplate(ctx context.Context, r *Report, c *config.Config, pc *proxmox.Client, inv proxmox.Inventory, agent bool) proxmox.TemplateInfo {
	p := c.Proxmox
	tpl, err := pc.Template(ctx, inv)
	if err != nil {
		fix := "set proxmox.template to the vmid or name of your Talos template (qm list on a PVE node), and make sure the token may audit it"
		if pool := p.ResourcePoolName(); pool != "" {
			fix += " (it must be in the pool " + pool + ": pveum pool modify " + pool + " --vms VMID)"
		}
		r.add(areaProxmox, "template", Fail, fix, "%v", err)
		return proxmox.TemplateInfo{}
	}
	switch {
	case !tpl.Template && p.CloneMode == "linked":
		r.add(areaProxmox, "template", Fail, fmt.Sprintf("turn it into a template (qm template %d), or set proxmox.clone_mode: full", tpl.VMID),
			"VM %d (%s) on %s is not a template: PVE refuses linked clones of it", tpl.VMID, tpl.Name, tpl.Host)
	case !tpl.Template:
		r.add(areaProxmox, "template", Fail, fmt.Sprintf("qm template %d (a template cannot be started by accident)", tpl.VMID),
			"VM %d (%s) on %s is not a template", tpl.VMID, tpl.Name, tpl.Host)
	default:
		r.add(areaProxmox, "template", OK, "", "%d (%s) on %s is a template, boot disk %s on %s", tpl.VMID, tpl.Name, tpl.Host, gib(tpl.Disk), tpl.Storage)
	}
	switch {
	case tpl.Agent:
		r.add(areaProxmox, "guest agent", OK, "", "template has agent: 1: new workers report their address")
	case !agent:
		r.add(areaProxmox, "guest agent", OK, "", "template has no guest agent; proxmox.dhcp_reservations (%d entries) gives the addresses", len(p.DHCPReservations))
	default:
		r.add(areaProxmox, "guest agent", Fail, fmt.Sprintf("qm set %d --agent enabled=1 (and build the Talos image with the qemu-guest-agent extension), or set proxmox.dhcp_reservations to your DHCP reservations", tpl.VMID),
			"template %d has no guest agent (agent: 1) and no dhcp_reservations are set: the address of a new worker cannot be learnt", tpl.VMID)
	}
	if p.CloneMode != "full" {
		return tpl
	}
	storage := p.Storage
	if storage == "" {
		storage = tpl.Storage
	}
	rooms, err := pc.Storages(ctx)
	if err != nil {
		r.add(areaProxmox, "storage", Fail, "grant the role on /storage/"+storage+" ("+roleDoc+")", "cannot read storage %s: %v", storage, err)
		return tpl
	}
	found := false
	for _, s := range rooms {
		if s.Storage != storage || !hostAllowed(c, s.Host) {
			continue
		}
		found = true
		free := s.Total - s.Used
		switch {
		case free < tpl.Disk:
			r.add(areaProxmox, "storage", Fail, fmt.Sprintf("free space on %s (or set proxmox.storage to one with room; linked clones copy nothing)", storage),
				"%s on %s has %s free, less than one full clone of %s", storage, s.Host, gib(free), gib(tpl.Disk))
		case free < tpl.Disk*int64(c.Policy.MaxWorkers):
			r.add(areaProxmox, "storage", Warn, fmt.Sprintf("free space on %s, or lower policy.max_workers", storage),
				"%s on %s has %s free: room for %d full clones of %s, fewer than max_workers %d", storage, s.Host, gib(free), free/max(tpl.Disk, 1), gib(tpl.Disk), c.Policy.MaxWorkers)
		default:
			r.add(areaProxmox, "storage", OK, "", "%s on %s has %s free: room for %d full clones of %s", storage, s.Host, gib(free), free/max(tpl.Disk, 1), gib(tpl.Disk))
		}
		if s.Shared {
			break // one line for a shared storage
		}
	}
	if !found {
		r.add(areaProxmox, "storage", Fail, "set proxmox.storage to a storage available on the allowed hosts (pvesm status), and grant the role on /storage/"+storage+" ("+roleDoc+")",
			"storage %s for full clones is not available on any allowed host (or the token may not audit it)", storage)
	}
	return tpl
}

func hostAllowed(c *config.Config, host string) bool {
	return len(c.Proxmox.Hosts) == 0 || slices.Contains(c.Proxmox.Hosts, host)
}

func checkHosts(r *Report, c *config.Config, pc *proxmox.Client, inv proxmox.Inventory) {
	total, online := 0, 0
	seen := map[string]bool{}
	for _, h := range inv.Hosts {
		if !hostAllowed(c, h.Name) {
			continue
		}
		seen[h.Name] = true
		if !h.Online {
			r.add(areaProxmox, "host "+h.Name, Warn, "bring it back, or leave it out of proxmox.hosts", "offline: no worker is placed there")
			continue
		}
		online++
		room := pc.Room(h)
		total += room
		st, fix := OK, ""
		if room == 0 {
			st, fix = Warn, "free memory on it, lower proxmox.host_memory_reserve, or leave it out of proxmox.hosts"
		}
		r.add(areaProxmox, "host "+h.Name, st, fix, "online, %s of %s memory in use, room for %d workers of %s (after the %s reserve)",
			gib(h.MemUsed+h.InFlight), gib(h.MemTotal), room, c.Proxmox.VM.Memory, c.Proxmox.HostMemReserve)
	}
	for _, name := range c.Proxmox.Hosts {
		if !seen[name] {
			r.add(areaProxmox, "host "+name, Fail, "correct proxmox.hosts (pvecm nodes lists the cluster's nodes)", "in proxmox.hosts but not a node of this PVE cluster")
		}
	}
	ours := len(inv.Ours)
	if online == 0 {
		r.add(areaProxmox, "hosts", Fail, "bring a host online or correct proxmox.hosts", "no allowed host is online: no worker can be placed")
	} else if need := c.Policy.MaxWorkers - ours; total < need {
		r.add(areaProxmox, "hosts", Warn, "free memory on the hosts or lower policy.max_workers", "room for %d more workers in all, but max_workers allows %d more (%d of ours exist)", total, need, ours)
	}
}

func gib(b int64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1fGiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%dMiB", b>>20)
}

// checkTalos loads the worker config, the patches and the talosconfig as
// the daemon does, and checks the talosconfig's CA against the config's.
func checkTalos(r *Report, c *config.Config, o Options) {
	t := c.Talos
	opts := talos.OptionsFrom(t, o.Log.Named("talos"))
	opts.Pools = c.WorkerPools()
	if o.TalosPort != 0 {
		opts.Port = o.TalosPort
	}
	// talos.New loads the worker config, the patches and the talosconfig,
	// in that order, as the daemon does; its errors name the file at fault.
	tc, err := talos.New(opts)
	if err != nil {
		msg := err.Error()
		name, fix := "worker config", "use the worker.yaml that `talosctl gen config` wrote for this cluster"
		switch {
		case slices.ContainsFunc(t.PatchFiles, func(pf string) bool { return strings.Contains(msg, pf) }):
			name, fix = "patches", "correct the patch: a strategic merge patch (YAML of the fields to change) or a JSON 6902 patch, applying to this worker config"
		case strings.Contains(msg, t.TalosconfigFile):
			name, fix = "talosconfig", "use the talosconfig `talosctl gen config` wrote with this worker config"
		}
		if name != "worker config" {
			r.add(areaTalos, "worker config", OK, "", "%s loads and validates as a worker config", t.WorkerConfigFile)
		}
		r.add(areaTalos, name, Fail, fix, "%v", err)
		return
	}
	r.add(areaTalos, "worker config", OK, "", "%s loads and validates as a worker config", t.WorkerConfigFile)
	if len(t.PatchFiles) > 0 {
		r.add(areaTalos, "patches", OK, "", "%d patch(es) apply to the worker config", len(t.PatchFiles))
	}
	if err := tc.CheckCA(); err != nil {
		r.add(areaTalos, "talosconfig", Fail, "use the talosconfig generated with this worker config (the same secrets bundle)", "%v", err)
		return
	}
	r.add(areaTalos, "talosconfig", OK, "", "%s has a client certificate and the CA of the machines the worker config makes", t.TalosconfigFile)
}
