package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// rollWatch records, at every tick a test observes, the fewest Ready,
// schedulable managed Nodes and the most VMs of ours seen.
type rollWatch struct {
	t        *testing.T
	w        *world.World
	minReady int
	maxVMs   int
	ticks    int
}

func newRollWatch(t *testing.T, w *world.World) *rollWatch {
	return &rollWatch{t: t, w: w, minReady: 1 << 30}
}

func (r *rollWatch) observe() {
	r.t.Helper()
	r.ticks++
	r.minReady = min(r.minReady, readySchedulable(r.t, r.w))
	r.maxVMs = max(r.maxVMs, ours(r.w))
}

// readySchedulable counts the managed Nodes that are Ready and not cordoned.
func readySchedulable(t *testing.T, w *world.World) int {
	t.Helper()
	list, err := w.Kube.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, node := range list.Items {
		if node.Spec.Unschedulable || node.DeletionTimestamp != nil {
			continue
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

// workerVMIDs lists our worker VMs (not the template, not the foreign guest).
func workerVMIDs(w *world.World) []int {
	var out []int
	for _, v := range w.Sim.VMs() {
		if !v.Template && v.VMID != world.ForeignVMID {
			out = append(out, v.VMID)
		}
	}
	slices.Sort(out)
	return out
}

// waitGuardReady waits until the guard workload's two pods run Ready.
func waitGuardReady(t *testing.T, w *world.World) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		pods, err := w.Kube.Client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{LabelSelector: "app=guard"})
		ready := 0
		if err == nil {
			for _, p := range pods.Items {
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
						ready++
					}
				}
			}
		}
		if ready == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guard workload never ran 2 Ready pods (%d)", ready)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRollingReplacement: with policy.replace_drifted, a template change
// rolls both workers, one at a time, a new worker first: never more than
// one VM beyond max_workers, never fewer than min_workers Ready,
// schedulable Nodes at any tick observed, no PodDisruptionBudget
// violated, and at the end no drifted worker and none of the old VMs.
func TestRollingReplacement(t *testing.T) {
	w := newWorld(t)
	cfg := testConfig(w, 2, 2)
	cfg.Policy.ReplaceDrifted = true
	cfg.Policy.Cooldown.AfterFailure = config.Duration(time.Second) //: a refused eviction retries within the test
	d, _ := build(t, w, cfg, Options{TemplateCheck: time.Millisecond})
	convergeWorkers(t, w, d, "two workers", 2)
	minPods := guard(t, w)
	waitGuardReady(t, w)
	old := workerVMIDs(w)
	if len(old) != 2 {
		t.Fatalf("workers %v, want 2", old)
	}

	w.Sim.SetTemplateAgent(9000, true) // a new template: both workers drift
	watch := newRollWatch(t, w)
	replaced := map[int]bool{}
	converge(t, d, "both workers replaced", 3*time.Minute, func() bool {
		watch.observe()
		now := workerVMIDs(w)
		for _, id := range old {
			if !slices.Contains(now, id) {
				replaced[id] = true
			}
		}
		v, n := joined(t, w)
		return len(replaced) == 2 && v == 2 && n == 2 && ours(w) == 2
	})
	d.Reconciler.Wait()
	t.Logf("%d ticks observed; fewest Ready, schedulable workers %d; most VMs %d", watch.ticks, watch.minReady, watch.maxVMs)
	if watch.minReady < 2 {
		t.Errorf("%d Ready, schedulable workers at a tick: below min_workers 2", watch.minReady)
	}
	if watch.maxVMs > 3 {
		t.Errorf("%d worker VMs at a tick: more than one beyond max_workers 2", watch.maxVMs)
	}
	if watch.maxVMs < 3 {
		t.Errorf("never a new worker beside the old ones (most VMs %d): not replaced new-first", watch.maxVMs)
	}
	if m := minPods(); m < 1 {
		t.Errorf("the guarded workload dropped to %d Ready pods: its PodDisruptionBudget (minAvailable 1) was violated", m)
	}
	for _, id := range workerVMIDs(w) {
		if slices.Contains(old, id) {
			t.Errorf("old VM %d still there", id)
		}
	}
	plan, err := d.Reconciler.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Drifted) != 0 || len(plan.Actions) != 0 {
		t.Errorf("after the rollout: drifted %+v, actions %+v", plan.Drifted, plan.Actions)
	}
	if got := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; got != 4 {
		t.Errorf("%d clones, want 4 (two workers, two replacements)", got)
	}
	checkWorld(t, w, 2)
}

// TestRollingReplacementResumesAfterACrash: a daemon that dies in the
// middle of a replacement (right after the new worker's clone, or once the
// old worker's removal is marked) is followed by one that finishes it from
// what PVE and Kubernetes hold, without a second new VM.
func TestRollingReplacementResumesAfterACrash(t *testing.T) {
	for _, at := range []struct {
		kind scaler.OperationKind
		step string
	}{{scaler.OpProvision, scaler.StepCloned}, {scaler.OpProvision, scaler.StepJoined}, {scaler.OpRemove, scaler.RemovalMarked}} {
		t.Run(string(at.kind)+"-"+at.step, func(t *testing.T) {
			w := newWorld(t)
			cfg := testConfig(w, 1, 1)
			cfg.Policy.ReplaceDrifted = true
			d, cancel := build(t, w, cfg, Options{TemplateCheck: time.Millisecond})
			convergeWorkers(t, w, d, "one worker", 1)
			cancel()
			old := workerVMIDs(w)

			w.Sim.SetTemplateAgent(9000, true)
			var d2 *Daemon
			hook, crashed := crashAt(at.kind, at.step, func() { d2.Reconciler.Abort() })
			d2, _ = build(t, w, cfg, Options{TemplateCheck: time.Millisecond, AfterStep: hook})
			deadline := time.Now().Add(60 * time.Second)
		wait:
			for {
				if _, err := d2.Reconciler.Tick(context.Background()); err != nil {
					t.Logf("tick: %v", err)
				}
				select {
				case <-crashed:
					break wait
				case <-time.After(100 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("never reached %s step %s", at.kind, at.step)
				}
			}
			d2.Reconciler.Wait()
			if n := ours(w); n != 2 {
				t.Fatalf("%d VMs at the crash, want the old worker and its replacement", n)
			}

			d3, _ := build(t, w, cfg, Options{TemplateCheck: time.Millisecond})
			most := 0
			converge(t, d3, "the replacement finished", 90*time.Second, func() bool {
				most = max(most, ours(w))
				v, n := joined(t, w)
				return v == 1 && n == 1 && ours(w) == 1 && !slices.Contains(workerVMIDs(w), old[0])
			})
			d3.Reconciler.Wait()
			if most > 2 {
				t.Errorf("%d VMs after the restart: a second new worker was made", most)
			}
			// The old worker went as the replacement it was, read back from
			// the new VM's marker: not as a worker too many.
			oldNode := fmt.Sprintf("talos-worker-%d", old[0])
			replacedAs := false
			for _, e := range events(t, w, "ScaleDown") {
				if e.InvolvedObject.Name == oldNode && strings.Contains(e.Message, "drifted") && strings.Contains(e.Message, "its replacement, VM") {
					replacedAs = true
				}
			}
			if !replacedAs {
				t.Errorf("no ScaleDown Event on %s naming its replacement: it was not removed as a replacement", oldNode)
			}
			if got := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; got != 2 {
				t.Errorf("%d clones, want 2 (the worker and one replacement)", got)
			}
			checkWorld(t, w, 1)
		})
	}
}
