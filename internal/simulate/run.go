package simulate

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// Host is the one PVE host the simulation places VMs on (room is not modelled).
const Host = "pve"

// Run replays the trace through the real decision engine.
func Run(tr Trace, s Setup, m Model) Result {
	c := newCluster(m, s)
	c.fillStandby(s.Policy.StandbySize)
	r := Result{Name: "pve-autoscaler"}
	end := tr.Duration()
	a := accountant{r: &r, cpuUp: s.Policy.CPU.Up, memUp: s.Policy.Memory.Up, every: seriesEvery(end, m.Step)}
	var hist scaler.History
	slots := make([]time.Duration, max(s.MaxParallel, 1)) // when each clone slot frees
	var next time.Duration
	si, lastPending := 0, 0
	var l load
	var memo decided
	// The replay's memory of its own load, for the recurring rises
	// (scaler's seasonal.go), as the daemon's.
	past := scaler.NewLoadMemory(s.Policy)
	for t := time.Duration(0); t < end; {
		var smp Sample
		smp, si = tr.at(t, si)
		l = c.load(t, smp)
		c.track(t, l.pending)
		// As the daemon: a pod going pending wakes it; a plan's NextCheck
		// (a grace or window ending) brings the next decision forward.
		woken := l.pending > lastPending
		lastPending = l.pending
		if t >= next || woken {
			next = t + s.Interval
			now := m.Epoch.Add(t)
			var plan scaler.Plan
			recur := past.Recurring(s.Policy, now)
			if c.version == memo.version && memo.still && (memo.horizon.IsZero() || now.Before(memo.horizon)) && recur == memo.recur {
				// The same snapshot and history as the last decision, which
				// changed nothing, before any clock it reads runs out, and
				// the same load one period ago: Decide would make the
				// same plan (scaler.Horizon, scaler.RecurringAt).
				plan = memo.plan
				r.skipped++
			} else {
				snap := c.snapshot(t, l)
				snap.Past = past.Past(s.Policy, now)
				plan = scaler.Decide(snap, s.Policy, hist, now)
				r.decided++
				// A decision whose one change to the history is the
				// usage sample it recorded (scaler's trend) stands for the
				// next ones as well: given the history it returned, the
				// same snapshot records nothing and makes the same plan,
				// up to that history's horizon.
				same := plan.Next
				same.Usage = hist.Usage
				memo = decided{version: c.version, plan: plan, recur: recur,
					still: len(plan.Actions) == 0 && same.Equal(hist), horizon: scaler.Horizon(snap, s.Policy, plan.Next, now)}
			}
			hist = plan.Next
			if ld := plan.Load; !ld.At.IsZero() {
				ld.At = now // a plan standing for this decision: the same load now
				past.Add(ld)
			}
			if s.Decided != nil {
				seen := plan
				seen.Time = now
				s.Decided(seen)
			}
			if !plan.NextCheck.IsZero() {
				at := plan.NextCheck.Sub(m.Epoch).Round(m.Step)
				next = min(next, max(at, t+m.Step))
			}
			c.carryOut(t, plan, slots, &r)
			l = c.load(t, smp)
		}
		// The steps up to the next decision, the next row of the trace or
		// a VM's next moment see this same load, and none wakes the
		// daemon: accounted at once (the same sums as one by one). A
		// decision that left more pods pending than the step began with
		// wakes the next step: that one goes alone.
		n := int64(1)
		if l.pending == lastPending {
			stop := min(end, next, c.until)
			if si+1 < len(tr.Samples) {
				stop = min(stop, tr.Samples[si+1].At)
			}
			n = max(1, int64((stop-t+m.Step-1)/m.Step))
		}
		a.steps(t, m.Step, n, l)
		t += time.Duration(n) * m.Step
	}
	smp, _ := tr.at(end, si)
	a.finish(end, c.load(end, smp))
	return r
}

// carryOut starts the plan's actions at t as the reconciler would, with
// the modelled durations: an add wakes the standby workers it names and
// clones the rest, a removal parks or destroys, a refill builds a standby
// worker, a retirement destroys one. slots are when each clone slot
// (proxmox.max_parallel_clones) frees. Replacements are not modelled (no
// worker drifts here).
func (c *cluster) carryOut(t time.Duration, plan scaler.Plan, slots []time.Duration, r *Result) {
	for _, a := range plan.Actions {
		switch a.Kind {
		case scaler.ActionAdd:
			for _, vmid := range a.Wake {
				if v := c.byVMID(vmid); v != nil {
					c.wake(v, t)
					r.Wakes++
				}
			}
			clones := a.Count - len(a.Wake)
			for range clones {
				c.add(t, c.cloneReady(t, slots, clones))
			}
		case scaler.ActionRefill:
			for range a.Count {
				c.build(t, c.cloneReady(t, slots, a.Count))
				r.Refills++
			}
		case scaler.ActionRetire:
			if v := c.byVMID(a.VMID); v != nil {
				c.retireAt(v, t)
				r.Retires++
			}
		}
	}
	if add := plan.Added(); add > 0 {
		r.event(t, add, plan.Workers.Desired, why(plan, scaler.ActionAdd))
	}
	if rm, ok := plan.Removal(); ok {
		for _, v := range c.vms {
			switch {
			case v.name != rm.Node:
			case rm.Park:
				c.park(v, t)
				r.Parks++
			default:
				c.remove(v, t, t+c.m.Removal())
			}
		}
		r.event(t, -1, plan.Workers.Desired, why(plan, scaler.ActionRemove))
	}
}

// cloneReady takes the clone slot that frees first for one of n clones
// requested at t, and returns when that worker's Node is Ready.
func (c *cluster) cloneReady(t time.Duration, slots []time.Duration, n int) time.Duration {
	k := min(n, len(slots))
	i := 0
	for j := range slots {
		if slots[j] < slots[i] {
			i = j
		}
	}
	start := max(t, slots[i])
	slots[i] = start + c.m.clone(c.s.FullClone, k)
	return start + c.m.Provision(c.s.FullClone, k)
}

// byVMID is the VM of that vmid, nil when there is none.
func (c *cluster) byVMID(vmid int) *vm {
	for _, v := range c.vms {
		if v.vmid == vmid {
			return v
		}
	}
	return nil
}

// decided is the last decision of a replay, and when it may stand for
// the next one.
type decided struct {
	version uint64 // the cluster's snapshot version it saw
	plan    scaler.Plan
	// still: it had no action and returned the history it was given, but
	// for a usage sample recorded.
	still   bool
	horizon time.Time
	recur   scaler.Recurring // what it read of the load one period ago
}

func why(p scaler.Plan, kind scaler.ActionKind) string {
	for _, a := range p.Actions {
		if a.Kind == kind && len(a.Reasons) > 0 {
			return a.Reasons[0].Message
		}
	}
	return ""
}

// snapshot is what the Kubernetes and Proxmox adapters would report. It
// is built in the cluster's buffers: valid until the next call (Decide
// keeps nothing of its snapshot).
func (c *cluster) snapshot(t time.Duration, l load) scaler.Snapshot {
	s := &c.snap
	s.Nodes, s.Operations, s.PendingPods, s.Standby = s.Nodes[:0], s.Operations[:0], s.PendingPods[:0], s.Standby[:0]
	epoch := c.m.Epoch
	for i, v := range l.ready {
		k := int64(l.podsOn(i))
		used := scaler.Resources{MilliCPU: l.base.MilliCPU + k*c.m.Pod.MilliCPU, Memory: l.base.Memory + k*c.m.Pod.Memory}
		v.pods = c.pods(v, v.pods[:0], l.base, int(k))
		n := scaler.Node{
			Name: v.name, Managed: true, VMID: v.vmid, Host: Host, Ready: true,
			Created: epoch.Add(v.joined), Allocatable: c.alloc, Usage: used, Requests: used, Pods: v.pods,
		}
		if v.ready > v.joined {
			n.ReadySince = epoch.Add(v.ready) // woken: its Node is the one that registered when it was built
		}
		s.Nodes = append(s.Nodes, n)
	}
	for _, v := range c.vms {
		c.report(s, v, t)
	}
	for i, since := range c.pending {
		for len(c.pendingNames) <= i {
			c.pendingNames = append(c.pendingNames, "pending-"+strconv.Itoa(len(c.pendingNames)))
		}
		s.PendingPods = append(s.PendingPods, scaler.PendingPod{Namespace: "sim", Name: c.pendingNames[i], Requests: c.m.Pod, Since: epoch.Add(since)})
	}
	return *s
}

// report adds what the adapters show of v at t besides a Ready worker:
// its operation in flight (as Classify and the reconciler report them),
// and a standby worker with its Node, which stays registered, cordoned
// and tainted standby while the VM is stopped or booting.
func (c *cluster) report(s *scaler.Snapshot, v *vm, t time.Duration) {
	epoch := c.m.Epoch
	op := scaler.Operation{VMID: v.vmid, Node: v.name, Host: Host}
	parked := false
	switch v.phase(t) {
	case provisioning:
		op.Kind, op.Step, op.Started = scaler.OpProvision, "joining", epoch.Add(v.up)
		switch v.how {
		case refill:
			op.Kind = scaler.OpRefill
		case woken:
			op.Step, parked = scaler.StepWaking, true
		}
	case leaving:
		op.Kind, op.Step, op.Started = scaler.OpRemove, "removing", epoch.Add(v.leave)
		if v.down != never {
			op.Step = scaler.StepParking
		}
	case standby:
		s.Standby = append(s.Standby, scaler.StandbyWorker{VMID: v.vmid, Name: v.name, Host: Host, Created: epoch.Add(v.built)})
		op.Kind, parked = "", true
	case retiring:
		op.Kind, op.Step, op.Started, parked = scaler.OpRetire, scaler.StepRetiring, epoch.Add(v.retire), true
	default:
		return
	}
	if op.Kind != "" {
		s.Operations = append(s.Operations, op)
	}
	if parked {
		s.Nodes = append(s.Nodes, scaler.Node{Name: v.name, Managed: true, Standby: true, VMID: v.vmid, Host: Host, Unschedulable: true,
			Created: epoch.Add(v.joined), Allocatable: c.alloc})
	}
}

// pods splits a node's base share into pods of about the model's size, plus
// the placed pods of exactly that size, appended to buf.
func (c *cluster) pods(v *vm, buf []scaler.Pod, base scaler.Resources, placed int) []scaler.Pod {
	k := ceilDiv(base.MilliCPU, c.m.Pod.MilliCPU)
	k = max(k, ceilDiv(base.Memory, c.m.Pod.Memory))
	pods := slices.Grow(buf, int(k)+placed)
	for i := int64(0); i < k; i++ {
		pods = append(pods, scaler.Pod{Namespace: "sim", Name: v.podName(false, int(i)), OwnerKind: "ReplicaSet",
			Requests: scaler.Resources{MilliCPU: base.MilliCPU / k, Memory: base.Memory / k}})
	}
	for i := range placed {
		pods = append(pods, scaler.Pod{Namespace: "sim", Name: v.podName(true, i), OwnerKind: "ReplicaSet", Requests: c.m.Pod})
	}
	return pods
}

// RunRecipe replays the trace through the recipe: every RecipeInterval it
// averages `kubectl top nodes` CPU; at or above RecipeUp it adds one
// worker, at or below RecipeDown it removes the last one (no drain), each
// change one blocking `terraform apply` of RecipeApply, then RecipeCooldown
// from the change's start before the next. Memory and pending pods are
// invisible to it.
func RunRecipe(tr Trace, s Setup, m Model) Result {
	c := newCluster(m, s)
	r := Result{Name: "recipe"}
	end := tr.Duration()
	a := accountant{r: &r, cpuUp: s.Policy.CPU.Up, memUp: s.Policy.Memory.Up, every: seriesEvery(end, m.Step)}
	count := len(c.vms) // worker_count in terraform.tfvars
	var next time.Duration
	last := time.Duration(-1)
	si := 0
	var l load
	for t := time.Duration(0); t < end; t += m.Step {
		var smp Sample
		smp, si = tr.at(t, si)
		l = c.load(t, smp)
		c.track(t, l.pending)
		if t >= next {
			next = t + m.RecipeInterval
			cooled := last < 0 || t-last >= m.RecipeCooldown
			switch {
			case len(l.ready) == 0 || !cooled:
			case l.cpu >= m.RecipeUp && count < s.Policy.MaxWorkers:
				count++
				c.add(t, t+m.RecipeApply)
				last, next = t, t+m.RecipeApply+m.RecipeInterval
				r.event(t, +1, count, fmt.Sprintf("average CPU %.0f%% >= %.0f%%: worker_count=%d, terraform apply", l.cpu, m.RecipeUp, count))
			case l.cpu <= m.RecipeDown && count > s.Policy.MinWorkers:
				count--
				// Terraform's count removes the highest index: the newest VM.
				var newest *vm
				for _, v := range c.vms {
					if v.gone == never && (newest == nil || v.vmid > newest.vmid) {
						newest = v
					}
				}
				c.remove(newest, t+m.RecipeApply, t+m.RecipeApply)
				last, next = t, t+m.RecipeApply+m.RecipeInterval
				r.event(t, -1, count, fmt.Sprintf("average CPU %.0f%% <= %.0f%%: worker_count=%d, terraform apply (no drain)", l.cpu, m.RecipeDown, count))
			}
			l = c.load(t, smp)
		}
		a.step(t, m.Step, l)
	}
	smp, _ := tr.at(end, si)
	a.finish(end, c.load(end, smp))
	return r
}

// LimitName is the clairvoyant floor's column.
const LimitName = "limit"

// RunLimit is the floor no scaler can beat on this trace and model: a
// clairvoyant policy with instant provisioning that runs, at each moment,
// the fewest workers keeping every resource under its scale_up_at with no
// pod pending, within the minimum (schedules included) and max_workers.
// It decides nothing, so it has no events.
func RunLimit(tr Trace, s Setup, m Model) Result {
	c := newCluster(m, s)
	r := Result{Name: LimitName, Clairvoyant: true}
	end := tr.Duration()
	a := accountant{r: &r, cpuUp: s.Policy.CPU.Up, memUp: s.Policy.Memory.Up, every: seriesEvery(end, m.Step)}
	si, prev, n := -1, -1, 0
	var minAt int
	var l load
	for t := time.Duration(0); t < end; t += m.Step {
		var smp Sample
		smp, si = tr.at(t, max(si, 0))
		if lo := s.Policy.MinAt(m.Epoch.Add(t)); si != prev || lo != minAt {
			prev, minAt = si, lo
			n = c.fewest(smp, lo, s.Policy.MaxWorkers)
			l = c.loadOf(n, smp)
		}
		a.step(t, m.Step, l)
	}
	smp, _ := tr.at(end, max(si, 0))
	a.finish(end, c.loadOf(c.fewest(smp, s.Policy.MinAt(m.Epoch.Add(end)), s.Policy.MaxWorkers), smp))
	return r
}

// fewest is the smallest worker count in [lo, hi] under every scale_up_at
// with nothing pending (hi when none is); 0 only when there is no demand.
func (c *cluster) fewest(smp Sample, lo, hi int) int {
	if lo <= 0 && smp.CPU == 0 && smp.Memory == 0 && smp.Pending == 0 {
		return 0 // nothing to run (a pool whose min_workers is 0)
	}
	for n := max(lo, 0); n < hi; n++ {
		if sh := c.share(n, smp); n > 0 && sh.pending == 0 && sh.cpu < c.s.Policy.CPU.Up && sh.mem < c.s.Policy.Memory.Up {
			return n
		}
	}
	return hi
}

// loadOf is the load on n Ready workers that exist (for the accounting).
func (c *cluster) loadOf(n int, smp Sample) load {
	sh := c.share(n, smp)
	return load{ready: make([]*vm, n), vms: n, pending: sh.pending, cpu: sh.cpu, mem: sh.mem}
}

// Simulate runs the engine over the trace, with compare the recipe too,
// and the clairvoyant limit last.
func Simulate(tr Trace, s Setup, m Model, compare bool) Report {
	rep := Report{Trace: tr.Name, Duration: tr.Duration(), Samples: len(tr.Samples), Provision: m.Provision(s.FullClone, 1)}
	rep.Results = append(rep.Results, Run(tr, s, m))
	if compare {
		rep.Results = append(rep.Results, RunRecipe(tr, s, m))
	}
	rep.Results = append(rep.Results, RunLimit(tr, s, m))
	return rep
}

// ThresholdsOf returns the policy's thresholds for the chart.
func ThresholdsOf(s Setup) Thresholds {
	return Thresholds{CPUUp: s.Policy.CPU.Up, CPUDown: s.Policy.CPU.Down, MemUp: s.Policy.Memory.Up, MemDown: s.Policy.Memory.Down}
}
