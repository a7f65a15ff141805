package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox"
)

// checkPools checks each worker pool of a config with pools: its
// template is there, and for a pool passing PCI devices through, each
// mapping exists and has a device on at least one of the pool's hosts
// (checkPrivileges checks Mapping.Use on it and VM.Config.HWType where
// VMs are made, with the other grants).
// A pool's labels and taints are checked by validate (a config problem).
func checkPools(ctx context.Context, r *Report, c *config.Config, pc *proxmox.Client, inv proxmox.Inventory) {
	if len(c.Pools) == 0 {
		return
	}
	var mappings map[string]proxmox.PCIMapping
	var mapErr error
	for i, p := range c.WorkerPools() {
		name := "pool " + p.Name
		if t := inv.Templates[p.Name]; t == nil {
			r.add(areaProxmox, name, Fail, fmt.Sprintf("set pools[%d].template to the vmid or name of a Talos template (qm list on a PVE node), and make sure the token may audit it", i),
				"template %s not found in the cluster (or the token may not see it)", p.Template)
			continue
		} else {
			r.add(areaProxmox, name, OK, "", "template %d (%s) on %s; VMs of %d cores, %s", t.VMID, t.Name, t.Host, p.VM.Cores, p.VM.Memory)
		}
		if len(p.PCI) == 0 {
			continue
		}
		if mappings == nil && mapErr == nil {
			mappings, mapErr = pc.PCIMappings(ctx)
		}
		if mapErr != nil {
			r.add(areaProxmox, name+" PCI", Fail, "grant the token Mapping.Audit on /mapping/pci ("+roleDoc+")", "cannot list the PCI resource mappings: %v", mapErr)
			continue
		}
		hosts := p.Hosts
		if len(hosts) == 0 {
			for _, h := range inv.Hosts {
				if hostAllowed(c, h.Name) {
					hosts = append(hosts, h.Name)
				}
			}
		}
		for j, d := range p.PCI {
			check := fmt.Sprintf("%s PCI %s", name, d.Mapping)
			grant := fmt.Sprintf("pveum acl modify /mapping/pci/%s --tokens '%s' --roles PVEMappingUser", d.Mapping, c.Proxmox.TokenID)
			m, ok := mappings[d.Mapping]
			if !ok {
				r.add(areaProxmox, check, Fail, fmt.Sprintf("create the mapping (Datacenter > Resource Mappings > PCI) or correct pools[%d].pci[%d].mapping; if it exists: %s", i, j, grant),
					"PCI mapping %s does not exist, or the token may not see it", d.Mapping)
				continue
			}
			var with, without []string
			for _, h := range hosts {
				if slices.Contains(m.Hosts, h) {
					with = append(with, h)
				} else {
					without = append(without, h)
				}
			}
			switch {
			case len(with) == 0:
				r.add(areaProxmox, check, Fail, fmt.Sprintf("map a device on one of %s (Datacenter > Resource Mappings > %s), or set pools[%d].hosts to hosts that have one", strings.Join(hosts, ", "), d.Mapping, i),
					"mapping %s has a device on %s, none of the pool's hosts (%s): no VM of the pool can be placed", d.Mapping, strings.Join(m.Hosts, ", "), strings.Join(hosts, ", "))
				continue
			case len(without) > 0:
				r.add(areaProxmox, check, Warn, fmt.Sprintf("nothing, if intended: the pool's VMs go to %s only (one per device)", strings.Join(with, ", ")),
					"mapping %s has no device on %s", d.Mapping, strings.Join(without, ", "))
			default:
				r.add(areaProxmox, check, OK, "", "mapping %s has a device on %s (one worker per device)", d.Mapping, strings.Join(with, ", "))
			}
		}
	}
}
