// Package demo runs pve-autoscaler's daemon, exactly as `run` runs it,
// against the simulated world (pvesim, fake Talos APIs, a real Kubernetes
// control plane with kwok) through a load ramp and back, with a general
// and a gpu worker pool, with a live view.
package demo

import (
	"context"
	"fmt"
	"io"
	"math"
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// Options tune the demo.
type Options struct {
	// Speed accelerates simulated time: latencies, windows, cooldowns (default 1).
	Speed float64
	Out   io.Writer
	// Log receives the daemon's own log (default: discarded).
	Log *zap.Logger
	// Scenario is "" (the load ramp and back) or ScenarioUpgrade.
	Scenario string
}

// ScenarioUpgrade is the short act of a rolling replacement: the
// template changes (a new Talos image) and, with policy.replace_drifted,
// the workers are replaced one at a time, a new one first.
const ScenarioUpgrade = "upgrade"

// Scenarios are the names Options.Scenario takes ("" is the default).
var Scenarios = []string{"", ScenarioUpgrade}

// Summary is what the demo measured.
type Summary struct {
	Peak            int
	TimeToCapacity  time.Duration
	NodeMinutes     float64
	ScaleUps        int
	ScaleDowns      int
	Duration        time.Duration
	FinalWorkers    int
	PendingObserved int
}

const ns = "demo"

// Run sets the world up, runs the scenario, prints the live view and the
// summary, and returns an error when the scenario did not reach the
// states it expects.
func Run(ctx context.Context, o Options) (Summary, error) {
	if o.Speed <= 0 {
		o.Speed = 1
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	o.Out = &lockedWriter{w: o.Out} // the live view and the scenario both write
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if !slices.Contains(Scenarios, o.Scenario) {
		return Summary{}, fmt.Errorf("unknown scenario %q: expected %q (or none)", o.Scenario, ScenarioUpgrade)
	}
	sc := func(d time.Duration) time.Duration { return time.Duration(float64(d) / o.Speed) }
	if miss := kubetest.Missing(); len(miss) > 0 {
		return Summary{}, fmt.Errorf("the Kubernetes binaries are not built (missing %s): run make kube-testbed (make demo does it)", strings.Join(miss, ", "))
	}
	fmt.Fprintf(o.Out, "setting up: etcd, kube-apiserver, kube-scheduler, kube-controller-manager and kwok on 127.0.0.1 ...\n")
	t0 := time.Now()
	env, err := kubetest.Start(kubetest.Options{})
	if err != nil {
		return Summary{}, err
	}
	defer env.Stop()
	lat := pvesim.Latencies{LinkedClone: sc(3 * time.Second), FullCloneBandwidth: 200 << 20, Start: sc(2 * time.Second), Stop: sc(time.Second),
		Shutdown: sc(5 * time.Second), Destroy: sc(2 * time.Second), Config: sc(300 * time.Millisecond), Agent: sc(12 * time.Second),
		AuthFailure: sc(time.Second), StorageLock: sc(10 * time.Second)}
	w, err := world.New(env, world.Options{Latencies: &lat, InstallDelay: sc(30 * time.Second),
		// One iGPU, on pve2, as a PCI resource mapping; its device plugin
		// advertises gpu.intel.com/i915 on the Node of the VM that has it.
		PVE: func(pw *pvesim.World) {
			pw.PCIMappings = []pvesim.PCIMappingSpec{{ID: "igpu", Map: []pvesim.PCIMapEntry{{Node: "pve2", Path: "0000:00:02.0", ID: "8086:46a6"}}}}
		},
		Devices: map[string]map[string]string{"igpu": {gpuResource: "1"}},
	})
	if err != nil {
		return Summary{}, err
	}
	defer w.Close()
	fmt.Fprintf(o.Out, "setting up: pvesim (3 hosts, Talos template 9000) at %s, fake Talos APIs on %s (%s)\n", w.PVE.URL, w.IPPool, time.Since(t0).Round(100*time.Millisecond))

	cfg := w.Config()
	p := &cfg.Policy
	p.MinWorkers, p.MaxWorkers = 2, 7
	// Two worker pools: general workers for the web pods, and at most one
	// gpu worker with the iGPU passed through for Plex.
	tpl := cfg.Proxmox.Template
	cfg.Proxmox.Template = config.VMRef{}
	cfg.Pools = []config.Pool{
		{Name: "general", Template: tpl, VM: cfg.Proxmox.VM, MinWorkers: 2, MaxWorkers: 6},
		{Name: "gpu", Template: tpl, VM: cfg.Proxmox.VM, MaxWorkers: 1,
			PCI:      []config.PCI{{Mapping: "igpu"}},
			Labels:   map[string]string{gpuLabel: "igpu"},
			Taints:   []config.Taint{{Key: gpuLabel, Value: "igpu", Effect: "NoSchedule"}},
			Capacity: map[string]config.Units{gpuResource: 1}},
	}
	p.Interval = config.Duration(sc(10 * time.Second))
	p.ScaleUpAfter, p.ScaleDownAfter = config.Duration(sc(20*time.Second)), config.Duration(sc(30*time.Second))
	p.Cooldown = config.Cooldown{AfterScaleUp: config.Duration(sc(60 * time.Second)), AfterScaleDown: config.Duration(sc(20 * time.Second)), AfterFailure: config.Duration(sc(60 * time.Second))}
	p.PendingPods.Grace = config.Duration(sc(10 * time.Second))
	p.MaxNodesPerStep = 4
	p.Drain.Timeout = config.Duration(sc(2 * time.Minute))
	p.MaxProvisionTime = config.Duration(sc(5 * time.Minute))
	cfg.Proxmox.TaskTimeout = config.Duration(sc(2 * time.Minute))
	cfg.Proxmox.AgentTimeout = config.Duration(sc(2 * time.Minute))
	cfg.Proxmox.ShutdownTimeout = config.Duration(sc(20 * time.Second))
	cfg.Proxmox.MaxParallel = 3

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	metrics := daemon.NewMetrics()
	do := daemon.Options{Log: o.Log, TalosPort: w.TalosPort, Poll: sc(500 * time.Millisecond), Observer: metrics, Version: "demo"}
	if o.Scenario == ScenarioUpgrade {
		p.ReplaceDrifted = true
		do.TemplateCheck = sc(10 * time.Second) // the template's digest read again this often
	}
	d, err := daemon.Build(runCtx, cfg, do)
	if err != nil {
		return Summary{}, err
	}
	if err := load(runCtx, env, 4); err != nil {
		return Summary{}, err
	}
	go usage(runCtx, env, sc(2*time.Second))

	s := &scenario{o: o, env: env, world: w, start: time.Now(), speed: o.Speed}
	srv := daemon.NewServer(d.Reconciler, metrics, cfg.Policy.Interval.D())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Reconciler.Run(runCtx, cfg.Policy.Interval.D(), func(pl scaler.Plan, err error) {
			srv.Ticked(pl, err)
			s.tick(pl, err)
		})
	}()
	fmt.Fprintf(o.Out, "\n%-6s %-28s %-8s %-8s %-8s %s\n", "TIME", "WORKERS", "CPU", "MEMORY", "PENDING", "ACTION")
	if o.Scenario == ScenarioUpgrade {
		err = s.upgrade(runCtx, sc)
	} else {
		err = s.drive(runCtx, sc)
	}
	final := s.ready(runCtx)
	stop()
	<-done
	sum := s.summary()
	sum.FinalWorkers = final
	fmt.Fprintf(o.Out, "\nsummary: peak %d workers, time to capacity %s, %.1f node-minutes, %d scale-ups, %d scale-downs, %s in all (speed %gx)\n",
		sum.Peak, sum.TimeToCapacity.Round(time.Second), sum.NodeMinutes, sum.ScaleUps, sum.ScaleDowns, sum.Duration.Round(time.Second), o.Speed)
	return sum, err
}

type scenario struct {
	o     Options
	env   *kubetest.Env
	world *world.World
	start time.Time
	speed float64

	mu          sync.Mutex
	workers     int
	peak        int
	pending     int
	maxPending  int
	ups, downs  int
	nodeSeconds float64
	lastTick    time.Time
	rampAt      time.Time
	capacityAt  time.Time
}

func (s *scenario) tick(p scaler.Plan, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !s.lastTick.IsZero() {
		s.nodeSeconds += float64(s.workers) * now.Sub(s.lastTick).Seconds() * s.speed
	}
	s.lastTick = now
	el := time.Duration(float64(now.Sub(s.start)) * s.speed)
	if err != nil {
		fmt.Fprintf(s.o.Out, "%-6s tick failed: %v\n", clock(el), err)
		return
	}
	w := p.Workers
	s.workers = w.Ready
	s.peak = max(s.peak, w.Ready)
	cpu, mem := "-", "-"
	if u := p.Utilization; u != nil {
		cpu, mem = fmt.Sprintf("%.0f%%", u.CPU), fmt.Sprintf("%.0f%%", u.Memory)
	}
	action := "-"
	for _, a := range p.Actions {
		reason := ""
		if len(a.Reasons) > 0 {
			reason = a.Reasons[0].Message
		}
		switch a.Kind {
		case scaler.ActionAdd:
			s.ups += a.Count
			action = fmt.Sprintf("add %d: %s", a.Count, reason)
		case scaler.ActionRemove:
			s.downs++
			action = fmt.Sprintf("remove %s: %s", a.Node, reason)
		case scaler.ActionReplace:
			action = fmt.Sprintf("replace %s: %s", a.Node, reason)
		}
	}
	if action == "-" && len(p.Holds) > 0 {
		action = "hold: " + p.Holds[0].Message
	}
	if len(action) > 110 {
		action = action[:107] + "..."
	}
	fmt.Fprintf(s.o.Out, "%-6s %-28s %-8s %-8s %-8d %s\n", clock(el),
		fmt.Sprintf("%d ready, %d prov, %d rm", w.Ready, w.Provisioning+w.NotReady, w.Removing), cpu, mem, s.pending, action)
}

func clock(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// waitFor checks cond every 200ms until it holds, ctx ends or limit
// passes; each (if any) runs after every check that failed.
func waitFor(ctx context.Context, what string, limit time.Duration, cond func() bool, each func()) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("scenario: %s did not happen within %s", what, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if each != nil {
			each()
		}
	}
	return nil
}

// upgrade is the rolling replacement's act: with the two general workers
// up and the web pods (under their PodDisruptionBudget) running, the
// template changes; every worker is replaced, one at a time, a new one
// first, never fewer than two Ready.
func (s *scenario) upgrade(ctx context.Context, sc func(time.Duration) time.Duration) error {
	wait := func(what string, limit time.Duration, cond func() bool) error {
		return waitFor(ctx, what, limit, cond, nil)
	}
	if err := wait("2 Ready workers and the web pods", sc(3*time.Minute)+30*time.Second, func() bool {
		return s.ready(ctx) == 2 && s.available(ctx, "web") == 4
	}); err != nil {
		return err
	}
	old := map[string]bool{}
	for _, n := range s.nodes(ctx) {
		old[n.Name] = true
	}
	fmt.Fprintf(s.o.Out, "---- upgrade: template 9000 changes (a new Talos image): %d workers drifted, policy.replace_drifted rolls them\n", len(old))
	s.world.Sim.SetTemplateAgent(9000, true)
	fewest := 2
	err := wait("every worker replaced", sc(15*time.Minute)+30*time.Second, func() bool {
		fewest = min(fewest, s.ready(ctx))
		if s.managed(ctx) != 2 || s.ready(ctx) != 2 {
			return false
		}
		for _, n := range s.nodes(ctx) {
			if old[n.Name] {
				return false
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	if fewest < 2 {
		return fmt.Errorf("scenario: %d Ready workers during the upgrade, below the minimum of 2", fewest)
	}
	if n := s.available(ctx, "web"); n != 4 {
		return fmt.Errorf("scenario: %d web replicas available after the upgrade, want 4", n)
	}
	fmt.Fprintf(s.o.Out, "---- upgrade done: both workers replaced one at a time, never fewer than 2 Ready, the web pods drained under their PodDisruptionBudget (maxUnavailable 1)\n")
	return nil
}

// drive runs the load ramp and checks the states the scenario expects.
func (s *scenario) drive(ctx context.Context, sc func(time.Duration) time.Duration) error {
	wait := func(what string, limit time.Duration, cond func() bool) error {
		return waitFor(ctx, what, limit, cond, func() { s.countPending(ctx) })
	}
	if err := wait("2 Ready workers", sc(3*time.Minute)+30*time.Second, func() bool { return s.ready(ctx) == 2 }); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(sc(20 * time.Second)):
	}
	s.mu.Lock()
	s.rampAt = time.Now()
	s.mu.Unlock()
	fmt.Fprintf(s.o.Out, "---- load ramp: web 4 -> 26 replicas (13 cores requested on 2 workers of 4 cores)\n")
	if err := load(ctx, s.env, 26); err != nil {
		return err
	}
	fmt.Fprintf(s.o.Out, "---- movie night: Plex asks for the iGPU (%s: 1), and a pod asks for a node selector no pool has\n", gpuResource)
	if err := plex(ctx, s.env, 1); err != nil {
		return err
	}
	if err := impossible(ctx, s.env); err != nil {
		return err
	}
	if err := wait("scale-up to capacity", sc(6*time.Minute)+30*time.Second, func() bool {
		return s.ready(ctx) >= 5 && s.countPending(ctx) == 1 && s.available(ctx, "web") == 26 && s.available(ctx, "plex") == 1
	}); err != nil {
		return err
	}
	s.mu.Lock()
	s.capacityAt = time.Now()
	s.mu.Unlock()
	fmt.Fprintf(s.o.Out, "---- capacity reached: all 26 web replicas and Plex running on %d workers\n", s.ready(ctx))
	if err := s.gpuWorker(ctx); err != nil {
		return err
	}
	if err := wait("NotTriggerScaleUp on the impossible pod", sc(time.Minute)+30*time.Second, func() bool { return s.notTriggered(ctx) != "" }); err != nil {
		return err
	}
	fmt.Fprintf(s.o.Out, "---- the impossible pod stays pending, no worker made for it: %s\n", s.notTriggered(ctx))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(sc(40 * time.Second)):
	}
	fmt.Fprintf(s.o.Out, "---- load falls: web 26 -> 4 replicas, Plex stops, the impossible pod is deleted\n")
	if err := load(ctx, s.env, 4); err != nil {
		return err
	}
	if err := plex(ctx, s.env, 0); err != nil {
		return err
	}
	if err := s.env.Client.CoreV1().Pods(ns).Delete(ctx, "impossible", metav1.DeleteOptions{}); err != nil {
		return err
	}
	return wait("scale-down to 2 workers", sc(10*time.Minute)+30*time.Second, func() bool { return s.ready(ctx) == 2 && s.managed(ctx) == 2 })
}

func (s *scenario) summary() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := Summary{Peak: s.peak, NodeMinutes: s.nodeSeconds / 60, ScaleUps: s.ups, ScaleDowns: s.downs, FinalWorkers: s.workers, PendingObserved: s.maxPending,
		Duration: time.Duration(float64(time.Since(s.start)) * s.speed)}
	if !s.capacityAt.IsZero() {
		sum.TimeToCapacity = time.Duration(float64(s.capacityAt.Sub(s.rampAt)) * s.speed)
	}
	return sum
}

func (s *scenario) nodes(ctx context.Context) []corev1.Node {
	list, err := s.env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
	if err != nil {
		return nil
	}
	return list.Items
}

func (s *scenario) ready(ctx context.Context) int {
	n := 0
	for _, nd := range s.nodes(ctx) {
		for _, c := range nd.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !nd.Spec.Unschedulable {
				n++
			}
		}
	}
	return n
}

func (s *scenario) managed(ctx context.Context) int { return len(s.nodes(ctx)) }

func (s *scenario) countPending(ctx context.Context) int {
	pods, err := s.env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Pending"})
	if err != nil {
		return -1
	}
	s.mu.Lock()
	s.pending = len(pods.Items)
	s.maxPending = max(s.maxPending, s.pending)
	s.mu.Unlock()
	return len(pods.Items)
}

func (s *scenario) available(ctx context.Context, name string) int {
	dep, err := s.env.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return -1
	}
	return int(dep.Status.AvailableReplicas)
}

// gpuWorker checks and shows the gpu pool's worker: on the host with the
// iGPU, the device passed through, its Node labelled and tainted, Plex on it.
func (s *scenario) gpuWorker(ctx context.Context) error {
	var vms []pvesim.VM
	for _, v := range s.world.Sim.VMs() {
		if slices.Contains(v.Tags, "pool-gpu") {
			vms = append(vms, v)
		}
	}
	if len(vms) != 1 {
		return fmt.Errorf("scenario: %d gpu-pool VMs, want 1", len(vms))
	}
	v := vms[0]
	if v.Host != "pve2" || v.HostPCI["hostpci0"] != "mapping=igpu" {
		return fmt.Errorf("scenario: the gpu worker %s is on %s with %v, want pve2 with hostpci0: mapping=igpu", v.Name, v.Host, v.HostPCI)
	}
	pods, err := s.env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=plex"})
	if err != nil {
		return err
	}
	if len(pods.Items) != 1 || pods.Items[0].Spec.NodeName != v.Name {
		return fmt.Errorf("scenario: Plex is not on the gpu worker %s", v.Name)
	}
	fmt.Fprintf(s.o.Out, "---- gpu worker %s on %s with hostpci0: mapping=igpu runs Plex; the web pods stay off it (taint %s=igpu:NoSchedule)\n", v.Name, v.Host, gpuLabel)
	return nil
}

// notTriggered is the NotTriggerScaleUp event's message on the impossible
// pod ("" before there is one).
func (s *scenario) notTriggered(ctx context.Context) string {
	evs, err := s.env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=impossible,reason=" + scaler.EventNotTriggerScaleUp})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	return evs.Items[0].Message
}

const (
	gpuLabel    = "gpu.example/kind"
	gpuResource = "gpu.intel.com/i915"
)

// setReplicas sets a Deployment's replicas with a patch (an update would
// race the deployment controller's status writes and fail on a conflict);
// done is false when the Deployment does not exist yet.
func setReplicas(ctx context.Context, env *kubetest.Env, name string, replicas int32) (bool, error) {
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))
	_, err := env.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return true, err
}

// plex sets the Plex Deployment's replicas (creating it the first time):
// one pod that needs the iGPU and tolerates the gpu pool's taint.
func plex(ctx context.Context, env *kubetest.Env, replicas int32) error {
	c := env.Client
	if done, err := setReplicas(ctx, env, "plex", replicas); done {
		return err
	}
	labels := map[string]string{"app": "plex"}
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("2Gi"), gpuResource: resource.MustParse("1")}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "plex", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			Tolerations: []corev1.Toleration{{Key: gpuLabel, Operator: corev1.TolerationOpEqual, Value: "igpu", Effect: corev1.TaintEffectNoSchedule}},
			Containers: []corev1.Container{{Name: "plex", Image: "registry.example/plex:1", Resources: corev1.ResourceRequirements{
				Requests: req, Limits: corev1.ResourceList{gpuResource: resource.MustParse("1")}}}}}}}}
	_, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
	return err
}

// impossible creates a pod whose node selector no pool's Nodes carry.
func impossible(ctx context.Context, env *kubetest.Env) error {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "impossible", Namespace: ns}, Spec: corev1.PodSpec{
		NodeSelector: map[string]string{"disktype": "nvme"},
		Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}}
	_, err := env.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	return err
}

// load sets the web Deployment's replicas (creating it, its namespace and
// its PodDisruptionBudget the first time).
func load(ctx context.Context, env *kubetest.Env, replicas int32) error {
	c := env.Client
	if done, err := setReplicas(ctx, env, "web", replicas); done {
		return err
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeSelector: map[string]string{scaler.LabelManaged: "true"},
			Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("512Mi")}}}}}}}}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return err
	}
	// At most one web pod away at a time: drains wait for replacements.
	one := intstr.FromInt32(1)
	_, err := c.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}}}, metav1.CreateOptions{})
	return err
}

// usage is the load model: each node uses 90% of the CPU its pods request
// plus 100m for the system, and its pods' memory requests plus 600Mi.
func usage(ctx context.Context, env *kubetest.Env, every time.Duration) {
	for {
		pods, err := env.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err == nil {
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
			nodes, _ := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			names := []string{}
			if nodes != nil {
				for _, n := range nodes.Items {
					names = append(names, n.Name)
				}
			}
			sort.Strings(names)
			for _, n := range names {
				c := int64(math.Round(float64(cpu[n])*0.9)) + 100
				env.Metrics.SetNode(n, fmt.Sprintf("%dm", c), fmt.Sprintf("%dMi", mem[n]>>20+600))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
