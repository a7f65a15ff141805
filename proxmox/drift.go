package proxmox

import (
	"context"
	"fmt"
	"strings"
)

// buildLine is the description line recording a new VM's build digest
// (Options.Build), or "" when none is configured.
func (c *Client) buildLine(pool string) string {
	if c.build == nil {
		return ""
	}
	if b := c.build(pool); b != "" {
		return "pve-autoscaler/build: " + b + "\n"
	}
	return ""
}

// drift says how a worker VM differs from what a new worker of its pool
// would be now ("" when it does not, or when that cannot be told): its
// template's configuration changed since the clone, the pool's VM size
// changed, or the build (Talos worker config and patches, the pool's
// labels and taints) changed. What was not recorded at its clone (an
// older version's VM) is not held against it.
func (c *Client) drift(ctx context.Context, inv Inventory, v VM, meta Meta, pool string) string {
	var why []string
	if meta.Template != "" {
		if tpl := inv.Templates[c.poolName(pool)]; tpl != nil {
			if now, err := c.templateDigest(ctx, *tpl); err == nil && now != "" && now != meta.Template {
				tid, _, _ := strings.Cut(meta.Template, "@")
				why = append(why, "cloned from template "+tid+" whose configuration has changed since")
			}
		}
	}
	if pl, err := c.pool(pool); err == nil {
		want, wantMem := pl.VM.Cores, int64(pl.VM.Memory)
		if v.Cores > 0 && v.Cores != want || v.MaxMem > 0 && v.MaxMem != wantMem {
			why = append(why, fmt.Sprintf("its size is %d cores, %dMiB; the pool's VMs are now %d cores, %dMiB", v.Cores, v.MaxMem>>20, want, wantMem>>20))
		}
	}
	if meta.Build != "" && c.build != nil {
		if now := c.build(pool); now != "" && now != meta.Build {
			why = append(why, "the Talos worker config, its patches or the pool's labels and taints have changed since it was made")
		}
	}
	return strings.Join(why, "; ")
}
