package proxmox

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
)

// poolScoped gives the test token deploy/proxmox-role.md's grants instead
// of Administrator on "/": the role on the pool "workers" (which holds the
// template), /nodes, the storage "shared" and the bridge vmbr0.
func poolScoped(version string) func(*pvesim.World) {
	return func(w *pvesim.World) {
		w.Version = version
		w.Roles = map[string][]string{"PVEAutoscaler": {"VM.Audit", "VM.Clone", "VM.Allocate", "VM.Config.CPU", "VM.Config.Memory",
			"VM.Config.Options", "VM.Config.Network", "VM.PowerMgmt", AgentPrivilege(version), "Datastore.AllocateSpace", "Datastore.Audit", "SDN.Use", "Sys.Audit"}}
		w.Pools = []pvesim.PoolSpec{{Name: "workers", VMs: []int{9000}}}
		for _, p := range []string{"/pool/workers", "/nodes", "/storage/shared", "/sdn/zones/localnetwork/vmbr0"} {
			w.ACL = append(w.ACL, pvesim.ACLSpec{Path: p, UGID: "autoscaler@pve!scaler", Role: "PVEAutoscaler"})
		}
	}
}

// The adapter provisions, checks its view and removes with a token that
// holds nothing on "/": new VMs join proxmox.resource_pool, whose grant
// then covers them; VMs outside the pool stay invisible and untouchable.
func TestProvisionWithAPoolScopedToken(t *testing.T) {
	for _, version := range []string{"9.0.3", "8.4.1"} {
		t.Run(version, func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, poolScoped(version))
			c := w.client(func(p *config.Proxmox) { p.ResourcePool = "workers" }, nil)
			inv, err := c.Inventory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if inv.Template == nil || len(inv.All) != 1 || len(inv.Hosts) != 3 || inv.Hosts[0].MemTotal == 0 {
				t.Fatalf("inventory: template %v, VMs %v, hosts %v", inv.Template, inv.All, inv.Hosts)
			}
			vmid, ip := provision(t, c)
			if v, _ := w.sim.Lookup(vmid); v.Pool != "workers" || !v.Running || ip == "" {
				t.Errorf("VM %+v", v)
			}
			if err := c.Sane(ctx); err != nil {
				t.Errorf("Sane with a pool-scoped token: %v", err)
			}
			if err := c.destroyOwned(ctx, vmid); err != nil {
				t.Fatal(err)
			}
			if _, ok := w.sim.Lookup(vmid); ok {
				t.Error("VM still there after destroyOwned")
			}
			// Without resource_pool the clone needs VM.Allocate on /vms/NEWID, which this token lacks.
			plain := w.client(nil, nil)
			inv, _ = plain.Inventory(ctx)
			host, err := plain.Place(inv, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := plain.CloneNew(ctx, inv, host); err == nil || !strings.Contains(err.Error(), "Permission check failed (/vms/5000, VM.Allocate)") {
				t.Errorf("clone outside the pool: %v", err)
			}
			if err := plain.Sane(ctx); err == nil || !strings.Contains(err.Error(), "VM.Audit on /vms") {
				t.Errorf("Sane without the pool's path: %v", err)
			}
		})
	}
}

func TestGrants(t *testing.T) {
	p := config.Default().Proxmox
	p.ResourcePool = "workers"
	g := Grants(Scope{Proxmox: p, Version: "8.4.1", Template: 9000, Storage: "shared", Bridge: "vmbr0", Hosts: []string{"pve1", "pve2"}})
	var paths []string
	privs := map[string][]string{}
	for _, x := range g {
		paths = append(paths, x.Path)
		for _, n := range x.Needs {
			privs[x.Path] = append(privs[x.Path], n.Privileges...)
		}
	}
	if want := []string{"/pool/workers", "/vms/9000", "/nodes/pve1", "/nodes/pve2", "/storage/shared", "/sdn/zones/localnetwork/vmbr0"}; !slices.Equal(paths, want) {
		t.Errorf("paths %v, want %v", paths, want)
	}
	if v := privs["/pool/workers"]; !slices.Contains(v, "VM.Monitor") || slices.Contains(v, "VM.GuestAgent.Audit") || slices.Contains(v, "VM.Config.Network") || slices.Contains(v, "VM.Config.Cloudinit") {
		t.Errorf("PVE 8 pool grant %v", v)
	}
	if v := privs["/sdn/zones/localnetwork/vmbr0"]; !slices.Equal(v, []string{"SDN.Use"}) {
		t.Errorf("bridge grant %v", v)
	}
	p.ResourcePool = ""
	p.DHCPReservations = []config.MACIP{{MAC: "BC:24:11:00:00:01", IP: "10.0.0.1"}}
	g = Grants(Scope{Proxmox: p, Version: "9.0.3"})
	if len(g) != 1 || g[0].Path != "/vms" {
		t.Fatalf("grants %v", g)
	}
	var all []string
	for _, n := range g[0].Needs {
		all = append(all, n.Privileges...)
	}
	if !slices.Contains(all, "VM.Config.Network") || slices.Contains(all, "VM.GuestAgent.Audit") || slices.Contains(all, "VM.Config.HWType") {
		t.Errorf("with a MAC pool: %v", all)
	}
	// A pool passing PCI devices through: VM.Config.HWType where the VMs
	// are made, Mapping.Use on each mapping.
	g = Grants(Scope{Proxmox: p, Version: "9.0.3", Mappings: []string{"igpu", "nvme"}})
	if len(g) != 3 || g[1].Path != "/mapping/pci/igpu" || g[2].Path != "/mapping/pci/nvme" || !slices.Equal(g[2].Needs[0].Privileges, []string{"Mapping.Use"}) {
		t.Fatalf("PCI grants %v", g)
	}
	if !slices.ContainsFunc(g[0].Needs, func(n Need) bool { return slices.Equal(n.Privileges, []string{"VM.Config.HWType"}) }) {
		t.Errorf("PCI: no VM.Config.HWType on %s: %v", g[0].Path, g[0].Needs)
	}
}

// deploy/proxmox-role.md's roles hold exactly what Grants asks for (with
// and without DHCP reservations), each with its release's agent privilege, and
// its acl lines cover every path Grants names.
func TestRoleDocMatchesGrants(t *testing.T) {
	doc, err := os.ReadFile("../deploy/proxmox-role.md")
	if err != nil {
		t.Fatal(err)
	}
	roles := regexp.MustCompile(`(?m)^pveum role add PVEAutoscaler --privs "([^"]+)"$`).FindAllStringSubmatch(string(doc), -1)
	if len(roles) != 2 {
		t.Fatalf("want the PVE 9 and PVE 8 role lines, found %d", len(roles))
	}
	for i, version := range []string{"9.0.3", "8.4.1"} {
		p := config.Default().Proxmox
		p.ResourcePool = "workers"
		want := map[string]bool{}
		for _, mac := range []bool{false, true} {
			if mac {
				p.DHCPReservations = []config.MACIP{{MAC: "BC:24:11:00:00:01", IP: "10.0.0.1"}}
			}
			for _, g := range Grants(Scope{Proxmox: p, Version: version, Template: 9000, Storage: "local-lvm", Bridge: "vmbr0", Hosts: []string{"pve1"}}) {
				for _, n := range g.Needs {
					for _, priv := range n.Privileges {
						want[priv] = true
					}
				}
				if !strings.Contains(string(doc), "pveum acl modify "+strings.TrimSuffix(g.Path, "/pve1")+" --tokens") && !strings.HasPrefix(g.Path, "/vms/") {
					t.Errorf("no acl line for %s", g.Path)
				}
			}
		}
		got := strings.Fields(roles[i][1])
		for _, priv := range got {
			if !want[priv] {
				t.Errorf("PVE %s role grants %s, which no step needs", version, priv)
			}
			delete(want, priv)
		}
		for priv := range want {
			t.Errorf("PVE %s role lacks %s", version, priv)
		}
	}
	// The PCI section adds exactly what a pool with a mapping adds.
	appended := regexp.MustCompile(`(?m)^pveum role modify PVEAutoscaler --privs (\S+) --append 1$`).FindAllStringSubmatch(string(doc), -1)
	p := config.Default().Proxmox
	base := map[string]bool{}
	for _, g := range Grants(Scope{Proxmox: p, Version: "9.0.3"}) {
		for _, n := range g.Needs {
			for _, priv := range n.Privileges {
				base[priv] = true
			}
		}
	}
	var added []string
	for _, g := range Grants(Scope{Proxmox: p, Version: "9.0.3", Mappings: []string{"igpu"}}) {
		if strings.HasPrefix(g.Path, "/mapping/pci/") {
			if !strings.Contains(string(doc), "pveum acl modify "+g.Path+" --tokens 'autoscaler@pve!scaler' --roles PVEMappingUser") {
				t.Errorf("no acl line granting PVEMappingUser (Mapping.Use) on %s", g.Path)
			}
			continue
		}
		for _, n := range g.Needs {
			for _, priv := range n.Privileges {
				if !base[priv] && !slices.Contains(added, priv) {
					added = append(added, priv)
				}
			}
		}
	}
	if len(appended) != 1 || appended[0][1] != strings.Join(added, ",") {
		t.Errorf("the PCI section's role line appends %v, want exactly %v", appended, added)
	}
}
