package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/tracefile"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
	"github.com/pve-autoscaler/pve-autoscaler/talos"
)

// checkWorld asserts the end state of a fault row: exactly want workers,
// each a joined VM with a Ready Node; no orphaned VM (untagged, half-made,
// or without a Node); no Node without its VM; the foreign guest untouched.
func checkWorld(t *testing.T, w *world.World, want int) {
	t.Helper()
	ctx := context.Background()
	nodes, err := w.Kube.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, n := range nodes.Items {
		names[n.Name] = true
	}
	count := 0
	for _, v := range w.Sim.VMs() {
		switch {
		case v.Template:
		case v.VMID == world.ForeignVMID:
			if !v.Running || !slices.Equal(v.Tags, []string{"dns"}) || v.Lock != "" {
				t.Errorf("foreign VM touched: %+v", v)
			}
		default:
			count++
			if !slices.Contains(v.Tags, "step-"+scaler.StepJoined) || !v.Running || !names[v.Name] {
				t.Errorf("orphaned VM %d (%s): tags %v, running %v, node %v", v.VMID, v.Name, v.Tags, v.Running, names[v.Name])
			}
			delete(names, v.Name)
		}
	}
	if count != want {
		t.Errorf("%d worker VMs, want %d", count, want)
	}
	for n := range names {
		t.Errorf("Node %s has no VM", n)
	}
	if _, ready := joined(t, w); ready != want {
		t.Errorf("%d Ready managed nodes, want %d", ready, want)
	}
}

// faultConfig: instant windows, and a one-second failure backoff so a row
// can retry within the test.
func faultConfig(w *world.World, minW, maxW int) *config.Config {
	c := testConfig(w, minW, maxW)
	c.Policy.Cooldown.AfterFailure = config.Duration(time.Second)
	c.Policy.MaxProvisionTime = config.Duration(20 * time.Second)
	return c
}

// TestFaultMatrix provisions through each fault PVE, Talos or Kubernetes
// can throw, and checks that each row ends with the right workers, no
// orphan, and the foreign guest untouched.
func TestFaultMatrix(t *testing.T) {
	var before []int // the workers before a row's fault, for its check
	rows := []struct {
		name   string
		min    int
		mod    func(*config.Config)
		opts   func(*Options)
		before func(*world.World)
		after  func(*testing.T, *world.World, *Daemon) // once the workers are up
		want   int
		errSub string // expected in the last error seen, if any
		check  func(*testing.T, *world.World)
		// settled, when set, must also hold before recovery counts as
		// reached: a rollout passes through the wanted count between
		// its steps.
		settled func(*world.World) bool
	}{
		{name: "clone task fails", min: 1, before: func(w *world.World) {
			w.Sim.FailNextClone("clone failed: command '/usr/bin/qemu-img convert' failed: exit code 1")
		}, want: 1, errSub: "qemu-img convert"},
		{name: "storage lock timeout under parallel clones", min: 3, mod: func(c *config.Config) { c.Proxmox.MaxParallel = 3 },
			before: func(w *world.World) { w.Sim.SetStorageLockLimit(1) }, want: 3,
			check: func(t *testing.T, w *world.World) {
				if n := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; n <= 3 {
					t.Errorf("%d clone requests: no lock timeout was hit and retried", n)
				}
			}},
		{name: "clone slower than max provision time", min: 1, mod: func(c *config.Config) { c.Policy.MaxProvisionTime = config.Duration(2 * time.Second) },
			before: func(w *world.World) { w.Sim.SlowNextClone(4 * time.Second) }, want: 1, errSub: "max_provision_time"},
		{name: "guest agent silent", min: 1, mod: func(c *config.Config) { c.Proxmox.AgentTimeout = config.Duration(10 * time.Second) },
			before: func(w *world.World) { w.Sim.SilenceAgentOfNextVMs(1) },
			want:   1, errSub: "QEMU guest agent is not running"},
		{name: "Talos apply rejected", min: 1, before: func(w *world.World) { w.RejectNextApply(1) }, want: 1, errSub: "disk /dev/sda not found"},
		{name: "node never Ready", min: 1, mod: func(c *config.Config) { c.Policy.MaxProvisionTime = config.Duration(3 * time.Second) },
			before: func(w *world.World) { w.NeverUp(1) }, want: 1, errSub: "max_provision_time"},
		{name: "a PVE host offline", min: 3, before: func(w *world.World) { w.Sim.SetHostOnline("pve3", false) }, want: 3,
			check: func(t *testing.T, w *world.World) {
				for _, v := range w.Sim.VMs() {
					if v.Host == "pve3" {
						t.Errorf("VM %d placed on the offline host", v.VMID)
					}
				}
			}},
		{name: "PVE answers 503 and hangs", min: 2, before: func(w *world.World) { w.Sim.FailRequests(3, 503, "Service Unavailable"); w.Sim.HangRequests(1) }, want: 2},
		{name: "metrics API missing", min: 2, before: func(w *world.World) { w.Kube.Metrics.SetDown(true) }, want: 2},
		// A trace file of bogus figures (NaN, infinite, negative, absurd)
		// around one and two days ago, and a flood dated in the future:
		// read back at start, none of it is a rise to scale up for.
		{name: "daemon.trace_file holds bogus and future rows", min: 1, before: bogusTrace,
			after: func(t *testing.T, _ *world.World, d *Daemon) {
				for range 3 {
					plan, err := d.Reconciler.Tick(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					if plan.Added() > 0 || !plan.Next.CPUHighSince.IsZero() || !plan.Next.MemoryHighSince.IsZero() {
						t.Fatalf("the trace file's rows made a rise: %+v", plan.Next)
					}
				}
			}, want: 1,
			check: func(t *testing.T, w *world.World) {
				if n := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; n != 1 {
					t.Errorf("%d clones for a minimum of 1: the trace file's rows made a rise", n)
				}
			}},
		{name: "our VM deleted by hand", min: 2, after: func(t *testing.T, w *world.World, _ *Daemon) {
			for _, v := range w.Sim.VMs() {
				if !v.Template && v.VMID != world.ForeignVMID {
					w.Sim.DeleteVM(v.VMID)
					return
				}
			}
		}, want: 2},
		{name: "our VM migrated, then scaled down", min: 2, after: func(t *testing.T, w *world.World, d *Daemon) {
			for _, v := range w.Sim.VMs() {
				if !v.Template && v.VMID != world.ForeignVMID {
					to := "pve1"
					if v.Host == "pve1" {
						to = "pve2"
					}
					if err := w.Sim.MigrateVM(v.VMID, to); err != nil {
						t.Fatal(err)
					}
				}
			}
			d.Reconciler = scaler.NewReconciler(proxmox.NewWorkers(d.PVE), talos.NodeOS{Client: d.Talos, Identities: d.PVE}, d.Kube,
				withMin(d.Policy, 1), scaler.ReconcileOptions{Log: d.log, MaxProvisionTime: time.Minute, BackoffMin: time.Second})
		}, want: 1},
		// A new template (a Talos upgrade) with replace_drifted: both
		// workers are rolled, new ones first, the PDB guard holding.
		{name: "the template changes: drifted workers rolled", min: 2, mod: func(c *config.Config) { c.Policy.ReplaceDrifted = true },
			opts: func(o *Options) { o.TemplateCheck = time.Millisecond },
			after: func(t *testing.T, w *world.World, d *Daemon) {
				before = workerVMIDs(w)
				w.Sim.SetTemplateAgent(9000, true)
				// The rollout has begun before recovery is waited for.
				converge(t, d, "a first replacement", 60*time.Second, func() bool { return ours(w) > 2 })
			}, want: 2,
			settled: func(w *world.World) bool {
				for _, id := range workerVMIDs(w) {
					if slices.Contains(before, id) {
						return false
					}
				}
				return true
			},
			check: func(t *testing.T, w *world.World) {
				for _, id := range workerVMIDs(w) {
					if slices.Contains(before, id) {
						t.Errorf("VM %d of the old template still serves", id)
					}
				}
			}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			w := newWorld(t)
			defer w.Kube.Metrics.SetDown(false)
			cfg := faultConfig(w, row.min, 3)
			if row.mod != nil {
				row.mod(cfg)
			}
			if row.before != nil {
				row.before(w)
			}
			var log *zap.Logger
			if os.Getenv("FAULT_DEBUG") != "" {
				log, _ = zap.NewDevelopment()
			}
			o := Options{RequestTimeout: 300 * time.Millisecond, Log: log}
			if row.opts != nil {
				row.opts(&o)
			}
			d, _ := build(t, w, cfg, o)
			minReady := guard(t, w)
			lastErr := ""
			up := func() bool {
				if e := d.Reconciler.Status().LastError; e != "" {
					lastErr = e
				}
				v, n := joined(t, w)
				return v == row.min && n == row.min && ours(w) == row.min
			}
			converge(t, d, "workers up through the fault", 90*time.Second, up)
			d.Reconciler.Wait()
			if row.after != nil {
				row.after(t, w, d)
				converge(t, d, "recovery", 180*time.Second, func() bool {
					v, n := joined(t, w)
					// Every managed Node is a Ready worker's: a NotReady one
					// whose VM is gone is deleted first.
					all, err := w.Kube.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
					return err == nil && len(all.Items) == row.want && v == row.want && n == row.want && ours(w) == row.want &&
						(row.settled == nil || row.settled(w))
				})
				d.Reconciler.Wait()
			}
			if row.errSub != "" && !strings.Contains(lastErr, row.errSub) {
				t.Errorf("the fault was not seen: last error %q, want it to mention %q", lastErr, row.errSub)
			}
			checkWorld(t, w, row.want)
			if row.check != nil {
				row.check(t, w)
			}
			if m := minReady(); m < 1 {
				t.Errorf("the guarded workload dropped to %d Ready pods, below its PodDisruptionBudget's minAvailable 1", m)
			}
		})
	}
}

func withMin(p scaler.Policy, n int) scaler.Policy {
	p.MinWorkers = n
	return p
}

// guard runs a two-replica workload with a PodDisruptionBudget
// (minAvailable 1) on the workers and watches it: the returned function
// tells the fewest Ready pods seen once both first ran. Evictions a PDB
// forbids would show as a drop to 0.
func guard(t *testing.T, w *world.World) func() int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ns := w.Kube.Namespace(t)
	labels := map[string]string{"app": "guard"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "guard", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeSelector: map[string]string{scaler.LabelManaged: "true"},
			Containers:   []corev1.Container{{Name: "g", Image: "registry.example/g:1"}}}}}}
	if _, err := w.Kube.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := intstr.FromInt32(1)
	if _, err := w.Kube.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guard", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	minSeen, armed := 2, false
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			pods, err := w.Kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=guard"})
			if err == nil {
				ready := 0
				for _, p := range pods.Items {
					for _, c := range p.Status.Conditions {
						if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
							ready++
						}
					}
				}
				mu.Lock()
				if ready == 2 {
					armed = true
				}
				if armed && ready < minSeen {
					minSeen = ready
				}
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return minSeen
	}
}

// bogusTrace writes the world's daemon.trace_file: around one and two
// days ago, bogus rows (negative cores two days ago, negative pending
// pods one day ago) up to 90 s after that instant and a flat half core
// after them, which read as they stand would be a rise of cores from a
// negative base on both days; and a 900-core row ten minutes ahead.
func bogusTrace(w *world.World) {
	now := time.Now().UTC()
	start := now.Add(-49 * time.Hour)
	var b strings.Builder
	b.WriteString("# start " + start.Format(time.RFC3339Nano) + "\n" + tracefile.Header + "\n")
	bogus := map[time.Duration]string{48 * time.Hour: "-1000,1,0,1", 24 * time.Hour: "0.5,1,-7,1"}
	for _, ago := range []time.Duration{48 * time.Hour, 24 * time.Hour} {
		for k := range 60 { // 20 s apart, from 10 minutes before to 10 after
			at := now.Add(-ago - 10*time.Minute + time.Duration(k)*20*time.Second)
			cols := "0.5,1,0,1"
			if at.Before(now.Add(-ago + 90*time.Second)) {
				cols = bogus[ago]
			}
			fmt.Fprintf(&b, "%.0f,%s\n", at.Sub(start).Seconds(), cols)
		}
	}
	fmt.Fprintf(&b, "%.0f,900,900,0,1\n", now.Add(10*time.Minute).Sub(start).Seconds())
	if err := os.WriteFile(filepath.Join(w.Dir, "trace.csv"), []byte(b.String()), 0o600); err != nil {
		panic(err)
	}
}
