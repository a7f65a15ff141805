package daemon

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// shiftedClock is a daemon clock that a test moves forward. Kept behind
// the real time: metrics.k8s.io's figures (stamped on the real clock) are
// then never too old for it.
type shiftedClock struct{ off atomic.Int64 }

func (c *shiftedClock) Now() time.Time               { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *shiftedClock) Shift(d time.Duration)        { c.off.Add(int64(d)) }
func (c *shiftedClock) In(d time.Duration) time.Time { return c.Now().Add(d) }

// setControl changes the world's control ConfigMap as the CLI does.
func setControl(t *testing.T, d *Daemon, change func(*scaler.Control)) {
	t.Helper()
	if _, err := d.Kube.UpdateControl(context.Background(), ControlRef(d.Config), change); err != nil {
		t.Fatal(err)
	}
}

// ourVMs returns the VMs that are not the template or the foreign guest.
func ourVMs(w *world.World) []int {
	var out []int
	for _, v := range w.Sim.VMs() {
		if !v.Template && v.VMID != world.ForeignVMID {
			out = append(out, v.VMID)
		}
	}
	return out
}

// TestPauseDuringScaleUp: a pause set while a clone runs lets that clone
// finish its step and stops the provisioning there (the VM cloned, never
// configured or started); ticks while paused start nothing; resume takes
// the same VM up where it stopped, without a second clone.
func TestPauseDuringScaleUp(t *testing.T) {
	w := newWorld(t)
	cloned := make(chan int, 1)
	proceed := make(chan struct{})
	var first atomic.Bool
	d, _ := build(t, w, testConfig(w, 1, 2), Options{AfterStep: func(kind scaler.OperationKind, vmid int, step string) {
		if kind == scaler.OpProvision && step == scaler.StepCloned && first.CompareAndSwap(false, true) {
			cloned <- vmid
			<-proceed
		}
	}})
	ctx := context.Background()
	if _, err := d.Reconciler.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	var vmid int
	select {
	case vmid = <-cloned:
	case <-time.After(60 * time.Second):
		t.Fatal("no clone")
	}
	// Paused while the clone's step is done and the next not begun.
	setControl(t, d, func(c *scaler.Control) {
		c.Pause = &scaler.Pause{By: "test", Reason: "manual work", Since: time.Now()}
	})
	plan, err := d.Reconciler.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Paused == nil || !plan.Held(scaler.CodePaused) {
		t.Fatalf("a tick after the pause does not show it: %+v", plan.Holds)
	}
	close(proceed)
	d.Reconciler.Wait() // the provisioning stops at its next step boundary
	tagsOf := func(id int) []string {
		for _, v := range w.Sim.VMs() {
			if v.VMID == id {
				return v.Tags
			}
		}
		t.Fatalf("VM %d is gone", id)
		return nil
	}
	for range 3 {
		plan, err := d.Reconciler.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d.Reconciler.Wait()
		if len(plan.Actions) != 0 {
			t.Errorf("paused, yet the plan acts: %+v", plan.Actions)
		}
	}
	if got := ourVMs(w); !slices.Equal(got, []int{vmid}) {
		t.Errorf("VMs while paused: %v, want only the clone %d", got, vmid)
	}
	if tags := tagsOf(vmid); slices.Contains(tags, "step-"+scaler.StepConfigured) || slices.Contains(tags, "step-"+scaler.StepStarted) {
		t.Errorf("the paused provisioning went past its clone: tags %v", tags)
	}
	for _, v := range w.Sim.VMs() {
		if v.VMID == vmid && v.Running {
			t.Errorf("VM %d started while paused", vmid)
		}
	}
	if st := d.Reconciler.Status(); len(st.Operations) != 1 || st.Operations[0].VMID != vmid {
		t.Errorf("operations while paused: %+v, want the stopped provisioning of %d counted", st.Operations, vmid)
	}

	setControl(t, d, func(c *scaler.Control) { c.Pause = nil })
	converge(t, d, "the paused worker joined", 60*time.Second, func() bool {
		v, n := joined(t, w)
		return v == 1 && n == 1
	})
	d.Reconciler.Wait()
	if got := ourVMs(w); !slices.Equal(got, []int{vmid}) {
		t.Errorf("VMs after resume: %v, want the one clone %d taken up again", got, vmid)
	}
}

// TestPauseExpiresAndBoostReleases: a pause with an end holds until then
// and ends on its own; a boost raises the workers to its minimum (the
// reason of the scale-up) and, once it ends, the normal scale-down rules
// bring them back.
func TestPauseExpiresAndBoostReleases(t *testing.T) {
	w := newWorld(t)
	clock := &shiftedClock{}
	clock.Shift(-2 * time.Hour)
	d, _ := build(t, w, testConfig(w, 1, 3), Options{Now: clock.Now})
	ctx := context.Background()
	setControl(t, d, func(c *scaler.Control) {
		c.Pause = &scaler.Pause{By: "test", Since: clock.Now(), Until: clock.In(time.Hour)}
	})
	for range 2 {
		plan, err := d.Reconciler.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Paused == nil || plan.Added() != 0 || plan.NextCheck.IsZero() || plan.NextCheck.After(clock.In(time.Hour)) {
			t.Fatalf("paused for an hour: plan paused %v, adds %d, next check %v", plan.Paused, plan.Added(), plan.NextCheck)
		}
	}
	d.Reconciler.Wait()
	if n := ours(w); n != 0 {
		t.Fatalf("%d VMs made while paused", n)
	}
	clock.Shift(time.Hour + time.Second)
	convergeWorkers(t, w, d, "the minimum after the pause ended", 1)

	setControl(t, d, func(c *scaler.Control) {
		c.Boosts = []scaler.Boost{{Workers: 3, By: "test", Reason: "movie night", Since: clock.Now(), Until: clock.In(30 * time.Minute)}}
	})
	plan, err := d.Reconciler.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 1 || plan.Actions[0].Count != 2 || plan.Actions[0].Reasons[0].Code != scaler.CodeBoost {
		t.Fatalf("the boost's scale-up: %+v", plan.Actions)
	}
	convergeWorkers(t, w, d, "the boost's three workers", 3)
	for range 2 { // idle, no cooldowns: only the boost keeps them
		if plan, err := d.Reconciler.Tick(ctx); err != nil || plan.Workers.Min != 3 || len(plan.Actions) != 0 {
			t.Fatalf("during the boost: min %d, actions %+v, %v", plan.Workers.Min, plan.Actions, err)
		}
	}
	clock.Shift(30*time.Minute + time.Second)
	convergeWorkers(t, w, d, "back to the minimum after the boost", 1)
}
