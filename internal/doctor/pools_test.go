package doctor

import (
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
)

// TestPoolFindings: each pool's template, and each PCI pool's mappings:
// present, with a device on the pool's hosts, usable by the token.
func TestPoolFindings(t *testing.T) {
	s := newSetup(t, world.Options{PVE: func(pw *pvesim.World) {
		pw.PCIMappings = []pvesim.PCIMappingSpec{{ID: "igpu", Map: []pvesim.PCIMapEntry{{Node: "pve2", Path: "0000:00:02.0", ID: "8086:46a6"}}}}
	}})
	pools := func(gpuHosts []string, mapping string, template string) func(*config.Config) {
		return func(c *config.Config) {
			tpl := c.Proxmox.Template
			c.Proxmox.Template = config.VMRef{}
			c.Pools = []config.Pool{
				{Name: "general", Template: tpl, VM: c.Proxmox.VM, MinWorkers: 1, MaxWorkers: 3},
				{Name: "gpu", Template: config.VMRef{Name: template}, VM: c.Proxmox.VM, MaxWorkers: 1, Hosts: gpuHosts, PCI: []config.PCI{{Mapping: mapping}}},
			}
		}
	}
	r := s.run(pools([]string{"pve2"}, "igpu", "talos-worker-template"))
	expect(t, r, "proxmox", "pool general", OK, "template 9000 (talos-worker-template)", "")
	expect(t, r, "proxmox", "pool gpu PCI igpu", OK, "device on pve2", "")
	expect(t, r, "proxmox", "privileges", OK, "every privilege the steps need on /mapping/pci/igpu", "")
	for _, c := range r.Find("proxmox", "privileges") {
		if c.Status != OK {
			t.Errorf("a correct PCI set-up: %s %s (%s)", c.Status, c.Finding, c.Fix)
		}
	}

	r = s.run(pools(nil, "igpu", "talos-worker-template"))
	expect(t, r, "proxmox", "pool gpu PCI igpu", Warn, "no device on pve1, pve3", "go to pve2 only")
	r = s.run(pools([]string{"pve1"}, "igpu", "talos-worker-template"))
	expect(t, r, "proxmox", "pool gpu PCI igpu", Fail, "none of the pool's hosts (pve1)", "set pools[1].hosts")
	r = s.run(pools([]string{"pve2"}, "nvidia", "talos-worker-template"))
	expect(t, r, "proxmox", "pool gpu PCI nvidia", Fail, "does not exist", "pools[1].pci[0].mapping")
	r = s.run(pools([]string{"pve2"}, "igpu", "talos-gpu"))
	expect(t, r, "proxmox", "pool gpu", Fail, "talos-gpu not found", "set pools[1].template")

	s.w.Sim.DenyPrivilege("Mapping.Use")
	r = s.run(pools([]string{"pve2"}, "igpu", "talos-worker-template"))
	expect(t, r, "proxmox", "privileges", Fail, "lacks Mapping.Use (pass the mapped device through) on /mapping/pci/igpu", "pveum acl modify /mapping/pci/igpu --tokens 'autoscaler@pve!scaler' --roles PVEMappingUser")
	s.w.Sim.DenyPrivilege("VM.Config.HWType")
	r = s.run(pools([]string{"pve2"}, "igpu", "talos-worker-template"))
	expect(t, r, "proxmox", "privileges", Fail, "lacks VM.Config.HWType (pass a PCI device through (hostpciN))", `pveum role modify PVEAutoscaler --append 1 --privs "VM.Config.HWType"`)
}
