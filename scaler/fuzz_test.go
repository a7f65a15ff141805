package scaler

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// gen turns fuzz bytes into values; past the end it yields zeros.
type gen struct {
	b []byte
	i int
}

func (g *gen) u8() int {
	if g.i >= len(g.b) {
		return 0
	}
	v := g.b[g.i]
	g.i++
	return int(v)
}
func (g *gen) intn(n int) int { return g.u8() % max(n, 1) }
func (g *gen) flag() bool     { return g.u8()&1 == 1 }
func (g *gen) dur(choices ...time.Duration) time.Duration {
	return choices[g.intn(len(choices))]
}

// world builds a policy, a snapshot and a history from fuzz bytes.
func world(data []byte) (Policy, Snapshot, History) {
	g := &gen{b: data}
	p := testPolicy()
	p.MinWorkers = g.intn(5)
	p.MaxWorkers = max(1, p.MinWorkers+g.intn(9))
	p.CPU.Up = float64(40 + g.intn(61))
	p.CPU.Down = float64(5 + g.intn(int(p.CPU.Up)-5))
	p.Memory.Up = float64(40 + g.intn(61))
	p.Memory.Down = float64(5 + g.intn(int(p.Memory.Up)-5))
	p.ScaleDownMargin = float64(g.intn(21))
	ds := []time.Duration{0, time.Minute, 5 * time.Minute}
	p.UpWindow, p.DownWindow = g.dur(ds...), g.dur(ds...)
	p.CooldownAfterUp, p.CooldownAfterDown, p.CooldownAfterFailure = g.dur(ds...), g.dur(ds...), g.dur(ds...)
	p.MaxStep = 1 + g.intn(4)
	p.PendingPods = g.flag()
	p.PendingGrace = g.dur(0, 30*time.Second)
	p.AllowLocalStorage = g.flag()
	if g.flag() {
		s := Schedule{Name: "fuzz", Start: g.intn(24 * 60), End: g.intn(24 * 60), MinWorkers: 1 + g.intn(p.MaxWorkers)}
		s.Days[g.intn(7)] = true
		p.Schedules = []Schedule{s}
		p.ScheduleLead = g.dur(0, 10*time.Minute)
	}

	var s Snapshot
	owners := []string{"ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Node", ""}
	for i := range g.intn(13) {
		alloc := Resources{MilliCPU: int64(1000 * (1 + g.intn(8))), Memory: int64(1+g.intn(16)) * gi}
		n := Node{
			Name:          fmt.Sprintf("n%d", i),
			Managed:       g.u8()%4 != 0,
			ControlPlane:  g.u8()%10 == 0,
			Ready:         g.u8()%6 != 0,
			Unschedulable: g.u8()%8 == 0,
			VMID:          5000 + i,
			Created:       t0.Add(-time.Duration(1+g.intn(600)) * time.Minute),
			Allocatable:   alloc,
			Usage:         Resources{MilliCPU: alloc.MilliCPU * int64(g.intn(121)) / 100, Memory: alloc.Memory * int64(g.intn(121)) / 100},
		}
		if g.u8()%8 == 0 {
			n.Annotations = map[string]string{AnnotationScaleDownDisabled: "true"}
		}
		for j := range g.intn(4) {
			pod := Pod{
				Namespace: "ns", Name: fmt.Sprintf("%s-p%d", n.Name, j),
				OwnerKind:    owners[g.intn(len(owners))],
				Requests:     Resources{MilliCPU: alloc.MilliCPU * int64(g.intn(40)) / 100, Memory: alloc.Memory * int64(g.intn(40)) / 100},
				LocalStorage: g.u8()%5 == 0,
			}
			switch g.intn(6) {
			case 0:
				pod.Annotations = map[string]string{AnnotationSafeToEvict: "false"}
			case 1:
				pod.PDB = &PDBStatus{Name: "pdb", DisruptionsAllowed: int32(g.intn(2))}
			}
			n.Requests = n.Requests.Add(pod.Requests)
			n.Pods = append(n.Pods, pod)
		}
		s.Nodes = append(s.Nodes, n)
	}
	for i := range g.intn(6) {
		s.PendingPods = append(s.PendingPods, PendingPod{
			Namespace: "ns", Name: fmt.Sprintf("pending%d", i),
			Requests: Resources{MilliCPU: int64(100 * g.intn(50)), Memory: int64(g.intn(12)) * gi / 2},
			Since:    t0.Add(-time.Duration(g.intn(120)) * time.Second),
		})
	}
	for i := range g.intn(3) {
		s.Operations = append(s.Operations, Operation{Kind: OpProvision, VMID: 6000 + i, Node: fmt.Sprintf("prov%d", i)})
	}
	if len(s.Nodes) > 0 && g.u8()%5 == 0 {
		s.Operations = append(s.Operations, Operation{Kind: OpRemove, Node: s.Nodes[g.intn(len(s.Nodes))].Name})
	}
	if g.flag() {
		s.Hosts = []Host{}
		for i := range 1 + g.intn(3) {
			s.Hosts = append(s.Hosts, Host{Name: fmt.Sprintf("pve%d", i), Online: g.u8()%4 != 0, MemoryFree: int64(g.intn(64)) * gi})
		}
	}
	s.Metrics.Stale = g.u8()%6 == 0

	// Drift, max_age and a rolling replacement under way.
	p.ReplaceDrifted = g.flag()
	p.MaxAge = g.dur(0, 0, 2*time.Hour, 6*time.Hour)
	for i := range s.Nodes {
		n := &s.Nodes[i]
		n.SystemUUID = fmt.Sprintf("uuid-%d", i)
		if n.Managed && g.u8()%3 == 0 {
			s.Drifted = append(s.Drifted, DriftedWorker{VMID: n.VMID, Node: n.Name, Why: "cloned from template 9000 whose configuration has changed since"})
		}
	}
	if len(s.Nodes) > 0 && g.u8()%3 == 0 {
		old, surge := &s.Nodes[g.intn(len(s.Nodes))], s.Nodes[g.intn(len(s.Nodes))]
		r := Replacement{VMID: surge.VMID, ReplacesVMID: old.VMID, ReplacesUUID: old.SystemUUID, Step: StepJoined}
		if g.flag() {
			r.Node, r.Ready = surge.Name, surge.Ready && !surge.Unschedulable
		} else {
			r.VMID, r.Step = 6100, StepStarted
			s.Operations = append(s.Operations, Operation{Kind: OpProvision, VMID: 6100, Node: "surge"})
		}
		s.Replacements = append(s.Replacements, r)
	}

	past := func() time.Time {
		if g.flag() {
			return time.Time{}
		}
		return t0.Add(-time.Duration(g.intn(600)) * time.Second)
	}
	h := History{CPUHighSince: past(), MemoryHighSince: past(), LowSince: past(), LastScaleUp: past(), LastScaleDown: past(), LastFailure: past()}

	// Workers that joined seconds ago, and the scheduler's verdicts on the
	// pending pods: the hold while the scheduler has its chance.
	for i := range s.Nodes {
		if g.u8()%3 == 0 {
			n := &s.Nodes[i]
			n.Created = t0.Add(-time.Duration(g.intn(40)) * time.Second)
			n.ReadySince = n.Created.Add(time.Duration(g.intn(5)) * time.Second)
			if n.ReadySince.After(t0) {
				n.ReadySince = t0
			}
		}
	}
	for i := range s.PendingPods {
		if g.flag() {
			pp := &s.PendingPods[i]
			pp.Message = fmt.Sprintf("0/%d nodes are available: 1 Insufficient nvidia.com/gpu.", g.intn(len(s.Nodes)+2))
			pp.MessageTime = pp.Since.Add(time.Duration(g.intn(60)) * time.Second)
		}
	}

	// Worker pools: the nodes, provisions and pending pods spread over them.
	if g.flag() {
		pools := poolPolicy().Pools[:1+g.intn(3)]
		for i := range pools {
			pools[i].MinWorkers = g.intn(3)
			pools[i].MaxWorkers = max(1, pools[i].MinWorkers+g.intn(4))
			pools[i].Priority = g.intn(3)
		}
		p.Pools = pools
		sum := 0
		for _, pl := range pools {
			sum += pl.MinWorkers
		}
		p.MaxWorkers = max(p.MaxWorkers, sum)
		names := []string{"", "general", "gpu", "big", "gone"}
		for i := range s.Nodes {
			s.Nodes[i].Pool = names[g.intn(len(names))]
		}
		for i := range s.Operations {
			s.Operations[i].Pool = names[g.intn(len(names))]
		}
		for i := range s.PendingPods {
			switch g.intn(4) {
			case 1:
				tolerates(&s.PendingPods[i])
				wantsGPU(&s.PendingPods[i])
			case 2:
				s.PendingPods[i].NodeSelector = map[string]string{"mem": "big"}
			}
		}
	}
	// The trend: a lookahead, and the usage of earlier decisions, rising,
	// falling or noisy around the usage now (some from the future).
	if g.flag() {
		p.Lookahead = g.dur(time.Minute, 2*time.Minute, 5*time.Minute)
		var used Resources
		for _, n := range s.Nodes {
			used = used.Add(n.Usage)
		}
		k := g.intn(7)
		for i := range k {
			f := int64(40 + g.intn(121))
			h.Usage = append(h.Usage, UsageSample{
				At:   t0.Add(-time.Duration(k-i)*time.Duration(15+g.intn(60))*time.Second + time.Duration(g.intn(2))*time.Hour/4),
				Used: Resources{MilliCPU: used.MilliCPU * f / 100, Memory: used.Memory * int64(40+g.intn(121)) / 100},
			})
		}
		slices.SortFunc(h.Usage, func(a, b UsageSample) int { return a.At.Compare(b.At) })
	}
	// The recurring load: the demand around one day ago, a step up or
	// down from the usage now at some instant (seasonal.go).
	if g.flag() {
		p.Seasons = []time.Duration{24 * time.Hour, 7 * 24 * time.Hour}
		var used Resources
		for _, n := range s.Nodes {
			used = used.Add(n.Usage)
		}
		at := t0.Add(-24*time.Hour - time.Duration(g.intn(8))*time.Minute)
		step := at.Add(time.Duration(g.intn(30)) * time.Minute)
		up := Resources{MilliCPU: int64(g.intn(8000)), Memory: int64(g.intn(16)) << 30}
		var day []LoadSample
		for at.Before(t0.Add(-23*time.Hour - 30*time.Minute)) {
			d := used
			if !at.Before(step) {
				d = d.Add(up)
			}
			day = append(day, LoadSample{At: at, Demand: d})
			at = at.Add(time.Duration(30+g.intn(120)) * time.Second)
		}
		s.Past = onEachDay(day)
	}
	return p, s, h
}

// onEachDay is day (samples around one day ago) on each of the last
// SeasonRepeats days, in time order: a rise that recurs.
func onEachDay(day []LoadSample) []LoadSample {
	var out []LoadSample
	for k := SeasonRepeats - 1; k >= 0; k-- {
		for _, x := range day {
			x.At = x.At.Add(-time.Duration(k) * 24 * time.Hour)
			out = append(out, x)
		}
	}
	return out
}

func FuzzDecide(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("seed: two workers, busy cluster, pending pods, hosts"))
	f.Add([]byte{2, 6, 40, 20, 45, 10, 10, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 12, 1, 1, 1, 1, 0, 0, 3, 4, 100, 100, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, s, h := world(data)
		plan := Decide(s, p, h, t0)
		checkInvariants(t, p, s, h, plan)

		if add := plan.Added(); add > 0 {
			// Applying a scale-up: the new VMs are in flight. Deciding again
			// must never remove a node; and if nothing capped the step, it must
			// not add more either (VMs in flight count toward the need).
			s2 := s
			s2.Operations = slices.Clone(s.Operations)
			for _, a := range plan.Actions {
				if a.Kind != ActionAdd {
					continue
				}
				for range a.Count {
					s2.Operations = append(s2.Operations, Operation{Kind: OpProvision, VMID: 5100 + len(s2.Operations), Node: fmt.Sprintf("applied%d", len(s2.Operations)), Step: "clone", Pool: a.Pool})
				}
			}
			capped := plan.Held(CodeMaxStep) || plan.Held(CodeMaxWorkers) || plan.Held(CodeHostRoom)
			again := Decide(s2, p, plan.Next, t0)
			checkInvariants(t, p, s2, plan.Next, again)
			if _, ok := again.Removal(); ok {
				t.Fatalf("scale-up of %d reversed by a removal\n%s\nthen\n%s", add, dump(plan), dump(again))
			}
			if !capped && again.Added() > 0 {
				t.Fatalf("scale-up of %d followed by %d more for the same need\n%s\nthen\n%s", add, again.Added(), dump(plan), dump(again))
			}
		}
		if rm, ok := plan.Removal(); ok {
			// Applying a removal: the node goes, its usage and pods move to the
			// remaining Ready, schedulable workers. Deciding again must not add.
			s2 := applyRemoval(s, rm.Node)
			again := Decide(s2, p, plan.Next, t0)
			checkInvariants(t, p, s2, plan.Next, again)
			if again.Added() > 0 {
				t.Fatalf("removal of %s reversed by adding %d\n%s\nthen\n%s", rm.Node, again.Added(), dump(plan), dump(again))
			}
		}
	})
}

func checkInvariants(t *testing.T, p Policy, s Snapshot, h History, plan Plan) {
	t.Helper()
	w := plan.Workers
	if w.Min != p.MinAt(t0) {
		t.Fatalf("minimum %d, Policy.MinAt says %d", w.Min, p.MinAt(t0))
	}
	if w.Desired < w.Min || w.Desired > w.Max || w.Max != p.MaxWorkers {
		t.Fatalf("desired %d outside [%d, %d] (max_workers %d)", w.Desired, w.Min, w.Max, p.MaxWorkers)
	}
	if add := plan.Added(); add > 0 && w.Current+add > p.MaxWorkers {
		t.Fatalf("adds %d to %d workers, beyond max_workers %d", add, w.Current, p.MaxWorkers)
	}
	removals := 0
	for _, a := range plan.Actions {
		if a.Kind != ActionRemove {
			continue
		}
		removals++
		i := slices.IndexFunc(s.Nodes, func(n Node) bool { return n.Name == a.Node })
		if i < 0 {
			t.Fatalf("removes unknown node %q", a.Node)
		}
		if !s.Nodes[i].Managed {
			t.Fatalf("removes unmanaged node %q", a.Node)
		}
		if s.Nodes[i].Annotations[AnnotationScaleDownDisabled] == "true" {
			t.Fatalf("removes %q despite its scale-down-disabled annotation", a.Node)
		}
		for _, c := range []struct {
			last time.Time
			cool time.Duration
		}{{h.LastScaleUp, p.CooldownAfterUp}, {h.LastScaleDown, p.CooldownAfterDown}, {h.LastFailure, p.CooldownAfterFailure}} {
			if !c.last.IsZero() && t0.Before(c.last.Add(c.cool)) {
				t.Fatalf("removes %q inside a cooldown (last %v, cooldown %v)", a.Node, c.last, c.cool)
			}
		}
		if w.Current <= w.Min {
			t.Fatalf("removes %q at %d workers, minimum %d", a.Node, w.Current, w.Min)
		}
		if len(a.Reasons) > 0 && a.Reasons[0].Code == CodeReplace {
			// A replacement's removal: its new worker Ready first, the
			// Ready, schedulable workers without it at the minimum.
			if !p.ReplaceDrifted || !slices.ContainsFunc(s.Replacements, func(r Replacement) bool { return r.ReplacesVMID == a.VMID && r.Ready }) {
				t.Fatalf("replacement removes %q without a Ready new worker for it\n%s", a.Node, dump(plan))
			}
			ready := 0
			for _, n := range s.Nodes {
				if n.Name != a.Node && n.Ready && !n.Unschedulable && !n.ControlPlane {
					ready++
				}
			}
			if ready < w.Min {
				t.Fatalf("replacement removes %q leaving %d Ready workers, minimum %d", a.Node, ready, w.Min)
			}
		} else if len(a.Reasons) > 0 && a.Reasons[0].Code != CodeAboveMax {
			// Consolidation's promise: the cluster without the node stays
			// under every scale_up_at - scale_down_margin.
			cpu, mem, ok := projectedWithout(p, s, a.Node)
			// The one exception: the last worker, running only DaemonSet
			// and mirror pods, at min_workers 0: no load moves anywhere.
			i := slices.IndexFunc(s.Nodes, func(n Node) bool { return n.Name == a.Node })
			last := !ok && !s.Metrics.Stale && i >= 0 && isEmpty(&s.Nodes[i]) && w.Min == 0
			if !last && (!ok || cpu >= p.CPU.Up-p.ScaleDownMargin || mem >= p.Memory.Up-p.ScaleDownMargin) {
				t.Fatalf("removes %q (%s) leaving CPU %.1f%% / memory %.1f%%, not under %g / %g (ok %v)",
					a.Node, a.Reasons[0].Code, cpu, mem, p.CPU.Up-p.ScaleDownMargin, p.Memory.Up-p.ScaleDownMargin, ok)
			}
		}
	}
	for _, a := range plan.Actions {
		if a.Kind == ActionAdd && a.Count < 1 {
			t.Fatalf("add action with count %d", a.Count)
		}
	}
	if removals > 1 {
		t.Fatalf("%d removals in one plan", removals)
	}
	// At most one surge beyond max_workers: a replacement's new worker
	// only alone in its plan, from at most max_workers workers, with no
	// replacement under way, when replace_drifted is on.
	surges := 0
	for _, a := range plan.Actions {
		if a.Kind != ActionReplace {
			continue
		}
		surges++
		switch {
		case !p.ReplaceDrifted:
			t.Fatalf("replaces %q with replace_drifted off", a.Node)
		case len(plan.Actions) > 1:
			t.Fatalf("a replacement's new worker beside other actions\n%s", dump(plan))
		case w.Current+1 > p.MaxWorkers+1:
			t.Fatalf("a replacement's new worker at %d workers: beyond max_workers %d + 1", w.Current, p.MaxWorkers)
		case len(s.Operations) > 0:
			t.Fatalf("a replacement's new worker while %d operations run", len(s.Operations))
		}
		for _, r := range s.Replacements {
			due := func(n Node) bool {
				drifted := slices.ContainsFunc(s.Drifted, func(d DriftedWorker) bool { return d.VMID == n.VMID && d.Node == n.Name })
				old := p.MaxAge > 0 && !t0.Before(n.Created.Add(p.MaxAge))
				return n.Managed && !n.ControlPlane && !n.Standby && (drifted || old)
			}
			if slices.ContainsFunc(s.Nodes, func(n Node) bool { return n.VMID == r.ReplacesVMID && n.SystemUUID == r.ReplacesUUID && due(n) }) {
				t.Fatalf("a second new worker while replacement %+v is under way\n%s", r, dump(plan))
			}
		}
	}
	if surges > 1 {
		t.Fatalf("%d replacements in one plan", surges)
	}
	// A pod awaiting the scheduler is held on a worker registered no
	// earlier than it went pending, never past NewWorkerRetry after that
	// worker turned Ready, and the plan wakes the decision by then.
	for _, a := range plan.Awaiting {
		i := slices.IndexFunc(s.Nodes, func(n Node) bool { return n.Name == a.Node })
		j := slices.IndexFunc(s.PendingPods, func(pp PendingPod) bool { return pp.Namespace == a.Namespace && pp.Name == a.Name })
		if i < 0 || j < 0 {
			t.Fatalf("awaiting %+v: unknown pod or node", a)
		}
		n, pp := s.Nodes[i], s.PendingPods[j]
		ready := n.Created
		if n.ReadySince.After(ready) {
			ready = n.ReadySince
		}
		if n.Created.Before(pp.Since) || !n.Ready || n.Unschedulable || !a.Until.After(t0) || a.Until.After(ready.Add(NewWorkerRetry)) {
			t.Fatalf("awaiting %+v on %+v (pod since %s)", a, n, pp.Since)
		}
		if plan.NextCheck.IsZero() || plan.NextCheck.After(a.Until) {
			t.Fatalf("awaiting %s/%s until %s, next check %s", a.Namespace, a.Name, a.Until, plan.NextCheck)
		}
	}
	if removals > 0 && plan.Added() > 0 {
		t.Fatalf("a plan both adds and removes")
	}
	// Pools: never an add above a pool's max_workers; never a removal
	// that takes a pool below its minimum, unless it is above its max.
	pools := p.WorkerPools()
	if len(plan.Pools) != len(pools) {
		t.Fatalf("plan has %d pools, the policy %d", len(plan.Pools), len(pools))
	}
	for _, a := range plan.Actions {
		i := slices.IndexFunc(pools, func(pl Pool) bool { return pl.Name == a.Pool })
		if a.Pool == "" && len(pools) == 1 {
			i = 0
		}
		switch a.Kind {
		case ActionAdd:
			if i < 0 {
				t.Fatalf("adds to unknown pool %q", a.Pool)
			}
			if st := plan.Pools[i]; st.Current+a.Count > pools[i].MaxWorkers {
				t.Fatalf("adds %d to pool %s at %d workers, beyond its max_workers %d", a.Count, a.Pool, st.Current, pools[i].MaxWorkers)
			}
		case ActionRemove:
			if len(pools) == 1 {
				continue
			}
			n := s.Nodes[slices.IndexFunc(s.Nodes, func(n Node) bool { return n.Name == a.Node })]
			name := n.Pool
			if name == "" {
				name = DefaultPool
			}
			k := slices.IndexFunc(pools, func(pl Pool) bool { return pl.Name == name })
			if k < 0 {
				continue
			}
			if st := plan.Pools[k]; st.Current <= pools[k].MaxWorkers && st.Ready <= pools[k].MinWorkers {
				t.Fatalf("removes %s of pool %s at %d Ready workers, its minimum %d", a.Node, name, st.Ready, pools[k].MinWorkers)
			}
		}
	}
	// A note never states something false: "no scale-up needed" only
	// with nothing added, and CPU and memory under their scale-up points
	// (a resource above, held by its window, has its own hold saying so).
	if plan.Held(CodeNoScaleUpNeed) {
		// (Utilization is rounded to 0.01: 47.997 under 48 shows as 48.)
		if u := plan.Utilization; plan.Added() > 0 || u == nil || u.CPU > p.CPU.Up || u.Memory > p.Memory.Up || plan.Held(CodeUpWindow) {
			t.Fatalf("no_scale_up_needed in a plan that contradicts it\n%s", dump(plan))
		}
	}
	// Every "A% under B%", "at or above", "at or below" reads true as printed.
	var said []Reason
	said = append(append(said, plan.Holds...), plan.Notes...)
	for _, a := range plan.Actions {
		said = append(said, a.Reasons...)
	}
	for _, r := range said {
		for _, m := range claimRE.FindAllStringSubmatch(r.Message, -1) {
			a, _ := strconv.ParseFloat(m[1], 64)
			b, _ := strconv.ParseFloat(m[3], 64)
			if ok := map[string]bool{"under": a < b, "at or above": a >= b, "at or below": a <= b}[m[2]]; !ok {
				t.Fatalf("%s: %q is false as printed", r.Code, m[0])
			}
		}
	}
}

// projectedWithout is the utilization of the Ready, schedulable workers
// (none being removed) without the named node, computed afresh, with the
// demand's recurring rise over the removal's horizon on top.
func projectedWithout(p Policy, s Snapshot, name string) (cpu, mem float64, ok bool) {
	if s.Metrics.Stale {
		return 0, 0, false
	}
	var usage, alloc Resources
	for _, n := range s.Nodes {
		removing := slices.ContainsFunc(s.Operations, func(o Operation) bool { return o.Kind == OpRemove && o.Node == n.Name })
		if n.ControlPlane || n.Standby || removing || !n.Ready || n.Unschedulable {
			continue
		}
		usage = usage.Add(n.Usage)
		if n.Name != name {
			alloc = alloc.Add(n.Allocatable)
		}
	}
	if alloc.MilliCPU <= 0 || alloc.Memory <= 0 {
		return 0, 0, false
	}
	// A rise that recurs within the flap window must fit as well.
	usage = usage.Add(RecurringAt(s.Past, p, t0).Down)
	return float64(usage.MilliCPU) * 100 / float64(alloc.MilliCPU), float64(usage.Memory) * 100 / float64(alloc.Memory), true
}

var claimRE = regexp.MustCompile(`(\d+(?:\.\d+)?)% (under|at or above|at or below) (\d+(?:\.\d+)?)%`)

// applyRemoval returns s without the named node, its usage spread over the
// remaining Ready, schedulable workers in proportion to their allocatable,
// and its pods first-fit onto them by requests.
func applyRemoval(s Snapshot, name string) Snapshot {
	out := s
	out.Nodes = nil
	var gone Node
	for _, n := range s.Nodes {
		if n.Name == name {
			gone = n
			continue
		}
		n.Pods = slices.Clone(n.Pods)
		out.Nodes = append(out.Nodes, n)
	}
	var active []int
	var alloc Resources
	for i, n := range out.Nodes {
		if !n.ControlPlane && n.Ready && !n.Unschedulable && !slices.ContainsFunc(s.Operations, func(o Operation) bool { return o.Kind == OpRemove && o.Node == n.Name }) {
			active = append(active, i)
			alloc = alloc.Add(n.Allocatable)
		}
	}
	for _, i := range active {
		n := &out.Nodes[i]
		n.Usage.MilliCPU += gone.Usage.MilliCPU * n.Allocatable.MilliCPU / max(alloc.MilliCPU, 1)
		n.Usage.Memory += int64(float64(gone.Usage.Memory) * float64(n.Allocatable.Memory) / float64(max(alloc.Memory, 1)))
	}
	pods := slices.Clone(gone.Pods)
	slices.SortStableFunc(pods, func(a, b Pod) int {
		return cmp.Or(cmp.Compare(b.Requests.MilliCPU, a.Requests.MilliCPU), cmp.Compare(b.Requests.Memory, a.Requests.Memory))
	})
	for _, pod := range pods {
		if pod.OwnerKind == OwnerDaemonSet || pod.OwnerKind == OwnerNode {
			continue
		}
		for _, i := range active {
			n := &out.Nodes[i]
			if pod.Requests.Fits(n.Allocatable.Sub(n.Requests)) {
				n.Requests = n.Requests.Add(pod.Requests)
				n.Pods = append(n.Pods, pod)
				break
			}
		}
	}
	return out
}
