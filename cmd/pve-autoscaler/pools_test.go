package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestRenderPools: with several pools, plan names each pool's workers and
// the pool each add is for.
func TestRenderPools(t *testing.T) {
	p := scaler.Plan{
		Pools: []scaler.PoolStatus{{Name: "general", Current: 2, Ready: 2, Min: 2, Max: 6}, {Name: "gpu", Max: 1, Added: 1, Pending: 1}},
		Actions: []scaler.Action{{Kind: scaler.ActionAdd, Count: 1, Pool: "gpu",
			Reasons: []scaler.Reason{{Code: scaler.CodePendingPods, Message: "pool gpu: 1 pod unschedulable"}}}},
	}
	var b strings.Builder
	renderPlan(&b, p, scaler.Policy{})
	for _, want := range []string{
		"Pools:        general: 2 now (2 ready, 0 not ready, 0 provisioning), min 2, max 6\n",
		"              gpu: 0 now (0 ready, 0 not ready, 0 provisioning), min 0, max 1, adding 1, 1 pending pod counted\n",
		"+ add 1 worker to pool gpu\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, b.String())
		}
	}
}

// TestSimulatePools: a config with pools is replayed one pool at a time
// (--pool), on that pool's own columns of a trace the daemon recorded;
// without --pool it is a usage error naming the pools.
func TestSimulatePools(t *testing.T) {
	base, err := os.ReadFile(writeConfig(t, "  max_workers: 8\n"))
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(base), "  template: 9000\n", "", 1) + `pools:
  - {name: general, template: 9000, vm: {cores: 4, memory: 8GiB}, min_workers: 2, max_workers: 6}
  - name: gpu
    template: 9000
    vm: {cores: 8, memory: 16GiB}
    max_workers: 1
    taints: [{key: gpu.example/kind, value: igpu, effect: NoSchedule}]
    capacity: {gpu.intel.com/i915: "1"}
`
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pools.yaml")
	trace := filepath.Join(dir, "trace.csv")
	// Two hours: the gpu pool's Plex pod pends from 0:30 to 1:30 (then
	// runs on its worker), the general pool carries 6 cores throughout.
	var b strings.Builder
	b.WriteString("# start 2026-01-05T18:00:00Z\ntime_s,cpu_cores,memory_gib,pending_pods,workers,general:cpu_cores,general:memory_gib,general:pending_pods,general:workers,gpu:cpu_cores,gpu:memory_gib,gpu:pending_pods,gpu:workers\n")
	for m := 0; m <= 120; m += 5 {
		gpuPending, gpuCPU := 0, 0.0
		if m >= 30 && m < 90 {
			gpuPending = 1
		}
		fmt.Fprintf(&b, "%d,%g,12,%d,2,6,12,0,2,%g,0,%d,0\n", m*60, 6+gpuCPU, gpuPending, gpuCPU, gpuPending)
	}
	for p, data := range map[string]string{cfg: y, trace: b.String()} {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errs := runMain("simulate", "--config", cfg, "--trace", trace); code != exitUsage || !strings.Contains(errs, "has pools (general, gpu): simulate replays one pool at a time: add --pool NAME") {
		t.Errorf("no --pool: exit %d, %q", code, errs)
	}
	if code, _, errs := runMain("simulate", "--config", cfg, "--trace", trace, "--pool", "big"); code != exitUsage || !strings.Contains(errs, `no pool named "big": expected one of general, gpu`) {
		t.Errorf("--pool big: exit %d, %q", code, errs)
	}
	code, out, errs := runMain("simulate", "--config", cfg, "--trace", trace, "--pool", "gpu", "--output", "json")
	if code != exitOK {
		t.Fatalf("--pool gpu: exit %d\n%s%s", code, out, errs)
	}
	var rep struct {
		Trace   string
		Results []struct {
			Name       string
			NodeHours  float64 `json:"node_hours"`
			PeakWorker int     `json:"peak_workers"`
			Events     []struct {
				Delta int
				AtS   time.Duration `json:"at_s"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	gpu := rep.Results[0]
	// The Plex pod pending from 0:30 brings the pool's one worker, which
	// goes (its pool's minimum is 0) once the pod has gone at 1:30.
	if !strings.Contains(rep.Trace, "(pool gpu)") || gpu.PeakWorker != 1 || len(gpu.Events) != 2 || gpu.Events[0].Delta != 1 ||
		gpu.Events[0].AtS < 30*time.Minute || gpu.Events[0].AtS > 35*time.Minute || gpu.Events[1].Delta != -1 || gpu.Events[1].AtS < 90*time.Minute || gpu.NodeHours > 1.6 {
		t.Errorf("gpu pool replay: %+v (trace %q)\n%s", gpu, rep.Trace, out)
	}
	if limit := rep.Results[len(rep.Results)-1]; limit.Name != "limit" || limit.NodeHours != 1 {
		t.Errorf("the gpu pool's limit: %+v, want 1 node-hour (its worker only while the pod wants it)", limit)
	}
	code, out, _ = runMain("simulate", "--config", cfg, "--trace", trace, "--pool", "general", "--output", "json")
	if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil {
		t.Fatalf("--pool general: exit %d, %v", code, err)
	}
	if g := rep.Results[0]; g.PeakWorker != 2 || g.NodeHours != 4 {
		t.Errorf("general pool replay (6 of 8 cores on its minimum of 2): %+v", g)
	}
}
