package simulate

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// FlapWindow: a removal followed by an addition within it is a flap.
const FlapWindow = 15 * time.Minute

// Event is one scale decision carried out.
type Event struct {
	At time.Duration `json:"at_s"`
	// Delta is the workers added (> 0) or removed (< 0).
	Delta int `json:"delta"`
	// Workers is the count aimed at after the event (ready + on the way).
	Workers int `json:"workers"`
	// Why is the decision's first reason.
	Why string `json:"why"`
}

// Point is the cluster at one moment, for the chart.
type Point struct {
	At      time.Duration `json:"at_s"`
	Workers int           `json:"workers"`
	CPU     float64       `json:"cpu_pct"`
	Memory  float64       `json:"memory_pct"`
	Pending int           `json:"pending"`
}

// Result is one scaler's run over a trace.
type Result struct {
	Name string `json:"name"`
	// Clairvoyant marks the limit: a floor computed from the whole trace,
	// not a scaler (no events, no time to capacity of its own).
	Clairvoyant bool `json:"clairvoyant,omitempty"`
	// NodeHours: worker VMs running (provisioning, ready, being removed
	// or parked), in hours.
	NodeHours float64 `json:"node_hours"`
	// StandbyVMHours: standby workers stopped (their disk, no CPU or
	// memory), in hours; not in NodeHours.
	StandbyVMHours float64 `json:"standby_vm_hours,omitempty"`
	// OverMinutes: minutes with CPU or memory at or above the config's up threshold
	// (or demand and no worker).
	OverMinutes float64 `json:"minutes_over_threshold"`
	// PendingPodMinutes: the sum over time of pods waiting for room, in pod-minutes.
	PendingPodMinutes float64 `json:"pending_pod_minutes"`
	ScaleUps          int     `json:"scale_ups"`
	ScaleDowns        int     `json:"scale_downs"`
	// Wakes are the workers of scale-ups started from standby (the rest
	// cloned); Parks the scale-downs that parked their worker in standby
	// (the rest destroyed); Refills and Retires the standby workers built
	// and destroyed (stale).
	Wakes   int `json:"standby_wakes,omitempty"`
	Parks   int `json:"standby_parks,omitempty"`
	Refills int `json:"standby_refills,omitempty"`
	Retires int `json:"standby_retires,omitempty"`
	// Flaps: additions started within FlapWindow after a removal.
	Flaps int `json:"flaps"`
	// Episodes of need (pending pods, or CPU or memory at or above the up
	// threshold) and how long they lasted until capacity caught up.
	Episodes  int           `json:"need_episodes"`
	MeanTTC   time.Duration `json:"mean_time_to_capacity_ns"`
	WorstTTC  time.Duration `json:"worst_time_to_capacity_ns"`
	Peak      int           `json:"peak_workers"`
	End       int           `json:"end_workers"`
	Events    []Event       `json:"events"`
	Series    []Point       `json:"-"`
	removedAt []time.Duration
	// decided and skipped count the decisions a replay made, and those
	// it did not need to make again.
	decided, skipped int
}

// vm is one worker VM in the modelled cluster. Its times describe the
// current run of its life; a wake or a park rewrites them from the
// decision's time on (what came before is accounted already).
type vm struct {
	name string
	vmid int
	// built is when its VM was cloned (a standby worker's age); joined
	// when its Node first registered (the Node's creation time, which a
	// wake keeps).
	built, joined time.Duration
	up            time.Duration // running from here (its clone request, or a wake's start)
	ready         time.Duration // Node Ready (capacity) from here
	leave         time.Duration // capacity gone from here (never: not decided)
	down          time.Duration // stopped in standby from here (never: not decided)
	gone          time.Duration // VM destroyed at (never: not decided)
	retire        time.Duration // a standby worker's retirement started at (never: not decided)
	// how is what brings it to ready: a clone, a build for standby (which
	// never gives capacity: its leave is its ready, then it parks) or a
	// wake.
	how provision
	// baseNames and podNames are its pods' names, made once each.
	baseNames, podNames []string
	// pods is the buffer of its Node's pods in the snapshot.
	pods []scaler.Pod
}

// never is a vm's time of what has not been decided: the times of a VM
// started before the replay are negative.
const never time.Duration = math.MinInt64

// provision is how a VM comes to its ready.
type provision int

const (
	cloned provision = iota // cloned and installed for capacity
	refill                  // cloned and installed for standby
	woken                   // a standby worker started
)

// phase is what a VM is at one moment.
type phase int

const (
	absent       phase = iota // not yet, or gone
	provisioning              // running, on its way to ready
	serving                   // Ready: capacity
	leaving                   // capacity gone: being removed or parked
	standby                   // stopped in standby
	retiring                  // stopped, being destroyed
)

func (v *vm) phase(t time.Duration) phase {
	switch {
	case t < v.up && (v.down == never || t < v.down), v.gone != never && t >= v.gone:
		return absent
	case v.down != never && t >= v.down && v.retire != never && t >= v.retire:
		return retiring
	case v.down != never && t >= v.down:
		return standby
	case t < v.ready:
		return provisioning
	case v.leave == never || t < v.leave:
		return serving
	}
	return leaving
}

// podName returns the name of its i-th base pod or placed pod.
func (v *vm) podName(placed bool, i int) string {
	names, kind := &v.baseNames, "-base-"
	if placed {
		names, kind = &v.podNames, "-pod-"
	}
	for len(*names) <= i {
		*names = append(*names, v.name+kind+strconv.Itoa(len(*names)))
	}
	return (*names)[i]
}

// cluster is the modelled cluster both scalers run: demand spread evenly
// over the Ready workers, pods of the model's size placed where they fit.
type cluster struct {
	m      Model
	s      Setup
	alloc  scaler.Resources
	vms    []*vm // the VMs that exist or will (gone ones are forgotten)
	nextID int
	// readyBuf is load's ready slice, reused.
	readyBuf []*vm
	// last is load's last answer, good until the sample changes, a VM is
	// added or removed (changed), or a VM reaches its next moment (until).
	last       load
	lastSample Sample
	until      time.Duration
	changed    bool
	everLoaded bool
	lastAt     time.Duration
	// pending is when each pending pod started waiting, oldest first.
	pending []time.Duration
	// version changes whenever what snapshot reports may have: load
	// computed afresh, or the pending pods' ages changed.
	version uint64
	// snap and pendingNames are snapshot's buffers, reused by every
	// decision.
	snap         scaler.Snapshot
	pendingNames []string
}

func newCluster(m Model, s Setup) *cluster {
	c := &cluster{m: m, s: s, alloc: s.Policy.Worker, nextID: s.FirstVMID}
	n := m.StartWorkers
	if n == 0 {
		n = s.Policy.MinWorkers
	}
	for range n {
		c.add(-24*time.Hour, -time.Hour)
	}
	return c
}

// add clones a VM at created that is Ready at ready.
func (c *cluster) add(created, ready time.Duration) *vm {
	v := &vm{name: fmt.Sprintf("%s%d", c.s.NamePrefix, c.nextID), vmid: c.nextID, built: created, joined: ready, up: created, ready: ready,
		leave: never, down: never, gone: never, retire: never}
	c.nextID++
	c.vms = append(c.vms, v)
	c.changed = true
	return v
}

// build clones a VM for standby at created: installed and joined at
// joined, never capacity (its Node is tainted), it stops (a park with
// nothing to drain) and waits in standby.
func (c *cluster) build(created, joined time.Duration) *vm {
	v := c.add(created, joined)
	v.how, v.leave, v.down = refill, joined, joined+c.m.Stop
	return v
}

// fillStandby parks n standby workers built before the replay, as the
// starting workers are: the pool starts full.
func (c *cluster) fillStandby(n int) {
	for range n {
		c.build(-24*time.Hour, -time.Hour)
	}
}

// wake starts the standby worker v at t: Ready after the start task and
// an installed worker's boot.
func (c *cluster) wake(v *vm, t time.Duration) {
	v.how, v.up, v.ready, v.leave, v.down = woken, t, t+c.m.Wake(), never, never
	c.changed = true
}

// park takes v's capacity away at t and stops it in standby once drained.
func (c *cluster) park(v *vm, t time.Duration) {
	v.leave, v.down = t, t+c.m.Park()
	c.changed = true
}

// retireAt destroys the standby worker v, stopped already, from t.
func (c *cluster) retireAt(v *vm, t time.Duration) {
	v.retire, v.gone = t, t+c.m.Destroy
	c.changed = true
}

// load is the cluster's state at one moment. Its ready slice is the
// cluster's buffer: valid until the next call of load.
type load struct {
	ready    []*vm
	base     scaler.Resources // the base demand's share on each ready node
	fit      int              // pods of the model's size placed beyond the base, spread over the ready nodes
	pending  int
	cpu, mem float64 // utilization in percent; 100 with demand and no worker
	vms      int     // VMs running
	stopped  int     // VMs stopped in standby (or being retired)
}

// remove takes v's capacity away at leave and destroys it at gone.
func (c *cluster) remove(v *vm, leave, gone time.Duration) {
	v.leave, v.gone = leave, gone
	c.changed = true
}

// podsOn is the number of pods of the model's size on the i-th ready node.
func (l load) podsOn(i int) int {
	n := len(l.ready)
	k := l.fit / n
	if i < l.fit%n {
		k++
	}
	return k
}

// load is called every step of a replay: it allocates nothing, and
// forgets the VMs that are gone for good.
func (c *cluster) load(t time.Duration, s Sample) load {
	if c.everLoaded && !c.changed && s == c.lastSample && t < c.until && t >= c.lastAt {
		return c.last
	}
	l := c.compute(t, s)
	c.version++
	c.last, c.lastSample, c.lastAt, c.changed, c.everLoaded = l, s, t, false, true
	// The next moment a VM comes, becomes Ready, leaves or goes.
	c.until = 1<<63 - 1
	for _, v := range c.vms {
		for _, at := range [...]time.Duration{v.up, v.ready, v.leave, v.down, v.retire, v.gone} {
			if at > t && at < c.until {
				c.until = at
			}
		}
	}
	return l
}

// compute is load without the memo.
func (c *cluster) compute(t time.Duration, s Sample) load {
	var l load
	keep := c.vms[:0]
	ready := c.readyBuf[:0]
	for _, v := range c.vms {
		if v.gone != never && t >= v.gone {
			continue
		}
		keep = append(keep, v)
		switch v.phase(t) {
		case serving:
			ready = append(ready, v)
			l.vms++
		case provisioning, leaving:
			l.vms++
		case standby, retiring:
			l.stopped++
		}
	}
	clear(c.vms[len(keep):])
	c.vms, c.readyBuf, l.ready = keep, ready, ready
	sh := c.share(len(l.ready), s)
	l.pending, l.cpu, l.mem = sh.pending, sh.cpu, sh.mem
	if len(l.ready) > 0 {
		l.base, l.fit = sh.base, sh.fit
	}
	return l
}

// shares is how a sample's demand lands on n Ready workers.
type shares struct {
	base     scaler.Resources // the base demand's share on each worker
	fit      int              // pods of the model's size placed (beyond the base)
	pending  int
	cpu, mem float64 // utilization in percent; 100 with demand and no worker
}

// share spreads the base demand evenly over n workers; what does not fit
// waits as pods of the model's size, placed where they fit.
func (c *cluster) share(workers int, s Sample) shares {
	var sh shares
	n := int64(workers)
	pod := c.m.Pod
	demandCPU := int64(math.Round(s.CPU * 1000))
	demandMem := int64(s.Memory)
	want := s.Pending
	if n == 0 {
		sh.pending = want
		if demandCPU > 0 {
			sh.pending += int(ceilDiv(demandCPU, pod.MilliCPU))
		}
		if demandCPU > 0 || demandMem > 0 || want > 0 {
			sh.cpu, sh.mem = 100, 100
		}
		return sh
	}
	capCPU, capMem := n*c.alloc.MilliCPU, n*c.alloc.Memory
	over := max(float64(demandCPU-capCPU)/float64(pod.MilliCPU), float64(demandMem-capMem)/float64(pod.Memory), 0)
	want += int(math.Ceil(over))
	baseCPU, baseMem := min(demandCPU, capCPU)/n, min(demandMem, capMem)/n
	sh.base = scaler.Resources{MilliCPU: baseCPU, Memory: baseMem}
	freeCPU, freeMem := c.alloc.MilliCPU-baseCPU, c.alloc.Memory-baseMem
	fitEach := int(min(freeCPU/pod.MilliCPU, freeMem/pod.Memory))
	sh.fit = min(want, fitEach*workers)
	sh.pending = want - sh.fit
	// The sums over the workers, as the daemon adds up its nodes' usage.
	usedCPU := n*baseCPU + int64(sh.fit)*pod.MilliCPU
	usedMem := n*baseMem + int64(sh.fit)*pod.Memory
	sh.cpu = 100 * float64(usedCPU) / float64(capCPU)
	sh.mem = 100 * float64(usedMem) / float64(capMem)
	return sh
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// track keeps the pending pods' ages: new ones wait from t; the oldest are
// placed first.
func (c *cluster) track(t time.Duration, pending int) {
	if len(c.pending) != pending {
		c.version++
	}
	for len(c.pending) < pending {
		c.pending = append(c.pending, t)
	}
	if len(c.pending) > pending {
		c.pending = c.pending[len(c.pending)-pending:]
	}
}

// account adds one step's figures to r, and tracks need episodes.
type accountant struct {
	r         *Result
	cpuUp     float64
	memUp     float64
	needSince time.Duration
	needy     bool
	total     time.Duration
	every     time.Duration
	// Sums kept exact; converted at the end.
	nodeTime, overTime, pendingTime, standbyTime time.Duration
}

func (a *accountant) step(t, dt time.Duration, l load) {
	a.nodeTime += time.Duration(l.vms) * dt
	a.standbyTime += time.Duration(l.stopped) * dt
	over := l.cpu >= a.cpuUp || l.mem >= a.memUp
	if over {
		a.overTime += dt
	}
	a.pendingTime += time.Duration(l.pending) * dt
	need := over || l.pending > 0
	switch {
	case need && !a.needy:
		a.needy, a.needSince = true, t
	case !need && a.needy:
		a.needy = false
		a.episode(t - a.needSince)
	}
	if len(l.ready) > a.r.Peak {
		a.r.Peak = len(l.ready)
	}
	if t%a.every == 0 {
		a.r.Series = append(a.r.Series, Point{At: t, Workers: len(l.ready), CPU: round1(l.cpu), Memory: round1(l.mem), Pending: l.pending})
	}
}

// steps is n steps of dt from t, all at load l: step, n times over.
func (a *accountant) steps(t, dt time.Duration, n int64, l load) {
	a.step(t, dt, l)
	if n <= 1 {
		return
	}
	rest := time.Duration(n-1) * dt
	a.nodeTime += time.Duration(l.vms) * rest
	a.standbyTime += time.Duration(l.stopped) * rest
	if l.cpu >= a.cpuUp || l.mem >= a.memUp {
		a.overTime += rest
	}
	a.pendingTime += time.Duration(l.pending) * rest
	// The chart's points among them.
	first := (t/a.every + 1) * a.every
	for at := first; at < t+time.Duration(n)*dt; at += a.every {
		if at%dt == 0 {
			a.r.Series = append(a.r.Series, Point{At: at, Workers: len(l.ready), CPU: round1(l.cpu), Memory: round1(l.mem), Pending: l.pending})
		}
	}
}

func (a *accountant) episode(d time.Duration) {
	a.r.Episodes++
	a.total += d
	a.r.MeanTTC = a.total / time.Duration(a.r.Episodes)
	a.r.WorstTTC = max(a.r.WorstTTC, d)
}

func (a *accountant) finish(t time.Duration, l load) {
	if a.needy {
		a.episode(t - a.needSince)
	}
	a.r.NodeHours = a.nodeTime.Hours()
	a.r.StandbyVMHours = a.standbyTime.Hours()
	a.r.OverMinutes = a.overTime.Minutes()
	a.r.PendingPodMinutes = a.pendingTime.Minutes()
	a.r.End = len(l.ready)
	a.r.Series = append(a.r.Series, Point{At: t, Workers: len(l.ready), CPU: round1(l.cpu), Memory: round1(l.mem), Pending: l.pending})
}

func (r *Result) event(t time.Duration, delta, workers int, why string) {
	if delta > 0 {
		r.ScaleUps++
		for _, rm := range r.removedAt {
			if t-rm <= FlapWindow {
				r.Flaps++
				break
			}
		}
	} else {
		r.ScaleDowns++
		r.removedAt = append(r.removedAt, t)
	}
	r.Events = append(r.Events, Event{At: t, Delta: delta, Workers: workers, Why: why})
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// seriesEvery picks a chart resolution giving at most ~2000 points.
func seriesEvery(d, step time.Duration) time.Duration {
	return max(step, (d / 2000).Truncate(step))
}
