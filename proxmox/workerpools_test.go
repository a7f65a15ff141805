package proxmox

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestGPUPoolPlacement: a VM of a pool with a PCI mapping is cloned from
// the pool's template with its size, gets hostpci0: mapping=igpu and the
// tag pool-gpu, lands only on the host that has the mapping, and a second
// one finds that device taken. A general pool's VM goes anywhere, with no
// device. The pool tag is never read as a step.
func TestGPUPoolPlacement(t *testing.T) {
	w := newWorld(t, func(pw *pvesim.World) {
		pw.PCIMappings = []pvesim.PCIMappingSpec{{ID: "igpu", Map: []pvesim.PCIMapEntry{{Node: "pve2", Path: "0000:00:02.0", ID: "8086:46a6"}}}}
		pw.Templates = append(pw.Templates, pvesim.VMSpec{VMID: 9001, Name: "talos-gpu-template", Host: "pve1", Storage: "shared", Cores: 2, Memory: 2048, Disk: 10 << 30, Agent: true, Template: true})
	})
	pools := []config.Pool{
		{Name: "general", Template: config.VMRef{Name: "talos-worker-template"}, VM: config.VM{Cores: 4, Memory: 8 << 30}, MaxWorkers: 4},
		{Name: "gpu", Template: config.VMRef{ID: 9001}, VM: config.VM{Cores: 8, Memory: 16 << 30}, MaxWorkers: 2, PCI: []config.PCI{{Mapping: "igpu"}}},
	}
	c, err := New(Options{Proxmox: w.cfg, Cluster: "homelab", PollInterval: 5 * time.Millisecond, RequestTimeout: 2 * time.Second, Pools: pools})
	if err != nil {
		t.Fatal(err)
	}
	ws := NewWorkers(c)
	ctx := context.Background()
	m, err := ws.Create(ctx, "gpu", nil, scaler.Machine{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Configure(ctx, m.VMID, "configured"); err != nil {
		t.Fatal(err)
	}
	v, _ := w.sim.Lookup(m.VMID)
	if m.Host != "pve2" || v.Host != "pve2" || m.Pool != "gpu" || v.Cores != 8 || v.Memory != 16384 || v.HostPCI["hostpci0"] != "mapping=igpu" {
		t.Errorf("gpu VM %+v (machine %+v)", v, m)
	}
	if !slices.Contains(v.Tags, "pool-gpu") || !slices.Contains(v.Tags, "step-configured") || !strings.Contains(v.Description, "pve-autoscaler/template: 9001@") {
		t.Errorf("tags %v, description %q", v.Tags, v.Description)
	}
	if err := ws.RecordStep(ctx, m.VMID, scaler.StepStarted); err != nil {
		t.Fatal(err)
	}
	machines, _, err := ws.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(machines, func(x scaler.Machine) bool { return x.VMID == m.VMID })
	if i < 0 || machines[i].Pool != "gpu" || machines[i].Step != scaler.StepStarted {
		t.Errorf("listed %+v", machines)
	}
	// The one device is taken: no second GPU worker.
	_, err = ws.Create(ctx, "gpu", nil, scaler.Machine{})
	var no *NoRoomError
	if !errors.As(err, &no) || !strings.Contains(err.Error(), "pve2's device of PCI mapping igpu is taken") || !strings.Contains(err.Error(), "pve1 has no device of PCI mapping igpu") {
		t.Errorf("second gpu worker: %v", err)
	}
	g, err := ws.Create(ctx, "general", nil, scaler.Machine{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Configure(ctx, g.VMID, "configured"); err != nil {
		t.Fatal(err)
	}
	gv, _ := w.sim.Lookup(g.VMID)
	if gv.Cores != 4 || len(gv.HostPCI) != 0 || !slices.Contains(gv.Tags, "pool-general") {
		t.Errorf("general VM %+v", gv)
	}
	if _, err := ws.Create(ctx, "nope", nil, scaler.Machine{}); err == nil || !strings.Contains(err.Error(), `worker pool "nope" is not in the configuration`) {
		t.Errorf("unknown pool: %v", err)
	}
}

// TestPoolOfAnOldVM: a VM made before pools (no pool tag) or in a
// single-pool config (pool-default) belongs to the pool named default,
// else to the first pool listed, as scaler.Policy.PoolOfName says.
func TestPoolOfAnOldVM(t *testing.T) {
	w := newWorld(t, nil)
	general := config.Pool{Name: "general", Template: config.VMRef{ID: 9000}, VM: config.VM{Cores: 4, Memory: 8 << 30}, MaxWorkers: 4}
	gpu := config.Pool{Name: "gpu", Template: config.VMRef{ID: 9000}, VM: config.VM{Cores: 4, Memory: 8 << 30}, MaxWorkers: 1}
	def := config.Pool{Name: config.DefaultPool, Template: config.VMRef{ID: 9000}, VM: config.VM{Cores: 4, Memory: 8 << 30}, MaxWorkers: 2}
	for _, tc := range []struct {
		pools []config.Pool
		want  string
	}{{[]config.Pool{gpu, general}, "gpu"}, {[]config.Pool{general, gpu, def}, config.DefaultPool}} {
		c, err := New(Options{Proxmox: w.cfg, Cluster: "homelab", Pools: tc.pools})
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range []string{"", config.DefaultPool} {
			if p, err := c.pool(tag); err != nil || p.Name != tc.want {
				t.Errorf("pools %v: pool(%q) = %q, %v; want %q", tc.pools, tag, p.Name, err, tc.want)
			}
		}
		if p, err := c.pool("gpu"); err != nil || p.Name != "gpu" {
			t.Errorf("pool(gpu) = %q, %v", p.Name, err)
		}
	}
}
