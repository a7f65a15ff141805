package scaler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Reason codes of standby.
const (
	CodeStandbyWake   Code = "standby_wake"
	CodeStandbyPark   Code = "standby_park"
	CodeStandbyRefill Code = "standby_refill"
	CodeStandbyRetire Code = "standby_retire"
	CodeStandbyNoRoom Code = "standby_no_room"
)

// standbyState is the standby workers' working state in one decision.
type standbyState struct {
	usable    []StandbyWorker // fresh, not being woken or retired: can be started
	stale     []StandbyWorker // to retire, with why
	staleWhy  map[int]string  // the maps are nil when the snapshot has no operation and no standby worker
	busy      map[int]bool    // vmids an operation works on
	parking   map[int]int     // removals that will park, per pool
	refilling map[int]int     // refills, per pool
	// free is the hosts' memory left for wakes in this decision.
	free map[string]int64
}

// have is how many standby workers pool pi has or will have: usable,
// being parked, being built.
func (d *decision) standbyHave(pi int) int {
	n := d.standby.parking[pi] + d.standby.refilling[pi]
	for _, w := range d.standby.usable {
		if d.poolOf(true, w.Pool) == pi {
			n++
		}
	}
	return n
}

// newStandby sorts the snapshot's standby workers into usable and stale.
func (d *decision) newStandby() {
	var pl standbyState
	if len(d.s.Operations) > 0 || len(d.s.Standby) > 0 {
		pl = standbyState{staleWhy: map[int]string{}, busy: map[int]bool{}, parking: map[int]int{}, refilling: map[int]int{}}
	}
	for _, op := range d.s.Operations {
		switch op.Kind {
		case OpRefill:
			if op.Stuck == "" { // a stuck build never becomes a standby worker by itself
				pl.refilling[d.poolOf(true, op.Pool)]++
			}
		case OpRemove:
			if op.Step == StepParking {
				pl.parking[d.poolOf(true, op.Pool)]++
			}
		}
		if op.VMID != 0 {
			pl.busy[op.VMID] = true
		}
	}
	for _, w := range d.s.Standby {
		if pl.busy[w.VMID] {
			continue
		}
		why := w.Stale
		if why == "" && d.p.StandbyMaxAge > 0 && !w.Created.IsZero() && d.now.Sub(w.Created) > d.p.StandbyMaxAge {
			why = fmt.Sprintf("%s old, older than max_age %s", fmtDur(d.now.Sub(w.Created).Round(time.Minute)), fmtDur(d.p.StandbyMaxAge))
		}
		if why != "" {
			pl.stale = append(pl.stale, w)
			pl.staleWhy[w.VMID] = why
			continue
		}
		pl.usable = append(pl.usable, w)
	}
	// Newest first: the freshest image serves first, the oldest ages out.
	slices.SortFunc(pl.usable, func(a, b StandbyWorker) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.VMID, b.VMID)
	})
	d.standby = pl
	size := 0
	for _, ps := range d.pools {
		size += ps.StandbySize
	}
	if size > 0 || len(d.s.Standby) > 0 {
		p := &Standby{Size: size, Ready: len(pl.usable), Members: []StandbyMember{}}
		for _, w := range d.s.Standby {
			m := StandbyMember{VMID: w.VMID, Name: w.Name, Host: w.Host, Stale: pl.staleWhy[w.VMID]}
			if !w.Created.IsZero() {
				m.Age = d.now.Sub(w.Created)
			}
			p.Members = append(p.Members, m)
		}
		d.plan.Standby = p
	}
}

// wake picks up to n usable standby workers of pool pi whose host still
// has the memory to start them, for an add action; it explains the choice.
func (d *decision) wake(pi, n int) ([]int, []Reason) {
	if n <= 0 || len(d.standby.usable) == 0 {
		return nil, nil
	}
	if d.standby.free == nil {
		d.standby.free = map[string]int64{}
		for _, h := range d.s.Hosts {
			if h.Online {
				d.standby.free[h.Name] = d.p.Spare(h)
			}
		}
	}
	free := d.standby.free
	known := d.s.Hosts != nil
	mem := d.pools[pi].VMMemory
	var wake []int
	var noRoom []string
	for _, w := range d.standby.usable {
		if len(wake) == n {
			break
		}
		if d.poolOf(true, w.Pool) != pi {
			continue
		}
		if known {
			if f, ok := free[w.Host]; !ok || f < mem {
				noRoom = append(noRoom, fmt.Sprintf("%s on %s", w.Name, w.Host))
				continue
			}
			free[w.Host] -= mem
		}
		wake = append(wake, w.VMID)
	}
	var why []Reason
	if len(wake) > 0 {
		why = append(why, reason(CodeStandbyWake, "%s started, %d cloned", count(len(wake), "standby worker"), n-len(wake)))
	}
	if len(noRoom) > 0 {
		d.note(CodeStandbyNoRoom, "standby %s not started: the host lacks the %s to start it", joinMax(noRoom, 3), fmtBytes(mem))
	}
	return wake, why
}

// parkRemoval turns the chosen removal, of a worker of pool pi, into a
// park while the pool's standby has room.
func (d *decision) parkRemoval(a *Action, pi int) {
	if pi < 0 || d.pools[pi].StandbySize <= 0 {
		return
	}
	size := d.pools[pi].StandbySize
	have := d.standbyHave(pi)
	if have >= size {
		return
	}
	if len(d.p.StandbyHosts) > 0 && !slices.Contains(d.p.StandbyHosts, a.Host) {
		d.note(CodeStandbyPark, "%s is not parked: its host %s may not hold standby workers (policy.standby.hosts)", a.Node, a.Host)
		return
	}
	a.Park = true
	a.Reasons = append(a.Reasons, reason(CodeStandbyPark, "%sparked stopped in standby (%d of %d) instead of destroyed", d.poolPrefix(pi), have+1, size))
}

// planStandby retires stale standby workers and refills standby when the
// cluster is calm. It runs after the scale decisions.
func (d *decision) planStandby() {
	for _, w := range d.standby.stale {
		d.plan.Actions = append(d.plan.Actions, Action{Kind: ActionRetire, VMID: w.VMID, Node: w.Name, Host: w.Host,
			Reasons: []Reason{reason(CodeStandbyRetire, "standby worker %s is %s: destroyed rather than started", w.Name, d.standby.staleWhy[w.VMID])}})
		break // one at a time
	}
	pi, have := -1, 0
	for i := range d.pools {
		if n := d.standbyHave(i); n < d.pools[i].StandbySize {
			pi, have = i, n
			break
		}
	}
	if pi < 0 {
		return
	}
	size := d.pools[pi].StandbySize
	calm := ""
	switch {
	case len(d.plan.Actions) > 0:
		calm = "the cluster is scaling"
	case len(d.s.Operations) > 0:
		calm = "operations in flight"
	case len(d.s.PendingPods) > 0:
		calm = "pods pending"
	case !d.utilValid:
		calm = "utilization unknown"
	case d.cpuPct >= d.p.CPU.Up || d.memPct >= d.p.Memory.Up:
		calm = "utilization high"
	case d.cooling(d.h.LastScaleUp, d.p.CooldownAfterUp) || d.cooling(d.h.LastScaleDown, d.p.CooldownAfterDown) || d.cooling(d.h.LastFailure, d.p.CooldownAfterFailure):
		calm = "a cooldown runs"
	}
	if calm == "" {
		if room, known := d.hostRoom(d.pools[pi].VMMemory, d.standbyHosts(pi)...); known && room < 1 {
			calm = "no host that may hold one has room to build it"
		}
	}
	if calm != "" {
		d.note(CodeStandbyRefill, "%sstandby %d of %d: refill waits (%s)", d.poolPrefix(pi), have, size, calm)
		return
	}
	d.plan.Actions = append(d.plan.Actions, Action{Kind: ActionRefill, Count: 1, Pool: d.actionPool(pi),
		Reasons: []Reason{reason(CodeStandbyRefill, "%sstandby %d of %d and the cluster calm: one standby worker is built", d.poolPrefix(pi), have, size)}})
}

// standbyHosts are the hosts pool pi's standby workers may be on:
// policy.standby.hosts within the pool's hosts (none given: any).
func (d *decision) standbyHosts(pi int) []string {
	sh, ph := d.p.StandbyHosts, d.pools[pi].Hosts
	switch {
	case len(ph) == 0:
		return sh
	case len(sh) == 0:
		return ph
	}
	var out []string
	for _, h := range sh {
		if slices.Contains(ph, h) {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return []string{""} // none may: no host matches
	}
	return out
}

func joinMax(items []string, n int) string {
	if len(items) > n {
		return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
	}
	return strings.Join(items, ", ")
}
