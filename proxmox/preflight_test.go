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
