package proxmox

import (
	"context"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
)

func TestPreflightReads(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, func(pw *pvesim.World) {
		pw.Version = "8.4.1"
		pw.Tokens = append(pw.Tokens, pvesim.TokenSpec{ID: "narrow@pve!scaler", Secret: secret, Privileges: []string{"VM.Audit", "Sys.Audit", "VM.Monitor"}})
	})
	c := w.client(nil, nil)
	v, err := c.Version(ctx)
	if err != nil || v != "8.4.1" || Major(v) != 8 {
		t.Fatalf("version %q %v", v, err)
	}
	privs, err := c.PermissionsOn(ctx, "/vms")
	if err != nil || !privs["VM.Monitor"] || privs["VM.GuestAgent.Audit"] || !privs["VM.PowerMgmt"] {
		t.Fatalf("full token on PVE 8: %v %v", privs, err)
	}
	narrow := w.client(func(p *config.Proxmox) { p.TokenID = "narrow@pve!scaler" }, nil)
	privs, err = narrow.PermissionsOn(ctx, "/vms/9000")
	if err != nil || len(privs) != 3 || !privs["Sys.Audit"] || privs["VM.Clone"] {
		t.Fatalf("narrow token: %v %v", privs, err)
	}

	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := c.Template(ctx, inv)
	if err != nil || !tpl.Template || !tpl.Agent || tpl.Storage != "shared" || tpl.Disk != 10<<30 || tpl.VMID != 9000 || tpl.Bridge != "vmbr0" {
		t.Fatalf("template %+v %v", tpl, err)
	}
	w.sim.SetTemplateAgent(9000, false)
	if tpl, _ := c.Template(ctx, inv); tpl.Agent {
		t.Error("agent still reported on")
	}
	st, err := c.Storages(ctx)
	if err != nil || len(st) != 6 {
		t.Fatalf("storages %+v %v", st, err)
	}
	for _, s := range st {
		if s.Storage == "shared" && (!s.Shared || s.Total != 4<<40 || s.Used < 10<<30) {
			t.Errorf("shared storage %+v", s)
		}
	}
	for _, h := range inv.Hosts {
		if want := int((h.MemTotal - h.MemUsed - int64(w.cfg.HostMemReserve)) / int64(w.cfg.VM.Memory)); c.Room(h) != want {
			t.Errorf("%s room %d, want %d", h.Name, c.Room(h), want)
		}
	}
}

// TestTemplateByNameIsOneVM: a template given by name is the one VM of
// that name, a template before other VMs; two templates of the name are
// none, and what would clone, check or sanity-check names the field, the
// VMs and the fix.
func TestTemplateByNameIsOneVM(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		extra pvesim.VMSpec
		want  int    // the template's vmid, 0: none
		err   string // what Clone, Template and Sane say then
	}{
		{name: "a VM of the template's name", extra: pvesim.VMSpec{VMID: 120, Name: "talos-worker-template", Host: "pve2", Storage: "local-lvm", Cores: 1, Memory: 512, Disk: 1 << 30}, want: 9000},
		{name: "a second template of the name", extra: pvesim.VMSpec{VMID: 9001, Name: "talos-worker-template", Host: "pve2", Storage: "shared", Cores: 2, Memory: 2048, Disk: 10 << 30, Agent: true, Template: true},
			err: `proxmox.template talos-worker-template names 2 VMs (9000 on pve1, 9001 on pve2): give the template's vmid instead of its name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, func(pw *pvesim.World) {
				if tc.extra.Template {
					pw.Templates = append(pw.Templates, tc.extra)
				} else {
					pw.VMs = append(pw.VMs, tc.extra)
				}
			})
			c := w.client(func(p *config.Proxmox) { p.Template = config.VMRef{Name: "talos-worker-template"} }, nil)
			inv, err := c.Inventory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != 0 {
				if inv.Template == nil || inv.Template.VMID != tc.want {
					t.Fatalf("template %+v, want vmid %d", inv.Template, tc.want)
				}
				return
			}
			if inv.Template != nil {
				t.Fatalf("template %+v, want none", *inv.Template)
			}
			if _, err := c.Template(ctx, inv); err == nil || err.Error() != tc.err {
				t.Errorf("Template: %v, want %q", err, tc.err)
			}
			if err := c.Sane(ctx); err == nil || err.Error() != tc.err {
				t.Errorf("Sane: %v, want %q", err, tc.err)
			}
			writes := w.sim.Writes()
			if err := c.Clone(ctx, inv, 5000, "pve1", c.pools[0]); err == nil || err.Error() != tc.err {
				t.Errorf("Clone: %v, want %q", err, tc.err)
			}
			if got := w.sim.Writes() - writes; got != 0 {
				t.Errorf("%d PVE writes for a clone of an ambiguous template", got)
			}
		})
	}
}
