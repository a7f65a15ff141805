package kube

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestWorkerSelector: with kubernetes.worker_selector, the snapshot
// leaves out the Nodes outside it (another autoscaler's: neither capacity
// nor usage) and keeps those inside it, ours and others; without it
// every Node is there. A pod pending
// for the other side's Nodes (its nodeSelector) gets NotTriggerScaleUp
// from Decide and adds no worker, while a pod for our workers adds one.
// A selector that does not parse is refused, naming the field.
func TestWorkerSelector(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	cs := env.Client
	const side = "bench.example/side"
	testNodes(t, env, "wsel", "wsel-ours")
	node := func(name, value string) {
		t.Helper()
		if err := env.CreateNode(ctx, kubetest.NodeSpec{Name: name, CPU: "2", Memory: "4Gi", Labels: map[string]string{side: value}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		waitReady(t, env, name)
	}
	node("wsel-other-1", "other")
	node("wsel-other-2", "other")
	node("wsel-mine", "mine") // not ours, but one of this cluster's workers
	for _, n := range []string{"wsel-ours", "wsel-other-1", "wsel-other-2", "wsel-mine"} {
		env.Metrics.SetNode(n, "1500m", "1Gi")
	}

	if _, err := NewForConfig(env.Rest, Options{WorkerSelector: "side in (a", Log: zap.NewNop()}); err == nil || !strings.Contains(err.Error(), "kubernetes.worker_selector") {
		t.Fatalf("a selector that does not parse: %v, want an error naming kubernetes.worker_selector", err)
	}

	all := adapterWith(t, env, Options{})
	sel := adapterWith(t, env, Options{WorkerSelector: side + "!=other"})
	names := func(s scaler.Snapshot) map[string]bool {
		out := map[string]bool{}
		for _, n := range s.Nodes {
			out[n.Name] = true
		}
		return out
	}
	snapAll, err := all.Snapshot(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := names(snapAll); !got["wsel-ours"] || !got["wsel-other-1"] || !got["wsel-other-2"] || !got["wsel-mine"] {
		t.Fatalf("without a selector every Node is a worker; got %v", got)
	}
	snap, err := sel.Snapshot(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := names(snap)
	if got["wsel-other-1"] || got["wsel-other-2"] {
		t.Errorf("Nodes outside %s!=other are in the snapshot: %v", side, got)
	}
	if !got["wsel-ours"] || !got["wsel-mine"] {
		t.Errorf("the selected Nodes (ours and another) are missing: %v", got)
	}
	for _, n := range snap.Nodes {
		if strings.HasPrefix(n.Name, "wsel-other") {
			t.Errorf("usage of %s counted: %+v", n.Name, n.Usage)
		}
	}

	// Fill our Node, then two pods pending: one for the other side's
	// Nodes (too big for them, small enough for a new worker of ours),
	// one for ours.
	pod := func(name string, cpu string, selector map[string]string) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{
			NodeSelector: selector,
			Tolerations:  []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("256Mi")}}}}}}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("fill", "2", map[string]string{"test-group": "wsel"})
	waitFor(t, "the filler Running", 30*time.Second, func() bool {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "fill", metav1.GetOptions{})
		return err == nil && p.Spec.NodeName == "wsel-ours" && p.Status.Phase == corev1.PodRunning
	})
	pod("theirs", "3", map[string]string{side: "other"})
	pod("ours", "3", map[string]string{"test-group": "wsel"})
	var pending []scaler.PendingPod
	waitFor(t, "both pods Unschedulable", 30*time.Second, func() bool {
		s, _ := sel.Snapshot(ctx, time.Now())
		pending = slices.DeleteFunc(s.PendingPods, func(p scaler.PendingPod) bool { return p.Namespace != ns })
		snap = s
		return len(pending) == 2
	})
	p := scaler.Policy{MaxWorkers: 1000, MaxStep: 3, PendingPods: true, CPU: scaler.Threshold{Up: 80, Down: 30}, Memory: scaler.Threshold{Up: 85, Down: 40},
		Worker: scaler.Resources{MilliCPU: 4000, Memory: 8 << 30}, VMMemory: 8 << 30, Location: time.UTC,
		NewWorker: scaler.NewWorker{Labels: map[string]string{"test-group": "wsel"}}}
	plan := scaler.Decide(snap, p, scaler.History{}, time.Now())
	verdict := func(name string) *scaler.PodVerdict {
		i := slices.IndexFunc(plan.Pods, func(v scaler.PodVerdict) bool { return v.Namespace == ns && v.Name == name })
		if i < 0 {
			return nil
		}
		return &plan.Pods[i]
	}
	if v := verdict("theirs"); v == nil || !v.NoWorker() || !strings.Contains(v.Message, "node selector") {
		t.Errorf("the other side's pod: verdict %+v, want NotTriggerScaleUp for its node selector", v)
	}
	if v := verdict("ours"); v == nil || !v.Counted {
		t.Errorf("our pod: verdict %+v, want it counted toward a new worker", v)
	}
	if plan.Added() < 1 {
		t.Errorf("no worker added for our pod: %+v", plan.Actions)
	}
}

// adapterWith starts an adapter with these options as the harness admin.
func adapterWith(t *testing.T, env *kubetest.Env, o Options) *Client {
	t.Helper()
	o.EvictRetry, o.Log = 200*time.Millisecond, zap.NewNop()
	c, err := NewForConfig(env.Rest, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}
