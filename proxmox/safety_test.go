package proxmox

import (
	"context"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
)

// Scenario 7 of the safety issue: the clone's answer is lost (a client
// timeout while PVE goes on cloning). The retry finds "config file already
// exists": the VM there, with the very description sent, is this clone.
// Exactly one VM results, under the vmid returned.
func TestCloneWhoseAnswerWasLostIsNotClonedTwice(t *testing.T) {
	w := newWorld(t, nil)
	c, err := New(Options{Proxmox: w.cfg, Cluster: "homelab", PollInterval: 5 * time.Millisecond, RequestTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := len(w.sim.VMs())
	w.sim.LoseNextAnswer("POST /nodes/{node}/qemu/{vmid}/clone")
	vmid, err := c.CloneNew(ctx, inv, "pve1")
	if err != nil {
		t.Fatal(err)
	}
	vms := w.sim.VMs()
	if len(vms) != before+1 {
		t.Fatalf("%d VMs after one clone, want %d: %+v", len(vms), before+1, vms)
	}
	if v, ok := w.sim.Lookup(vmid); !ok || v.Lock != "" {
		t.Errorf("VM %d returned: present %v, %+v", vmid, ok, v)
	}
	if n := w.sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; n != 2 {
		t.Errorf("%d clone requests, want 2 (the lost one and its retry)", n)
	}
}

// Gone is true only when every online host says the VM does not exist.
func TestGoneNeedsPVEToSaySo(t *testing.T) {
	w := newWorld(t, nil)
	c := w.client(nil, nil)
	ctx := context.Background()
	if gone, err := c.Gone(ctx, 100); err != nil || gone {
		t.Errorf("an existing VM: gone %v, %v", gone, err)
	}
	if gone, err := c.Gone(ctx, 4242); err != nil || !gone {
		t.Errorf("a VM that never was: gone %v, %v", gone, err)
	}
	w.sim.SetHostOnline("pve3", false)
	if gone, err := c.Gone(ctx, 4242); err == nil || gone {
		t.Errorf("with a host offline: gone %v, %v; want not gone and an error", gone, err)
	}
	w.sim.SetHostOnline("pve3", true)
	w.sim.FailRequests(1, 500, "Internal Server Error")
	if gone, _ := c.Gone(ctx, 4242); gone {
		t.Error("gone on a failed read")
	}
}

// Sane fails when the template is not visible or VM.Audit is gone.
func TestSane(t *testing.T) {
	w := newWorld(t, nil)
	c := w.client(nil, nil)
	ctx := context.Background()
	if err := c.Sane(ctx); err != nil {
		t.Fatal(err)
	}
	w.sim.DenyPrivilege("VM.Audit")
	if err := c.Sane(ctx); err == nil {
		t.Error("sane without VM.Audit")
	}
}

// A VM deleted by hand may keep its Node (named after its id) until the
// absence is confirmed: a new clone takes an id this process has not seen.
func TestAllocateIDPrefersUnseenIDs(t *testing.T) {
	w := newWorld(t, nil)
	c := w.client(nil, nil)
	ctx := context.Background()
	inv, _ := c.Inventory(ctx)
	first, err := c.CloneNew(ctx, inv, "pve1")
	if err != nil {
		t.Fatal(err)
	}
	w.sim.DeleteVM(first)
	inv, _ = c.Inventory(ctx)
	next, err := c.CloneNew(ctx, inv, "pve1")
	if err != nil {
		t.Fatal(err)
	}
	if next == first {
		t.Errorf("the id %d of a VM deleted by hand was taken again at once", first)
	}
}

// A VM with our tags but without our description's marker is not ours:
// destroyOwned and PowerOff refuse it before stopping anything.
func TestTaggedButUnmarkedVMIsNeverStopped(t *testing.T) {
	w := newWorld(t, func(wd *pvesim.World) {
		wd.VMs = append(wd.VMs, pvesim.VMSpec{VMID: 5600, Name: "talos-worker-5600", Host: "pve1", Storage: "shared", Cores: 4, Memory: 8192, Disk: 10 << 30, Running: true, Tags: "pve-autoscaler;cluster-homelab"})
	})
	c := w.client(nil, nil)
	ctx := context.Background()
	if err := c.destroyOwned(ctx, 5600); err == nil {
		t.Error("destroyOwned took a VM without our marker")
	}
	if err := c.PowerOff(ctx, 5600); err == nil {
		t.Error("PowerOff took a VM without our marker")
	}
	if v, ok := w.sim.Lookup(5600); !ok || !v.Running {
		t.Errorf("the VM was stopped or removed: %+v (present %v)", v, ok)
	}
}

// With a host offline, the DHCP reservations hands out nothing: the MACs of the
// VMs there cannot be read, and one might be handed out twice.
func TestMACPoolWithAHostOffline(t *testing.T) {
	w := newWorld(t, nil)
	pool := []config.MACIP{{MAC: "BC:24:11:AA:00:01", IP: "192.168.10.51"}}
	c := w.client(func(p *config.Proxmox) { p.DHCPReservations = pool }, nil)
	ctx := context.Background()
	w.sim.SetHostOnline("pve2", false) // VM 5500 lives there
	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mac, _, err := c.NextMAC(ctx, inv, 5001); err == nil {
		t.Errorf("handed out %s with a host offline", mac)
	}
}

// A VM missing from the list is gone only when PVE says so: with the token
// unable to list it, destroyOwned and destroy fail instead of reporting it
// destroyed (a Node would then be deleted while its VM runs).
func TestUnlistedIsNotGone(t *testing.T) {
	w := newWorld(t, nil)
	c := w.client(nil, nil)
	ctx := context.Background()
	vmid, _ := provision(t, c)
	w.sim.DenyPrivilege("VM.Audit")
	if err := c.destroyOwned(ctx, vmid); err == nil {
		t.Error("destroyOwned of a VM the token cannot list reported success")
	}
	if err := c.destroy(ctx, vmid); err == nil {
		t.Error("destroy of a VM the token cannot list reported success")
	}
	if _, ok := w.sim.Lookup(vmid); !ok {
		t.Error("the VM is gone")
	}
	w.sim.AllowPrivilege("VM.Audit")
	w.sim.DeleteVM(vmid)
	if err := c.destroyOwned(ctx, vmid); err != nil {
		t.Errorf("destroyOwned of a VM that does not exist: %v", err)
	}
}
