package scaler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

var (
	gpuTaint = corev1.Taint{Key: "gpu.example/kind", Value: "igpu", Effect: corev1.TaintEffectNoSchedule}
	tolerGPU = corev1.Toleration{Key: "gpu.example/kind", Operator: corev1.TolerationOpEqual, Value: "igpu", Effect: corev1.TaintEffectNoSchedule}
)

// poolPolicy has three pools: general (4 cores, 8 GiB), gpu (8 cores,
// 16 GiB, tainted, one i915) and big (16 cores, 64 GiB, labelled).
func poolPolicy() Policy {
	p := testPolicy()
	p.MaxWorkers = 10
	p.Pools = []Pool{
		{Name: "general", MinWorkers: 2, MaxWorkers: 6, Worker: shape, VMMemory: 8 * gi, VMCores: 4},
		{Name: "gpu", MaxWorkers: 1, Worker: Resources{MilliCPU: 8000, Memory: 16 * gi}, VMMemory: 16 * gi, VMCores: 8, Hosts: []string{"pve2"},
			NewWorker: NewWorker{Labels: map[string]string{"gpu.example/kind": "igpu"}, Taints: []corev1.Taint{gpuTaint}, Extended: map[string]int64{"gpu.intel.com/i915": 1}}},
		{Name: "big", MaxWorkers: 2, Worker: Resources{MilliCPU: 16000, Memory: 64 * gi}, VMMemory: 64 * gi, VMCores: 16,
			NewWorker: NewWorker{Labels: map[string]string{"mem": "big"}}},
	}
	return p
}

func inPool(pool string) nodeOpt { return func(n *Node) { n.Pool = pool } }

func pod(name string, cpu int64, mem int64, opts ...func(*PendingPod)) PendingPod {
	pp := PendingPod{Namespace: "default", Name: name, Requests: Resources{MilliCPU: cpu, Memory: mem}, Since: t0.Add(-time.Minute)}
	for _, o := range opts {
		o(&pp)
	}
	return pp
}

func tolerates(pp *PendingPod) { pp.Tolerations = []corev1.Toleration{tolerGPU} }
func wantsGPU(pp *PendingPod)  { pp.Extended = map[string]int64{"gpu.intel.com/i915": 1} }
func selects(k, v string) func(*PendingPod) {
	return func(pp *PendingPod) { pp.NodeSelector = map[string]string{k: v} }
}

// adds renders a plan's adds as "pool:count" in action order.
func adds(p Plan) string {
	var out []string
	for _, a := range p.Actions {
		if a.Kind == ActionAdd {
			out = append(out, fmt.Sprintf("%s:%d", a.Pool, a.Count))
		}
	}
	return strings.Join(out, " ")
}

// TestPoolsScaleUp: per constraint kind, which pool a pending pod brings a
// worker to, and the verdict it gets.
func TestPoolsScaleUp(t *testing.T) {
	general := workers(2, 50, 50, inPool("general"))
	cases := []struct {
		name    string
		policy  func(*Policy)
		nodes   []Node
		pods    []PendingPod
		adds    string
		verdict string // a substring of the first pod's verdict
		event   string
	}{
		{"a plain pod: the general pool", nil, general,
			[]PendingPod{pod("web", 1000, gi)}, "general:1", "pool general: 1 worker added (2 -> 3, max 6)", EventTriggeredScaleUp},
		{"tolerating the GPU taint, small: least waste is general", nil, general,
			[]PendingPod{pod("web", 1000, gi, tolerates)}, "general:1", "pool general", EventTriggeredScaleUp},
		{"a GPU request with the toleration: the gpu pool", nil, general,
			[]PendingPod{pod("plex", 2000, 2*gi, tolerates, wantsGPU)}, "gpu:1", "pool gpu: 1 worker added (0 -> 1, max 1)", EventTriggeredScaleUp},
		{"a GPU request without the toleration: no pool", nil, general,
			[]PendingPod{pod("plex", 2000, 2*gi, wantsGPU)}, "",
			"general: requests 1 gpu.intel.com/i915, which a new worker does not have; gpu: it does not tolerate a new worker's taint gpu.example/kind=igpu:NoSchedule; big: requests 1 gpu.intel.com/i915", EventNotTriggerScaleUp},
		{"node selector of the gpu pool", nil, general,
			[]PendingPod{pod("enc", 500, gi, selects("gpu.example/kind", "igpu"), tolerates)}, "gpu:1", "pool gpu", EventTriggeredScaleUp},
		{"node selector of the big pool", nil, general,
			[]PendingPod{pod("batch", 500, gi, selects("mem", "big"))}, "big:1", "pool big", EventTriggeredScaleUp},
		{"node selector of the pool label", nil, general,
			[]PendingPod{pod("batch", 500, gi, selects(LabelPool, "big"))}, "big:1", "pool big", EventTriggeredScaleUp},
		{"a selector no pool has", nil, general,
			[]PendingPod{pod("x", 500, gi, selects("zone", "mars"))}, "",
			"general: node selector zone=mars does not match a new worker's labels; gpu: node selector zone=mars", EventNotTriggerScaleUp},
		{"requests only the big pool holds", nil, general,
			[]PendingPod{pod("import", 12000, 40*gi)}, "big:1", "pool big", EventTriggeredScaleUp},
		{"node affinity of a bound volume", nil, general,
			[]PendingPod{pod("db", 500, gi, func(pp *PendingPod) {
				pp.VolumeNodeAffinity = []VolumeAffinity{{Volume: "pv1", Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "mem", Operator: corev1.NodeSelectorOpIn, Values: []string{"big"}}}}}}}}
			})}, "big:1", "pool big", EventTriggeredScaleUp},
		{"the gpu pool at its max_workers", nil, append(workers(2, 50, 50, inPool("general")), worker("g0", 50, 50, inPool("gpu"))),
			[]PendingPod{pod("plex", 2000, 2*gi, tolerates, wantsGPU)}, "", "pod didn't trigger scale-up: gpu: max_workers 1 reached", EventNotTriggerScaleUp},
		{"equal fit: the higher priority", func(p *Policy) {
			p.Pools[2] = p.Pools[0]
			p.Pools[2].Name, p.Pools[2].MinWorkers, p.Pools[2].Priority = "general2", 0, 5
		}, general, []PendingPod{pod("web", 1000, gi)}, "general2:1", "pool general2", EventTriggeredScaleUp},
		{"a pool with room before a full one", func(p *Policy) {
			p.Pools[2] = p.Pools[0]
			p.Pools[2].Name, p.Pools[2].MinWorkers, p.Pools[2].Priority = "general2", 0, 5
			p.Pools[2].MaxWorkers = 1
		}, append(workers(2, 50, 50, inPool("general")), worker("x", 50, 50, inPool("general2"))),
			[]PendingPod{pod("web", 1000, gi)}, "general:1", "pool general", EventTriggeredScaleUp},
		{"global max_workers: the higher priority pool first", func(p *Policy) {
			p.MaxWorkers = 3
			p.Pools[1].Priority = 10
		}, general, []PendingPod{pod("web", 3000, gi), pod("plex", 2000, 2*gi, tolerates, wantsGPU)}, "gpu:1", "pod didn't trigger scale-up: general: max_workers 3 reached", EventNotTriggerScaleUp},
		{"a pool's minimum", func(p *Policy) { p.Pools[1].MinWorkers = 1 }, general, nil, "gpu:1", "", ""},
		{"policy.max_cores", func(p *Policy) { p.MaxCores = 12 }, general,
			[]PendingPod{pod("plex", 2000, 2*gi, tolerates, wantsGPU)}, "", "gpu: policy.max_cores or max_memory reached", EventNotTriggerScaleUp},
		{"the pool's hosts have no room", func(p *Policy) {}, general,
			[]PendingPod{pod("plex", 2000, 2*gi, tolerates, wantsGPU)}, "", "counted toward new workers; none added now", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := poolPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			s := Snapshot{Nodes: tc.nodes, PendingPods: tc.pods}
			if strings.Contains(tc.name, "hosts have no room") {
				s.Hosts = []Host{{Name: "pve1", Online: true, MemoryFree: 200 * gi}, {Name: "pve2", Online: true, MemoryFree: 10 * gi}}
			}
			plan := Decide(s, p, History{}, t0)
			if got := adds(plan); got != tc.adds {
				t.Errorf("adds %q, want %q\n%s", got, tc.adds, dump(plan))
			}
			if tc.verdict == "" {
				return
			}
			var v *PodVerdict
			for i := range plan.Pods {
				if plan.Pods[i].Name == tc.pods[0].Name {
					v = &plan.Pods[i]
				}
			}
			if v == nil || !strings.Contains(v.Message, tc.verdict) || v.Event != tc.event {
				t.Errorf("verdict %+v, want %s %q\n%s", v, tc.event, tc.verdict, dump(plan))
			}
			for _, a := range plan.Actions {
				if a.Kind != ActionAdd {
					continue
				}
				i := poolIndex(p.Pools, a.Pool)
				if cur := plan.Pools[i].Current; cur+a.Count > p.Pools[i].MaxWorkers {
					t.Errorf("pool %s: %d + %d above its max %d", a.Pool, cur, a.Count, p.Pools[i].MaxWorkers)
				}
			}
		})
	}
}

func poolIndex(pools []Pool, name string) int {
	for i, p := range pools {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// TestPoolsScaleDown: a removal keeps each pool's minimum, and brings a
// pool above its max_workers down.
func TestPoolsScaleDown(t *testing.T) {
	cases := []struct {
		name   string
		policy func(*Policy)
		nodes  []Node
		remove string // the node removed, "" for none
		hold   string
	}{
		{"the general pool at its minimum: the big worker goes",
			nil, append(workers(2, 10, 10, inPool("general")), worker("b0", 5, 5, inPool("big"))), "", ""},
		{"every pool at its minimum: none", func(p *Policy) { p.Pools[2].MinWorkers = 1 },
			append(workers(2, 10, 10, inPool("general")), worker("b0", 5, 5, inPool("big")), worker("x", 5, 5, unmanaged)), "", "b0: pool big at its minimum of 1"},
		{"a pool above its max_workers", func(p *Policy) { p.Pools[2].MaxWorkers = 1; p.CPU.Down, p.Memory.Down = 1, 1 },
			append(workers(3, 10, 10, inPool("general")), worker("b0", 50, 50, inPool("big"), created(t0.Add(-2*time.Hour))), worker("b1", 60, 60, inPool("big"))), "b0", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := poolPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			nodes := tc.nodes
			for i := range nodes {
				nodes[i].VMID = 5000 + i
			}
			want := tc.remove
			if tc.name == "the general pool at its minimum: the big worker goes" {
				want = "b0"
			}
			plan := Decide(Snapshot{Nodes: nodes}, p, History{LowSince: t0.Add(-time.Hour)}, t0)
			rm, ok := plan.Removal()
			if got := map[bool]string{true: rm.Node}[ok]; got != want {
				t.Errorf("removes %q, want %q\n%s", got, want, dump(plan))
			}
			if tc.hold != "" && !strings.Contains(dump(plan), tc.hold) {
				t.Errorf("no hold saying %q\n%s", tc.hold, dump(plan))
			}
		})
	}
}

// TestPoolsOfWorkers: which pool a worker counts in.
func TestPoolsOfWorkers(t *testing.T) {
	p := poolPolicy()
	p.Pools = append(p.Pools, Pool{Name: DefaultPool, MaxWorkers: 3, Worker: shape, VMMemory: 8 * gi})
	nodes := []Node{
		worker("a", 50, 50, inPool("general")),
		worker("b", 50, 50),                 // managed, no pool: the pool named default
		worker("c", 50, 50, unmanaged),      // not ours: no pool
		worker("d", 50, 50, inPool("gone")), // a pool no longer configured: none
		worker("e", 50, 50, inPool("gpu"), notReady),
	}
	plan := Decide(Snapshot{Nodes: nodes, Operations: []Operation{{Kind: OpProvision, VMID: 6000, Pool: "big"}}}, p, History{}, t0)
	got := map[string]PoolStatus{}
	for _, ps := range plan.Pools {
		got[ps.Name] = ps
	}
	if got["general"].Current != 1 || got[DefaultPool].Current != 1 || got["gpu"].NotReady != 1 || got["big"].Provisioning != 1 || got["big"].Current != 1 {
		t.Errorf("pools %+v", plan.Pools)
	}
	if plan.Workers.Current != 6 {
		t.Errorf("all workers %d, want 6 (every worker and the provision)", plan.Workers.Current)
	}
}

// TestMovingToPoolsKeepsTheWorkers: with pools: and none named default,
// the workers made before pools (no pool label) and in the single-pool
// config (pool default) count in the first pool listed, under its
// minimum, so the move replaces none of them.
func TestMovingToPoolsKeepsTheWorkers(t *testing.T) {
	p := poolPolicy() // general (min 2), gpu, big
	nodes := []Node{worker("old", 50, 50), worker("single", 50, 50, inPool(DefaultPool))}
	plan := Decide(Snapshot{Nodes: nodes}, p, History{LowSince: t0.Add(-time.Hour)}, t0)
	if plan.Pools[0].Name != "general" || plan.Pools[0].Current != 2 {
		t.Errorf("general counts %d workers, want both old ones: %+v", plan.Pools[0].Current, plan.Pools)
	}
	if plan.Added() != 0 {
		t.Errorf("adds %q: general's minimum of 2 is met by the old workers\n%s", adds(plan), dump(plan))
	}
	if _, ok := plan.Removal(); ok {
		t.Errorf("removes an old worker of a pool at its minimum\n%s", dump(plan))
	}
	for _, name := range []string{"", DefaultPool, "general", "gpu", "gone"} {
		want := map[string]string{"": "general", DefaultPool: "general"}[name]
		if want == "" {
			want = name
		}
		if got := p.PoolOfName(name); got != want {
			t.Errorf("PoolOfName(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestSinglePoolIsUnchanged: a policy without Pools is one pool named
// default whose actions name no pool.
func TestSinglePoolIsUnchanged(t *testing.T) {
	plan := Decide(Snapshot{Nodes: workers(2, 50, 50), PendingPods: pending(3, 3000, gi, t0.Add(-time.Minute))}, testPolicy(), History{}, t0)
	if adds(plan) != ":3" || len(plan.Pools) != 1 || plan.Pools[0].Name != DefaultPool {
		t.Errorf("adds %q, pools %+v", adds(plan), plan.Pools)
	}
}

// BenchmarkDecidePendingPools: BenchmarkDecidePending with five pools
// (general; gpu, tainted, one i915; big, labelled; batch, tainted with
// gpuWorker's taint and labels; arm, labelled) and pending pods whose
// constraints choose among them (one in ten fits none).
func BenchmarkDecidePendingPools(b *testing.B) {
	for _, n := range []int{2000, 100000} {
		s, p := benchWorld(5000, 0, true)
		p.PriorityCutoff = -10
		p.MaxStep = 0
		p.MaxWorkers = 1 << 20
		p.Pools = poolPolicy().Pools
		p.Pools = append(p.Pools,
			Pool{Name: "batch", MaxWorkers: 1 << 18, Worker: shape, VMMemory: 8 * gi, VMCores: 4, NewWorker: gpuWorker},
			Pool{Name: "arm", MaxWorkers: 1 << 18, Worker: shape, VMMemory: 8 * gi, VMCores: 4, NewWorker: NewWorker{Labels: map[string]string{"arch": "arm"}}})
		for i := range p.Pools {
			p.Pools[i].MaxWorkers = 1 << 18
		}
		for i := range s.Nodes {
			s.Nodes[i].Pool = p.Pools[i%len(p.Pools)].Name
		}
		s.PendingPods = make([]PendingPod, n)
		for i := range s.PendingPods {
			pp := PendingPod{Namespace: "default", Name: fmt.Sprintf("pend-%06d", i), Since: ago(time.Hour),
				Requests: Resources{MilliCPU: int64(100 + 100*(i%7)), Memory: int64(1+i%5) * gi / 4}, OwnerKind: "ReplicaSet"}
			switch i % 10 {
			case 1, 2:
				tolerates(&pp)
				wantsGPU(&pp)
			case 3, 4:
				pp.NodeSelector = map[string]string{"mem": "big"}
			case 5, 6:
				pp.Tolerations = tolerateBatch
				pp.NodeSelector = map[string]string{"disk": "ssd"}
				pp.NodeAffinity = sel("zone", corev1.NodeSelectorOpIn, "a", "b")
			case 7:
				pp.NodeAffinity = sel("arch", corev1.NodeSelectorOpIn, "arm")
			case 9:
				pp.NodeSelector = map[string]string{"gpu": "yes"} // no pool
			}
			s.PendingPods[i] = pp
		}
		b.Run(fmt.Sprintf("pools=5/workers=5000/pods=150000/pending=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var plan Plan
			before := cpuTime()
			for b.Loop() {
				plan = Decide(s, p, History{}, t0)
			}
			b.ReportMetric(float64(cpuTime()-before)/float64(b.N)/1e6, "cpu-ms/op")
			added := map[string]bool{}
			for _, a := range plan.Actions {
				if a.Kind == ActionAdd {
					added[a.Pool] = true
				}
			}
			if len(added) != 5 || len(plan.Pods) != n {
				b.Fatalf("adds to %v, %d verdicts; want all five pools and %d", added, len(plan.Pods), n)
			}
		})
	}
}

// TestPoolsUsed: each pool's status carries what its Ready, schedulable
// workers use (the trace's per-pool columns), and nothing without
// utilization.
func TestPoolsUsed(t *testing.T) {
	p := poolPolicy()
	nodes := []Node{worker("a", 50, 25, inPool("general")), worker("b", 10, 10, inPool("general")), worker("g", 20, 40, inPool("gpu")),
		worker("c", 90, 90, inPool("general"), func(n *Node) { n.Unschedulable = true })}
	plan := Decide(Snapshot{Nodes: nodes}, p, History{}, t0)
	used := map[string]Resources{}
	for _, ps := range plan.Pools {
		used[ps.Name] = ps.Used
	}
	want := func(names ...string) Resources {
		var r Resources
		for _, n := range nodes {
			for _, name := range names {
				if n.Name == name {
					r = r.Add(n.Usage)
				}
			}
		}
		return r
	}
	if used["general"] != want("a", "b") || used["gpu"] != want("g") || used["big"] != (Resources{}) {
		t.Errorf("used %v, want general %v, gpu %v", used, want("a", "b"), want("g"))
	}
	if sum := used["general"].Add(used["gpu"]); plan.Utilization == nil || sum != plan.Utilization.Used {
		t.Errorf("the pools' use %v is not the cluster's %v", sum, plan.Utilization)
	}
	plan = Decide(Snapshot{Nodes: nodes, Metrics: MetricsState{Stale: true}}, p, History{}, t0)
	for _, ps := range plan.Pools {
		if ps.Used != (Resources{}) {
			t.Errorf("stale metrics: pool %s used %v", ps.Name, ps.Used)
		}
	}
}

// TestUnneededClocksPerPool: a pool that wants capacity (a GPU pod
// pending) holds the scale-down of this decision, but neither starts over
// nor runs out the unneeded and empty clocks of another pool's workers;
// with one pool, a need starts them over as before.
func TestUnneededClocksPerPool(t *testing.T) {
	since := t0.Add(-9 * time.Minute)
	clocks := History{Unneeded: map[string]time.Time{"g0": since, "g1": since, "g2": since}, Empty: map[string]time.Time{"g2": since}}
	general := []Node{worker("g0", 10, 10, inPool("general")), worker("g1", 10, 10, inPool("general")), worker("g2", 10, 10, inPool("general"))}
	general[2].Pods = nil
	gpuPod := pod("plex", 1000, gi, tolerates, wantsGPU)
	for _, c := range []struct {
		name   string
		p      Policy
		nodes  []Node
		pend   []PendingPod
		added  int
		carry  bool
		holdCW bool // the capacity-wanted hold
	}{
		{name: "the gpu pool adds a worker: general's clocks run on", p: poolPolicy(), nodes: general, pend: []PendingPod{gpuPod}, added: 1, carry: true},
		{name: "the gpu pool at its max: general's clocks run on", p: poolPolicy(),
			nodes: append(slices.Clone(general), worker("gpu0", 90, 90, inPool("gpu"))), pend: []PendingPod{gpuPod}, carry: true, holdCW: true},
		{name: "one pool that wants a worker: its clocks start over", p: testPolicy(),
			nodes: []Node{worker("g0", 10, 10), worker("g1", 10, 10), worker("g2", 10, 10)}, pend: []PendingPod{pod("big", 3000, gi)}, added: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan := Decide(Snapshot{Nodes: c.nodes, PendingPods: c.pend}, c.p, clocks, t0)
			if plan.Added() != c.added || plan.Held(CodeCapacityWanted) != c.holdCW {
				t.Fatalf("added %d (want %d), capacity-wanted hold %v\n%s", plan.Added(), c.added, plan.Held(CodeCapacityWanted), dump(plan))
			}
			if _, ok := plan.Removal(); ok {
				t.Fatalf("a removal while a pool wants capacity\n%s", dump(plan))
			}
			got := plan.Next.Unneeded["g0"].Equal(since) && plan.Next.Empty["g2"].Equal(since)
			if got != c.carry {
				t.Errorf("clocks carried: %v, want %v (unneeded %v, empty %v)", got, c.carry, plan.Next.Unneeded, plan.Next.Empty)
			}
			if !c.carry && (len(plan.Next.Unneeded) > 0 || len(plan.Next.Empty) > 0) {
				t.Errorf("clocks kept with one pool: %v %v", plan.Next.Unneeded, plan.Next.Empty)
			}
		})
	}
}
