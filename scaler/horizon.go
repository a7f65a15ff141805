package scaler

import (
	"maps"
	"slices"
	"time"
)

// Horizon is the first moment after now at which Decide, given the same
// snapshot, policy and history, could take another course: the earliest
// instant its rules compare the clock against (a window, cooldown, grace,
// settle time, scheduler retry or standby age running out, a pause or a
// boost starting or ending, a clock in the history that starts in the
// future). Until then Decide(s, p, h, t)
// makes the same plan as at now, but for the plan's time, the clocks it
// starts (at t instead of now), the ages it reports and the wording of
// its reasons. The zero time means no such instant. A policy with
// schedules gives now: a schedule turns on the wall clock's minute, which
// the decision does not look ahead to.
//
// The load one period ago (Snapshot.Past) is left out: Decide reads it
// only through RecurringAt, which the caller compares itself (a replay's
// memory grows as it goes).
//
// A replay (simulate) uses it to skip decisions whose inputs are those of
// the last one, when that one changed nothing (no action, the history it
// returned is the one it was given). The candidates are taken from every
// instant in the inputs, whichever rule reads it, so a rule that compares
// one more of them needs no change here; a rule comparing the clock
// against an instant of a new kind must add it (TestHorizon holds the
// claim on generated worlds).
func Horizon(s Snapshot, p Policy, h History, now time.Time) time.Time {
	if len(p.Schedules) > 0 {
		return now
	}
	// A decision that records a new usage sample draws the trend's line
	// through a point at its own time: the projection, and so the course,
	// may differ at every instant.
	if p.Lookahead > 0 {
		if used, ok := trendUsage(s); ok && !unchanged(h.Usage, used, now) {
			return now
		}
	}
	var hz time.Time
	// at registers instant t: a rule comparing now >= t (or now < t)
	// turns there, one comparing now > t a nanosecond later.
	at := func(t time.Time) {
		for _, x := range [...]time.Time{t, t.Add(time.Nanosecond)} {
			if x.After(now) && (hz.IsZero() || x.Before(hz)) {
				hz = x
			}
		}
	}
	// Every duration a rule adds to an instant of the history.
	waits := [...]time.Duration{0, p.UpWindow, p.DownWindow, UnneededFactor * p.DownWindow,
		p.CooldownAfterUp, p.CooldownAfterDown, p.CooldownAfterFailure, SettleTime}
	clock := func(t time.Time) {
		if t.IsZero() {
			return
		}
		for _, w := range waits {
			at(t.Add(w))
		}
	}
	for _, t := range [...]time.Time{h.CPUHighSince, h.MemoryHighSince, h.LowSince, h.LastScaleUp, h.LastScaleDown, h.LastFailure} {
		clock(t)
	}
	for _, m := range [...]map[string]time.Time{h.Unneeded, h.Empty} {
		for t := range maps.Values(m) {
			clock(t)
		}
	}
	// The trend's samples: one from the future counts from its time; one
	// leaves the line TrendSpans x Lookahead after it, which changes the
	// projection only while there is a line.
	if p.Lookahead > 0 {
		span := TrendSpans * p.Lookahead
		for _, u := range h.Usage {
			if u.At.After(now) {
				at(u.At)
			}
		}
		if w := inWindow(h.Usage, now, span); drawn(w, p.Lookahead) {
			for _, u := range w {
				at(u.At.Add(span))
			}
		}
	}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		// The newest worker settling after a scale-up (from its
		// registration), and the scheduler's chance on a new worker (from
		// its Ready).
		clock(n.Created)
		ready := n.Created
		if n.ReadySince.After(ready) {
			ready = n.ReadySince
		}
		at(ready.Add(NewWorkerRetry))
		// A worker coming of age (policy.max_age) is due for replacement.
		if p.MaxAge > 0 && !n.Created.IsZero() {
			at(n.Created.Add(p.MaxAge))
		}
	}
	for i := range s.PendingPods {
		at(s.PendingPods[i].Since.Add(p.PendingGrace))
	}
	// The operator's pause and boosts start and end on their own.
	if c := s.Control; c != nil {
		if c.Pause != nil {
			at(c.Pause.Since)
			at(c.Pause.Until)
		}
		for _, b := range c.Boosts {
			at(b.Since)
			at(b.Until)
		}
	}
	if p.StandbyMaxAge > 0 {
		for _, w := range s.Standby {
			if !w.Created.IsZero() {
				at(w.Created.Add(p.StandbyMaxAge))
			}
		}
	}
	return hz
}

// trendUsage is the usage Decide records for the trend: that of the
// Ready, schedulable workers not being removed, when the metrics are
// fresh and those workers have allocatable (Decide's utilization set).
func trendUsage(s Snapshot) (Resources, bool) {
	if s.Metrics.Stale {
		return Resources{}, false
	}
	var used, alloc Resources
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.ControlPlane || n.Standby || !n.Ready || n.Unschedulable || s.removing(n.Name) {
			continue
		}
		used, alloc = used.Add(n.Usage), alloc.Add(n.Allocatable)
	}
	return used, alloc.MilliCPU > 0 && alloc.Memory > 0
}

// removing reports whether an operation removes the Node named name.
func (s Snapshot) removing(name string) bool {
	for _, op := range s.Operations {
		if op.Kind == OpRemove && op.Node == name {
			return true
		}
	}
	return false
}

// Equal reports whether two histories hold the same clocks (time.Time.Equal)
// and counts.
func (h History) Equal(o History) bool {
	eqMap := func(a, b map[string]time.Time) bool {
		return maps.EqualFunc(a, b, time.Time.Equal)
	}
	return h.CPUHighSince.Equal(o.CPUHighSince) && h.MemoryHighSince.Equal(o.MemoryHighSince) && h.LowSince.Equal(o.LowSince) &&
		h.LastScaleUp.Equal(o.LastScaleUp) && h.LastScaleDown.Equal(o.LastScaleDown) && h.LastFailure.Equal(o.LastFailure) &&
		h.UpOwed == o.UpOwed && eqMap(h.Unneeded, o.Unneeded) && eqMap(h.Empty, o.Empty) &&
		slices.EqualFunc(h.Usage, o.Usage, func(a, b UsageSample) bool { return a.At.Equal(b.At) && a.Used == b.Used })
}
