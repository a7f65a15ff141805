package proxmox

import (
	"context"
	"errors"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// proxmox.host_memory_reserve is applied once on each side of the port:
// Workers reports a host's free memory without it, the scaler's
// Policy.Spare takes it off for decisions, Place takes it off for
// placement. The host below has the reserve plus two and a half workers
// free, with a reserve as large as a worker: the decision and placement
// must both find room for exactly two (once), not three (never applied)
// nor one (applied twice), and agree after every clone.
func TestHostReserveAppliedOnce(t *testing.T) {
	const gi = int64(1) << 30
	vm, reserve := 8*gi, 8*gi
	w := newWorld(t, func(wd *pvesim.World) {
		wd.Hosts = []pvesim.HostSpec{{Name: "pve1", Cores: 32, Memory: 64 * gi}}
		wd.VMs = nil
	})
	ctx := context.Background()
	probe := w.client(nil, nil)
	inv, err := probe.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	used := inv.Hosts[0].MemUsed
	// Total: what the host uses now, the reserve, and 2.5 workers.
	w.sim.SetHostMemory("pve1", used+reserve+2*vm+vm/2)

	c := w.client(func(p *config.Proxmox) {
		p.VM.Memory = config.ByteSize(vm)
		p.HostMemReserve = config.ByteSize(reserve)
	}, nil)
	workers := NewWorkers(c)
	policy := scaler.Policy{VMMemory: vm, HostReserve: reserve}

	room := func() (free int64, n int) {
		t.Helper()
		_, hosts, err := workers.Machines(ctx)
		if err != nil || len(hosts) != 1 {
			t.Fatalf("machines: %v %v", hosts, err)
		}
		return hosts[0].MemoryFree, int(max(policy.Spare(hosts[0]), 0) / vm)
	}
	free, n := room()
	if want := reserve + 2*vm + vm/2; free != want {
		t.Fatalf("Workers reports %d MiB free, want %d MiB: the reserve is the scaler's to take off", free>>20, want>>20)
	}
	if n != 2 {
		t.Fatalf("the decision sees room for %d workers, want 2", n)
	}
	if inv, err = c.Inventory(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.Room(inv.Hosts[0]); got != 2 {
		t.Errorf("doctor's Room = %d, want 2", got)
	}
	for i := range 3 {
		_, n := room()
		_, err := workers.Create(ctx, "", nil, scaler.Machine{})
		var nr *NoRoomError
		switch {
		case n > 0 && err != nil:
			t.Fatalf("clone %d: the decision sees room for %d, placement refused: %v", i+1, n, err)
		case n == 0 && !errors.As(err, &nr):
			t.Fatalf("clone %d: the decision sees no room, placement gave %v", i+1, err)
		}
	}
	if free, n := room(); n != 0 || free != reserve+vm/2 {
		t.Errorf("after two clones: %d MiB free, room for %d; want %d MiB, 0", free>>20, n, (reserve+vm/2)>>20)
	}
}

// Destroy and PowerOff of a machine decided on without its SMBIOS UUID
// (issue 15): read afresh, refused while it cannot be read (its host
// offline), never sent; once it reads, the call goes on. A clone this
// process made that never got its UUID read may be destroyed (it never
// started), and only until it is started.
func TestUnknownIdentityIsReadAfreshOrRefused(t *testing.T) {
	w := newWorld(t, nil)
	c := w.client(nil, nil)
	workers := NewWorkers(c)
	ctx := context.Background()
	vmid, _ := provision(t, c)
	host := "pve1"
	if v, ok := w.sim.Lookup(vmid); ok {
		host = v.Host
	}
	m := scaler.Machine{VMID: vmid, Name: c.Name(vmid), Host: host} // listed without its UUID
	w.sim.SetHostOnline(host, false)
	var unknown *scaler.UnknownIdentityError
	if err := workers.PowerOff(ctx, m); !errors.As(err, &unknown) {
		t.Errorf("power off of an unknown identity: %v, want an UnknownIdentityError", err)
	}
	if err := workers.Destroy(ctx, m); !errors.As(err, &unknown) {
		t.Errorf("destroy of an unknown identity: %v, want an UnknownIdentityError", err)
	}
	w.sim.SetHostOnline(host, true)
	if v, ok := w.sim.Lookup(vmid); !ok || !v.Running {
		t.Fatalf("the VM was touched while its identity was unknown: %+v (present %v)", v, ok)
	}
	// Readable again: read afresh, and the call goes on.
	if err := workers.Destroy(ctx, m); err != nil {
		t.Fatalf("destroy once the identity reads: %v", err)
	}
	if _, ok := w.sim.Lookup(vmid); ok {
		t.Error("the VM is still there")
	}

	// This process's own clone that never got its UUID read: destroyable
	// while it never started, refused like any other once started.
	own, err := workers.Create(ctx, "", nil, scaler.Machine{})
	if err != nil {
		t.Fatal(err)
	}
	workers.mu.Lock()
	workers.fresh[own.VMID] = true // as when the clone's config could not be read
	workers.mu.Unlock()
	own.UUID = ""
	w.sim.SetHostOnline(own.Host, false)
	if err := workers.Start(ctx, own.VMID); err == nil {
		t.Fatal("started a VM on an offline host")
	}
	if err := workers.Destroy(ctx, own); !errors.As(err, &unknown) {
		t.Errorf("destroy of a clone that may have started, identity unknown: %v, want an UnknownIdentityError", err)
	}
	w.sim.SetHostOnline(own.Host, true)
	fresh, err := workers.Create(ctx, "", nil, scaler.Machine{})
	if err != nil {
		t.Fatal(err)
	}
	workers.mu.Lock()
	workers.fresh[fresh.VMID] = true
	workers.mu.Unlock()
	fresh.UUID = ""
	if err := workers.Destroy(ctx, fresh); err != nil {
		t.Errorf("destroy of this process's fresh clone: %v", err)
	}
}

// A replacement's marker is written in the clone request itself and read
// back from the description by a client that never saw it made (a
// restarted daemon); without a known UUID no replacement is cloned.
func TestReplacementMarker(t *testing.T) {
	w := newWorld(t, func(wd *pvesim.World) { wd.VMs = nil })
	ctx := context.Background()
	workers := NewWorkers(w.client(nil, nil))
	old := scaler.Machine{VMID: 4999, UUID: " 0A1B2C3D-0000-4000-8000-00000000ABCD "}
	m, err := workers.Create(ctx, "", nil, old)
	if err != nil {
		t.Fatal(err)
	}
	if m.Replaces != "0a1b2c3d-0000-4000-8000-00000000abcd" || m.ReplacesVMID != 4999 {
		t.Errorf("created %+v: marker not returned", m)
	}
	plain, err := workers.Create(ctx, "", nil, scaler.Machine{})
	if err != nil {
		t.Fatal(err)
	}
	fresh := NewWorkers(w.client(nil, nil)) // nothing cached: what a restart reads
	machines, _, err := fresh.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, got := range machines {
		switch got.VMID {
		case m.VMID:
			found++
			if got.Replaces != "0a1b2c3d-0000-4000-8000-00000000abcd" || got.ReplacesVMID != 4999 {
				t.Errorf("listed %+v: the marker is not read back", got)
			}
		case plain.VMID:
			found++
			if got.Replaces != "" || got.ReplacesVMID != 0 {
				t.Errorf("a plain clone listed as a replacement: %+v", got)
			}
		}
	}
	if found != 2 {
		t.Fatalf("listed %+v, want VMs %d and %d", machines, m.VMID, plain.VMID)
	}
	if _, err := workers.Create(ctx, "", nil, scaler.Machine{VMID: 4999}); err == nil {
		t.Error("a replacement of a worker of unknown UUID was cloned")
	}
}
