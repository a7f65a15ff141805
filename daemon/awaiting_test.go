package daemon

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestPodRefusedOnAJustJoinedWorkerGetsCapacity: pods go pending before
// there is any worker; the first worker joins after them, and the real
// scheduler refuses one there for something the engine does not check. The
// engine counts that pod on the new worker only until the scheduler has had
// its chance: the first decision at or after the hold's end, which the plan
// names and wakes the reconciler for, adds a worker; a refusal the pod's
// condition shows before that adds it sooner.
func TestPodRefusedOnAJustJoinedWorkerGetsCapacity(t *testing.T) {
	cpu := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}
	for _, tc := range []struct {
		name     string
		replicas int32
		req      corev1.ResourceList
		// absent: the pods also require a pod no worker runs (inter-pod affinity).
		absent bool
		// placed: the replica refused on the first worker lands on the second.
		placed bool
	}{
		// Two replicas that may not share a worker: one runs on the first,
		// the other is refused there (the scheduler rewrites its message).
		{"anti-affinity", 2, cpu, false, true},
		// An inter-pod affinity to a pod that runs nowhere: the scheduler
		// rewrites the verdict when the first worker appears ("no nodes
		// available" becomes "0/1 nodes are available: ... pod affinity
		// rules"); written in a later second than the worker turned Ready it
		// proves the refusal and adds a worker at once, written in the same
		// second it proves nothing and the hold's end adds it (the pod stays
		// pending). Inter-pod affinity is not simulated (scaler.Unfit); a
		// resource no worker has, which this row used before, now adds no
		// worker at all (TestPodsNoWorkerCanRunCreateNoVM).
		{"an inter-pod affinity", 1, cpu, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) { refusedOnJustJoined(t, tc.replicas, tc.req, tc.absent, tc.placed) })
	}
}

func refusedOnJustJoined(t *testing.T, replicas int32, req corev1.ResourceList, absent, placed bool) {
	w := newWorld(t)
	ctx := context.Background()
	ns := w.Kube.Namespace(t)
	labels := map[string]string{"app": "spread"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "spread", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr(replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeSelector: map[string]string{scaler.LabelManaged: "true"},
			Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: labels}, TopologyKey: corev1.LabelHostname}}}},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: corev1.ResourceRequirements{Requests: req, Limits: limits(req)}}}}}}}
	if absent {
		dep.Spec.Template.Spec.Affinity.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "absent"}}, TopologyKey: corev1.LabelHostname}}}
	}
	if _, err := w.Kube.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUnschedulable(t, w, ns, "app=spread", int(replicas))

	// The first worker's provisioning records joined only once this test
	// has seen capacity added: its Node is Ready while its operation still
	// runs (a slow PVE config write does that), and every decision from its
	// Node turning Ready on is checked below, whichever tick it falls on.
	// (The scheduler's refusal on the first worker can show a second after
	// it turned Ready, before its join is recorded: the decision that adds
	// the second worker may come before the first is recorded joined.)
	release := make(chan struct{})
	var first atomic.Int64
	held := func(kind scaler.OperationKind, vmid int, step string) {
		if kind == scaler.OpProvision && step == scaler.StepApplying && first.CompareAndSwap(0, int64(vmid)) {
			<-release
		}
	}
	d, _ := build(t, w, testConfig(w, 1, 3), Options{AfterStep: held})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free)

	var until time.Time // the hold's end, as the first plan after the join names it
	adds := 0           // workers added before the first turned Ready
	deadline := time.Now().Add(60 * time.Second)
	for decision := 1; ; decision++ {
		plan, err := d.Reconciler.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Workers.Ready == 0 {
			// The first worker is on its way: nothing more is added for the
			// pods until it turned Ready and the scheduler had its chance there.
			if adds += plan.Added(); adds > 1 {
				t.Fatalf("decision %d adds a worker while the first is still on its way: %+v", decision, plan)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no Ready worker within a minute; status %+v", d.Reconciler.Status())
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if plan.Added() > 0 {
			// Capacity: held to its end, or refused there before it.
			if until.IsZero() && !plan.Held(scaler.CodeNewNodesTried) {
				t.Fatalf("decision %d adds a worker, but neither held the pod on the first worker nor saw it refused there:\n%+v", decision, plan)
			}
			how := "at or after the hold's end"
			if until.IsZero() || plan.Time.Before(until) {
				how = "before the hold's end: the scheduler's refusal showed"
			}
			t.Logf("decision %d adds %d: %s", decision, plan.Added(), how)
			break
		}
		i := slices.IndexFunc(plan.Awaiting, func(a scaler.AwaitingPod) bool { return a.Namespace == ns })
		if i < 0 {
			t.Fatalf("decision %d at %s neither adds a worker nor holds the pending replica for the scheduler: holds %+v notes %+v",
				decision, plan.Time.Format(time.RFC3339Nano), plan.Holds, plan.Notes)
		}
		a := plan.Awaiting[i]
		switch {
		case until.IsZero():
			until = a.Until
			if a.Until.After(plan.Time.Add(scaler.NewWorkerRetry)) {
				t.Fatalf("the pod is held until %s, more than %s after the decision at %s", a.Until, scaler.NewWorkerRetry, plan.Time)
			}
		case !a.Until.Equal(until):
			t.Fatalf("the hold's end moved from %s to %s", until, a.Until)
		}
		if !plan.Time.Before(until) {
			t.Fatalf("decision %d at %s, at or past the hold's end %s, still holds the pod", decision, plan.Time.Format(time.RFC3339Nano), until)
		}
		if plan.NextCheck.IsZero() || plan.NextCheck.After(until) {
			t.Fatalf("hold until %s, but the next check is %s", until, plan.NextCheck)
		}
		time.Sleep(time.Until(plan.NextCheck) + 10*time.Millisecond)
	}
	free()
	d.Reconciler.Wait()
	if v, n := joined(t, w); v != 2 || n != 2 {
		t.Errorf("%d joined VMs, %d Ready nodes; want 2", v, n)
	}
	if placed {
		waitRunning(t, w, ns, "app=spread", int(replicas))
	}
}

// limits are the extended resources of req: they must have limits equal to requests.
func limits(req corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for k, v := range req {
		if k != corev1.ResourceCPU && k != corev1.ResourceMemory {
			out[k] = v
		}
	}
	return out
}

// waitUnschedulable waits until n pods the selector picks are marked
// Unschedulable by the scheduler.
func waitUnschedulable(t *testing.T, w *world.World, ns, selector string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pods, err := w.Kube.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		got := 0
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if err == nil && c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					got++
				}
			}
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pods unschedulable", got, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
