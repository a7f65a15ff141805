package daemon

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDriftListed: a joined worker is listed drifted, with why, once its
// template's configuration changes; a daemon started with another Talos
// worker config and another VM size lists those too (on the /status plan
// and on plan's live snapshot). It keeps serving: nothing is replaced.
func TestDriftListed(t *testing.T) {
	w := newWorld(t)
	cfg := testConfig(w, 1, 2)
	d, cancel := build(t, w, cfg, Options{TemplateCheck: time.Millisecond})
	convergeWorkers(t, w, d, "one worker", 1)
	plan, err := d.Reconciler.Tick(context.Background())
	if err != nil || len(plan.Drifted) != 0 {
		t.Fatalf("a fresh worker drifted: %+v %v", plan.Drifted, err)
	}
	w.Sim.SetTemplateAgent(9000, true) // a template config change: its digest moves
	converge(t, d, "the worker listed drifted", 30*time.Second, func() bool {
		p := d.Reconciler.Status().Plan
		return p != nil && len(p.Drifted) == 1
	})
	dw := d.Reconciler.Status().Plan.Drifted[0]
	if !strings.Contains(dw.Why, "template 9000") || strings.Contains(dw.Why, "size") || strings.Contains(dw.Why, "Talos") || dw.Node == "" {
		t.Errorf("drift after the template change: %+v", dw)
	}
	d.Reconciler.Wait()
	cancel()

	f, err := os.OpenFile(cfg.Talos.WorkerConfigFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\n# a new Talos version\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cfg.Proxmox.VM.Memory *= 2
	d2, _ := build(t, w, cfg, Options{TemplateCheck: time.Millisecond})
	snap, err := d2.Snapshot(context.Background(), time.Now())
	if err != nil && !snap.Metrics.Stale {
		t.Fatal(err)
	}
	if len(snap.Drifted) != 1 {
		t.Fatalf("plan's snapshot lists %+v drifted", snap.Drifted)
	}
	for _, want := range []string{"template 9000", "its size is", "the Talos worker config"} {
		if !strings.Contains(snap.Drifted[0].Why, want) {
			t.Errorf("drift %q lacks %q", snap.Drifted[0].Why, want)
		}
	}
	if v, n := joined(t, w); v != 1 || n != 1 {
		t.Errorf("the drifted worker no longer serves: %d joined VMs, %d Ready Nodes", v, n)
	}
}
