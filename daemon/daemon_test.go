package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
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
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	d, err := Build(ctx, cfg, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return d, cancel
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

// ours counts the VMs that are not the template or foreign.
func ours(w *world.World) int {
	n := 0
	for _, v := range w.Sim.VMs() {
		if !v.Template {
			n++
		}
	}
	return n
}

func TestProvisionThenRemove(t *testing.T) {
	w := newWorld(t)
	d, _ := build(t, w, testConfig(w, 2, 4), Options{})
	converge(t, d, "2 joined workers", 60*time.Second, func() bool {
		v, n := joined(t, w)
		return v == 2 && n == 2
	})
	d.Reconciler.Wait()
	for _, v := range w.Sim.VMs() {
		if v.Template {
			continue
		}
		if v.Cores != 4 || v.Memory != 8192 || !v.Running || !strings.HasPrefix(v.Name, "talos-worker-") {
			t.Errorf("VM %+v", v)
		}
	}
	if applies, _ := w.Counts(); applies != 0 {
		t.Errorf("applies counted before any VM stopped: %d", applies)
	}

	// Lower the minimum: utilization is 0%, one worker goes, drained, reset, destroyed.
	d2, _ := build(t, w, testConfig(w, 1, 4), Options{})
	converge(t, d2, "1 worker left", 60*time.Second, func() bool {
		v, n := joined(t, w)
		return v == 1 && n == 1 && ours(w) == 1
	})
	d2.Reconciler.Wait()
	if _, resets := w.Counts(); resets != 1 {
		t.Errorf("%d Talos resets, want 1", resets)
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
			converge(t, d3, "1 worker after the crash", 60*time.Second, func() bool {
				v, n := joined(t, w)
				return v == 1 && n == 1 && ours(w) == 1
			})
			d3.Reconciler.Wait()
			nodes, _ := w.Kube.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
			if len(nodes.Items) != 1 {
				t.Errorf("%d managed Node objects, want 1", len(nodes.Items))
			}
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
