package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

func TestMain(m *testing.M) {
	// client-go's leader election logs through klog; keep test output readable.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(kubetest.Main(m, kubetest.Options{}))
}

// adapter starts an adapter as the harness admin.
func adapter(t *testing.T, env *kubetest.Env, drain config.Drain) *Client {
	t.Helper()
	return adapterWith(t, env, Options{Drain: drain})
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testNodes creates kwok nodes labelled for this test only.
func testNodes(t *testing.T, env *kubetest.Env, group string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := env.CreateNode(context.Background(), kubetest.NodeSpec{Name: n, CPU: "4", Memory: "8Gi",
			Labels: map[string]string{"test-group": group, scaler.LabelManaged: "true", scaler.LabelVMID: "5" + fmt.Sprint(len(n)), scaler.LabelHost: "pve1"}}); err != nil {
			t.Fatal(err)
		}
		name := n
		t.Cleanup(func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	for _, n := range names {
		waitReady(t, env, n)
	}
}

func waitReady(t *testing.T, env *kubetest.Env, name string) {
	t.Helper()
	waitFor(t, name+" Ready", 30*time.Second, func() bool {
		n, err := env.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		return err == nil && ready(n)
	})
}

func deployment(ns, name, group string, replicas int32, cpu string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"test-group": group},
					Tolerations:  []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("256Mi")}}}},
				},
			},
		},
	}
}

func runningOn(t *testing.T, env *kubetest.Env, ns, app, node string) int {
	t.Helper()
	pods, err := env.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		if p.Spec.NodeName == node && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			n++
		}
	}
	return n
}

func readyPods(env *kubetest.Env, ns, app string) int {
	pods, err := env.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return -1
	}
	n := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

func nodeOf(s scaler.Snapshot, name string) *scaler.Node {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

func TestSnapshot(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	testNodes(t, env, "snap", "snap-a", "snap-b")
	cpTaint := corev1.Taint{Key: LabelControlPlane, Effect: corev1.TaintEffectNoSchedule}
	if err := env.CreateNode(ctx, kubetest.NodeSpec{Name: "snap-cp", CPU: "2", Memory: "4Gi", Labels: map[string]string{LabelControlPlane: ""},
		Taints: []corev1.Taint{cpTaint}, Extended: map[string]string{"gpu.intel.com/i915": "1"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Nodes().Delete(context.Background(), "snap-cp", metav1.DeleteOptions{})
	})
	env.Metrics.SetNode("snap-a", "1500m", "3Gi")
	env.Metrics.SetNode("snap-b", "250m", "1Gi")
	env.Metrics.SetNode("snap-cp", "100m", "1Gi")

	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "web", "snap", 3, "1", map[string]string{scaler.AnnotationSafeToEvict: "true"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := intstr.FromInt32(1)
	if _, err := env.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 web pods ready", 30*time.Second, func() bool { return readyPods(env, ns, "web") == 3 })

	c := adapter(t, env, config.Drain{})
	var snap scaler.Snapshot
	waitFor(t, "snapshot with 3 pods and PDB status", 20*time.Second, func() bool {
		var err error
		snap, err = c.Snapshot(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		pods := 0
		for _, name := range []string{"snap-a", "snap-b"} {
			for _, p := range nodeOf(snap, name).Pods {
				if p.PDB != nil && p.PDB.DisruptionsAllowed == 2 {
					pods++
				}
			}
		}
		return pods == 3
	})
	a, b, cp := nodeOf(snap, "snap-a"), nodeOf(snap, "snap-b"), nodeOf(snap, "snap-cp")
	if a == nil || b == nil || cp == nil {
		t.Fatalf("nodes missing: %+v", snap.Nodes)
	}
	if a.Usage != (scaler.Resources{MilliCPU: 1500, Memory: 3 << 30}) || b.Usage.MilliCPU != 250 {
		t.Errorf("usage a %v b %v", a.Usage, b.Usage)
	}
	if a.Allocatable != (scaler.Resources{MilliCPU: 4000, Memory: 8 << 30}) || !a.Ready || !a.Managed || a.VMID == 0 || a.Host != "pve1" || a.ControlPlane {
		t.Errorf("node a %+v", a)
	}
	if a.ReadySince.IsZero() || a.ReadySince.Before(a.Created) {
		t.Errorf("node a Ready since %s, registered %s", a.ReadySince, a.Created)
	}
	if !cp.ControlPlane || cp.Managed {
		t.Errorf("control plane %+v", cp)
	}
	if got := a.Requests.MilliCPU + b.Requests.MilliCPU; got != 3000 {
		t.Errorf("requests on a and b: %dm, want 3000m", got)
	}
	for _, p := range append(a.Pods, b.Pods...) {
		if p.OwnerKind != "ReplicaSet" || p.Annotations[scaler.AnnotationSafeToEvict] != "true" || p.PDB.Name != "web" || p.Requests.MilliCPU != 1000 {
			t.Errorf("pod %+v", p)
		}
		// Where it could run instead, for consolidation's fit elsewhere.
		if p.NodeSelector["test-group"] != "snap" || !slices.ContainsFunc(p.Tolerations, func(t corev1.Toleration) bool { return t.Key == "kwok.x-k8s.io/node" }) {
			t.Errorf("pod %s: node selector %v, tolerations %v", p.Name, p.NodeSelector, p.Tolerations)
		}
	}
	// A Node's labels, taints and extended resources, as the scheduling
	// helpers judge a pod that would move there.
	if a.Labels["test-group"] != "snap" || a.Labels[corev1.LabelHostname] != "snap-a" || len(a.Taints) != 0 {
		t.Errorf("node a: labels %v, taints %v", a.Labels, a.Taints)
	}
	if len(cp.Taints) != 1 || cp.Taints[0].Key != cpTaint.Key || cp.Extended["gpu.intel.com/i915"] != 1 || a.Extended != nil {
		t.Errorf("control plane: taints %v, extended %v; node a extended %v", cp.Taints, cp.Extended, a.Extended)
	}
	if snap.Metrics.Stale {
		t.Errorf("metrics stale: %s", snap.Metrics.Error)
	}

	// A pod the real scheduler cannot place is pending until a node joins.
	big := deployment(ns, "big", "snap", 1, "6", nil)
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, big, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "big pod pending as Unschedulable", 30*time.Second, func() bool {
		s, _ := c.Snapshot(ctx, time.Now())
		for _, p := range s.PendingPods {
			// The scheduler's verdict and when it reached it: what tells
			// whether it has tried a newer worker.
			if p.Namespace == ns && strings.HasPrefix(p.Name, "big-") && p.Requests.MilliCPU == 6000 && !p.Since.IsZero() &&
				strings.Contains(p.Message, " nodes are available: ") && !p.MessageTime.Before(p.Since) {
				return true
			}
		}
		return false
	})
	if err := env.CreateNode(ctx, kubetest.NodeSpec{Name: "snap-big", CPU: "8", Memory: "16Gi", Labels: map[string]string{"test-group": "snap"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Nodes().Delete(context.Background(), "snap-big", metav1.DeleteOptions{})
	})
	waitFor(t, "big pod scheduled on the new node", 30*time.Second, func() bool {
		s, _ := c.Snapshot(ctx, time.Now())
		for _, p := range s.PendingPods {
			if p.Namespace == ns {
				return false
			}
		}
		n := nodeOf(s, "snap-big")
		return n != nil && n.Requests.MilliCPU == 6000
	})
}

func TestMetricsUnavailable(t *testing.T) {
	env := kubetest.Require(t)
	testNodes(t, env, "nometrics", "nometrics-a")
	c := adapter(t, env, config.Drain{})
	env.Metrics.SetDown(true)
	defer env.Metrics.SetDown(false)
	snap, err := c.Snapshot(context.Background(), time.Now())
	var mu *MetricsUnavailableError
	if !errors.As(err, &mu) || !snap.Metrics.Stale || len(snap.Nodes) == 0 {
		t.Fatalf("want a stale snapshot and MetricsUnavailableError, got %v (stale %v, %d nodes)", err, snap.Metrics.Stale, len(snap.Nodes))
	}
	for _, want := range []string{"install metrics-server", "--kubelet-insecure-tls"} {
		if !strings.Contains(err.Error(), want) || !strings.Contains(snap.Metrics.Error, want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	env.Metrics.SetDown(false)
	env.Metrics.SetNode("old-figures", "1", "1Gi")
	env.Metrics.SetTimestamp(time.Now().Add(-time.Hour))
	defer env.Metrics.Reset()
	if _, err := c.Snapshot(context.Background(), time.Now()); !errors.As(err, &mu) || !strings.Contains(err.Error(), "old") {
		t.Errorf("old figures: %v", err)
	}
}

func TestWaitReady(t *testing.T) {
	env := kubetest.Require(t)
	c := adapter(t, env, config.Drain{})
	var mu sync.Mutex
	var seen []string
	looked := make(chan struct{}) // WaitReady has reported the Node missing
	go func() {
		select {
		case <-looked:
		case <-time.After(10 * time.Second):
		}
		_ = env.CreateNode(context.Background(), kubetest.NodeSpec{Name: "join-1", CPU: "2", Memory: "4Gi"})
	}()
	t.Cleanup(func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), "join-1", metav1.DeleteOptions{}) })
	err := c.waitReady(context.Background(), "join-1", 30*time.Second, func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 && s == "not registered" {
			close(looked)
		}
		seen = append(seen, s)
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if seen[0] != "not registered" || seen[len(seen)-1] != "Ready" {
		t.Errorf("progress %v", seen)
	}
	mu.Unlock()
	err = c.WaitReady(context.Background(), "never-joins", 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not Ready within 500ms (last seen: not registered)") {
		t.Errorf("absent node: %v", err)
	}
}

func TestDrainHonoursPDB(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	testNodes(t, env, "pdb", "pdb-a")
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "api", "pdb", 3, "500m", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	two := intstr.FromInt32(2)
	if _, err := env.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}}, Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"test-group": "pdb"},
			Containers:   []corev1.Container{{Name: "agent", Image: "registry.example/agent:1"}}}}}}
	if _, err := env.Client.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 api pods on pdb-a", 30*time.Second, func() bool { return runningOn(t, env, ns, "api", "pdb-a") == 3 && readyPods(env, ns, "api") == 3 })
	waitFor(t, "agent on pdb-a", 30*time.Second, func() bool { return runningOn(t, env, ns, "agent", "pdb-a") == 1 })
	testNodes(t, env, "pdb", "pdb-b")

	// Watch availability through the drain: it must never drop below minAvailable.
	var minSeen atomic.Int64
	minSeen.Store(3)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if n := int64(readyPods(env, ns, "api")); n >= 0 && n < minSeen.Load() {
				minSeen.Store(n)
			}
		}
	})
	c := adapter(t, env, config.Drain{Timeout: config.Duration(60 * time.Second)})
	err := c.Drain(ctx, "pdb-a")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	if m := minSeen.Load(); m < 2 {
		t.Errorf("availability dropped to %d, below the PDB's minAvailable 2", m)
	}
	if n := runningOn(t, env, ns, "api", "pdb-a"); n != 0 {
		t.Errorf("%d api pods left on the drained node", n)
	}
	if n := runningOn(t, env, ns, "agent", "pdb-a"); n != 1 {
		t.Errorf("DaemonSet pod gone from the drained node (%d)", n)
	}
	node, _ := env.Client.CoreV1().Nodes().Get(ctx, "pdb-a", metav1.GetOptions{})
	if !node.Spec.Unschedulable {
		t.Error("drained node not cordoned")
	}
}

func TestDrainRefusalsAndTimeout(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	testNodes(t, env, "hold", "hold-a", "hold-b")
	// Everything goes to hold-a first: hold-b is cordoned while pods start.
	if err := adapter(t, env, config.Drain{}).Cordon(ctx, "hold-b", true); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "db", "hold", 1, "100m", map[string]string{scaler.AnnotationSafeToEvict: "false"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "db on hold-a", 30*time.Second, func() bool { return runningOn(t, env, ns, "db", "hold-a") == 1 })
	c := adapter(t, env, config.Drain{Timeout: config.Duration(3 * time.Second)})
	err := c.Drain(ctx, "hold-a")
	var de *DrainError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "safe-to-evict=false") || !strings.Contains(err.Error(), ns+"/db-") {
		t.Fatalf("want a DrainError naming the protected pod, got %v", err)
	}
	if errors.Is(err, scaler.ErrDrainTimedOut) {
		t.Errorf("a refusal before any eviction counts as a timeout (remove_undrained would go on): %v", err)
	}
	node, _ := env.Client.CoreV1().Nodes().Get(ctx, "hold-a", metav1.GetOptions{})
	if !node.Spec.Unschedulable {
		t.Error("node uncordoned after a refused drain: the caller decides")
	}
	if err := c.Cordon(ctx, "hold-a", false); err != nil {
		t.Fatal(err)
	}
	if runningOn(t, env, ns, "db", "hold-a") != 1 {
		t.Error("protected pod evicted")
	}

	// A PDB that allows no disruption: the drain times out, stays cordoned, and says why.
	if err := env.Client.AppsV1().Deployments(ns).Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "cache", "hold", 2, "100m", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	all := intstr.FromInt32(2)
	if _, err := env.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &all, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cache pods ready on hold-a", 30*time.Second, func() bool { return runningOn(t, env, ns, "cache", "hold-a") == 2 && readyPods(env, ns, "cache") == 2 })
	start := time.Now()
	err = c.Drain(ctx, "hold-a")
	if !errors.As(err, &de) || len(de.Pods) != 2 || !strings.Contains(err.Error(), "disruption budget") {
		t.Fatalf("want a DrainError naming both pods and the PDB, got %v", err)
	}
	if !errors.Is(err, scaler.ErrDrainTimedOut) {
		t.Errorf("a drain the PDB held until its timeout is not ErrDrainTimedOut: %v", err)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("drain took %v with a 3s timeout", el)
	}
	node, _ = env.Client.CoreV1().Nodes().Get(ctx, "hold-a", metav1.GetOptions{})
	if !node.Spec.Unschedulable {
		t.Error("node uncordoned after a drain timeout")
	}
	if runningOn(t, env, ns, "cache", "hold-a") != 2 {
		t.Error("a PDB-protected pod was evicted")
	}
}

func TestLeaderElection(t *testing.T) {
	env := kubetest.Require(t)
	var leading atomic.Int32
	var leaders sync.Map
	core, logs := observer.New(zap.InfoLevel)
	run := func(ctx context.Context, id string) {
		_ = RunLeader(ctx, env.Client, LeaderOptions{Namespace: "kube-system", Name: "pve-autoscaler-test", Identity: id,
			Lease: 2 * time.Second, Renew: time.Second, Retry: 100 * time.Millisecond, Log: zap.New(core).With(zap.String("daemon", id))}, func(lctx context.Context) {
			if n := leading.Add(1); n > 1 {
				t.Errorf("%d leaders at once", n)
			}
			leaders.Store(id, true)
			<-lctx.Done()
			leading.Add(-1)
		})
	}
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	var wg sync.WaitGroup
	wg.Go(func() { run(ctxA, "daemon-a") })
	waitFor(t, "daemon-a leading", 10*time.Second, func() bool { _, ok := leaders.Load("daemon-a"); return ok })
	wg.Go(func() { run(ctxB, "daemon-b") })
	// daemon-b has tried for the Lease and found daemon-a holding it.
	waitFor(t, "daemon-b seeing daemon-a lead", 10*time.Second, func() bool {
		for _, e := range logs.FilterMessage("another daemon leads").All() {
			if f := e.ContextMap(); f["daemon"] == "daemon-b" && f["leader"] == "daemon-a" {
				return true
			}
		}
		return false
	})
	if _, ok := leaders.Load("daemon-b"); ok {
		t.Fatal("daemon-b leads while daemon-a holds the lease")
	}
	stopA()
	waitFor(t, "daemon-b taking over", 10*time.Second, func() bool { _, ok := leaders.Load("daemon-b"); return ok })
	stopB()
	wg.Wait()
}

// TestLeaderKeepsTheLeaseThroughItsGrace: stopping a leader lets its
// running steps finish (lead returns after a grace) while it still holds
// the Lease, so no second leader acts meanwhile; then the Lease is
// released and the other daemon takes over at once, not after it expires.
func TestLeaderKeepsTheLeaseThroughItsGrace(t *testing.T) {
	env := kubetest.Require(t)
	const lease = "pve-autoscaler-grace"
	var mu sync.Mutex
	var events []string
	note := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	run := func(ctx context.Context, id string, grace time.Duration) {
		_ = RunLeader(ctx, env.Client, LeaderOptions{Namespace: "kube-system", Name: lease, Identity: id,
			Lease: 4 * time.Second, Renew: 2 * time.Second, Retry: 100 * time.Millisecond}, func(lctx context.Context) {
			note(id + " leads")
			<-lctx.Done()
			time.Sleep(grace) // the reconciler's grace: running steps finish
			note(id + " stopped")
		})
		note(id + " returned")
	}
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	var wg sync.WaitGroup
	wg.Go(func() { run(ctxA, "daemon-a", 6*time.Second) }) // longer than the lease
	waitFor(t, "daemon-a leading", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return slices.Contains(events, "daemon-a leads") })
	wg.Go(func() { run(ctxB, "daemon-b", 0) })
	stopA()
	waitFor(t, "daemon-b taking over", 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return slices.Contains(events, "daemon-b leads") })
	stopB()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	stopped, returned, b := slices.Index(events, "daemon-a stopped"), slices.Index(events, "daemon-a returned"), slices.Index(events, "daemon-b leads")
	if stopped < 0 || b < stopped || returned < stopped {
		t.Errorf("events %v: daemon-b must lead only after daemon-a's grace, and RunLeader return after it", events)
	}
}

// TestWakeOnUnschedulable: a pod the scheduler cannot place wakes the
// daemon once; a scheduled pod does not.
func TestWakeOnUnschedulable(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	testNodes(t, env, "wake", "wake-a")
	c := adapter(t, env, config.Drain{})
	// Pods pending from earlier tests wake it as the informer lists them:
	// wait until it has been quiet for a while.
	for quiet := false; !quiet; {
		select {
		case <-c.Wake():
		case <-time.After(500 * time.Millisecond):
			quiet = true
		}
	}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "fits", "wake", 1, "1", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pod that fits running", 30*time.Second, func() bool { return readyPods(env, ns, "fits") == 1 })
	select {
	case <-c.Wake():
		t.Fatal("a scheduled pod woke the daemon")
	default:
	}
	created := time.Now()
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "huge", "wake", 1, "64", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Wake():
		t.Logf("woken %s after the Deployment was created", time.Since(created).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("an unschedulable pod did not wake the daemon")
	}
}

// TestAnnotateKeepsLabels: recording a step on a Node (annotations only)
// leaves its labels alone; a merge patch with "labels": null would wipe
// them, and a worker whose drain failed would lose its managed label.
func TestAnnotateKeepsLabels(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	testNodes(t, env, "annotate", "annotate-a")
	c := adapter(t, env, config.Drain{})
	v := "marked"
	if err := c.Annotate(ctx, "annotate-a", nil, map[string]*string{scaler.AnnotationRemoval: &v}); err != nil {
		t.Fatal(err)
	}
	if err := c.Annotate(ctx, "annotate-a", nil, map[string]*string{scaler.AnnotationRemoval: nil}); err != nil {
		t.Fatal(err)
	}
	n, err := env.Client.CoreV1().Nodes().Get(ctx, "annotate-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[scaler.LabelManaged] != "true" || n.Labels["test-group"] != "annotate" {
		t.Errorf("labels after annotating: %v", n.Labels)
	}
	if _, ok := n.Annotations[scaler.AnnotationRemoval]; ok {
		t.Errorf("annotation not removed: %v", n.Annotations)
	}
	// And the standby taint goes on and off, once.
	for _, on := range []bool{true, true, false, false} {
		if err := c.SetStandby(ctx, "annotate-a", on); err != nil {
			t.Fatal(err)
		}
		n, _ := env.Client.CoreV1().Nodes().Get(ctx, "annotate-a", metav1.GetOptions{})
		count := 0
		for _, tt := range n.Spec.Taints {
			if tt.Key == scaler.TaintStandby && tt.Effect == corev1.TaintEffectNoSchedule {
				count++
			}
		}
		if want := map[bool]int{true: 1, false: 0}[on]; count != want {
			t.Errorf("standby %v: %d taints", on, count)
		}
	}
}

// TestWritesAreInTheCacheWhenTheyReturn: cordon, the standby taint and
// deleting a Node return once the informer's cache shows them, so the
// snapshot the next tick reads agrees with the step just recorded.
func TestWritesAreInTheCacheWhenTheyReturn(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	testNodes(t, env, "settle", "settle-a")
	c := adapter(t, env, config.Drain{})
	cached := func() *corev1.Node {
		n, err := c.nodes.Get("settle-a")
		if err != nil {
			return nil
		}
		return n
	}
	tainted := func(n *corev1.Node) bool {
		return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == scaler.TaintStandby })
	}
	for range 3 {
		for _, on := range []bool{true, false} {
			if err := c.Cordon(ctx, "settle-a", on); err != nil {
				t.Fatal(err)
			}
			if n := cached(); n == nil || n.Spec.Unschedulable != on {
				t.Fatalf("cordon %v returned before the cache had it", on)
			}
			if err := c.SetStandby(ctx, "settle-a", on); err != nil {
				t.Fatal(err)
			}
			if n := cached(); n == nil || tainted(n) != on {
				t.Fatalf("standby %v returned before the cache had it", on)
			}
		}
	}
	if err := c.DeleteNode(ctx, scaler.Node{Name: "settle-a", VMID: 58}); err != nil {
		t.Fatal(err)
	}
	if cached() != nil {
		t.Fatal("delete returned while the cache still had the Node")
	}
}

// TestSnapshotSystemUUID: a Node's status.nodeInfo.systemUUID (the
// machine's SMBIOS UUID) survives kwok's node stage and reaches the
// snapshot lower-cased; a Node without one has none.
func TestSnapshotSystemUUID(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	const uuid = "6C2A5D2E-1111-4ABC-8DEF-0123456789AB"
	for _, n := range []kubetest.NodeSpec{
		{Name: "uuid-a", CPU: "2", Memory: "4Gi", SystemUUID: uuid},
		{Name: "uuid-b", CPU: "2", Memory: "4Gi"},
	} {
		created, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + n.Name})
		if err != nil || len(created.Items) != 0 {
			t.Fatalf("node %s exists already (%v)", n.Name, err)
		}
		if err := env.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		name := n.Name
		t.Cleanup(func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	waitReady(t, env, "uuid-a")
	waitReady(t, env, "uuid-b")
	// kwok has written the status (Ready); the UUID is still the one the
	// "kubelet" registered with.
	n, err := env.Client.CoreV1().Nodes().Get(ctx, "uuid-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Status.NodeInfo.SystemUUID != uuid {
		t.Fatalf("systemUUID after kwok's node stage: %q, want %q (nodeInfo %+v)", n.Status.NodeInfo.SystemUUID, uuid, n.Status.NodeInfo)
	}

	c := adapter(t, env, config.Drain{})
	var snap scaler.Snapshot
	waitFor(t, "both nodes Ready in the snapshot", 20*time.Second, func() bool {
		snap, _ = c.Snapshot(ctx, time.Now())
		a, b := nodeOf(snap, "uuid-a"), nodeOf(snap, "uuid-b")
		return a != nil && b != nil && a.Ready && b.Ready
	})
	if got := nodeOf(snap, "uuid-a").SystemUUID; got != strings.ToLower(uuid) {
		t.Errorf("snapshot SystemUUID %q, want %q", got, strings.ToLower(uuid))
	}
	if got := nodeOf(snap, "uuid-b").SystemUUID; got != "" {
		t.Errorf("node without a systemUUID: snapshot has %q", got)
	}
}

// TestDeleteNodeOnlyItsIdentity: a Node is deleted only while its vmid
// label and SMBIOS UUID, read afresh, are the machine's; a Node gone
// already is fine.
func TestDeleteNodeOnlyItsIdentity(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	const uuid = "7d1c0a52-5701-4a00-8000-000000005701"
	if err := env.CreateNode(ctx, kubetest.NodeSpec{Name: "ident-a", CPU: "2", Memory: "4Gi", SystemUUID: strings.ToUpper(uuid),
		Labels: map[string]string{scaler.LabelManaged: "true", scaler.LabelVMID: "5701"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Nodes().Delete(context.Background(), "ident-a", metav1.DeleteOptions{})
	})
	waitReady(t, env, "ident-a")
	c := adapter(t, env, config.Drain{})
	for _, other := range []scaler.Node{
		{Name: "ident-a", VMID: 5701, SystemUUID: "7d1c0a52-5701-4a00-8000-000000009999"}, // another machine under the name and vmid
		{Name: "ident-a", VMID: 5702, SystemUUID: uuid},                                   // another vmid
		{Name: "ident-a", VMID: 5701},                                                     // the machine's UUID unknown
	} {
		if err := c.DeleteNode(ctx, other); err == nil || !strings.Contains(err.Error(), "not deleted") {
			t.Errorf("DeleteNode(%+v) = %v, want a refusal", other, err)
		}
		if _, err := env.Client.CoreV1().Nodes().Get(ctx, "ident-a", metav1.GetOptions{}); err != nil {
			t.Fatalf("the Node went on a delete for %+v: %v", other, err)
		}
	}
	if err := c.DeleteNode(ctx, scaler.Node{Name: "ident-a", VMID: 5701, SystemUUID: uuid}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoreV1().Nodes().Get(ctx, "ident-a", metav1.GetOptions{}); err == nil {
		t.Error("the machine's own Node was not deleted")
	}
	if err := c.DeleteNode(ctx, scaler.Node{Name: "ident-a", VMID: 5701, SystemUUID: uuid}); err != nil {
		t.Errorf("a Node gone already: %v", err)
	}
}

// TestCordonTakesAwayOnlyItsOwn: our cordon carries AnnotationCordoned,
// written with it; uncordoning takes away only such a cordon, or one on a
// Node with our standby taint (an earlier version's park); a Node a person
// cordoned stays cordoned, and cordoning it again does not claim it, not
// even once our removal marked it before its drain.
func TestCordonTakesAwayOnlyItsOwn(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	testNodes(t, env, "cord", "cord-a", "cord-b", "cord-c", "cord-d")
	c := adapter(t, env, config.Drain{})
	get := func(name string) *corev1.Node {
		n, err := env.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	byHand := func(name string, ann string) { // kubectl cordon, and an annotation
		patch := `{"spec":{"unschedulable":true}` + ann + `}`
		if _, err := env.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Ours: cordoned with the annotation, uncordoned without it.
	if err := c.Cordon(ctx, "cord-a", true); err != nil {
		t.Fatal(err)
	}
	if n := get("cord-a"); !n.Spec.Unschedulable || n.Annotations[scaler.AnnotationCordoned] == "" {
		t.Errorf("our cordon: unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
	}
	if err := c.Cordon(ctx, "cord-a", false); err != nil {
		t.Fatal(err)
	}
	if n := get("cord-a"); n.Spec.Unschedulable || n.Annotations[scaler.AnnotationCordoned] != "" {
		t.Errorf("our cordon taken away: unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
	}
	// A person's: neither claimed nor taken away.
	byHand("cord-b", "")
	var foreign *scaler.ForeignCordonError
	if err := c.Cordon(ctx, "cord-b", true); !errors.As(err, &foreign) || foreign.Node != "cord-b" {
		t.Fatalf("cordoning a person's cordon: %v, want a ForeignCordonError", err)
	}
	if err := c.Cordon(ctx, "cord-b", false); err != nil {
		t.Fatal(err)
	}
	if n := get("cord-b"); !n.Spec.Unschedulable || n.Annotations[scaler.AnnotationCordoned] != "" {
		t.Errorf("a person's cordon: unschedulable %v (want true), annotations %v", n.Spec.Unschedulable, n.Annotations)
	}
	// An earlier version's park: cordoned, with our standby taint: ours.
	if _, err := env.Client.CoreV1().Nodes().Patch(ctx, "cord-c", types.MergePatchType,
		[]byte(`{"spec":{"unschedulable":true,"taints":[{"key":"`+scaler.TaintStandby+`","effect":"NoSchedule"}]}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Cordon(ctx, "cord-c", false); err != nil {
		t.Fatal(err)
	}
	if n := get("cord-c"); n.Spec.Unschedulable {
		t.Error("a parked cordon of ours from before the annotation was not taken away")
	}
	// A person cordoned before our drain: our removal marks the Node, the
	// drain's cordon fails (nothing is drained under their cordon), the
	// removal is withdrawn. The person's cordon stays, unclaimed.
	byHand("cord-d", "")
	step := scaler.RemovalMarked
	if err := c.Annotate(ctx, "cord-d", nil, map[string]*string{scaler.AnnotationRemoval: &step}); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx, "cord-d"); !errors.As(err, &foreign) {
		t.Fatalf("draining under a person's cordon: %v, want a ForeignCordonError", err)
	}
	if n := get("cord-d"); n.Annotations[scaler.AnnotationCordoned] != "" {
		t.Errorf("a person's cordon claimed by our drain: annotations %v", n.Annotations)
	}
	if err := c.Cordon(ctx, "cord-d", false); err != nil {
		t.Fatal(err)
	}
	if n := get("cord-d"); !n.Spec.Unschedulable {
		t.Error("a person's cordon taken away by the withdraw of our removal")
	}
}

// TestLeadershipLostDuringTheGraceEndsIt: a leader that was stopped keeps
// its Lease through its grace; when the Lease is lost meanwhile (another
// holder took it), OnLost is called at once, so the grace ends (the
// daemon aborts its operations) instead of running on beside a new leader.
func TestLeadershipLostDuringTheGraceEndsIt(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	const lease = "pve-autoscaler-lost"
	lost := make(chan struct{})
	var once sync.Once
	graceEnded := make(chan string, 1)
	leading := make(chan struct{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = RunLeader(runCtx, env.Client, LeaderOptions{Namespace: "kube-system", Name: lease, Identity: "daemon-a",
			Lease: 3 * time.Second, Renew: 2 * time.Second, Retry: 100 * time.Millisecond,
			OnLost: func() { once.Do(func() { close(lost) }) }}, func(lctx context.Context) {
			close(leading)
			<-lctx.Done()
			select { // the grace: steps finish, unless leadership is lost
			case <-lost:
				graceEnded <- "lost"
			case <-time.After(time.Minute):
				graceEnded <- "grace ran out"
			}
		})
	}()
	select {
	case <-leading:
	case <-time.After(20 * time.Second):
		t.Fatal("daemon-a never led")
	}
	stop() // SIGTERM: the grace begins, the Lease is still renewed
	// Another holder takes the Lease meanwhile (an operator, a clock jump).
	waitFor(t, "the Lease taken over", 10*time.Second, func() bool {
		l, err := env.Client.CoordinationV1().Leases("kube-system").Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return false
		}
		thief := "daemon-b"
		l.Spec.HolderIdentity = &thief
		now := metav1.NewMicroTime(time.Now())
		l.Spec.AcquireTime, l.Spec.RenewTime = &now, &now
		_, err = env.Client.CoordinationV1().Leases("kube-system").Update(ctx, l, metav1.UpdateOptions{})
		return err == nil
	})
	select {
	case why := <-graceEnded:
		if why != "lost" {
			t.Errorf("the grace ended by %q, want by the lost Lease", why)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a Lease lost during the grace did not end it")
	}
	<-done
}
