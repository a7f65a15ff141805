package doctor

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/simulate"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// checkCooldown compares the cooldown after a scale-up with how long a
// worker takes from clone to Node: measured on the workers pve-autoscaler
// made (the VM's creation in its description, the Node's creation), or
// else modelled as `simulate` does.
func checkCooldown(ctx context.Context, r *Report, c *config.Config, px pveFacts, kx kubeFacts) {
	measured := provisionTimes(ctx, px, kx)
	var took time.Duration
	how := ""
	if len(measured) > 0 {
		sort.Slice(measured, func(i, j int) bool { return measured[i] < measured[j] })
		took = measured[len(measured)/2]
		how = fmt.Sprintf("measured: median of the %d workers pve-autoscaler made", len(measured))
	} else {
		took = simulate.DefaultModel().Provision(c.Proxmox.CloneMode == "full", 1)
		how = "estimated from PVE and Talos's usual delays: no worker of ours yet"
	}
	cool := c.Policy.Cooldown.AfterScaleUp.D()
	if cool < took {
		r.add(areaConfig, "cooldown", Warn, fmt.Sprintf("set policy.cooldown.after_scale_up to at least %s", took.Round(time.Minute)+time.Minute),
			"cooldown.after_scale_up %s is shorter than a worker's provisioning, %s (%s): scale-downs may start before the new workers take load", cool, took.Round(time.Second), how)
		return
	}
	r.add(areaConfig, "cooldown", OK, "", "cooldown.after_scale_up %s covers a worker's provisioning, %s (%s)", cool, took.Round(time.Second), how)
}

func provisionTimes(ctx context.Context, px pveFacts, kx kubeFacts) []time.Duration {
	if px.client == nil || px.inv == nil {
		return nil
	}
	hosts := map[int]string{}
	for _, v := range px.inv.Ours {
		hosts[v.VMID] = v.Host
	}
	var out []time.Duration
	for _, n := range kx.nodes {
		if n.Labels[scaler.LabelManaged] != "true" || len(out) >= 10 {
			continue
		}
		vmid, _ := strconv.Atoi(n.Labels[scaler.LabelVMID])
		host, ok := hosts[vmid]
		if !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		created, ours, err := px.client.Created(cctx, vmid, host)
		cancel()
		if err != nil || !ours || created.IsZero() {
			continue
		}
		if d := n.CreationTimestamp.Sub(created); d > 0 && d < 24*time.Hour {
			out = append(out, d)
		}
	}
	return out
}
