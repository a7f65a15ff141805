package talos

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestRenderPool: a worker's config gives its Node the pool's labels and
// taints and pve-autoscaler.io/pool; the NewWorker read at start carries
// none of them (they are each pool's, added by the engine per pool).
func TestRenderPool(t *testing.T) {
	c := newCluster(t)
	pools := []config.Pool{
		{Name: "general"},
		{Name: "gpu", Labels: map[string]string{"gpu.example/kind": "igpu"},
			Taints: []config.Taint{{Key: "gpu.example/kind", Value: "igpu", Effect: "NoSchedule"}, {Key: "dedicated", Effect: "NoExecute"}}},
	}
	cl, err := New(Options{WorkerConfigFile: c.worker, TalosconfigFile: c.talosconfig, Port: 50000, ApplyTimeout: time.Second, ResetTimeout: time.Second, Pools: pools})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pool   string
		labels map[string]string
		taints map[string]string
	}{
		{"gpu", map[string]string{scaler.LabelPool: "gpu", "gpu.example/kind": "igpu"}, map[string]string{"gpu.example/kind": "igpu:NoSchedule", "dedicated": "NoExecute"}},
		{"", map[string]string{scaler.LabelPool: "general"}, map[string]string{}},
	} {
		data, err := cl.Render(Node{Name: "w1", VMID: 5001, Host: "pve1", IP: "127.0.0.1", Pool: tc.pool})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := configloader.NewFromBytes(data)
		if err != nil {
			t.Fatal(err)
		}
		got := cfg.Machine().NodeLabels()
		for k, v := range tc.labels {
			if got[k] != v {
				t.Errorf("pool %q: label %s=%q, want %q (labels %v)", tc.pool, k, got[k], v, got)
			}
		}
		if taints := cfg.Machine().NodeTaints(); !maps.Equal(taints, tc.taints) && !(len(taints) == 0 && len(tc.taints) == 0) {
			t.Errorf("pool %q: taints %v, want %v", tc.pool, taints, tc.taints)
		}
	}
	if _, err := cl.Render(Node{Name: "w1", VMID: 5001, Pool: "nope"}); err == nil || !strings.Contains(err.Error(), `worker pool "nope"`) {
		t.Errorf("unknown pool: %v", err)
	}
	nw := cl.NewWorker()
	if _, ok := nw.Labels[scaler.LabelPool]; ok || len(nw.Taints) != 0 || nw.Labels["gpu.example/kind"] != "" {
		t.Errorf("NewWorker carries a pool's labels or taints: %+v", nw)
	}
}
