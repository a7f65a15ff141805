package scaler

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// gpuWorker is a new worker labelled and tainted as a Talos patch would
// have it (machine.nodeLabels, machine.nodeTaints).
var gpuWorker = NewWorker{
	Labels: map[string]string{"disk": "ssd", "zone": "a"},
	Taints: []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}},
}

func sel(key string, op corev1.NodeSelectorOperator, values ...string) *corev1.NodeSelector {
	return &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}}}
}

var tolerateBatch = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "batch", Effect: corev1.TaintEffectNoSchedule}}

func TestUnfit(t *testing.T) {
	small := Resources{MilliCPU: 500, Memory: gi}
	cases := []struct {
		name   string
		worker NewWorker
		pod    PendingPod
		want   string // a part of the reason; "" for fits
	}{
		{"no constraint, tolerated taint", gpuWorker, PendingPod{Requests: small, Tolerations: tolerateBatch}, ""},
		{"untolerated NoSchedule taint", gpuWorker, PendingPod{Requests: small}, "taint dedicated=batch:NoSchedule"},
		{"toleration of another value", gpuWorker, PendingPod{Requests: small, Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "web"}}}, "taint dedicated"},
		{"Exists toleration", gpuWorker, PendingPod{Requests: small, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}, ""},
		{"untolerated NoExecute taint", NewWorker{Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoExecute}}}, PendingPod{Requests: small}, "taint k:NoExecute"},
		{"PreferNoSchedule does not repel", NewWorker{Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectPreferNoSchedule}}}, PendingPod{Requests: small}, ""},
		{"selector matches", gpuWorker, PendingPod{Requests: small, Tolerations: tolerateBatch, NodeSelector: map[string]string{"disk": "ssd"}}, ""},
		{"selector of the kubelet's labels", NewWorker{}, PendingPod{Requests: small, NodeSelector: map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}, ""},
		{"selector does not match", gpuWorker, PendingPod{Requests: small, Tolerations: tolerateBatch, NodeSelector: map[string]string{"gpu.example/kind": "igpu"}}, "node selector gpu.example/kind=igpu"},
		{"affinity In matches", gpuWorker, PendingPod{Requests: small, Tolerations: tolerateBatch, NodeAffinity: sel("zone", corev1.NodeSelectorOpIn, "a", "b")}, ""},
		{"affinity NotIn excludes", gpuWorker, PendingPod{Requests: small, Tolerations: tolerateBatch, NodeAffinity: sel("zone", corev1.NodeSelectorOpNotIn, "a")}, "required node affinity"},
		{"affinity on an existing host name", NewWorker{}, PendingPod{Requests: small, NodeAffinity: sel("kubernetes.io/hostname", corev1.NodeSelectorOpIn, "w1")}, "required node affinity"},
		{"too large", NewWorker{}, PendingPod{Requests: Resources{MilliCPU: 5000, Memory: gi}}, "more than a new worker has"},
		{"extended resource no worker has", NewWorker{}, PendingPod{Requests: small, Extended: map[string]int64{"nvidia.com/gpu": 1}}, "1 nvidia.com/gpu, which a new worker does not have"},
		{"extended resource the worker has", NewWorker{Extended: map[string]int64{"nvidia.com/gpu": 1}}, PendingPod{Requests: small, Extended: map[string]int64{"nvidia.com/gpu": 1}}, ""},
		{"more of it than the worker has", NewWorker{Extended: map[string]int64{"nvidia.com/gpu": 1}}, PendingPod{Requests: small, Extended: map[string]int64{"nvidia.com/gpu": 2}}, "more than a new worker has (1)"},
		{"local volume bound to another node", NewWorker{}, PendingPod{Requests: small, VolumeNodeAffinity: []VolumeAffinity{{Volume: "pv-1", Required: sel("kubernetes.io/hostname", corev1.NodeSelectorOpIn, "w1")}}}, "volume pv-1 is bound to other nodes"},
		{"volume any worker of the zone can reach", gpuWorker, PendingPod{Requests: small, Tolerations: tolerateBatch, VolumeNodeAffinity: []VolumeAffinity{{Volume: "pv-2", Required: sel("zone", corev1.NodeSelectorOpIn, "a")}}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Unfit(&c.pod, c.worker.Node(NewWorkerName, shape))
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
				t.Errorf("Unfit = %q, want %q", got, c.want)
			}
		})
	}
}

// TestPendingPodsNoWorkerCanRunAddNothing: pods a new worker cannot run,
// DaemonSet pods and expendable pods add no worker, get a
// NotTriggerScaleUp verdict and hold no scale-down; the others are packed
// and get TriggeredScaleUp.
func TestPendingPodsNoWorkerCanRunAddNothing(t *testing.T) {
	p := testPolicy()
	p.PriorityCutoff = -10
	p.NewWorker = gpuWorker
	since := ago(time.Hour)
	mk := func(name string, f func(*PendingPod)) PendingPod {
		pp := PendingPod{Namespace: "default", Name: name, Requests: Resources{MilliCPU: 1500, Memory: gi}, Since: since, Tolerations: tolerateBatch}
		f(&pp)
		return pp
	}
	unfit := []PendingPod{
		mk("selector", func(pp *PendingPod) { pp.NodeSelector = map[string]string{"gpu": "yes"} }),
		mk("taint", func(pp *PendingPod) { pp.Tolerations = nil }),
		mk("gpu", func(pp *PendingPod) { pp.Extended = map[string]int64{"nvidia.com/gpu": 1} }),
		mk("daemonset", func(pp *PendingPod) { pp.OwnerKind = OwnerDaemonSet }),
		mk("expendable", func(pp *PendingPod) { pp.Priority = -11 }),
		mk("volume", func(pp *PendingPod) {
			pp.VolumeNodeAffinity = []VolumeAffinity{{Volume: "local-w1", Required: sel("kubernetes.io/hostname", corev1.NodeSelectorOpIn, "w1")}}
		}),
	}
	s := Snapshot{Nodes: workers(3, 10, 10), PendingPods: unfit}
	plan := Decide(s, p, History{}, t0)
	if plan.Added() != 0 || len(plan.Pods) != len(unfit) {
		t.Fatalf("pods no worker can run: added %d, verdicts %d; want none and %d\n%s", plan.Added(), len(plan.Pods), len(unfit), dump(plan))
	}
	for _, v := range plan.Pods {
		if !v.NoWorker() || !strings.HasPrefix(v.Message, "pod didn't trigger scale-up: ") {
			t.Errorf("%s: verdict %+v, want NotTriggerScaleUp", v.Name, v)
		}
	}
	if !plan.Held(CodeNoWorkerFits) || plan.Held(CodePendingHold) {
		t.Errorf("want the no_worker_fits note and no pending hold on scale-down\n%s", dump(plan))
	}

	// The priority at the cutoff counts; with the fitting pods, workers are added.
	s.PendingPods = append(unfit, mk("fits-a", func(*PendingPod) {}), mk("fits-b", func(pp *PendingPod) { pp.Priority = -10 }), mk("fits-c", func(*PendingPod) {}))
	s.Nodes = workers(3, 50, 50)
	plan = Decide(s, p, History{}, t0)
	if plan.Added() != 2 {
		t.Fatalf("three fitting pods of 1500m on workers of 4000m: added %d, want 2\n%s", plan.Added(), dump(plan))
	}
	triggered := 0
	for _, v := range plan.Pods {
		if v.Event == EventTriggeredScaleUp {
			triggered++
			if !v.Counted || !strings.HasPrefix(v.Name, "fits-") {
				t.Errorf("%+v: only the fitting pods trigger the scale-up", v)
			}
		}
	}
	if triggered != 3 {
		t.Errorf("%d TriggeredScaleUp verdicts, want 3\n%s", triggered, dump(plan))
	}

	// max_workers reached: the fitting pods are told so.
	p.MaxWorkers = 3
	plan = Decide(s, p, History{}, t0)
	for _, v := range plan.Pods {
		if v.Counted && (v.Event != EventNotTriggerScaleUp || !strings.Contains(v.Message, "max_workers 3 reached")) {
			t.Errorf("at max_workers: %+v", v)
		}
	}
}

// TestYoungPodsNoWorkerCanRunHoldNoScaleDown: a pod in its grace that
// no new worker could run (another autoscaler's, its node selector)
// holds no scale-down and has no verdict yet; one a new worker could run
// holds it.
func TestYoungPodsNoWorkerCanRunHoldNoScaleDown(t *testing.T) {
	p := testPolicy()
	p.PendingGrace = 30 * time.Second
	young := PendingPod{Namespace: "karpenter", Name: "theirs", Requests: Resources{MilliCPU: 500, Memory: gi}, Since: t0.Add(-10 * time.Second),
		NodeSelector: map[string]string{"bench/slot": "karpenter"}}
	s := Snapshot{Nodes: workers(3, 10, 10), PendingPods: []PendingPod{young}}
	plan := Decide(s, p, History{}, t0)
	if plan.Held(CodePendingHold) || len(plan.Pods) != 0 || plan.Added() != 0 {
		t.Errorf("a young pod no worker could run: want no pending hold, no verdict, nothing added\n%s", dump(plan))
	}
	young.NodeSelector = nil
	s.PendingPods = []PendingPod{young}
	plan = Decide(s, p, History{}, t0)
	if !plan.Held(CodePendingHold) || len(plan.Pods) != 0 {
		t.Errorf("a young pod a worker could run: want the pending hold, no verdict yet\n%s", dump(plan))
	}
}

// firstFit is textbook first-fit: each pod on the first bin with room.
func firstFit(shape Resources, pre int, pods []Resources) int {
	bins := make([]Resources, pre)
	for i := range bins {
		bins[i] = shape
	}
	for _, r := range pods {
		placed := false
		for i := range bins {
			if r.Fits(bins[i]) {
				bins[i] = bins[i].Sub(r)
				placed = true
				break
			}
		}
		if !placed {
			bins = append(bins, shape.Sub(r))
		}
	}
	return len(bins)
}

// TestPackerIsFirstFit: the segment-tree packer, runs of identical pods
// placed at once, uses exactly as many bins as textbook first-fit on 500
// random sequences (sizes drawn from a few so runs and mixed orders occur).
func TestPackerIsFirstFit(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 17))
	for seq := range 500 {
		n := 1 + rng.IntN(300)
		pre := rng.IntN(4)
		kinds := make([]Resources, 1+rng.IntN(6))
		for i := range kinds {
			kinds[i] = Resources{MilliCPU: int64(rng.IntN(9)) * 250, Memory: int64(rng.IntN(17)) * gi / 2}
		}
		pods := make([]Resources, 0, n)
		for len(pods) < n {
			k := kinds[rng.IntN(len(kinds))]
			for range 1 + rng.IntN(5) {
				pods = append(pods, k)
			}
		}
		pk := newPacker(shape, pre, len(pods))
		for i := 0; i < len(pods); {
			j := i + 1
			for j < len(pods) && pods[j] == pods[i] {
				j++
			}
			pk.place(pods[i], j-i)
			i = j
		}
		if want := firstFit(shape, pre, pods); pk.used != want {
			t.Fatalf("sequence %d (%d pods, %d in flight): packer uses %d bins, first-fit %d\n%v", seq, len(pods), pre, pk.used, want, pods)
		}
	}
}

// BenchmarkDecidePending: 5,000 workers, 150,000 pods bound, and pending
// pods with constraints (a toleration, a selector and a required node
// affinity on the new worker's labels; one in ten of them fits no worker).
func BenchmarkDecidePending(b *testing.B) {
	for _, n := range []int{2000, 20000, 100000} {
		s, p := benchWorld(5000, 0, true)
		p.NewWorker = gpuWorker
		p.PriorityCutoff = -10
		p.MaxStep = 0
		p.MaxWorkers = 1 << 20
		s.PendingPods = make([]PendingPod, n)
		for i := range s.PendingPods {
			pp := PendingPod{Namespace: "default", Name: fmt.Sprintf("pend-%06d", i), Since: ago(time.Hour),
				Requests:     Resources{MilliCPU: int64(100 + 100*(i%7)), Memory: int64(1+i%5) * gi / 4},
				Tolerations:  tolerateBatch,
				NodeSelector: map[string]string{"disk": "ssd"},
				NodeAffinity: sel("zone", corev1.NodeSelectorOpIn, "a", "b"),
				OwnerKind:    "ReplicaSet",
			}
			if i%10 == 9 {
				pp.NodeSelector = map[string]string{"gpu": "yes"}
			}
			s.PendingPods[i] = pp
		}
		b.Run(fmt.Sprintf("workers=5000/pods=150000/pending=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var plan Plan
			before := cpuTime()
			for b.Loop() {
				plan = Decide(s, p, History{}, t0)
			}
			// The process's CPU time per decision (GC included): on a
			// shared machine the wall time ns/op also counts the waits.
			b.ReportMetric(float64(cpuTime()-before)/float64(b.N)/1e6, "cpu-ms/op")
			if plan.Added() == 0 || len(plan.Pods) != n {
				b.Fatalf("added %d, %d verdicts; want a scale-up and %d", plan.Added(), len(plan.Pods), n)
			}
		})
	}
}

// TestSnapshotCarriesConstraints: a snapshot written by hand (docs/snapshot.md)
// carries the pending pods' constraints in Kubernetes' own forms, and the
// decision judges them.
func TestSnapshotCarriesConstraints(t *testing.T) {
	data := []byte(`{"time": "2026-11-27T12:00:00Z",
	  "nodes": [{"name": "w0", "managed": true, "ready": true, "created": "2026-11-27T10:00:00Z",
	    "allocatable": {"cpu": "4", "memory": "8Gi"}, "usage": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}],
	  "pending_pods": [
	    {"namespace": "media", "name": "plex", "requests": {"cpu": "1", "memory": "1Gi"}, "since": "2026-11-27T11:00:00Z",
	     "extended": {"gpu.intel.com/i915": 1}, "tolerations": [{"operator": "Exists"}]},
	    {"namespace": "batch", "name": "import", "requests": {"cpu": "1", "memory": "1Gi"}, "since": "2026-11-27T11:00:00Z",
	     "priority": -20, "owner_kind": "Job"},
	    {"namespace": "apps", "name": "pinned", "requests": {"cpu": "1", "memory": "1Gi"}, "since": "2026-11-27T11:00:00Z",
	     "node_selector": {"disk": "ssd"},
	     "node_affinity": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]},
	     "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]},
	    {"namespace": "db", "name": "pg-0", "requests": {"cpu": "1", "memory": "1Gi"}, "since": "2026-11-27T11:00:00Z",
	     "tolerations": [{"key": "dedicated", "operator": "Exists"}],
	     "volume_node_affinity": [{"volume": "local-pv-1", "required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["w0"]}]}]}}]}
	  ]}`)
	sit, err := ParseSituation("hand.json", data)
	if err != nil {
		t.Fatal(err)
	}
	p := testPolicy()
	p.PriorityCutoff = -10
	p.NewWorker = gpuWorker
	p.MinWorkers = 1
	plan := Decide(sit.Snapshot, p, sit.History, sit.Time)
	want := map[string]string{
		"plex":   "1 gpu.intel.com/i915, which a new worker does not have",
		"import": "priority -20 is below the cutoff -10",
		"pinned": "required node affinity does not match",
		"pg-0":   "volume local-pv-1 is bound to other nodes",
	}
	if plan.Added() != 0 || len(plan.Pods) != len(want) {
		t.Fatalf("added %d, verdicts %+v", plan.Added(), plan.Pods)
	}
	for _, v := range plan.Pods {
		if !v.NoWorker() || !strings.Contains(v.Message, want[v.Name]) {
			t.Errorf("%s: %q, want %q", v.Name, v.Message, want[v.Name])
		}
	}
}
