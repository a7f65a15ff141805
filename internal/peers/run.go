package peers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/internal/simulate"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
)

// The world's latencies, BenchmarkScaleUpLatency's: PVE's defaults
// (linked clone 3 s, start 2 s, guest agent 15 s after start), the Talos
// maintenance API 20 s after start, install and reboot 10 s.
const (
	talosBoot    = 20 * time.Second
	talosInstall = 10 * time.Second
	cloneRoute   = "POST /nodes/{node}/qemu/{vmid}/clone"
	baseWorkers  = 2
	maxWorkers   = 20
)

// registrationDelay is the world's modelled clone to Node registered:
// the PVE tasks on the path (clone, start), then the longer of the guest
// agent and the Talos API coming up, then install and reboot. The same
// is Karpenter's KWOKNodeClass nodeRegistrationDelay.
func registrationDelay() time.Duration {
	l := pvesim.DefaultLatencies()
	return l.LinkedClone + l.Start + max(l.Agent, talosBoot) + talosInstall
}

// Scenarios, in the order they run.
var Scenarios = []string{"burst", "mixed", "diurnal"}

// Options of a comparison.
type Options struct {
	Runs      int
	Scenarios []string
	// Diurnal is how long the week of the diurnal trace is replayed in
	// (default 1h).
	Diurnal time.Duration
	// DrainLimit bounds the wait for the minimum after the load drops
	// (default 15m).
	DrainLimit time.Duration
	// Trace is the diurnal-week trace file.
	Trace string
	Out   io.Writer
	// Progress hears the table after each finished run.
	Progress func(rows []Row, runs int)
}

type figure struct {
	scenario, key, name, unit string
	better                    Better
	digits                    int
}

var figures = []figure{
	{"burst", "first", "pod creation to first node requested", "s", Lower, 1},
	{"burst", "running", "pod creation to all 40 pods Running", "s", Lower, 1},
	{"burst", "added", "nodes added", "", Neither, 1},
	{"drain-down", "back", "load at 20% to back at 2 workers", "s", Lower, 0},
	{"drain-down", "violations", "PDB violations", "", Lower, 0},
	{"drain-down", "evictions", "pods evicted (replacements created)", "", Lower, 1},
	{"mixed", "running", "pod creation to all 30 pods Running", "s", Lower, 1},
	{"mixed", "nodes", "nodes used after settling", "", Lower, 1},
	{"mixed", "util", "CPU requested / allocatable after settling", "%", Higher, 1},
	{"diurnal", "nodeMin", "node-minutes", "min", Lower, 1},
	{"diurnal", "pendingMin", "pending pod-minutes", "min", Lower, 1},
	{"diurnal", "events", "scale events (nodes added + removed)", "", Lower, 1},
}

// results holds every figure's samples: scenario/key -> side -> values.
type results struct {
	mu   sync.Mutex
	vals map[string]map[string]Sample
	caps map[string]float64
}

func (r *results) add(side, scenario string, got map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range got {
		key := scenario + "/" + k
		if r.vals[key] == nil {
			r.vals[key] = map[string]Sample{}
		}
		r.vals[key][side] = append(r.vals[key][side], v)
	}
}

func (r *results) rows() []Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rows []Row
	for _, f := range figures {
		v := r.vals[f.scenario+"/"+f.key]
		if v == nil {
			continue
		}
		rows = append(rows, Row{Scenario: f.scenario, Figure: f.name, Unit: f.unit, Better: f.better, Digits: f.digits,
			Ours: v[ours], Theirs: v[theirs], Cap: r.caps[f.scenario+"/"+f.key]})
	}
	return rows
}

const (
	ours   = "pve-autoscaler"
	theirs = "Karpenter"
)

// side is one autoscaler in one scenario run.
type side struct {
	name     string
	ns       string
	selector map[string]string // the pods' nodeSelector
	nodeSel  string            // its Nodes
	requests func() []time.Time
	tr       *tracker
	c        kubernetes.Interface
	env      *kubetest.Env
}

func (s *side) firstRequestAfter(t time.Time) time.Time {
	for _, r := range s.requests() {
		if r.After(t) {
			return r
		}
	}
	return time.Time{}
}

// Run starts the control plane and Karpenter, runs each scenario Runs
// times with both autoscalers at once, and returns the table's rows.
func Run(ctx context.Context, o Options) ([]Row, error) {
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.Diurnal <= 0 {
		o.Diurnal = time.Hour
	}
	if o.DrainLimit <= 0 {
		o.DrainLimit = 15 * time.Minute
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = Scenarios
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	var trace simulate.Trace
	for _, s := range o.Scenarios {
		switch s {
		case "burst", "mixed":
		case "diurnal":
			f, err := os.Open(o.Trace)
			if err != nil {
				return nil, fmt.Errorf("diurnal trace: %w", err)
			}
			trace, err = simulate.ParseTrace(o.Trace, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", s, strings.Join(Scenarios, ", "))
		}
	}
	if miss := kubetest.Missing(); len(miss) > 0 {
		return nil, fmt.Errorf("the Kubernetes test bed is not built (missing %s): run make kube-testbed", strings.Join(miss, ", "))
	}
	dir := KarpenterDir()
	if _, err := os.Stat(dir + "/.complete"); err != nil {
		return nil, fmt.Errorf("the kwok provider of Karpenter is not built in %s: run hack/karpenter-kwok.sh (make bench-peers does)", dir)
	}
	// One control plane for both autoscalers and every slot: our daemon
	// counts as workers only the Nodes its kubernetes.worker_selector
	// picks (its slot's), Karpenter provisions only for pods its NodePool
	// fits. A port found free may be taken before it is bound: retry.
	var env *kubetest.Env
	var err error
	for range 3 {
		if env, err = kubetest.Start(kubetest.Options{}); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	defer env.Stop()
	work, err := os.MkdirTemp("", "peers-")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "control plane up; Karpenter %s (its log and our daemons' in %s), node registration delay %s on both sides\n", KarpenterVersion, work, registrationDelay())
	karp, err := startKarpenter(ctx, env, dir, work)
	if err != nil {
		return nil, err
	}
	defer karp.stop()
	reqs := &requests{}
	if err := watchClaims(ctx, karp, reqs); err != nil {
		return nil, err
	}
	uctx, ucancel := context.WithCancel(ctx)
	defer ucancel()
	go usage(uctx, env)

	res := &results{vals: map[string]map[string]Sample{}, caps: map[string]float64{"drain-down/back": o.DrainLimit.Seconds()}}
	var progress sync.Mutex
	done := func() {
		if o.Progress != nil {
			progress.Lock()
			defer progress.Unlock()
			rows := res.rows()
			o.Progress(rows, minRuns(rows))
		}
	}
	// burst (with its drain-down) and mixed run one after the other,
	// their runs too: one Karpenter serves every NodePool, and its
	// batching would merge bursts that came at once. The diurnal runs,
	// an hour each, run at once beside them (slow changes, no batching
	// to merge); each slot has its own NodePool, daemon and world.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var emu sync.Mutex
	var errs []error
	fail := func(err error) {
		emu.Lock()
		errs = append(errs, err)
		emu.Unlock()
		cancel()
	}
	var seq []slot
	for run := 1; run <= o.Runs; run++ {
		for _, sc := range o.Scenarios {
			if sc != "diurnal" {
				seq = append(seq, slot{sc, run})
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, sl := range seq {
			fmt.Fprintf(o.Out, "%s: start\n", sl.id())
			if err := runScenario(ctx, o, work, env, karp, reqs, sl, trace, res); err != nil {
				fail(fmt.Errorf("%s: %w", sl.id(), err))
				return
			}
			done()
		}
	}()
	if slices.Contains(o.Scenarios, "diurnal") {
		for run := 1; run <= o.Runs; run++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sl := slot{"diurnal", run}
				fmt.Fprintf(o.Out, "%s: start\n", sl.id())
				if err := runScenario(ctx, o, work, env, karp, reqs, sl, trace, res); err != nil {
					fail(fmt.Errorf("%s: %w", sl.id(), err))
					return
				}
				done()
			}()
		}
	}
	wg.Wait()
	return res.rows(), errors.Join(errs...)
}

// minRuns is the fewest runs any row has on either side so far.
func minRuns(rows []Row) int {
	n := -1
	for _, r := range rows {
		for _, s := range []Sample{r.Ours, r.Theirs} {
			if n < 0 || len(s) < n {
				n = len(s)
			}
		}
	}
	return max(n, 0)
}

// watchClaims records when each NodeClaim appears (Karpenter's node
// request), by its NodePool.
func watchClaims(ctx context.Context, k *karpenter, r *requests) error {
	f := dynamicinformer.NewDynamicSharedInformerFactory(k.dyn, 0)
	inf := f.ForResource(gvrNodeClaim).Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(o any) {
		now := time.Now()
		if u, ok := o.(*unstructured.Unstructured); ok {
			r.add(u.GetLabels()["karpenter.sh/nodepool"], now)
		}
	}}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return nil
}

// ourSide is the daemon, built as `run` builds it, on a fresh simulated
// world: default policy except min_workers 2 and max_workers 20
// (Karpenter's NodePool has no limit; the scenarios need more than the
// default 6).
type ourSide struct {
	w      *world.World
	d      *daemon.Daemon
	cancel context.CancelFunc
	done   chan struct{}
}

func startOurs(ctx context.Context, env *kubetest.Env, work string, sl slot, reqs *requests) (*ourSide, error) {
	lat := pvesim.DefaultLatencies()
	w, err := world.New(env, world.Options{Latencies: &lat, BootDelay: talosBoot, InstallDelay: talosInstall})
	if err != nil {
		return nil, err
	}
	cfg := w.Config()
	cfg.Policy.MinWorkers, cfg.Policy.MaxWorkers = baseWorkers, maxWorkers
	// The slot's own Nodes: a name prefix (every world numbers its VMs
	// from the same range), a label from a Talos patch, and the selector
	// that picks them.
	patch := filepath.Join(work, "slot-"+sl.id()+".yaml")
	if err := os.WriteFile(patch, []byte(sl.patch()), 0o600); err != nil {
		w.Close()
		return nil, err
	}
	cfg.Talos.PatchFiles = append(cfg.Talos.PatchFiles, patch)
	cfg.Proxmox.NamePrefix = sl.namePrefix()
	cfg.Kubernetes.WorkerSelector = sl.workerSelector()
	logFile := filepath.Join(work, "pve-autoscaler-"+sl.id()+".log")
	// world.Config's timeouts are the fast tests'; the defaults' are
	// minutes: one minute is above every injected latency.
	cfg.Proxmox.AgentTimeout = config.Duration(time.Minute)
	cfg.Proxmox.TaskTimeout = config.Duration(time.Minute)
	s := &ourSide{w: w, done: make(chan struct{})}
	w.Sim.OnRequest(func(method, route string) {
		if method+" "+route == cloneRoute {
			reqs.add(sl.ours(), time.Now())
		}
	})
	dctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	// The daemon's log, as `run` writes it, in the run's folder.
	lc := zap.NewProductionConfig()
	lc.OutputPaths, lc.ErrorOutputPaths = []string{logFile}, []string{logFile}
	log, err := lc.Build()
	if err != nil {
		cancel()
		w.Close()
		return nil, err
	}
	d, err := daemon.Build(dctx, cfg, daemon.Options{TalosPort: w.TalosPort, Log: log, Version: "peers"})
	if err != nil {
		cancel()
		w.Close()
		return nil, err
	}
	s.d = d
	go func() {
		defer close(s.done)
		d.Reconciler.Run(dctx, cfg.Policy.Interval.D(), nil)
	}()
	// The minimum comes up first: both sides start on two Ready workers.
	if err := until(ctx, 5*time.Minute, func() bool { return readyNodes(ctx, env.Client, sl.workerSelector()) == baseWorkers }); err != nil {
		s.stop()
		return nil, fmt.Errorf("our two workers: %w", err)
	}
	return s, nil
}

func (s *ourSide) stop() {
	s.cancel()
	<-s.done
	s.d.Reconciler.Wait()
	s.w.Close()
}

func readyNodes(ctx context.Context, c kubernetes.Interface, sel string) int {
	list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return -1
	}
	n := 0
	for _, nd := range list.Items {
		for _, cond := range nd.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue && !nd.Spec.Unschedulable {
				n++
			}
		}
	}
	return n
}

func runScenario(ctx context.Context, o Options, work string, env *kubetest.Env, karp *karpenter, reqs *requests, sl slot, trace simulate.Trace, res *results) (err error) {
	sc := sl.scenario
	if err := karp.createNodePool(ctx, sl); err != nil {
		return fmt.Errorf("NodePool: %w", err)
	}
	defer func() {
		if derr := karp.deleteNodePool(context.WithoutCancel(ctx), env, sl); derr != nil && err == nil {
			err = fmt.Errorf("deleting the NodePool: %w", derr)
		}
	}()
	// Karpenter's side starts on two workers as ours does: two Nodes of
	// the same size that are not Karpenter's (it never removes them).
	for i := 1; i <= baseWorkers; i++ {
		name := fmt.Sprintf("k-%s-base-%d", sl.id(), i)
		if err := env.CreateNode(ctx, kubetest.NodeSpec{Name: name, CPU: "4", Memory: "8Gi", Labels: map[string]string{slotLabel: sl.theirs()}}); err != nil {
			return err
		}
		defer func() {
			_ = env.Client.CoreV1().Nodes().Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{})
		}()
	}
	if err := until(ctx, time.Minute, func() bool { return readyNodes(ctx, env.Client, slotLabel+"="+sl.theirs()) == baseWorkers }); err != nil {
		return fmt.Errorf("the two base Nodes of Karpenter: %w", err)
	}
	us, err := startOurs(ctx, env, work, sl, reqs)
	if err != nil {
		return err
	}
	defer us.stop()
	mk := func(name, who, label string, req func() []time.Time) (*side, error) {
		ns := fmt.Sprintf("peers-%s-%s", sl.id(), who)
		if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		nodeSel := slotLabel + "=" + label
		tr, err := newTracker(ctx, env.Client, nodeSel, ns)
		if err != nil {
			return nil, err
		}
		return &side{name: name, ns: ns, selector: map[string]string{slotLabel: label}, nodeSel: nodeSel, requests: req, tr: tr, c: env.Client, env: env}, nil
	}
	a, err := mk(ours, "ours", sl.ours(), reqs.of(sl.ours()))
	if err != nil {
		return err
	}
	b, err := mk(theirs, "karpenter", sl.theirs(), reqs.of(sl.nodePool()))
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range []*side{a, b} {
			s.tr.close()
			_ = s.c.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), s.ns, metav1.DeleteOptions{})
		}
		for _, s := range []*side{a, b} {
			_ = until(context.WithoutCancel(ctx), 3*time.Minute, func() bool {
				_, err := s.c.CoreV1().Namespaces().Get(context.WithoutCancel(ctx), s.ns, metav1.GetOptions{})
				return apierrors.IsNotFound(err)
			})
		}
	}()
	if sc == "diurnal" {
		got, err := diurnal(ctx, o, trace, a, b)
		if err != nil {
			return err
		}
		for i, s := range []*side{a, b} {
			res.add(s.name, sc, got[i])
			fmt.Fprintf(o.Out, "  %s %s: %s\n", sl.id(), s.name, show(got[i]))
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*side{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got map[string]float64
			switch sc {
			case "burst":
				var drain map[string]float64
				got, drain, errs[i] = burst(ctx, o, s)
				if drain != nil {
					res.add(s.name, "drain-down", drain)
					fmt.Fprintf(o.Out, "  %s %s drain-down: %s\n", sl.id(), s.name, show(drain))
				}
			case "mixed":
				got, errs[i] = mixed(ctx, s)
			}
			if got != nil {
				res.add(s.name, sc, got)
				fmt.Fprintf(o.Out, "  %s %s: %s\n", sl.id(), s.name, show(got))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func show(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.1f", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// deploy creates a Deployment of replicas pods of one size on the side.
func deploy(ctx context.Context, s *side, name string, replicas int32, cpu, mem string) error {
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ns}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeSelector: s.selector,
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}}}}}}}}
	_, err := s.c.AppsV1().Deployments(s.ns).Create(ctx, dep, metav1.CreateOptions{})
	return err
}

func scale(ctx context.Context, s *side, name string, replicas int) error {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	_, err := s.c.AppsV1().Deployments(s.ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// waitFor polls the tracker (its figures come from watch events; the
// poll only decides when to stop).
func waitFor(ctx context.Context, s *side, limit time.Duration, cond func(snapshot) bool) (snapshot, bool) {
	deadline := time.Now().Add(limit)
	for {
		sn := s.tr.snap()
		if cond(sn) {
			return sn, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return sn, false
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// burst: 40 pods of 500m / 512Mi at once on two workers (two Deployments
// of 20, "web" with a PodDisruptionBudget of maxUnavailable 1); then the
// drain-down: both scaled to 20% (4 each) and the wait until the side is
// back at its two workers.
func burst(ctx context.Context, o Options, s *side) (up, down map[string]float64, err error) {
	t0 := time.Now()
	for _, n := range []string{"web", "batch"} {
		if err := deploy(ctx, s, n, 20, "500m", "512Mi"); err != nil {
			return nil, nil, err
		}
	}
	one := intstr.FromInt32(1)
	if _, err := s.c.PolicyV1().PodDisruptionBudgets(s.ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}, metav1.CreateOptions{}); err != nil {
		return nil, nil, err
	}
	sn, ok := waitFor(ctx, s, 10*time.Minute, func(sn snapshot) bool { return sn.running == 40 })
	if !ok {
		return nil, nil, fmt.Errorf("%s: %d of 40 pods Running after 10 minutes", s.name, sn.running)
	}
	up = map[string]float64{"running": sn.lastRun.Sub(t0).Seconds(), "added": float64(sn.adds)}
	if r := s.firstRequestAfter(t0); !r.IsZero() {
		up["first"] = r.Sub(t0).Seconds()
	}
	t1 := time.Now()
	for _, n := range []string{"web", "batch"} {
		if err := scale(ctx, s, n, 4); err != nil {
			return up, nil, err
		}
	}
	end, ok := waitFor(ctx, s, o.DrainLimit, func(sn snapshot) bool { return sn.nodes == baseWorkers && sn.running == 8 })
	back := o.DrainLimit.Seconds()
	if ok {
		back = math.Max(end.lastNode.Sub(t1).Seconds(), 0)
	}
	down = map[string]float64{"back": back, "violations": float64(end.violations - sn.violations), "evictions": float64(end.created - sn.created)}
	return up, down, nil
}

// mixed: 30 pods of three sizes at once; packing once they settle (all
// Running and no Node added or removed for 90 s).
func mixed(ctx context.Context, s *side) (map[string]float64, error) {
	t0 := time.Now()
	for _, d := range []struct {
		name     string
		n        int32
		cpu, mem string
	}{{"small", 12, "250m", "256Mi"}, {"medium", 10, "1", "1Gi"}, {"large", 8, "1500m", "3Gi"}} {
		if err := deploy(ctx, s, d.name, d.n, d.cpu, d.mem); err != nil {
			return nil, err
		}
	}
	sn, ok := waitFor(ctx, s, 10*time.Minute, func(sn snapshot) bool { return sn.running == 30 })
	if !ok {
		return nil, fmt.Errorf("%s: %d of 30 pods Running after 10 minutes", s.name, sn.running)
	}
	got := map[string]float64{"running": sn.lastRun.Sub(t0).Seconds()}
	const quiet = 90 * time.Second
	end, _ := waitFor(ctx, s, 8*time.Minute, func(sn snapshot) bool {
		return sn.running == 30 && sn.at.Sub(sn.lastNode) >= quiet && sn.at.Sub(sn.lastRun) >= quiet
	})
	got["nodes"] = float64(end.nodes)
	if end.allocCPU > 0 {
		got["util"] = 100 * float64(end.reqCPU) / float64(end.allocCPU)
	}
	return got, nil
}

// diurnal replays the diurnal-week trace's CPU as replicas of 500m pods
// (cores / 0.5, rounded up) on both sides at once, the week compressed to
// o.Diurnal.
func diurnal(ctx context.Context, o Options, trace simulate.Trace, sides ...*side) ([]map[string]float64, error) {
	samples := trace.Samples
	if len(samples) < 2 {
		return nil, errors.New("diurnal trace has fewer than 2 samples")
	}
	span := samples[len(samples)-1].At
	factor := float64(o.Diurnal) / float64(span)
	replicas := func(cpu float64) int { return int(math.Ceil(cpu/0.5 - 1e-9)) }
	for _, s := range sides {
		if err := deploy(ctx, s, "diurnal", int32(replicas(samples[0].CPU)), "500m", "512Mi"); err != nil {
			return nil, err
		}
	}
	start := make([]snapshot, len(sides))
	for i, s := range sides {
		start[i] = s.tr.snap()
	}
	t0 := time.Now()
	last := -1
	for _, smp := range samples {
		at := t0.Add(time.Duration(float64(smp.At) * factor))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(at)):
		}
		n := replicas(smp.CPU)
		if n == last {
			continue
		}
		last = n
		for _, s := range sides {
			if err := scale(ctx, s, "diurnal", n); err != nil {
				return nil, err
			}
		}
	}
	out := make([]map[string]float64, len(sides))
	for i, s := range sides {
		end := s.tr.snap()
		out[i] = map[string]float64{"nodeMin": (end.nodeSec - start[i].nodeSec) / 60, "pendingMin": (end.pendingSec - start[i].pendingSec) / 60,
			"events": float64(end.adds - start[i].adds + end.removes - start[i].removes)}
	}
	return out, nil
}

// usage feeds the fake metrics API: each Node uses 90% of the CPU its
// Running pods request plus 100m, and their memory plus 600Mi (the
// demo's load model). Karpenter reads no metrics; our daemon does.
func usage(ctx context.Context, env *kubetest.Env) {
	for {
		pods, err := env.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		nodes, nerr := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil && nerr == nil {
			cpu, mem := map[string]int64{}, map[string]int64{}
			for _, p := range pods.Items {
				if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning {
					continue
				}
				for _, c := range p.Spec.Containers {
					cpu[p.Spec.NodeName] += c.Resources.Requests.Cpu().MilliValue()
					mem[p.Spec.NodeName] += c.Resources.Requests.Memory().Value()
				}
			}
			for _, n := range nodes.Items {
				c := int64(math.Round(float64(cpu[n.Name])*0.9)) + 100
				env.Metrics.SetNode(n.Name, fmt.Sprintf("%dm", c), fmt.Sprintf("%dMi", mem[n.Name]>>20+600))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}
