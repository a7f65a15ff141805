package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/simulate"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// Realistic latencies for the benchmarks: PVE's (pvesim.DefaultLatencies:
// linked clone 3s, config 0.5s, start 2s, guest agent 15s after start),
// the Talos maintenance API 20s after start, install and reboot 10s (real
// ones take 60-120s; nothing of ours runs meanwhile, so it is shortened).
const (
	benchBoot    = 20 * time.Second
	benchInstall = 10 * time.Second
	cloneRoute   = "POST /nodes/{node}/qemu/{vmid}/clone"
)

// bigPod is one pod requesting most of a worker, so each needs a new one.
func bigPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{scaler.LabelManaged: "true"},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3"), corev1.ResourceMemory: resource.MustParse("256Mi")}}}},
		},
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// BenchmarkScaleUpLatency measures one scale-up for one unschedulable pod,
// end to end through the real adapters and the daemon's run loop, against
// realistic injected latencies. Reported:
//
//	pending-to-clone-ms  the pod's creation to the clone request at PVE (goal < 1000)
//	trigger-to-ready-s   the pod's creation to its new Node Ready
//	injected-s           the latencies the world put on that path: PVE tasks,
//	                     max(guest agent, Talos boot), install, kubelet Ready
//	overhead-ms          trigger-to-ready less injected: ours (goal < 2000)
//
// Run: make bench-e2e (or go test ./daemon -run '^$' -bench ScaleUpLatency -benchtime 3x).
func BenchmarkScaleUpLatency(b *testing.B) {
	env := kubetest.Require(b)
	lat := pvesim.DefaultLatencies()
	w, err := world.New(env, world.Options{Latencies: &lat, BootDelay: benchBoot, InstallDelay: benchInstall})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Close)
	cfg := w.Config()
	cfg.Policy.MinWorkers, cfg.Policy.MaxWorkers = 1, b.N+2
	cfg.Policy.PendingPods.Grace = 0
	cfg.Policy.MaxNodesPerStep = 1
	cfg.Proxmox.AgentTimeout = config.Duration(time.Minute)
	cfg.Proxmox.TaskTimeout = config.Duration(time.Minute)

	var mu sync.Mutex
	var clones []time.Time
	w.Sim.OnRequest(func(method, route string) {
		if method+" "+route == cloneRoute {
			mu.Lock()
			clones = append(clones, time.Now())
			mu.Unlock()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	d, err := Build(ctx, cfg, Options{TalosPort: w.TalosPort, Log: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	go d.Reconciler.Run(ctx, cfg.Policy.Interval.D(), nil)

	ns := env.Namespace(b)
	nodes, err := env.Client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
	if err != nil {
		b.Fatal(err)
	}
	defer nodes.Stop()
	// waitNode returns when a Node not seen before is Ready, with the
	// PVE task time read when it registered.
	seen := map[string]bool{}
	waitNode := func() (name string, at time.Time, taskTime time.Duration) {
		timeout := time.After(5 * time.Minute)
		for {
			select {
			case ev := <-nodes.ResultChan():
				n, ok := ev.Object.(*corev1.Node)
				if !ok || seen[n.Name] {
					continue
				}
				if ev.Type == watch.Added && taskTime == 0 {
					taskTime = w.Sim.TaskTime()
				}
				if nodeReady(n) {
					seen[n.Name] = true
					if taskTime == 0 {
						taskTime = w.Sim.TaskTime()
					}
					return n.Name, time.Now(), taskTime
				}
			case <-timeout:
				b.Fatal("no new Node Ready within 5 minutes")
			}
		}
	}
	waitNode() // the minimum's first worker
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, bigPod(ns, "filler"), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var pending, ready, injected, overhead time.Duration
	b.ResetTimer()
	for i := range b.N {
		mu.Lock()
		before := len(clones)
		mu.Unlock()
		tasksBefore := w.Sim.TaskTime()
		trigger := time.Now()
		if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, bigPod(ns, fmt.Sprintf("load-%d", i)), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		name, readyAt, tasks := waitNode()
		mu.Lock()
		if len(clones) <= before {
			b.Fatal("a Node became Ready without a clone")
		}
		cloneAt := clones[before]
		mu.Unlock()
		joinedAt := w.JoinedAt(name)
		inj := (tasks - tasksBefore) + max(lat.Agent, benchBoot) + benchInstall + readyAt.Sub(joinedAt)
		pending += cloneAt.Sub(trigger)
		ready += readyAt.Sub(trigger)
		injected += inj
		overhead += readyAt.Sub(trigger) - inj
		b.Logf("%s: pending->clone %s, trigger->Ready %s, injected %s (PVE tasks %s, kubelet Ready %s)", name,
			cloneAt.Sub(trigger).Round(time.Millisecond), readyAt.Sub(trigger).Round(time.Millisecond), inj.Round(time.Millisecond),
			(tasks - tasksBefore).Round(time.Millisecond), readyAt.Sub(joinedAt).Round(time.Millisecond))
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(pending.Milliseconds())/n, "pending-to-clone-ms")
	b.ReportMetric(ready.Seconds()/n, "trigger-to-ready-s")
	b.ReportMetric(injected.Seconds()/n, "injected-s")
	b.ReportMetric(float64(overhead.Milliseconds())/n, "overhead-ms")
}

// BenchmarkIdleTick counts the PVE API calls of one decision when nothing
// needs doing (goal: at most 2).
func BenchmarkIdleTick(b *testing.B) {
	env := kubetest.Require(b)
	w, err := world.New(env, world.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Close)
	cfg := w.Config()
	cfg.Policy.MinWorkers, cfg.Policy.MaxWorkers = 2, 6
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	d, err := Build(ctx, cfg, Options{TalosPort: w.TalosPort, Log: zap.NewNop(), Poll: 5 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	// Bring the minimum up and settle.
	deadline := time.Now().Add(time.Minute)
	for {
		p, err := d.Reconciler.Tick(ctx)
		if err == nil && p.Workers.Ready == 2 && p.Workers.Provisioning == 0 && len(d.Reconciler.Status().Operations) == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("minimum not reached: %+v", p.Workers)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.Reconciler.Wait()
	total := func() int {
		n := 0
		for _, c := range w.Sim.Requests() {
			n += c
		}
		return n
	}
	before, writes := total(), w.Sim.Writes()
	b.ResetTimer()
	for range b.N {
		p, err := d.Reconciler.Tick(ctx)
		if err != nil || p.Added() > 0 {
			b.Fatalf("idle tick acted: %v %+v", err, p.Actions)
		}
	}
	b.StopTimer()
	if w.Sim.Writes() != writes {
		b.Fatalf("idle ticks wrote to PVE %d times", w.Sim.Writes()-writes)
	}
	b.ReportMetric(float64(total()-before)/float64(b.N), "pve-calls/tick")
}

// BenchmarkTimeToCapacity2to6 starts from two Ready workers, each filled by
// a pod, and creates four pods that each need a worker of their own: the
// time until all four run is the time to capacity from 2 to 6 workers, with
// the default policy (max_nodes_per_step 3, so the fourth worker comes at
// the next check) and the realistic latencies above. Reported: capacity-s,
// and model-s, what `simulate`'s model says for the same step and latencies.
//
// Run: go test ./daemon -run '^$' -bench TimeToCapacity2to6 -benchtime 1x
func BenchmarkTimeToCapacity2to6(b *testing.B) {
	env := kubetest.Require(b)
	lat := pvesim.DefaultLatencies()
	var total time.Duration
	for i := range b.N {
		b.StopTimer()
		w, err := world.New(env, world.Options{Latencies: &lat, BootDelay: benchBoot, InstallDelay: benchInstall})
		if err != nil {
			b.Fatal(err)
		}
		cfg := w.Config()
		cfg.Policy.PendingPods.Grace = 0
		cfg.Proxmox.AgentTimeout = config.Duration(time.Minute)
		cfg.Proxmox.TaskTimeout = config.Duration(time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		d, err := Build(ctx, cfg, Options{TalosPort: w.TalosPort, Log: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		go d.Reconciler.Run(ctx, cfg.Policy.Interval.D(), nil)
		ns := env.Namespace(b)
		running := func(prefix string) int {
			pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for _, p := range pods.Items {
				if p.Spec.NodeName != "" && len(p.Name) >= len(prefix) && p.Name[:len(prefix)] == prefix {
					n++
				}
			}
			return n
		}
		waitPods := func(prefix string, n int) time.Time {
			deadline := time.Now().Add(5 * time.Minute)
			for running(prefix) < n {
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d %s pods placed", running(prefix), n, prefix)
				}
				time.Sleep(50 * time.Millisecond)
			}
			return time.Now()
		}
		for j := range 2 {
			if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, bigPod(ns, fmt.Sprintf("filler-%d-%d", i, j)), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		waitPods("filler-", 2) // the minimum's two workers, filled
		time.Sleep(time.Second)
		b.StartTimer()
		trigger := time.Now()
		for j := range 4 {
			if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, bigPod(ns, fmt.Sprintf("load-%d-%d", i, j)), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		done := waitPods("load-", 4)
		b.StopTimer()
		total += done.Sub(trigger)
		b.Logf("2 -> 6 workers: all 4 pods placed %s after they were created", done.Sub(trigger).Round(time.Millisecond))
		cancel()
		d.Reconciler.Wait()
		w.Close()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "capacity-s")

	// The same step through simulate's model, with these latencies.
	cfg := config.Default()
	cfg.Policy.PendingPods.Grace = 0
	policy, err := ScalerPolicy(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	setup := simulate.SetupFrom(&cfg, policy)
	m := simulate.DefaultModel()
	m.LinkedClone, m.Configure, m.Start, m.Maintenance, m.Join = lat.LinkedClone, 0, lat.Start, max(lat.Agent, benchBoot), benchInstall
	m.Pod = scaler.Resources{MilliCPU: 3000, Memory: 256 << 20}
	tr, err := simulate.ParseTrace("step", strings.NewReader(simulate.TraceHeader+"\n0,0,0,2\n600,0,0,6\n1800,0,0,6\n"))
	if err != nil {
		b.Fatal(err)
	}
	res := simulate.Run(tr, setup, m)
	b.ReportMetric(res.WorstTTC.Seconds(), "model-s")
}

// BenchmarkStandbyVsClone: time to capacity for one worker started from
// standby against one cloned, on the same realistic latencies, with
// a realistic install (90 s: PVE-API.md's 60-120 s from apply-config to
// kubelet Ready). Reported: standby-s and clone-s (a pod's creation to its
// placement on the new worker) and x-faster (goal: at least 4).
//
// Run: go test ./daemon -run '^$' -bench StandbyVsClone -benchtime 1x -timeout 30m (about 7 minutes)
func BenchmarkStandbyVsClone(b *testing.B) {
	env := kubetest.Require(b)
	lat := pvesim.DefaultLatencies()
	const install = 90 * time.Second
	var standby, clone time.Duration
	for range b.N {
		b.StopTimer()
		w, err := world.New(env, world.Options{Latencies: &lat, BootDelay: benchBoot, InstallDelay: install})
		if err != nil {
			b.Fatal(err)
		}
		cfg := w.Config()
		cfg.Policy.MinWorkers, cfg.Policy.MaxWorkers, cfg.Policy.Standby.Size = 1, 4, 1
		cfg.Policy.PendingPods.Grace = 0
		cfg.Policy.ScaleUpAfter, cfg.Policy.ScaleDownAfter, cfg.Policy.Cooldown = 0, 0, config.Cooldown{}
		cfg.Proxmox.AgentTimeout = config.Duration(time.Minute)
		cfg.Proxmox.TaskTimeout = config.Duration(time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		d, err := Build(ctx, cfg, Options{TalosPort: w.TalosPort, Log: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		go d.Reconciler.Run(ctx, 5*time.Second, nil)
		ns := env.Namespace(b)
		placed := func(name string) time.Time {
			deadline := time.Now().Add(10 * time.Minute)
			for {
				p, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
				if err == nil && p.Spec.NodeName != "" {
					return time.Now()
				}
				if time.Now().After(deadline) {
					b.Fatalf("pod %s not placed", name)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		create := func(name string) time.Time {
			if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, bigPod(ns, name), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			return time.Now()
		}
		// The minimum's worker, filled, and standby full.
		placed(func() string { create("filler"); return "filler" }())
		deadline := time.Now().Add(10 * time.Minute)
		for {
			p := d.Reconciler.Status().Plan
			if p != nil && p.Standby != nil && p.Standby.Ready == 1 && len(d.Reconciler.Status().Operations) == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("standby was not built")
			}
			time.Sleep(200 * time.Millisecond)
		}
		b.StartTimer()
		t0 := create("from-standby")
		standby += placed("from-standby").Sub(t0)
		t0 = create("from-clone") // standby is empty now
		clone += placed("from-clone").Sub(t0)
		b.StopTimer()
		cancel()
		d.Reconciler.Wait()
		w.Close()
	}
	n := float64(b.N)
	b.ReportMetric(standby.Seconds()/n, "standby-s")
	b.ReportMetric(clone.Seconds()/n, "clone-s")
	b.ReportMetric(clone.Seconds()/standby.Seconds(), "x-faster")
}
