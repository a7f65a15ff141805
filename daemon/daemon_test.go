package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
	"github.com/pve-autoscaler/pve-autoscaler/talos"
)

func TestMain(m *testing.M) {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(kubetest.Main(m, kubetest.Options{}))
}

func newWorld(t *testing.T) *world.World {
	t.Helper()
	env := kubetest.Require(t)
	w, err := world.New(env, world.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// testConfig is the world's config with instant windows and no cooldowns.
func testConfig(w *world.World, minW, maxW int) *config.Config {
	c := w.Config()
	c.Policy.MinWorkers, c.Policy.MaxWorkers = minW, maxW
	c.Policy.ScaleUpAfter, c.Policy.ScaleDownAfter = 0, 0
	c.Policy.Cooldown = config.Cooldown{}
	c.Policy.PendingPods.Grace = 0
	c.Policy.Drain.Timeout = config.Duration(20 * time.Second)
	c.Policy.MaxProvisionTime = config.Duration(time.Minute)
	return c
}

// writeCounter counts the requests that are not reads.
type writeCounter struct {
	base   http.RoundTripper
	writes atomic.Int64
}

func (c *writeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		c.writes.Add(1)
	}
	return c.base.RoundTrip(r)
}

func build(t *testing.T, w *world.World, cfg *config.Config, o Options) (*Daemon, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o.TalosPort = w.TalosPort
	o.Poll = 5 * time.Millisecond
	if o.ConfirmAbsence == 0 {
		o.ConfirmAbsence = 2 * time.Second // a minute in production: keep the rows short
	}
	if o.Log == nil {
		o.Log = failureLog(t)
	}
	d, err := Build(ctx, cfg, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return d, cancel
}

// failureLog is a logger whose entries are printed when the test fails
// (operations may still log after the test has ended: not through t.Log).
func failureLog(t *testing.T) *zap.Logger {
	core, logs := observer.New(zap.InfoLevel)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var b strings.Builder
		for _, e := range logs.All() {
			fmt.Fprintf(&b, "%s %s %s: %s %v\n", e.Time.Format("15:04:05.000"), e.Level, e.LoggerName, e.Message, e.ContextMap())
		}
		t.Logf("daemon log:\n%s", b.String())
	})
	return zap.New(core)
}

// converge ticks until cond holds.
func converge(t *testing.T, d *Daemon, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := d.Reconciler.Tick(context.Background()); err != nil {
			t.Logf("tick: %v", err)
		}
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			st := d.Reconciler.Status()
			t.Fatalf("timed out waiting for %s; last status: ops %+v, error %q, machines %+v", what, st.Operations, st.LastError, st.Machines)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// joined counts our VMs at step joined and Ready Nodes of ours.
func joined(t *testing.T, w *world.World) (vms, nodes int) {
	t.Helper()
	for _, v := range w.Sim.VMs() {
		if slices.Contains(v.Tags, "step-"+scaler.StepJoined) {
			vms++
		}
	}
	list, err := w.Kube.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && n.DeletionTimestamp == nil {
				nodes++
			}
		}
	}
	return vms, nodes
}

// ours counts the VMs that are not the template or the foreign guest.
func ours(w *world.World) int {
	n := 0
	for _, v := range w.Sim.VMs() {
		if !v.Template && v.VMID != world.ForeignVMID {
			n++
		}
	}
	return n
}

// startWith brings the world to n joined workers, Ready, under a daemon
// whose minimum is n (and maximum n+1).
func startWith(t *testing.T, w *world.World, n int) {
	t.Helper()
	d, _ := build(t, w, testConfig(w, n, n+1), Options{})
	converge(t, d, fmt.Sprintf("%d workers", n), 60*time.Second, func() bool { v, nodes := joined(t, w); return v == n && nodes == n })
	d.Reconciler.Wait()
}

// convergeWorkers ticks d until exactly n joined workers with Ready Nodes
// are left and no other VM of ours, then waits for its operations.
func convergeWorkers(t *testing.T, w *world.World, d *Daemon, what string, n int) {
	t.Helper()
	converge(t, d, what, 60*time.Second, func() bool {
		v, nodes := joined(t, w)
		return v == n && nodes == n && ours(w) == n
	})
	d.Reconciler.Wait()
}

func TestProvisionThenRemove(t *testing.T) {
	begin := time.Now().Add(-time.Second)
	w := newWorld(t)
	d, _ := build(t, w, testConfig(w, 2, 4), Options{})
	converge(t, d, "2 joined workers", 60*time.Second, func() bool {
		v, n := joined(t, w)
		return v == 2 && n == 2
	})
	d.Reconciler.Wait()
	for _, v := range w.Sim.VMs() {
		if v.Template || v.VMID == world.ForeignVMID {
			continue
		}
		if v.Cores != 4 || v.Memory != 8192 || !v.Running || !strings.HasPrefix(v.Name, "talos-worker-") {
			t.Errorf("VM %+v", v)
		}
	}
	if applies, _ := w.Counts(); applies != 0 {
		t.Errorf("applies counted before any VM stopped: %d", applies)
	}

	// An earlier test's Event on a Node of the same name, arriving late:
	// not this world's (the Node's UID differs), not counted below.
	late := &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "late-", Namespace: "default"}, Reason: "ScaleDown", Type: corev1.EventTypeNormal,
		Message:        "pve-autoscaler removes this worker: an earlier world's",
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "talos-worker-5001", UID: "an-earlier-world", APIVersion: "v1"},
		LastTimestamp:  metav1.Now(), FirstTimestamp: metav1.Now(), Count: 1}
	if _, err := w.Kube.Client.CoreV1().Events("default").Create(context.Background(), late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Lower the minimum: utilization is 0%, one worker goes, drained, reset, destroyed.
	d2, _ := build(t, w, testConfig(w, 1, 4), Options{})
	convergeWorkers(t, w, d2, "1 worker left", 1)
	if _, resets := w.Counts(); resets != 1 {
		t.Errorf("%d Talos resets, want 1", resets)
	}
	n := 0
	for _, e := range events(t, w, "ScaleDown") {
		if e.LastTimestamp.After(begin) && strings.Contains(e.Message, "pve-autoscaler removes this worker") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d ScaleDown events, want 1", n)
	}
	// Steady: nothing more happens.
	writes := w.Sim.Writes()
	for range 3 {
		if _, err := d2.Reconciler.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	d2.Reconciler.Wait()
	if got := w.Sim.Writes() - writes; got != 0 {
		t.Errorf("%d PVE writes while steady", got)
	}
}

func TestDryRunMakesNoWrites(t *testing.T) {
	w := newWorld(t)
	counter := &writeCounter{}
	rc := rest.CopyConfig(w.Kube.Rest)
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.base = rt; return counter }
	d, _ := build(t, w, testConfig(w, 2, 4), Options{DryRun: true, Kube: rc})
	for range 3 {
		plan, err := d.Reconciler.Tick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if plan.Added() != 2 {
			t.Fatalf("dry-run plan adds %d, want 2 (below the minimum)", plan.Added())
		}
	}
	d.Reconciler.Wait()
	applies, resets := w.Counts()
	if w.Sim.Writes() != 0 || counter.writes.Load() != 0 || applies != 0 || resets != 0 || ours(w) != 0 {
		t.Errorf("dry-run wrote: PVE %d, Kubernetes %d, Talos applies %d resets %d, VMs %d", w.Sim.Writes(), counter.writes.Load(), applies, resets, ours(w))
	}
}

// crashAt returns an AfterStep hook that aborts the reconciler right after
// the given step, once, and a channel closed when it did.
func crashAt(kind scaler.OperationKind, step string, abort func()) (func(scaler.OperationKind, int, string), chan struct{}) {
	done := make(chan struct{})
	var once sync.Once
	return func(k scaler.OperationKind, _ int, s string) {
		if k == kind && s == step {
			once.Do(func() { abort(); close(done) })
		}
	}, done
}

func TestCrashAfterEachProvisioningStep(t *testing.T) {
	for _, step := range []string{scaler.StepCloned, scaler.StepConfigured, scaler.StepStarted, scaler.StepApplying} {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t)
			cfg := testConfig(w, 1, 3)
			var d *Daemon
			hook, crashed := crashAt(scaler.OpProvision, step, func() { d.Reconciler.Abort() })
			d, _ = build(t, w, cfg, Options{AfterStep: hook})
			if _, err := d.Reconciler.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-crashed:
			case <-time.After(30 * time.Second):
				t.Fatalf("never reached step %s", step)
			}
			d.Reconciler.Wait()
			// A new daemon resumes: one worker, no orphan, never two.
			d2, _ := build(t, w, cfg, Options{})
			converge(t, d2, "1 joined worker after the crash", 60*time.Second, func() bool {
				v, n := joined(t, w)
				return v == 1 && n == 1 && ours(w) == 1
			})
			d2.Reconciler.Wait()
			if applies, _ := w.Counts(); applies > 1 {
				t.Errorf("Talos config applied %d times", applies)
			}
			if got := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; got != 1 {
				t.Errorf("%d clones, want 1 (a restart must never provision twice)", got)
			}
		})
	}
}

func TestCrashAfterEachRemovalStep(t *testing.T) {
	for _, step := range []string{scaler.RemovalMarked, scaler.RemovalDrained, scaler.RemovalReset, "destroyed"} {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t)
			d, _ := build(t, w, testConfig(w, 2, 3), Options{})
			converge(t, d, "2 workers", 60*time.Second, func() bool { v, n := joined(t, w); return v == 2 && n == 2 })
			d.Reconciler.Wait()
			var d2 *Daemon
			hook, crashed := crashAt(scaler.OpRemove, step, func() { d2.Reconciler.Abort() })
			d2, _ = build(t, w, testConfig(w, 1, 3), Options{AfterStep: hook})
			if _, err := d2.Reconciler.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-crashed:
			case <-time.After(30 * time.Second):
				t.Fatalf("never reached removal step %s", step)
			}
			d2.Reconciler.Wait()
			d3, _ := build(t, w, testConfig(w, 1, 3), Options{})
			// A crash after the destroy leaves the reset worker's Node
			// (NotReady: Talos's reset does not delete it); the new daemon
			// deletes it once a second read confirms its VM is gone.
			managed := func() int {
				nodes, err := w.Kube.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
				if err != nil {
					t.Fatal(err)
				}
				return len(nodes.Items)
			}
			converge(t, d3, "1 worker and 1 Node after the crash", 60*time.Second, func() bool {
				v, n := joined(t, w)
				return v == 1 && n == 1 && ours(w) == 1 && managed() == 1
			})
			d3.Reconciler.Wait()
		})
	}
}

func TestMaxProvisionTimeAndBackoff(t *testing.T) {
	w := newWorld(t)
	w.NeverUp(1)
	cfg := testConfig(w, 1, 3)
	cfg.Policy.MaxProvisionTime = config.Duration(3 * time.Second)
	d, _ := build(t, w, cfg, Options{})
	if _, err := d.Reconciler.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Reconciler.Wait()
	st := d.Reconciler.Status()
	if ours(w) != 0 || !strings.Contains(st.LastError, "max_provision_time") {
		t.Fatalf("after a node that never joined: %d VMs left, last error %q", ours(w), st.LastError)
	}
	// The next attempt waits out the backoff (5 minutes after one failure).
	plan, err := d.Reconciler.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if plan.Added() != 0 || !plan.Held(scaler.CodeCooldownFailure) {
		t.Errorf("no backoff after a failure: %+v", plan.Holds)
	}
	if b := d.Reconciler.Backoff(1); b != 5*time.Minute {
		t.Errorf("backoff after 1 failure %v", b)
	}
	if b := d.Reconciler.Backoff(3); b != 20*time.Minute {
		t.Errorf("backoff after 3 failures %v", b)
	}
	if b := d.Reconciler.Backoff(9); b != 30*time.Minute {
		t.Errorf("backoff after 9 failures %v", b)
	}
}

func TestHTTPEndpoints(t *testing.T) {
	w := newWorld(t)
	metrics := NewMetrics()
	d, _ := build(t, w, testConfig(w, 1, 3), Options{Observer: metrics})
	srv := NewServer(d.Reconciler, metrics, time.Minute)
	srv.SetLeader(true) // as Run does without leader election
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	if code, _ := httpGet(t, ts.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before any tick: %d", code)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		plan, err := d.Reconciler.Tick(context.Background())
		srv.Ticked(plan, err)
		if v, n := joined(t, w); v == 1 && n == 1 && plan.Workers.Ready == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no worker")
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.Reconciler.Wait()
	plan, err := d.Reconciler.Tick(context.Background()) // observes the finished worker
	srv.Ticked(plan, err)
	_, body := httpGet(t, ts.URL+"/metrics")
	for _, want := range []string{
		`pve_autoscaler_scale_events_total{direction="up",result="success"} 1`,
		`pve_autoscaler_step_duration_seconds_count{operation="provision",step="joined"} 1`,
		`pve_autoscaler_step_duration_seconds_count{operation="provision",step="cloned"} 1`,
		`pve_autoscaler_workers{state="ready"} 1`,
		`pve_autoscaler_utilization_ratio{resource="cpu"} 0`,
		"pve_autoscaler_last_decision_timestamp_seconds",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	code, body := httpGet(t, ts.URL+"/status")
	if code != 200 || !strings.Contains(body, `"step": "joined"`) || !strings.Contains(body, `"leader": true`) || !strings.Contains(body, `"next_history"`) {
		t.Errorf("/status %d:\n%s", code, body)
	}
	if code, _ := httpGet(t, ts.URL+"/readyz"); code != 200 {
		t.Errorf("/readyz after a tick: %d", code)
	}
	if code, body := httpGet(t, ts.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz %d %q", code, body)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// events lists the Events of a reason on this world's Nodes (and on
// other objects): the control plane is shared by the package's tests.
func events(t *testing.T, w *world.World, reason string) []corev1.Event {
	t.Helper()
	list, err := w.Kube.Client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "reason=" + reason})
	if err != nil {
		t.Fatal(err)
	}
	var mine []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Kind != "Node" || w.MadeNode(e.InvolvedObject.UID) {
			mine = append(mine, e)
		}
	}
	return mine
}

// TestDrainFailureKeepsTheNode: a PodDisruptionBudget that allows no
// eviction holds the drain past its timeout; the node is uncordoned and
// stays, its VM back at joined, the failure recorded and told as an Event.
// dbPinnedOnRemoval runs one db pod on each of two workers (required
// anti-affinity) and returns an AfterStep hook that, once a removal has
// marked its node, adds a PodDisruptionBudget allowing no disruption (the
// engine never picks a node a PDB already pins) and waits until the
// disruption controller has computed it.
func dbPinnedOnRemoval(t *testing.T, w *world.World) (string, func(scaler.OperationKind, int, string)) {
	t.Helper()
	ctx := context.Background()
	ns := w.Kube.Namespace(t)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}}, Spec: corev1.PodSpec{
			NodeSelector: map[string]string{scaler.LabelManaged: "true"},
			Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, TopologyKey: "kubernetes.io/hostname"}}}},
			Containers: []corev1.Container{{Name: "db", Image: "registry.example/db:1"}}}}}}
	if _, err := w.Kube.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, w, ns, "app=db", 2)
	return ns, func(kind scaler.OperationKind, _ int, step string) {
		if kind != scaler.OpRemove || step != scaler.RemovalMarked {
			return
		}
		zero := intstr.FromInt32(0)
		if _, err := w.Kube.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
			Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}, metav1.CreateOptions{}); err != nil {
			t.Errorf("PDB: %v", err)
			return
		}
		for range 100 {
			p, err := w.Kube.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "db", metav1.GetOptions{})
			if err == nil && p.Status.ObservedGeneration >= p.Generation && p.Status.ExpectedPods == 2 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("PDB status never computed")
	}
}

func TestDrainFailureKeepsTheNode(t *testing.T) {
	w := newWorld(t)
	startWith(t, w, 2)
	ctx := context.Background()
	_, pdbHook := dbPinnedOnRemoval(t, w)
	cfg := testConfig(w, 1, 3)
	cfg.Policy.Drain.Timeout = config.Duration(2 * time.Second)
	d2, _ := build(t, w, cfg, Options{AfterStep: pdbHook})
	node := ""
	converge(t, d2, "a removal to start", 30*time.Second, func() bool {
		for _, op := range d2.Reconciler.Status().Operations {
			if op.Kind == scaler.OpRemove {
				node = op.Node
			}
		}
		return node != ""
	})
	d2.Reconciler.Wait()
	st := d2.Reconciler.Status()
	if !strings.Contains(st.LastError, "disruption budget") {
		t.Fatalf("status after the failed drain (node %s): error %q, ops %+v", node, st.LastError, st.Operations)
	}
	n, err := w.Kube.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil || n.Spec.Unschedulable || n.Annotations[scaler.AnnotationRemoval] != "" {
		t.Fatalf("node %s after a failed drain: %v, unschedulable %v, annotations %v", node, err, n.Spec.Unschedulable, n.Annotations)
	}
	if n.Labels[scaler.LabelManaged] != "true" || n.Labels[scaler.LabelVMID] == "" {
		t.Errorf("node %s lost its labels in the failed removal: %v", node, n.Labels)
	}
	if v, _ := joined(t, w); v != 2 {
		t.Errorf("%d VMs at joined, want 2 (the node stays)", v)
	}
	found := false
	for _, e := range events(t, w, "DrainFailed") {
		if e.InvolvedObject.Name == node && e.Type == corev1.EventTypeWarning {
			found = true
		}
	}
	if !found {
		t.Error("no DrainFailed event on the node")
	}
}

func ptr[T any](v T) *T { return &v }

func waitRunning(t *testing.T, w *world.World, ns, selector string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pods, err := w.Kube.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		running := 0
		for _, p := range pods.Items {
			if err == nil && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pods running", running, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNodesOfVanishedVMsAndForeignVMs: a Node whose VM was deleted by hand
// is deleted; a VM that looks like ours (name, id range) but whose
// description is not ours is never touched.
func TestNodesOfVanishedVMsAndForeignVMs(t *testing.T) {
	w := newWorld(t)
	d, _ := build(t, w, testConfig(w, 1, 3), Options{})
	converge(t, d, "1 worker", 60*time.Second, func() bool { v, n := joined(t, w); return v == 1 && n == 1 })
	d.Reconciler.Wait()
	if ev := events(t, w, "ScaleUp"); len(ev) == 0 {
		t.Error("no ScaleUp event")
	}
	var gone pvesimVM
	for _, v := range w.Sim.VMs() {
		if !v.Template && v.VMID != world.ForeignVMID {
			gone = pvesimVM{v.VMID, v.Name}
		}
	}
	old, err := w.Kube.Client.CoreV1().Nodes().Get(context.Background(), gone.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Sim.DeleteVM(gone.vmid)
	// A foreign VM in our range with our prefix: the scaler must leave it.
	foreign := 5900
	if err := createForeign(w, foreign); err != nil {
		t.Fatal(err)
	}
	converge(t, d, "the orphaned Node deleted and a new worker", 60*time.Second, func() bool {
		// The id is free again, so the new worker may take the same name: a
		// new Node object (another UID) proves the old one was deleted.
		cur, err := w.Kube.Client.CoreV1().Nodes().Get(context.Background(), gone.name, metav1.GetOptions{})
		v, n := joined(t, w)
		return (err != nil || cur.UID != old.UID) && v == 1 && n == 1
	})
	d.Reconciler.Wait()
	if v, ok := w.Sim.Lookup(foreign); !ok || len(v.Tags) != 0 || v.Running {
		t.Errorf("foreign VM touched: %+v (present %v)", v, ok)
	}
}

type pvesimVM struct {
	vmid int
	name string
}

// createForeign clones a VM named like ours, with a description of its own.
func createForeign(w *world.World, vmid int) error {
	req, err := http.NewRequest("POST", w.PVE.URL+"/nodes/pve1/qemu/9000/clone", strings.NewReader(
		"newid="+strconv.Itoa(vmid)+"&name=talos-worker-"+strconv.Itoa(vmid)+"&description=made+by+hand"))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "PVEAPIToken=autoscaler@pve!scaler="+w.TokenSecret())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test client of the simulator
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("clone: %s", res.Status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if v, ok := w.Sim.Lookup(vmid); ok && v.Lock == "" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("foreign clone did not finish")
}

// TestLeaderElectionRun: two daemons on one world with leader election;
// one leads and acts, the other stands by, and takes over when it stops.
func TestLeaderElectionRun(t *testing.T) {
	w := newWorld(t)
	cfg := testConfig(w, 1, 3)
	cfg.Policy.Interval = config.Duration(time.Second)
	cfg.Daemon.LeaderElection = config.LeaderElection{Enabled: true, Namespace: "kube-system", LeaseName: "pve-autoscaler-" + strconv.Itoa(w.TalosPort)}
	type runner struct {
		srv    *Server
		cancel context.CancelFunc
		done   chan error
	}
	start := func() runner {
		ctx, cancel := context.WithCancel(context.Background())
		d, err := Build(ctx, cfg, Options{TalosPort: w.TalosPort, Poll: 5 * time.Millisecond, Log: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		r := runner{srv: NewServer(d.Reconciler, NewMetrics(), time.Second), cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- d.Run(ctx, r.srv) }()
		t.Cleanup(cancel)
		return r
	}
	leading := func(r runner) bool {
		r.srv.mu.Lock()
		defer r.srv.mu.Unlock()
		return r.srv.leader
	}
	a := start()
	deadline := time.Now().Add(20 * time.Second)
	for !leading(a) {
		if time.Now().After(deadline) {
			t.Fatal("first daemon never leads")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b := start()
	for {
		if v, n := joined(t, w); v == 1 && n == 1 {
			break
		}
		if time.Now().After(deadline.Add(40 * time.Second)) {
			t.Fatal("the leader did not provision")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if leading(b) {
		t.Fatal("two leaders")
	}
	a.cancel()
	if err := <-a.done; err != nil {
		t.Errorf("leader stopped with %v", err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for !leading(b) {
		if time.Now().After(deadline) {
			t.Fatal("standby never took over")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.cancel()
	<-b.done
	if got := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; got != 1 {
		t.Errorf("%d clones with two daemons, want 1", got)
	}
}

// TestStopLeavesResumable: stopping (SIGTERM) while a worker is being
// provisioned lets the running step finish, returns, and a new daemon
// completes that worker instead of cloning another.
func TestStopLeavesResumable(t *testing.T) {
	w := newWorld(t)
	cfg := testConfig(w, 1, 3)
	cfg.Policy.Interval = config.Duration(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	stepped := make(chan struct{})
	var once sync.Once
	d, err := Build(ctx, cfg, Options{TalosPort: w.TalosPort, Poll: 5 * time.Millisecond, Log: zap.NewNop(),
		AfterStep: func(k scaler.OperationKind, _ int, s string) {
			if k == scaler.OpProvision && s == scaler.StepConfigured {
				once.Do(func() { close(stepped) })
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(d.Reconciler, NewMetrics(), time.Second)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, srv) }()
	select {
	case <-stepped:
	case <-time.After(30 * time.Second):
		t.Fatal("provisioning never started")
	}
	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return after the context ended")
	}
	if v, _ := joined(t, w); v != 0 || ours(w) != 1 {
		t.Fatalf("after stopping: %d joined, %d VMs; want one half-provisioned VM", v, ours(w))
	}
	d2, _ := build(t, w, testConfig(w, 1, 3), Options{})
	converge(t, d2, "the worker finished by a new daemon", 60*time.Second, func() bool { v, n := joined(t, w); return v == 1 && n == 1 && ours(w) == 1 })
	d2.Reconciler.Wait()
	if got := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; got != 1 {
		t.Errorf("%d clones, want 1", got)
	}
}

// TestSMBIOSIdentityEndToEnd: a worker's VM smbios1 uuid is the UUID its
// Talos machine reports, its Node's systemUUID, and what the listing and
// the snapshot carry. When the VMs are replaced behind our back (a new
// UUID under the same vmid), a removal stops before the reset: the
// machine at the address no longer proves to be that VM.
func TestSMBIOSIdentityEndToEnd(t *testing.T) {
	w := newWorld(t)
	d, _ := build(t, w, testConfig(w, 2, 3), Options{})
	converge(t, d, "2 joined workers", 60*time.Second, func() bool { v, n := joined(t, w); return v == 2 && n == 2 })
	d.Reconciler.Wait()
	ctx := context.Background()
	machines, _, err := proxmox.NewWorkers(d.PVE).Machines(ctx)
	if err != nil || len(machines) != 2 {
		t.Fatalf("Machines %+v, %v", machines, err)
	}
	snap, err := d.Kube.Snapshot(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	vms := map[int]string{} // vmid -> UUID
	for _, v := range w.Sim.VMs() {
		if v.Template || v.VMID == world.ForeignVMID {
			continue
		}
		vms[v.VMID] = v.UUID
		if v.UUID == "" {
			t.Fatalf("VM %d has no UUID", v.VMID)
		}
		node, err := w.Kube.Client.CoreV1().Nodes().Get(ctx, v.Name, metav1.GetOptions{})
		if err != nil || node.Status.NodeInfo.SystemUUID != v.UUID {
			t.Errorf("Node %s systemUUID %q, want the VM's %s (%v)", v.Name, node.Status.NodeInfo.SystemUUID, v.UUID, err)
		}
		fake := w.Talos(v.VMID)
		if fake == nil || fake.UUID() != v.UUID || fake.IdentityReads() == 0 || len(fake.Applied()) != 1 {
			t.Errorf("Talos machine of VM %d: %v", v.VMID, fake)
		}
		if i := slices.IndexFunc(machines, func(m scaler.Machine) bool { return m.VMID == v.VMID }); i < 0 || machines[i].UUID != v.UUID {
			t.Errorf("Machines %+v: want VM %d with UUID %s", machines, v.VMID, v.UUID)
		}
		if i := slices.IndexFunc(snap.Nodes, func(n scaler.Node) bool { return n.Name == v.Name }); i < 0 || snap.Nodes[i].SystemUUID != v.UUID {
			t.Errorf("snapshot Nodes %+v: want %s with SystemUUID %s", snap.Nodes, v.Name, v.UUID)
		}
	}

	// Both VMs replaced behind our back; then one worker is to go: the
	// VMs no longer match their Nodes by identity, a safety hold; no reset
	// reaches a machine at their addresses, and both VMs stay.
	for vmid := range vms {
		if _, err := w.Sim.SetSMBIOSUUID(vmid, ""); err != nil {
			t.Fatal(err)
		}
	}
	d2, _ := build(t, w, testConfig(w, 1, 3), Options{})
	converge(t, d2, "a safety hold over the changed SMBIOS UUIDs", 60*time.Second, func() bool {
		return strings.Contains(d2.Reconciler.Status().SafetyHold, "SMBIOS UUID")
	})
	tickFor(d2, 3*time.Second)
	d2.Reconciler.Wait()
	for vmid := range vms {
		if fake := w.Talos(vmid); fake == nil || len(fake.Resets()) != 0 {
			t.Errorf("VM %d: a reset reached a machine whose UUID is not its VM's (%v)", vmid, fake)
		}
		if _, ok := w.Sim.Lookup(vmid); !ok {
			t.Errorf("VM %d was destroyed without its reset", vmid)
		}
	}
	if _, resets := w.Counts(); resets != 0 {
		t.Errorf("%d resets", resets)
	}

	// talos.NodeOS holds a Machine listed before the replacement to its listed
	// UUID: refused before Talos is even asked.
	os := talos.NodeOS{Client: d2.Talos, Identities: d2.PVE}
	m := machines[0]
	fake := w.Talos(m.VMID)
	reads := fake.IdentityReads()
	var ice *proxmox.IdentityChangedError
	// Bounded: an apply that did reach Talos would retry against the
	// installed machine until talos' ApplyTimeout.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for op, call := range map[string]func() error{
		"reset": func() error { return os.Reset(ctx, m, fake.IP()) },
		"apply": func() error { return os.Apply(ctx, m, fake.IP()) },
	} {
		err := call()
		if !errors.As(err, &ice) || ice.Listed != m.UUID || ice.Now == m.UUID || ice.Now == "" || ice.VMID != m.VMID {
			t.Errorf("%s of a Machine listed before its VM was replaced: want IdentityChangedError, got %v", op, err)
		}
	}
	if fake.IdentityReads() != reads || len(fake.Resets()) != 0 || len(fake.Applied()) != 1 {
		t.Errorf("the Talos machine was asked (%d identity reads, %d resets, %d configs)", fake.IdentityReads()-reads, len(fake.Resets()), len(fake.Applied()))
	}
}
