package daemon

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// standbyVMs reports our VMs by step: the standby ones, the joined ones.
func standbyVMs(w *world.World) (standby, joined []pvesim.VM) {
	for _, v := range w.Sim.VMs() {
		switch {
		case slices.Contains(v.Tags, "step-"+scaler.StepStandby):
			standby = append(standby, v)
		case slices.Contains(v.Tags, "step-"+scaler.StepJoined):
			joined = append(joined, v)
		}
	}
	return standby, joined
}

func nodeOf(t *testing.T, w *world.World, name string) *corev1.Node {
	t.Helper()
	n, err := w.Kube.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return n
}

func tainted(n *corev1.Node) bool {
	return n != nil && slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == scaler.TaintStandby })
}

func ready(n *corev1.Node) bool {
	if n == nil {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// checkStandby asserts the world holds exactly workers joined, running VMs
// with Ready Nodes and size standby, stopped VMs with tainted, cordoned
// Nodes, and nothing else of ours: no orphaned VM or Node.
func checkStandby(t *testing.T, w *world.World, workers, size int) {
	t.Helper()
	nodes, err := w.Kube.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*corev1.Node{}
	for i := range nodes.Items {
		byName[nodes.Items[i].Name] = &nodes.Items[i]
	}
	j, sb := 0, 0
	for _, v := range w.Sim.VMs() {
		if v.Template || v.VMID == world.ForeignVMID {
			continue
		}
		n := byName[v.Name]
		delete(byName, v.Name)
		switch {
		case slices.Contains(v.Tags, "step-"+scaler.StepJoined) && v.Running && ready(n) && !tainted(n):
			j++
		case slices.Contains(v.Tags, "step-"+scaler.StepStandby) && !v.Running && tainted(n) && n.Spec.Unschedulable:
			sb++
		default:
			t.Errorf("VM %d (%s) neither a worker nor a standby one: tags %v, running %v, node %v", v.VMID, v.Name, v.Tags, v.Running, n != nil)
		}
	}
	if j != workers || sb != size {
		t.Errorf("%d workers and %d standby, want %d and %d", j, sb, workers, size)
	}
	for n := range byName {
		t.Errorf("Node %s has no VM", n)
	}
}

// replaced reports whether standby holds one worker again and
// the old one's Node is gone (a Node of the same name, if any, is new).
func replaced(t *testing.T, w *world.World, old *corev1.Node) bool {
	sb, _ := standbyVMs(w)
	if len(sb) != 1 {
		return false
	}
	for _, v := range sb {
		if n := nodeOf(t, w, v.Name); n == nil || n.UID == old.UID || !tainted(n) {
			return false
		}
	}
	n := nodeOf(t, w, old.Name)
	return n == nil || n.UID != old.UID
}

// closed reports, for converge, whether ch is closed.
func closed(ch chan struct{}) func() bool {
	return func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

func clones(w *world.World) int { return w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"] }

// withStandby is the test config with size standby workers.
func withStandby(w *world.World, minW, maxW, size int) *config.Config {
	c := testConfig(w, minW, maxW)
	c.Policy.Standby.Size = size
	return c
}

// settleStandby ticks until the minimum and size standby workers are there.
func settleStandby(t *testing.T, w *world.World, d *Daemon, workers, size int) {
	t.Helper()
	converge(t, d, fmt.Sprintf("%d workers and %d standby", workers, size), time.Minute, func() bool {
		sb, j := standbyVMs(w)
		_, nodes := joined(t, w)
		return len(sb) == size && len(j) == workers && nodes == workers && len(d.Reconciler.Status().Operations) == 0
	})
}

// pendingPods creates n pods that each need a worker of their own. They
// are deleted (and gone) before the world closes: node names come back in
// the next test's world, and a pod left bound to one would land there.
func pendingPods(t *testing.T, w *world.World, ns string, n int) {
	t.Helper()
	pods := w.Kube.Client.CoreV1().Pods(ns)
	for i := range n {
		if _, err := pods.Create(context.Background(), bigPod(ns, fmt.Sprintf("load-%d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		zero := int64(0)
		for i := range n {
			_ = pods.Delete(ctx, fmt.Sprintf("load-%d", i), metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if l, err := pods.List(ctx, metav1.ListOptions{}); err == nil && len(l.Items) == 0 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestStandbyRefillThenServeMixed: standby is built when the cluster is
// calm (its worker registered tainted, parked stopped); a scale-up for two
// workers starts the standby one and clones the other; standby refills.
func TestStandbyRefillThenServeMixed(t *testing.T) {
	w := newWorld(t)
	cfg := withStandby(w, 1, 4, 1)
	cfg.Policy.Standby.Hosts = []string{"pve3"}
	d, _ := build(t, w, cfg, Options{})
	settleStandby(t, w, d, 1, 1)
	sb, _ := standbyVMs(w)
	parked := sb[0]
	if parked.Host != "pve3" {
		t.Errorf("the standby worker was built on %s, want pve3 (policy.standby.hosts)", parked.Host)
	}
	if parked.Running {
		t.Fatalf("standby VM %d is running", parked.VMID)
	}
	if n := nodeOf(t, w, parked.Name); !tainted(n) || !n.Spec.Unschedulable || ready(n) {
		t.Fatalf("standby Node %s: tainted %v, cordoned %v, ready %v", parked.Name, tainted(n), n != nil && n.Spec.Unschedulable, ready(n))
	}
	if _, resets := w.Counts(); resets != 0 {
		t.Fatalf("%d Talos resets while building standby", resets)
	}
	before := clones(w)

	ns := w.Kube.Namespace(t)
	// Fill the one worker, then ask for two more.
	pendingPods(t, w, ns, 3)
	converge(t, d, "all three pods placed", 2*time.Minute, func() bool {
		pods, _ := w.Kube.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		placed := 0
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				placed++
			}
		}
		return placed == 3
	})
	v, _ := w.Sim.Lookup(parked.VMID)
	if !v.Running || !slices.Contains(v.Tags, "step-"+scaler.StepJoined) {
		t.Errorf("the standby VM was not woken: running %v tags %v", v.Running, v.Tags)
	}
	if n := nodeOf(t, w, parked.Name); tainted(n) || n.Spec.Unschedulable || !ready(n) {
		t.Errorf("woken Node %s still tainted %v / cordoned / ready %v", parked.Name, tainted(n), ready(n))
	}
	// Two workers were needed beyond the first: one woken, one cloned (the
	// standby's refill may add one more clone once calm).
	if got := clones(w) - before; got < 1 || got > 2 {
		t.Errorf("%d clones for a scale-up of 2 with 1 standby", got)
	}
	settleStandby(t, w, d, 3, 1)
	checkStandby(t, w, 3, 1)
}

// TestStandbyParksOnScaleDown: a scale-down with room in standby drains
// the worker, taints it and stops its VM instead of resetting and
// destroying it; with standby full, it resets and destroys as before.
func TestStandbyParksOnScaleDown(t *testing.T) {
	w := newWorld(t)
	d, cancel := build(t, w, testConfig(w, 3, 4), Options{})
	converge(t, d, "3 workers", time.Minute, func() bool { v, n := joined(t, w); return v == 3 && n == 3 })
	d.Reconciler.Wait()
	cancel()

	d, _ = build(t, w, withStandby(w, 1, 4, 1), Options{})
	settleStandby(t, w, d, 1, 1)
	if _, resets := w.Counts(); resets != 1 {
		t.Errorf("%d Talos resets, want 1: one worker parked, one destroyed", resets)
	}
	sb, _ := standbyVMs(w)
	if n := nodeOf(t, w, sb[0].Name); !tainted(n) || n.Annotations[scaler.AnnotationRemoval] != "" {
		t.Errorf("parked Node: tainted %v, removal annotation %q", tainted(n), n.Annotations[scaler.AnnotationRemoval])
	}
	checkStandby(t, w, 1, 1)
}

// TestStandbyDrift: a standby worker built from a template changed since is
// destroyed (with its Node) instead of started, and standby refilled from
// the new template; so is one past max_age.
func TestStandbyDrift(t *testing.T) {
	w := newWorld(t)
	cfg := withStandby(w, 1, 4, 1)
	d, cancel := build(t, w, cfg, Options{TemplateCheck: time.Millisecond})
	settleStandby(t, w, d, 1, 1)
	sb, _ := standbyVMs(w)
	old := nodeOf(t, w, sb[0].Name)
	w.Sim.SetTemplateAgent(9000, true) // a config change: the digest moves
	// Replaced: its Node deleted, a new standby worker built (the vmid may come back).
	converge(t, d, "the stale standby replaced", time.Minute, func() bool {
		return replaced(t, w, old)
	})
	plan := d.Reconciler.Status().Plan
	if plan == nil || plan.Standby == nil || plan.Standby.Ready != 1 {
		t.Errorf("standby after the refill: %+v", plan)
	}
	d.Reconciler.Wait()
	cancel()

	// Eight days later the replacement is past max_age (7 days).
	sb, _ = standbyVMs(w)
	aged := nodeOf(t, w, sb[0].Name)
	later := time.Now().Add(8 * 24 * time.Hour)
	d, cancel = build(t, w, cfg, Options{TemplateCheck: time.Millisecond, Now: func() time.Time { return later }})
	retired := false
	converge(t, d, "the aged standby retired", time.Minute, func() bool {
		if p := d.Reconciler.Status().Plan; p != nil {
			for _, a := range p.Actions {
				retired = retired || a.Kind == scaler.ActionRetire && a.Node == aged.Name
			}
		}
		n := nodeOf(t, w, aged.Name)
		return retired && (n == nil || n.UID != aged.UID)
	})
	d.Reconciler.Wait()
	cancel()
	// Back to the real clock: standby settles with a fresh worker.
	d, _ = build(t, w, cfg, Options{})
	settleStandby(t, w, d, 1, 1)
	checkStandby(t, w, 1, 1)
}

// TestStandbyDeletedByHand: a standby VM deleted by hand leaves a Node
// behind, which is deleted; standby is built again.
func TestStandbyDeletedByHand(t *testing.T) {
	w := newWorld(t)
	d, _ := build(t, w, withStandby(w, 1, 4, 1), Options{})
	settleStandby(t, w, d, 1, 1)
	sb, _ := standbyVMs(w)
	old := nodeOf(t, w, sb[0].Name)
	if !w.Sim.DeleteVM(sb[0].VMID) {
		t.Fatal("delete by hand failed")
	}
	converge(t, d, "its Node deleted and standby rebuilt", time.Minute, func() bool {
		return replaced(t, w, old)
	})
	settleStandby(t, w, d, 1, 1)
	checkStandby(t, w, 1, 1)
}

// TestStandbyHostWithoutMemory: a standby worker whose host cannot start it
// now is left in standby; the scale-up clones on a host with room.
func TestStandbyHostWithoutMemory(t *testing.T) {
	w := newWorld(t)
	cfg := withStandby(w, 1, 4, 1)
	d, _ := build(t, w, cfg, Options{})
	settleStandby(t, w, d, 1, 1)
	sb, _ := standbyVMs(w)
	parked := sb[0]
	w.Sim.SetHostMemory(parked.Host, 6<<30) // less than the reserve and a VM
	before := clones(w)
	ns := w.Kube.Namespace(t)
	pendingPods(t, w, ns, 2)
	noted := false
	converge(t, d, "a clone for the second pod", time.Minute, func() bool {
		if p := d.Reconciler.Status().Plan; p != nil {
			for _, n := range p.Notes {
				noted = noted || n.Code == scaler.CodeStandbyNoRoom
			}
		}
		_, j := standbyVMs(w)
		return len(j) == 2
	})
	if v, _ := w.Sim.Lookup(parked.VMID); v.Running {
		t.Error("the standby VM was started on a host without the memory for it")
	}
	if clones(w) <= before {
		t.Error("no clone served the scale-up")
	}
	if !noted {
		t.Error("no plan said why the standby worker was not started")
	}
}

// TestStandbyCrashWhileParkingAndWaking: a daemon that dies right after
// recording a park, or a wake, leaves work a new daemon finishes.
func TestStandbyCrashWhileParkingAndWaking(t *testing.T) {
	w := newWorld(t)
	d, cancel := build(t, w, testConfig(w, 2, 4), Options{})
	converge(t, d, "2 workers", time.Minute, func() bool { v, n := joined(t, w); return v == 2 && n == 2 })
	d.Reconciler.Wait()
	cancel()

	// Park, crashing once the parking step is recorded.
	var crashed *Daemon
	hook, hit := crashAt(scaler.OpRemove, scaler.StepParking, func() { crashed.Reconciler.Abort() })
	crashed, cancel = build(t, w, withStandby(w, 1, 4, 1), Options{AfterStep: hook})
	converge(t, crashed, "the crash while parking", time.Minute, closed(hit))
	crashed.Reconciler.Wait()
	cancel()
	d, cancel = build(t, w, withStandby(w, 1, 4, 1), Options{})
	settleStandby(t, w, d, 1, 1)
	d.Reconciler.Wait()
	cancel()

	// Wake, crashing once the waking step is recorded.
	hook, hit = crashAt(scaler.OpProvision, scaler.StepWaking, func() { crashed.Reconciler.Abort() })
	crashed, cancel = build(t, w, withStandby(w, 2, 4, 1), Options{AfterStep: hook})
	converge(t, crashed, "the crash while waking", time.Minute, closed(hit))
	crashed.Reconciler.Wait()
	cancel()
	before := clones(w)
	d, _ = build(t, w, withStandby(w, 2, 4, 0), Options{})
	converge(t, d, "the woken worker joined", time.Minute, func() bool {
		sb, j := standbyVMs(w)
		_, nodes := joined(t, w)
		return len(sb) == 0 && len(j) == 2 && nodes == 2
	})
	if clones(w) != before {
		t.Errorf("%d clones after the wake resumed", clones(w)-before)
	}
}

// TestStandbyCrashWhileBuilding: a daemon that dies half-way through a
// standby build leaves a VM whose steps say it is for standby; the next
// daemon finishes it as a standby worker, not as a worker.
func TestStandbyCrashWhileBuilding(t *testing.T) {
	w := newWorld(t)
	var crashed *Daemon
	hook, hit := crashAt(scaler.OpRefill, scaler.StepStarted, func() { crashed.Reconciler.Abort() })
	crashed, cancel := build(t, w, withStandby(w, 1, 4, 1), Options{AfterStep: hook})
	converge(t, crashed, "the crash while building", time.Minute, closed(hit))
	crashed.Reconciler.Wait()
	cancel()
	building := false
	for _, v := range w.Sim.VMs() {
		building = building || slices.Contains(v.Tags, "step-"+scaler.StandbyPrefix+scaler.StepStarted)
	}
	if !building {
		t.Fatalf("no VM recorded as a standby build: %+v", w.Sim.VMs())
	}
	before := clones(w)
	d, _ := build(t, w, withStandby(w, 1, 4, 1), Options{})
	settleStandby(t, w, d, 1, 1)
	if clones(w) != before {
		t.Errorf("%d clones after resuming the build", clones(w)-before)
	}
	checkStandby(t, w, 1, 1)
}

// TestRunLoopDecidesWhenPodsGoPending: with a one-hour interval, the run
// loop still acts on a pod gone unschedulable: the pod wakes it, the plan
// holds for the pod's grace and asks to be checked again when it ends,
// and the clone follows then, not an hour later.
func TestRunLoopDecidesWhenPodsGoPending(t *testing.T) {
	w := newWorld(t)
	cfg := testConfig(w, 1, 4)
	cfg.Policy.Interval = config.Duration(time.Hour)
	cfg.Policy.PendingPods.Grace = config.Duration(2 * time.Second)
	d, _ := build(t, w, cfg, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Reconciler.Run(ctx, cfg.Policy.Interval.D(), nil)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (the loop's interval is an hour)", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the minimum's worker", func() bool { v, n := joined(t, w); return v == 1 && n == 1 })
	before := clones(w)
	pendingPods(t, w, w.Kube.Namespace(t), 2) // one fits the worker, one cannot
	waitFor("a clone for the pending pod", func() bool { return clones(w) > before })
	waitFor("both pods placed", func() bool { v, n := joined(t, w); return v == 2 && n == 2 })
}
