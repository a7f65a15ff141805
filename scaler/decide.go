package scaler

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxUnreadyCount and maxUnreadyPercent are the Cluster Autoscaler's rule:
// with more than 3 or more than 45% of the managed nodes unready, the
// cluster is unhealthy and nothing is removed.
const (
	maxUnreadyCount   = 3
	maxUnreadyPercent = 45.0
	// maxFitChecks bounds how many scale-down candidates are simulated per plan.
	maxFitChecks = 64
)

// Decide turns a snapshot of the cluster into a plan. It is a pure function:
// no I/O, no clock, no globals; the same inputs give the same plan.
func Decide(s Snapshot, p Policy, h History, now time.Time) Plan {
	var d decision
	d.init(s, p, h, now)
	d.newStandby()
	d.observe()
	d.initReplace()
	d.planScaleUp()
	d.podVerdicts()
	switch {
	case !d.wantsCapacity:
		d.planScaleDown()
	case d.added == 0:
		d.hold(CodeCapacityWanted, "scale-down held: the cluster wants more capacity, not less")
		d.carryClocks()
	default:
		d.carryClocks()
	}
	d.planStandby()
	d.planReplace()
	d.noteDrift()
	d.applyPause()
	return d.finish()
}

// decision is the working state of one Decide call.
type decision struct {
	s   Snapshot
	p   Policy
	h   History
	now time.Time

	plan Plan

	workers      []int           // indexes into s.Nodes of workers not being removed
	active       []int           // Ready, schedulable workers: the utilization set
	removing     map[string]bool // nil when none
	inFlight     int             // provisions not yet visible as a Node
	stuck        int             // stuck provisions not visible as a Node: no capacity, counted against max_workers
	joining      int             // provisions whose Node registered but is not Ready yet
	newestJoined time.Time       // the newest managed, Ready worker's registration
	minWorkers   int
	scheduled    bool // a schedule raised minWorkers
	boosted      bool // a boost raised minWorkers (above the schedules)
	baseMin      int  // minWorkers before the schedules
	overOnly     bool // only workers of pools above their max_workers may go
	shape        Resources

	usage, alloc Resources
	utilValid    bool
	cpuPct       float64
	memPct       float64
	// proj is usage projected Policy.Lookahead ahead on its trend
	// (trend.go), never under usage; projCPU and projMem its percentages
	// of alloc (cpuPct and memPct without a rise).
	proj             Resources
	projCPU, projMem float64
	// cpuSeason / memSeason: the period whose recurring rise
	// (seasonal.go) made proj's figure, zero when the trend or the usage
	// did; projDown is the usage a removal must leave room for: proj, or
	// the recurring rise further ahead (SeasonDownAhead).
	cpuSeason, memSeason time.Duration
	// pendingDemand: the requests of the pending pods (in their grace
	// too) a new worker of the utilization pool could run (Plan.Load).
	pendingDemand Resources
	projDown      Resources

	added         int
	wantsCapacity bool
	standby       standbyState

	// The rolling replacement (replace.go): the workers due for it, and
	// the replacement under way (underWay) with its old worker.
	due      []stale
	repl     Replacement
	replOld  stale
	underWay bool
	// replWait: a replacement's old worker VM is still listed but no
	// Node of its identity is seen this tick: nothing of it is undone.
	replWait string
	// validRepl: the replacements whose markers are taken (replacing).
	validRepl []Replacement

	// Pending pods: those no new worker can run (they hold no
	// scale-down), those counted toward new workers and the workers
	// they need beyond the ones in flight.
	noWorker int
	// youngNoWorker: pending pods in their grace no new worker could run
	// (they hold no scale-down either).
	youngNoWorker int

	// The worker pools (Policy.WorkerPools), by index and by name;
	// utilPool is the one utilization scale-ups and schedules add to.
	pools    []poolState
	poolIdx  map[string]int
	utilPool int

	// Consolidation's view of the workers pods could move to, and
	// podsFit's buffers.
	targets     targets
	scratchPods []*Pod
	scratchUndo []podMove
}

func (d *decision) init(s Snapshot, p Policy, h History, now time.Time) {
	*d = decision{s: s, p: p, h: h, now: now}
	d.initPools()
	d.plan.Time = now
	d.plan.Actions = []Action{}
	d.plan.Holds = []Reason{}

	// The worker Nodes by name (Ready and schedulable or not), made for
	// the first provision seen.
	var nodeNames, nodeReady map[string]bool
	for _, op := range s.Operations {
		switch op.Kind {
		case OpRemove:
			if d.removing == nil {
				d.removing = map[string]bool{}
			}
			d.removing[op.Node] = true
			d.plan.Workers.Removing++
		case OpProvision:
			if nodeNames == nil {
				nodeNames = make(map[string]bool, len(s.Nodes))
				nodeReady = make(map[string]bool, len(s.Nodes))
				for _, n := range s.Nodes {
					if n.Standby {
						continue // a parked worker's Node: not a worker (a waking one is in flight)
					}
					nodeNames[n.Name] = true
					nodeReady[n.Name] = n.Ready && !n.Unschedulable
				}
			}
			// A provision whose Node has registered counts once, as that
			// node; until it is Ready its capacity is still on its way. A
			// stuck one (past its deadline, kept, backing off) will not
			// become capacity by itself: it counts against max_workers only.
			pi := d.poolOf(true, op.Pool)
			registered := op.Node != "" && nodeNames[op.Node]
			switch {
			case op.Stuck != "" && !registered:
				d.stuck++
				if pi >= 0 {
					d.pools[pi].stuck++
				}
			case op.Stuck != "":
				// counted as its Node, which serves only if Ready
			case !registered:
				d.inFlight++
				if pi >= 0 {
					d.pools[pi].inFlight++
				}
			case !nodeReady[op.Node]:
				d.joining++
				if pi >= 0 {
					d.pools[pi].joining++
				}
			}
		}
	}
	var newest *Node
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.ControlPlane || n.Standby || d.removing[n.Name] {
			continue
		}
		d.workers = append(d.workers, i)
		pi := d.poolOf(n.Managed, n.Pool)
		if pi >= 0 {
			d.pools[pi].workers++
		}
		if n.Ready {
			d.plan.Workers.Ready++
		} else {
			d.plan.Workers.NotReady++
			if pi >= 0 {
				d.pools[pi].notReady++
			}
		}
		if n.Ready && !n.Unschedulable {
			d.active = append(d.active, i)
			d.usage = d.usage.Add(n.Usage)
			d.alloc = d.alloc.Add(n.Allocatable)
			if pi >= 0 {
				d.pools[pi].used = d.pools[pi].used.Add(n.Usage)
			}
		}
		if n.Managed && n.Ready && n.Allocatable.MilliCPU > 0 && n.Allocatable.Memory > 0 {
			if newest == nil || n.Created.After(newest.Created) {
				newest = n
			}
			if pi >= 0 && (d.pools[pi].newest == nil || n.Created.After(d.pools[pi].newest.Created)) {
				d.pools[pi].newest = n
			}
		}
	}
	for i := range d.pools {
		if ps := &d.pools[i]; ps.newest != nil {
			ps.shape = ps.newest.Allocatable
		}
	}
	d.plan.Workers.Provisioning = d.inFlight
	d.plan.Workers.Stuck = d.stuck
	d.plan.Workers.Current = len(d.workers) + d.inFlight + d.stuck
	d.plan.Workers.Max = p.MaxWorkers

	// Utilization scale-ups add workers of the utilization pool's shape.
	d.shape = d.pools[d.utilPool].shape
	if newest != nil {
		d.newestJoined = newest.Created
	}

	d.minWorkers = p.baseMin()
	d.baseMin = d.minWorkers
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	local := now.In(loc)
	for _, sc := range p.Schedules {
		if sc.activeAt(local, p.ScheduleLead) && sc.MinWorkers > d.minWorkers {
			d.scheduled = true
			d.minWorkers = sc.MinWorkers
			d.note(CodeScheduleActive, "schedule %q (%s) raises the minimum to %d", sc.Name, sc, sc.MinWorkers)
		}
	}
	d.applyBoosts()
	d.plan.Boosts = s.Control.BoostsAt(now)
	d.minWorkers = min(d.minWorkers, p.MaxWorkers)
	d.plan.Workers.Min = d.minWorkers
}

// observe computes utilization and moves the sustained-condition clocks.
func (d *decision) observe() {
	next := d.h
	switch {
	case d.s.Metrics.Stale:
		msg := "metrics stale, no utilization decisions"
		if d.s.Metrics.Error != "" {
			msg += ": " + d.s.Metrics.Error
		}
		d.hold(CodeMetricsStale, "%s", msg)
	case d.alloc.MilliCPU <= 0 || d.alloc.Memory <= 0:
		d.hold(CodeNoCapacity, "no Ready, schedulable worker: utilization unknown, no utilization decisions")
	default:
		d.utilValid = true
		d.cpuPct = pct(d.usage.MilliCPU, d.alloc.MilliCPU)
		d.memPct = pct(d.usage.Memory, d.alloc.Memory)
		d.plan.Utilization = &Utilization{CPU: round2(d.cpuPct), Memory: round2(d.memPct), Used: d.usage}
	}
	d.plan.Pending = len(d.s.PendingPods)
	// Consolidation's clocks move only in planScaleDown: they start over
	// whenever it is not reached.
	next.Unneeded, next.Empty = nil, nil
	if !d.utilValid {
		// Fail static: without trustworthy figures the clocks start over.
		next.CPUHighSince, next.MemoryHighSince, next.LowSince = time.Time{}, time.Time{}, time.Time{}
		next.Usage = nil
	} else {
		span := TrendSpans * d.p.Lookahead
		next.Usage = recordUsage(next.Usage, d.usage, d.now, span)
		p := projectUsage(inWindow(next.Usage, d.now, span), d.p.Lookahead)
		d.proj = Resources{MilliCPU: max(p.MilliCPU, d.usage.MilliCPU), Memory: max(p.Memory, d.usage.Memory)}
		d.projDown = d.proj
		if len(d.p.Seasons) > 0 {
			d.projectSeasons()
		}
		d.projCPU, d.projMem = pct(d.proj.MilliCPU, d.alloc.MilliCPU), pct(d.proj.Memory, d.alloc.Memory)
		next.CPUHighSince = since(next.CPUHighSince, d.projCPU >= d.p.CPU.Up, d.now)
		next.MemoryHighSince = since(next.MemoryHighSince, d.projMem >= d.p.Memory.Up, d.now)
		next.LowSince = since(next.LowSince, d.cpuPct <= d.p.CPU.Down && d.memPct <= d.p.Memory.Down, d.now)
	}
	d.plan.Next = next
}

// projectSeasons raises proj and projDown by the recurring rises one
// period ago (seasonal.go).
func (d *decision) projectSeasons() {
	r := RecurringAt(d.s.Past, d.p, d.now)
	if v := d.usage.MilliCPU + r.Up.MilliCPU; v > d.proj.MilliCPU {
		d.proj.MilliCPU, d.cpuSeason = v, r.CPUAt
	}
	if v := d.usage.Memory + r.Up.Memory; v > d.proj.Memory {
		d.proj.Memory, d.memSeason = v, r.MemAt
	}
	d.projDown = Resources{MilliCPU: max(d.proj.MilliCPU, d.usage.MilliCPU+r.Down.MilliCPU), Memory: max(d.proj.Memory, d.usage.Memory+r.Down.Memory)}
}

func since(prev time.Time, cond bool, now time.Time) time.Time {
	switch {
	case !cond:
		return time.Time{}
	case prev.IsZero() || prev.After(now):
		return now
	default:
		return prev
	}
}

// planScaleUp sizes each pool's scale-up to the largest of the needs it
// finds there (its minimum, pending pods that chose it, and for the
// utilization pool utilization and schedules), then caps the adds by
// each pool's max_workers, the global max_workers, max_nodes_per_step,
// the cores and memory bounds and the hosts' room, sharing a limited
// room out by pool priority.
func (d *decision) planScaleUp() {
	current := d.plan.Workers.Current
	util := &d.pools[d.utilPool]
	want := func(ps *poolState, n int, rs ...Reason) {
		ps.reasons = append(ps.reasons, rs...)
		ps.need = max(ps.need, n)
	}

	// The old worker of a replacement under way is leaving: it does not
	// count toward a minimum (so a worker lost meanwhile is made up for,
	// and its removal is not held by the minimum for ever).
	leaving, leavingPool := 0, -1
	if d.underWay {
		leaving = 1
		o := &d.s.Nodes[d.replOld.idx]
		leavingPool = d.poolOf(o.Managed, o.Pool)
	}
	// Stuck provisions count against max_workers, not toward a minimum.
	stuckNote := func(n int) string {
		if n == 0 {
			return ""
		}
		return fmt.Sprintf(" (and %s stuck, not counted)", count(n, "provision"))
	}
	leavingNote := func(pool int) string {
		if d.underWay && (pool < 0 || pool == leavingPool) {
			return fmt.Sprintf(" (and %s, being replaced, not counted)", d.s.Nodes[d.replOld.idx].Name)
		}
		return ""
	}
	if !d.multi() {
		if serving := current - d.stuck - leaving; serving < d.minWorkers {
			code, by := CodeBelowMin, ""
			switch {
			case d.boosted:
				code, by = CodeBoost, " (a boost)"
			case d.minWorkers > d.baseMin:
				code = CodeScheduleMin
			}
			want(util, d.minWorkers-serving, reason(code, "%s%s%s, below the minimum of %d%s", count(serving, "worker"), stuckNote(d.stuck), leavingNote(-1), d.minWorkers, by))
		}
	} else {
		short := 0
		for i := range d.pools {
			ps := &d.pools[i]
			c := ps.current() - ps.stuck
			if i == leavingPool {
				c--
			}
			if c < ps.MinWorkers {
				short += ps.MinWorkers - c
				code, by := CodeBelowMin, ""
				if ps.boosted {
					code, by = CodeBoost, " (a boost)"
				}
				want(ps, ps.MinWorkers-c, reason(code, "%s%s%s%s, below its minimum of %d%s", d.poolPrefix(i), count(c, "worker"), stuckNote(ps.stuck), leavingNote(i), ps.MinWorkers, by))
			}
		}
		// A schedule or a boost raises the minimum of all pools together:
		// the rest of it goes to the utilization pool.
		if n := d.minWorkers - (current - d.stuck - leaving) - short; (d.scheduled || d.boosted) && n > 0 {
			code, by := CodeScheduleMin, "a schedule"
			if d.boosted {
				code, by = CodeBoost, "a boost"
			}
			want(util, util.need+n, reason(code, "%s, below the minimum of %d (%s): %s to pool %s", count(current-d.stuck, "worker"), d.minWorkers, by, count(n, "worker"), util.Name))
		}
	}

	if d.utilValid {
		n, rs := d.utilizationNeed()
		if d.multi() {
			for k := range rs {
				rs[k].Message = d.poolPrefix(d.utilPool) + rs[k].Message
			}
		}
		want(util, n, rs...)
	}

	if d.p.PendingPods {
		d.pendingNeed()
		for i := range d.pools {
			ps := &d.pools[i]
			if ps.countedNeed > 0 {
				want(ps, ps.countedNeed)
			}
		}
	}

	d.plan.Next.UpOwed = 0
	need := 0
	for _, ps := range d.pools {
		need += ps.need
	}
	if need == 0 {
		// Only when every clause is true: a resource at or above its
		// threshold (held by its window, a cooldown or the VMs in flight)
		// has its own hold saying so, and pods are named only when looked at.
		if d.utilValid && d.projCPU < d.p.CPU.Up && d.projMem < d.p.Memory.Up {
			pods := ""
			if d.p.PendingPods {
				pods = ", no pod unschedulable past the grace needs a new worker"
			}
			d.note(CodeNoScaleUpNeed, "no scale-up needed: CPU %s%% under %g%%, memory %s%% under %g%%%s, %s at or above the minimum of %d",
				pctVs(d.cpuPct, d.p.CPU.Up, true), d.p.CPU.Up, pctVs(d.memPct, d.p.Memory.Up, true), d.p.Memory.Up, pods, count(current, "worker"), d.minWorkers)
		}
		return
	}
	d.wantsCapacity = true
	if d.cooling(d.h.LastFailure, d.p.CooldownAfterFailure) {
		d.hold(CodeCooldownFailure, "scale-up held: cooldown after a failed operation, %s left", d.left(d.h.LastFailure, d.p.CooldownAfterFailure))
		return
	}
	order := d.byPriority()
	for _, i := range order {
		ps := &d.pools[i]
		ps.add = ps.need
		if len(d.p.Pools) > 0 && ps.add > ps.MaxWorkers-ps.current() {
			ps.add = max(ps.MaxWorkers-ps.current(), 0)
			ps.capped = fmt.Sprintf("max_workers %d reached", ps.MaxWorkers)
			d.hold(CodeMaxWorkers, "scale-up capped: %smax_workers %d reached (%d needed, %d now)", d.poolPrefix(i), ps.MaxWorkers, ps.need, ps.current())
		}
	}
	// cut takes the adds down to room, the lowest priority first, and
	// says why on each pool it cuts.
	cut := func(room int, why string) int {
		total := 0
		for _, i := range order {
			ps := &d.pools[i]
			if ps.add > room-total {
				ps.add = max(room-total, 0)
				if why != "" && ps.capped == "" {
					ps.capped = why
				}
			}
			total += ps.add
		}
		return total
	}
	add := 0
	for _, ps := range d.pools {
		add += ps.add
	}
	if room := d.p.MaxWorkers - current; add > room {
		add = cut(max(room, 0), fmt.Sprintf("max_workers %d reached", d.p.MaxWorkers))
		if d.multi() {
			d.hold(CodeMaxWorkers, "scale-up capped: policy.max_workers %d reached for all pools together (%d needed, %d now)", d.p.MaxWorkers, need, current)
		} else {
			d.hold(CodeMaxWorkers, "scale-up capped: max_workers %d reached (%d needed, %d now)", d.p.MaxWorkers, need, current)
		}
	}
	if d.p.MaxStep > 0 && add > d.p.MaxStep {
		owed := add - d.p.MaxStep
		add = cut(d.p.MaxStep, "")
		defer func() {
			if d.added > 0 {
				d.plan.Next.UpOwed = owed // the rest at the next decision
			}
		}()
		d.hold(CodeMaxStep, "scale-up capped at %s per step (max_nodes_per_step); %d needed", count(d.p.MaxStep, "worker"), need)
	}
	add = d.capResources(order, add)
	add = d.capHostRoom(order, add)
	if add <= 0 {
		return
	}
	d.added = add
	for i := range d.pools {
		ps := &d.pools[i]
		if ps.add <= 0 {
			continue
		}
		wake, why := d.wake(i, ps.add)
		ps.wake = wake
		d.plan.Actions = append(d.plan.Actions, Action{Kind: ActionAdd, Count: ps.add, Wake: wake, Pool: d.actionPool(i), Reasons: append(ps.reasons, why...)})
	}
	d.plan.Next.LastScaleUp = d.now
	d.plan.Next.LowSince = time.Time{}
}

// capResources holds the adds within policy max_cores and max_memory,
// counting each pool's workers at its VM size.
func (d *decision) capResources(order []int, add int) int {
	if d.p.MaxCores <= 0 && d.p.MaxMemory <= 0 || add == 0 {
		return add
	}
	var cores, mem int64
	for _, ps := range d.pools {
		cores += int64(ps.current()) * int64(ps.VMCores)
		mem += int64(ps.current()) * ps.VMMemory
	}
	total, cut := 0, false
	for _, i := range order {
		ps := &d.pools[i]
		n := 0
		for n < ps.add {
			c, m := cores+int64(ps.VMCores), mem+ps.VMMemory
			if d.p.MaxCores > 0 && c > int64(d.p.MaxCores) || d.p.MaxMemory > 0 && m > d.p.MaxMemory {
				break
			}
			cores, mem = c, m
			n++
		}
		if n < ps.add {
			cut = true
			if ps.capped == "" {
				ps.capped = "policy.max_cores or max_memory reached"
			}
			ps.add = n
		}
		total += n
	}
	if cut {
		d.hold(CodeMaxResources, "scale-up capped at %s: the workers' cores and memory would pass policy.max_cores %d / max_memory %s", count(total, "worker"), d.p.MaxCores, fmtBytes(d.p.MaxMemory))
	}
	return total
}

// capHostRoom holds each pool's adds within the room its hosts have for
// its VMs after the reserve, placing the higher-priority pools first.
func (d *decision) capHostRoom(order []int, add int) int {
	if d.s.Hosts == nil {
		d.note(CodeHostsUnknown, "PVE host room unknown: placement decides when the VMs are cloned")
		return add
	}
	if add == 0 {
		return 0
	}
	free := map[string]int64{}
	for _, h := range d.s.Hosts {
		if h.Online {
			free[h.Name] = d.p.Spare(h)
		}
	}
	total := 0
	for _, i := range order {
		ps := &d.pools[i]
		if ps.VMMemory <= 0 {
			total += ps.add
			continue
		}
		room := 0
		for h, f := range free {
			if f > 0 && (len(ps.Hosts) == 0 || slices.Contains(ps.Hosts, h)) {
				room += int(f / ps.VMMemory)
			}
		}
		if ps.add > room {
			if d.multi() {
				d.hold(CodeHostRoom, "scale-up capped at %d: pool %s: its PVE hosts have room for %s of %s after the %s reserve", room, ps.Name, count(room, "worker"), fmtBytes(ps.VMMemory), fmtBytes(d.p.HostReserve))
			} else {
				d.hold(CodeHostRoom, "scale-up capped at %d: PVE hosts have room for %s of %s after the %s reserve", room, count(room, "worker"), fmtBytes(ps.VMMemory), fmtBytes(d.p.HostReserve))
			}
			ps.add = room
		}
		// Take the memory of its adds, fullest host last, for the next pools.
		for range ps.add {
			best := ""
			for h, f := range free {
				if (len(ps.Hosts) == 0 || slices.Contains(ps.Hosts, h)) && f >= ps.VMMemory && (best == "" || f > free[best] || f == free[best] && h < best) {
					best = h
				}
			}
			if best != "" {
				free[best] -= ps.VMMemory
			}
		}
		total += ps.add
	}
	return total
}

// utilizationNeed returns the workers needed to bring each sustained-high
// resource down to its target, counting VMs in flight as capacity.
func (d *decision) utilizationNeed() (int, []Reason) {
	type res struct {
		name         string
		code         Code
		pct, ppct    float64       // now, and projected on the trend
		season       time.Duration // the period of the recurring rise projected, if any
		th           Threshold
		highSince    time.Time
		usage, proj  int64
		alloc, shape int64
		format       func(int64) string
	}
	all := []res{
		{"CPU", CodeCPUHigh, d.cpuPct, d.projCPU, d.cpuSeason, d.p.CPU, d.plan.Next.CPUHighSince, d.usage.MilliCPU, d.proj.MilliCPU, d.alloc.MilliCPU, d.shape.MilliCPU, fmtCPU},
		{"memory", CodeMemoryHigh, d.memPct, d.projMem, d.memSeason, d.p.Memory, d.plan.Next.MemoryHighSince, d.usage.Memory, d.proj.Memory, d.alloc.Memory, d.shape.Memory, fmtBytes},
	}
	need := 0
	var reasons []Reason
	for _, r := range all {
		if r.highSince.IsZero() {
			continue
		}
		// "CPU 91.3% at or above 80%", or on a rising trend "CPU 73.0%
		// rising to 97.1% at or above 80% within the 2m0s lookahead".
		level := fmt.Sprintf("%s %s%% at or above %g%%", r.name, pctVs(r.pct, r.th.Up, true), r.th.Up)
		used := r.format(r.usage)
		switch {
		case r.proj > r.usage && r.season > 0:
			// "CPU 70.0% rising to 87.5% at or above 80% within 3m0s, as
			// it did 24h0m0s and 48h0m0s ago"
			level = fmt.Sprintf("%s %.1f%% rising to %s%% at or above %g%% within %s, as it did %s ago", r.name, r.pct, pctVs(r.ppct, r.th.Up, true), r.th.Up, fmtDur(SeasonUpAhead(d.p)), seasonAgos(r.season))
			used = r.format(r.usage) + " (" + r.format(r.proj) + " projected)"
		case r.proj > r.usage:
			level = fmt.Sprintf("%s %.1f%% rising to %s%% at or above %g%% within the %s lookahead", r.name, r.pct, pctVs(r.ppct, r.th.Up, true), r.th.Up, fmtDur(d.p.Lookahead))
			used = r.format(r.usage) + " (" + r.format(r.proj) + " projected)"
		}
		held := d.now.Sub(r.highSince)
		if held < d.p.UpWindow {
			d.recheck(r.highSince.Add(d.p.UpWindow))
			d.hold(CodeUpWindow, "%s, for %s of the %s window", level, fmtDur(held), fmtDur(d.p.UpWindow))
			continue
		}
		owed := 0
		if d.cooling(d.h.LastScaleUp, d.p.CooldownAfterUp) && !d.newWorkersSettled() {
			if d.inFlight+d.joining == 0 && !d.newestJoined.Before(d.h.LastScaleUp) {
				d.recheck(d.newestJoined.Add(SettleTime))
			}
			if d.h.UpOwed == 0 {
				d.hold(CodeCooldownUp, "%s scale-up held: cooldown after scale-up, %s left (new workers take load first)", r.name, d.left(d.h.LastScaleUp, d.p.CooldownAfterUp))
				continue
			}
			// The last scale-up was cut by max_nodes_per_step: the rest of
			// that need goes on now, the cooldown holds anything beyond it.
			owed = d.h.UpOwed
		}
		// Sized on the projection: workers added for the load of now are
		// short by the time they serve when it is still climbing.
		target := r.th.TargetOrDefault()
		capacity := r.alloc + int64(d.inFlight+d.joining)*r.shape
		wantCap := float64(r.proj) * 100 / target
		n := 0
		if r.shape > 0 && wantCap > float64(capacity) {
			n = int(math.Ceil((wantCap - float64(capacity)) / float64(r.shape)))
		}
		if owed > 0 && n > owed {
			d.hold(CodeCooldownUp, "%s scale-up limited to the %s a capped scale-up still owes: cooldown after scale-up, %s left", r.name, count(owed, "worker"), d.left(d.h.LastScaleUp, d.p.CooldownAfterUp))
			n = owed
		}
		if n == 0 {
			d.hold(CodeInFlight, "%s %.1f%% is high, but the %s in flight bring %s to %.1f%% (target %g%%)", r.name, r.ppct, count(d.inFlight+d.joining, "worker"), used, pct(r.proj, capacity), target)
			continue
		}
		newCap := capacity + int64(n)*r.shape
		reasons = append(reasons, reason(r.code, "%s for %s: adding %s brings %s usage %s to %.1f%% (target %g%%)",
			level, fmtDur(held), count(n, "worker"), r.name, used, pct(r.proj, newCap), target))
		need = max(need, n)
	}
	return need, reasons
}

// NewWorkerRetry is how long a pending pod is counted as placed on a worker
// that joined after the pod was marked unschedulable, from that worker
// turning Ready. kube-scheduler takes an unschedulable pod up again when a
// Node is added or changes (turns Ready, loses its not-ready taint), after
// the pod's backoff: 1 s doubling per attempt, at most 10 s
// (podMaxBackoffSeconds); writing its verdict and our informer seeing it
// take well under a second more. A pod still pending on a worker Ready for
// longer has been refused there, or was not retried for it (the
// scheduler's queueing hints judged the change irrelevant): either way it
// will not land there by itself, and counts toward new workers again.
const NewWorkerRetry = 15 * time.Second

// newer is a Ready, schedulable worker that joined no earlier than the
// oldest pending pod: one the scheduler may not have tried for it yet.
type newer struct {
	name    string
	created time.Time
	ready   time.Time // when it turned Ready (its registration if unknown)
	rank    int       // Nodes registered no later than it: the count a scheduler that saw it reports at least
	free    Resources
}

// awaitScheduler takes out of pods those the scheduler will place on a
// worker that joined after they were marked unschedulable, lists them in
// the plan with until when, and returns the rest, which need capacity.
//
// A pod is held on such a worker while its requests fit the worker's free
// room and the scheduler has not had its chance there: that ends
// NewWorkerRetry after the worker turned Ready, or as soon as the pod's
// condition shows a refusal that considered the worker (refusedOn). A
// worker registered in the same second as the pod's condition counts as
// joined after it: the timestamps have whole seconds, and the bounded hold
// makes a wrong guess cost at most NewWorkerRetry.
func (d *decision) awaitScheduler(pods []*PendingPod) []*PendingPod {
	oldest := pods[0].Since
	for _, pp := range pods {
		if pp.Since.Before(oldest) {
			oldest = pp.Since
		}
	}
	var fresh []newer
	for _, i := range d.active {
		n := &d.s.Nodes[i]
		if n.Created.Before(oldest) {
			continue
		}
		ready := n.Created
		if n.ReadySince.After(ready) {
			ready = n.ReadySince
		}
		rank := 0
		for k := range d.s.Nodes {
			if !d.s.Nodes[k].Created.After(n.Created) {
				rank++
			}
		}
		fresh = append(fresh, newer{name: n.Name, created: n.Created, ready: ready, rank: rank, free: n.Allocatable.Sub(n.Requests)})
	}
	if len(fresh) == 0 {
		return pods
	}
	var until time.Time // the latest hold's end
	tried := 0
	var firstTried *PendingPod
	kept := pods[:0]
	for _, pp := range pods {
		placed, fits := false, false
		for k := range fresh {
			w := &fresh[k]
			if w.created.Before(pp.Since) || !pp.Requests.Fits(w.free) {
				continue
			}
			fits = true
			end := w.ready.Add(NewWorkerRetry)
			if !d.now.Before(end) || refusedOn(pp, *w) {
				continue
			}
			w.free = w.free.Sub(pp.Requests)
			d.plan.Awaiting = append(d.plan.Awaiting, AwaitingPod{Namespace: pp.Namespace, Name: pp.Name, Node: w.name, Until: end})
			d.recheck(end)
			if end.After(until) {
				until = end
			}
			placed = true
			break
		}
		if placed {
			continue
		}
		if fits {
			if tried == 0 {
				firstTried = pp
			}
			tried++
		}
		kept = append(kept, pp)
	}
	if n := len(d.plan.Awaiting); n > 0 {
		d.note(CodeNewNodes, "%s fit on workers that joined after they were marked unschedulable: the scheduler will place them; counted there until it has tried (at the latest %s, %s after those workers turned Ready)",
			count(n, "pending pod"), until.UTC().Format(time.RFC3339), fmtDur(NewWorkerRetry))
	}
	if tried > 0 {
		why := firstTried.Message
		if why == "" {
			why = "no message"
		}
		d.note(CodeNewNodesTried, "%s fit by requests on workers that joined after they were marked unschedulable, but the scheduler has refused them there or had %s to place them: they need capacity (e.g. %s/%s: %s)",
			count(tried, "pending pod"), fmtDur(NewWorkerRetry), firstTried.Namespace, firstTried.Name, why)
	}
	return kept
}

// refusedOn reports whether pp's condition shows the scheduler tried it on
// the newer worker w, Ready, and refused. Two facts must hold:
//
//   - The scheduler rewrote the condition in a later second than the one w
//     turned Ready in. It rewrites the condition only when its verdict
//     reads differently; an earlier verdict may be from an attempt while w
//     was not Ready yet, or still tainted not-ready: the scheduler takes
//     the pod up again once that changes, and may well place it.
//   - Its message, "0/N nodes are available: ...", counts w: N is the
//     number of Nodes the scheduler knew, and one that knew w knew every
//     Node registered before it too. Nodes registered in w's second count
//     against it, so a tie never proves anything. (A Node deleted since the
//     attempt makes N too large: the hold then ends early, and a worker may
//     be added that the scheduler would not have needed; never a hold
//     without end.)
//
// Anything else (no message, another kind of message, a time unknown)
// proves nothing, and the hold runs its NewWorkerRetry.
func refusedOn(pp *PendingPod, w newer) bool {
	if !pp.MessageTime.Truncate(time.Second).After(w.ready.Truncate(time.Second)) {
		return false
	}
	n, ok := nodesConsidered(pp.Message)
	return ok && n >= w.rank
}

// nodesConsidered reads N from kube-scheduler's "0/N nodes are available"
// (its FitError message; "0/N nodes are available: 2 Insufficient cpu.").
func nodesConsidered(msg string) (int, bool) {
	rest, ok := strings.CutPrefix(msg, "0/")
	if !ok {
		return 0, false
	}
	num, rest, ok := strings.Cut(rest, " ")
	if !ok || !strings.HasPrefix(rest, "nodes are available") {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// hostRoom is how many more worker VMs of vmMemory the PVE hosts (only
// those named, when given) can start.
func (d *decision) hostRoom(vmMemory int64, only ...string) (int, bool) {
	if d.s.Hosts == nil || vmMemory <= 0 {
		return 0, false
	}
	room := 0
	for _, h := range d.s.Hosts {
		if !h.Online || len(only) > 0 && !slices.Contains(only, h.Name) {
			continue
		}
		if free := d.p.Spare(h); free > 0 {
			room += int(free / vmMemory)
		}
	}
	return room, true
}

// planScaleDown removes at most one node, when every rule allows it.
func (d *decision) planScaleDown() {
	if d.underWay {
		// The new worker of a replacement is not a worker too many: the
		// old one goes next (planReplace), and nothing else meanwhile.
		d.hold(CodeReplacing, "scale-down held: %s is being replaced (its new worker is VM %d)", d.staleName(d.replOld), d.repl.VMID)
		return
	}
	if d.replWait != "" {
		d.hold(CodeReplacing, "scale-down held: %s", d.replWait)
		return
	}
	current := d.plan.Workers.Current
	// Stuck provisions count against max_workers for adds, never for
	// removals: removing a serving worker frees none of them.
	serving := current - d.stuck
	aboveMax := serving > d.p.MaxWorkers
	for _, ps := range d.pools {
		aboveMax = aboveMax || ps.current()-ps.stuck > ps.MaxWorkers
	}
	ok := true
	// A NotReady worker serves nothing: it does not count toward the
	// minimum a removal must keep.
	if ready := current - d.plan.Workers.NotReady - d.stuck; ready <= d.minWorkers {
		if d.plan.Workers.NotReady+d.stuck > 0 {
			d.hold(CodeAtMin, "scale-down held: %s Ready of %d, at the minimum of %d (NotReady workers and stuck provisions do not count)", count(ready, "worker"), current, d.minWorkers)
		} else {
			d.hold(CodeAtMin, "scale-down held: %s, at the minimum of %d", count(current, "worker"), d.minWorkers)
		}
		return
	}
	if n := len(d.s.PendingPods) - d.noWorker - d.youngNoWorker; n > 0 {
		d.hold(CodePendingHold, "scale-down held: %s pending", count(n, "pod"))
		ok = false
	}
	if n := d.inFlight + d.joining; n > 0 {
		d.hold(CodeProvisioning, "scale-down held: %s still provisioning", count(n, "worker"))
		ok = false
	}
	if d.plan.Workers.Removing > 0 {
		d.hold(CodeRemoving, "scale-down held: a removal is in progress (one at a time)")
		ok = false
	}
	for _, c := range []struct {
		code  Code
		last  time.Time
		cool  time.Duration
		label string
	}{
		{CodeCooldownUp, d.h.LastScaleUp, d.p.CooldownAfterUp, "after scale-up"},
		{CodeCooldownDown, d.h.LastScaleDown, d.p.CooldownAfterDown, "after scale-down"},
		{CodeCooldownFailure, d.h.LastFailure, d.p.CooldownAfterFailure, "after a failed operation"},
	} {
		if d.cooling(c.last, c.cool) {
			d.hold(c.code, "scale-down held: cooldown %s, %s left", c.label, d.left(c.last, c.cool))
			ok = false
		}
	}
	if unready, managed := d.unreadyManaged(); unready > maxUnreadyCount || (managed > 0 && pct(int64(unready), int64(managed)) > maxUnreadyPercent) {
		d.hold(CodeUnready, "scale-down held: %d of %d managed workers unready (more than %d or %g%%)", unready, managed, maxUnreadyCount, maxUnreadyPercent)
		ok = false
	}
	// Above the global max_workers any worker may go; above only a pool's
	// max, only that pool's workers.
	var above Reason
	if serving > d.p.MaxWorkers {
		above = reason(CodeAboveMax, "%d workers, above max_workers %d", serving, d.p.MaxWorkers)
	} else if aboveMax {
		d.overOnly = true
		for _, ps := range d.pools {
			if ps.current()-ps.stuck > ps.MaxWorkers {
				above = reason(CodeAboveMax, "%s%d workers, above its max_workers %d", d.poolPrefix(d.poolIdx[ps.Name]), ps.current()-ps.stuck, ps.MaxWorkers)
				break
			}
		}
	}
	// The clocks of consolidation move whatever holds the removal itself.
	cands, blocked := d.consider()
	if aboveMax {
		if ok {
			d.removeAboveMax(cands, blocked, above)
		}
		return
	}
	if !d.utilValid || !ok {
		return // the metrics hold, or the guards' holds, are already in the plan
	}
	d.consolidate(cands, blocked)
}

func (d *decision) unreadyManaged() (unready, managed int) {
	for _, i := range d.workers {
		n := &d.s.Nodes[i]
		if n.Managed {
			managed++
			if !n.Ready {
				unready++
			}
		}
	}
	return unready, managed
}

// blocker says why a node may not be removed, or "" when it may.
func (d *decision) blocker(n *Node) string {
	if !n.Managed {
		return "not created by pve-autoscaler"
	}
	for _, k := range []string{AnnotationScaleDownDisabled, AnnotationCAScaleDownDisabled} {
		if n.Annotations[k] == "true" {
			return "annotated " + k + "=true"
		}
	}
	for i := range n.Pods {
		pod := &n.Pods[i]
		if pod.OwnerKind == OwnerDaemonSet || pod.OwnerKind == OwnerNode {
			continue
		}
		switch {
		case pod.Annotations[AnnotationSafeToEvict] == "false":
			return fmt.Sprintf("pod %s/%s is annotated %s=false", pod.Namespace, pod.Name, AnnotationSafeToEvict)
		case pod.Annotations[AnnotationDoNotDisrupt] == "true":
			return fmt.Sprintf("pod %s/%s is annotated %s=true", pod.Namespace, pod.Name, AnnotationDoNotDisrupt)
		case pod.OwnerKind == "":
			return fmt.Sprintf("pod %s/%s has no controller to recreate it", pod.Namespace, pod.Name)
		case pod.LocalStorage && !d.p.AllowLocalStorage:
			return fmt.Sprintf("pod %s/%s uses local storage (drain.delete_emptydir_data is off)", pod.Namespace, pod.Name)
		case pod.PDB != nil && pod.PDB.DisruptionsAllowed < 1:
			return fmt.Sprintf("pod %s/%s: PodDisruptionBudget %s allows no disruption", pod.Namespace, pod.Name, pod.PDB.Name)
		}
	}
	return ""
}

// poolBlocker says why a node's pool keeps it, or "": the pool is at its
// minimum (its NotReady workers do not count), or, when only pools above
// their max_workers are being brought down (overOnly), the pool is not one.
func (d *decision) poolBlocker(n *Node, overOnly bool) string {
	pi := d.poolOf(n.Managed, n.Pool)
	if pi < 0 {
		if overOnly {
			return "in no pool above its max_workers"
		}
		return ""
	}
	ps := &d.pools[pi]
	if overOnly {
		if ps.current() <= ps.MaxWorkers {
			return fmt.Sprintf("pool %s is not above its max_workers %d", ps.Name, ps.MaxWorkers)
		}
		return ""
	}
	if d.multi() && ps.current()-ps.notReady-ps.stuck <= ps.MinWorkers {
		return fmt.Sprintf("pool %s at its minimum of %d", ps.Name, ps.MinWorkers)
	}
	return ""
}

// score is a node's utilization in percent: the larger of CPU and memory,
// from usage, or from requests when usage is unknown.
func (d *decision) score(n *Node) float64 {
	u := n.Usage
	if !d.utilValid {
		u = n.Requests
	}
	return max(pct(u.MilliCPU, n.Allocatable.MilliCPU), pct(u.Memory, n.Allocatable.Memory))
}

func (d *decision) finish() Plan {
	w := &d.plan.Workers
	desired := w.Current + d.added
	if _, ok := d.plan.Removal(); ok {
		desired--
	}
	w.Desired = min(max(desired, w.Min), w.Max)
	d.poolStatuses()
	if d.utilValid {
		d.plan.Load = LoadSample{At: d.now, Demand: d.usage.Add(d.pendingDemand)}
	}
	return d.plan
}

func (d *decision) cooling(last time.Time, cool time.Duration) bool {
	return !last.IsZero() && cool > 0 && d.now.Before(last.Add(cool))
}

func (d *decision) left(last time.Time, cool time.Duration) string {
	return fmtDur(last.Add(cool).Sub(d.now))
}

// SettleTime is how long the newest worker must have been registered
// before the cooldown after a scale-up stops holding utilization
// scale-ups: a metrics-server window, so its usage is in the figures.
const SettleTime = time.Minute

// newWorkersSettled reports whether the last scale-up's workers have all
// joined and had SettleTime to take load: the cooldown after scale-up has
// then done its job for utilization scale-ups ("new workers take load
// first"), though it still holds scale-downs for its whole length.
func (d *decision) newWorkersSettled() bool {
	if d.inFlight+d.joining > 0 || d.newestJoined.Before(d.h.LastScaleUp) {
		return false
	}
	return d.now.Sub(d.newestJoined) >= SettleTime
}

// recheck asks for the next decision no later than t, when a held
// condition ripens (an up window or a pending pod's grace ends).
func (d *decision) recheck(t time.Time) {
	if d.plan.NextCheck.IsZero() || t.Before(d.plan.NextCheck) {
		d.plan.NextCheck = t
	}
}

func (d *decision) hold(c Code, format string, args ...any) {
	d.plan.Holds = append(d.plan.Holds, reason(c, format, args...))
}

func (d *decision) note(c Code, format string, args ...any) {
	d.plan.Notes = append(d.plan.Notes, reason(c, format, args...))
}

func reason(c Code, format string, args ...any) Reason {
	return Reason{Code: c, Message: fmt.Sprintf(format, args...)}
}

func pct(part, whole int64) float64 {
	if whole <= 0 {
		return 0
	}
	return float64(part) * 100 / float64(whole)
}

func ratio(part, whole int64) float64 {
	if whole <= 0 {
		return 0
	}
	return float64(part) / float64(whole)
}

// count renders "1 worker", "3 workers".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// pctVs formats a percentage stated against a limit with one decimal,
// rounded toward its own side of the limit where rounding to nearest
// would cross it (47.97 under 48 is "47.9% under 48%", not "48.0%").
// strict: the side is v < limit (under, at or above), else v <= limit
// (at or below, above).
func pctVs(v, limit float64, strict bool) string {
	below := func(x float64) bool {
		if strict {
			return x < limit
		}
		return x <= limit
	}
	r := math.Round(v*10) / 10
	switch {
	case below(r) == below(v):
	case below(v):
		r = math.Floor(v*10) / 10
	default:
		r = math.Ceil(v*10) / 10
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

func fmtCPU(m int64) string { return cpuQuantity(m).String() }

// fmtBytes renders bytes as a quantity, rounded to MiB from 1 MiB up so a
// reason reads "15Gi" or "14745Mi", never "15461882264".
func fmtBytes(b int64) string {
	if b >= 1<<20 {
		b = (b + 1<<19) >> 20 << 20
	}
	return memQuantity(b).String()
}
func fmtDur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String()
}
