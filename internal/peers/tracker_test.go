package peers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// The tracker's handlers fed by hand, on a clock the test moves: what it
// counts and integrates.
func TestTrackerIntegratesNodesAndPending(t *testing.T) {
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return at }
	tr := emptyTracker(clock)
	tr.initial["base"] = true
	node := func(name string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}}}
	}
	pod := func(uid string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: uid, UID: types.UID(uid)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}}}},
			Status: corev1.PodStatus{Phase: phase}}
	}
	tr.node(node("base"), false) // there before: not an add
	tr.pod(pod("a", corev1.PodPending), false)
	tr.pod(pod("b", corev1.PodPending), false)
	at = at.Add(10 * time.Second) // 1 node, 2 pending for 10 s
	tr.node(node("new"), false)
	tr.pod(pod("a", corev1.PodRunning), false)
	at = at.Add(20 * time.Second) // 2 nodes, 1 pending for 20 s
	tr.node(node("new"), true)
	tr.pod(pod("b", corev1.PodRunning), false)
	at = at.Add(30 * time.Second) // 1 node, 0 pending for 30 s
	s := tr.snap()
	if s.nodeSec != 10+40+30 || s.pendingSec != 20+20 {
		t.Fatalf("node-seconds %v (want 80), pending pod-seconds %v (want 40)", s.nodeSec, s.pendingSec)
	}
	if s.adds != 1 || s.removes != 1 || s.nodes != 1 || s.allocCPU != 4000 {
		t.Fatalf("adds %d removes %d nodes %d alloc %d", s.adds, s.removes, s.nodes, s.allocCPU)
	}
	if s.running != 2 || s.reqCPU != 1000 || s.created != 2 || !s.lastRun.Equal(at.Add(-30*time.Second)) {
		t.Fatalf("running %d req %d created %d lastRun %v", s.running, s.reqCPU, s.created, s.lastRun)
	}
	if !s.lastNode.Equal(at.Add(-30 * time.Second)) {
		t.Fatalf("last node change %v", s.lastNode)
	}
	// A Node being deleted still counts until it is gone; a tombstone removes it.
	gone := node("base")
	now := metav1.NewTime(at)
	gone.DeletionTimestamp = &now
	tr.node(gone, false)
	if tr.snap().nodes != 1 {
		t.Fatal("a Node being drained stopped counting")
	}
	tr.node(cache.DeletedFinalStateUnknown{Obj: node("base")}, false)
	if s := tr.snap(); s.nodes != 0 || s.removes != 2 {
		t.Fatalf("tombstone: nodes %d removes %d", s.nodes, s.removes)
	}
	// A pod being deleted is neither pending nor running.
	dying := pod("a", corev1.PodRunning)
	dying.DeletionTimestamp = &now
	tr.pod(dying, false)
	if s := tr.snap(); s.running != 1 || s.pods != 1 {
		t.Fatalf("deleting pod: running %d pods %d", s.running, s.pods)
	}
}

func TestTrackerCountsPDBViolationsOnce(t *testing.T) {
	tr := emptyTracker(time.Now)
	pdb := func(gen, observed int64, healthy, desired int32) *policyv1.PodDisruptionBudget {
		return &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: gen},
			Status: policyv1.PodDisruptionBudgetStatus{ObservedGeneration: observed, CurrentHealthy: healthy, DesiredHealthy: desired}}
	}
	tr.pdb(pdb(1, 1, 19, 19))
	tr.pdb(pdb(1, 1, 18, 19)) // below: one violation
	tr.pdb(pdb(1, 1, 17, 19)) // still the same one
	tr.pdb(pdb(2, 1, 3, 19))  // status of an older generation: ignored
	tr.pdb(pdb(2, 2, 3, 3))
	tr.pdb(pdb(2, 2, 2, 3)) // a second one
	if got := tr.snap().violations; got != 2 {
		t.Fatalf("violations %d, want 2", got)
	}
}
