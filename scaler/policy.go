package scaler

import (
	"fmt"
	"time"
)

// Threshold is one resource's scale-up and scale-down points, in percent.
type Threshold struct {
	// Up: at or above this utilization (sustained) the engine adds workers.
	Up float64
	// Down is the idle level: with CPU and memory both at or below it for
	// the down window, an unneeded worker goes at once (consolidate.go).
	Down float64
	// Target is where a scale-up aims to bring utilization; 0 means halfway between Down and Up.
	Target float64
}

// TargetOrDefault returns Target, or halfway between Down and Up when unset.
func (t Threshold) TargetOrDefault() float64 {
	if t.Target > 0 {
		return t.Target
	}
	return (t.Up + t.Down) / 2
}

// Policy is the decision engine's configuration (built from config.Policy).
type Policy struct {
	MinWorkers, MaxWorkers int
	CPU, Memory            Threshold
	// UpWindow / DownWindow: how long the condition must hold before acting
	// (an unneeded worker in a cluster that is not idle waits
	// UnneededFactor x DownWindow).
	UpWindow, DownWindow time.Duration
	// Lookahead (0: off) is how far ahead the usage trend is projected
	// (trend.go): about a worker's clone-to-Ready time. A resource
	// projected at or above its Up counts as high, and scale-ups are
	// sized on the projection.
	Lookahead time.Duration
	// Seasons (none: off) are the periods the load recurs by, usually a
	// day and a week (seasonal.go): a rise of the demand one period ago,
	// from that instant on, counts on top of the usage of now.
	Seasons []time.Duration
	// CooldownAfterUp holds scale-down and further utilization scale-ups.
	CooldownAfterUp time.Duration
	// CooldownAfterDown holds further scale-downs.
	CooldownAfterDown time.Duration
	// CooldownAfterFailure holds every scaling action after a failed operation.
	CooldownAfterFailure time.Duration
	// MaxStep caps the workers added by one plan.
	MaxStep int
	// PendingPods enables scale-up for unschedulable pods older than PendingGrace.
	PendingPods  bool
	PendingGrace time.Duration
	// PriorityCutoff: pending pods of a lower priority add no worker
	// (the Cluster Autoscaler's expendable pods; config default -10).
	PriorityCutoff int32
	// NewWorker is what the Node of a worker we add looks like to a
	// pending pod's constraints (Unfit).
	NewWorker NewWorker
	// ScaleDownMargin (percentage points): the utilization projected without
	// the removed node must stay below Up - ScaleDownMargin.
	ScaleDownMargin float64
	// AllowLocalStorage lets nodes whose pods use emptyDir be removed (drain deletes the data).
	AllowLocalStorage bool
	// Schedules raise the minimum in time windows.
	Schedules []Schedule
	// ScheduleLead starts a schedule's raised minimum this long before its window.
	ScheduleLead time.Duration
	// Location is the time zone schedules are written in (nil: UTC).
	Location *time.Location
	// Worker is the allocatable capacity a new worker is expected to have,
	// used until a managed node exists to learn it from.
	Worker Resources
	// VMMemory is the memory a new worker VM takes on its PVE host.
	VMMemory int64
	// HostReserve is the memory kept free on each PVE host (Spare).
	HostReserve int64
	// StandbySize is standby's size (0: off); StandbyHosts the hosts
	// that may hold its workers (empty: any); StandbyMaxAge the age past
	// which a standby worker is destroyed rather than started.
	StandbySize   int
	StandbyHosts  []string
	StandbyMaxAge time.Duration
	// VMCores is the cores of a new worker VM (single-pool policies).
	VMCores int
	// Pools are the worker pools; empty: one pool, DefaultPool, of
	// MinWorkers, MaxWorkers, Worker, VMMemory, VMCores and StandbySize
	// (WorkerPools). MaxWorkers bounds all pools together; MinWorkers
	// is then unused (each pool has its own).
	Pools []Pool
	// MaxCores and MaxMemory bound the cores and memory of all pools'
	// workers together (0: no bound).
	MaxCores  int
	MaxMemory int64
	// ReplaceDrifted replaces drifted workers (Snapshot.Drifted) one at a
	// time, a new worker first (replace.go); MaxAge (0: off) makes a
	// worker whose Node is older than it due too.
	ReplaceDrifted bool
	MaxAge         time.Duration
}

// Schedule raises the minimum worker count during a weekly window.
type Schedule struct {
	Name string
	// Days the window starts on (time.Sunday .. time.Saturday).
	Days [7]bool
	// Start and End are minutes after midnight; End <= Start runs past midnight.
	Start, End int
	MinWorkers int
}

// String renders the window as it is written in the config ("Fri 18:00-23:59").
func (s Schedule) String() string {
	days := ""
	for d := time.Sunday; d <= time.Saturday; d++ {
		if s.Days[d] {
			if days != "" {
				days += ","
			}
			days += d.String()[:3]
		}
	}
	return fmt.Sprintf("%s %02d:%02d-%02d:%02d", days, s.Start/60, s.Start%60, s.End/60, s.End%60)
}

// baseMin is the minimum before schedules: MinWorkers, or with Pools the
// sum of the pools' minimums.
func (p Policy) baseMin() int {
	if len(p.Pools) == 0 {
		return p.MinWorkers
	}
	m := 0
	for _, pl := range p.Pools {
		m += pl.MinWorkers
	}
	return m
}

// MinAt is the minimum worker count at now: MinWorkers raised by the
// schedules active then (ScheduleLead included), capped at MaxWorkers.
func (p Policy) MinAt(now time.Time) int {
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	m := p.baseMin()
	for _, sc := range p.Schedules {
		if sc.activeAt(now.In(loc), p.ScheduleLead) {
			m = max(m, sc.MinWorkers)
		}
	}
	return min(m, p.MaxWorkers)
}

// activeAt reports whether t (in the schedule's zone) falls in the window,
// or within lead before its start.
func (s Schedule) activeAt(t time.Time, lead time.Duration) bool {
	return s.contains(t) || (lead > 0 && s.contains(t.Add(lead)))
}

func (s Schedule) contains(t time.Time) bool {
	minute := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	if s.End > s.Start {
		return s.Days[day] && minute >= s.Start && minute < s.End
	}
	// Past midnight: from Start on a listed day until End on the next day.
	if s.Days[day] && minute >= s.Start {
		return true
	}
	prev := (day + 6) % 7
	return s.Days[prev] && minute < s.End
}

// History is what Decide remembers between ticks. Decide returns the next
// History in Plan.Next; the caller keeps it and passes it back. The
// reconciler records failures in LastFailure.
type History struct {
	// CPUHighSince / MemoryHighSince: since when utilization has been at or above Up (zero: not now).
	CPUHighSince    time.Time `json:"cpu_high_since,omitzero"`
	MemoryHighSince time.Time `json:"memory_high_since,omitzero"`
	// LowSince: since when CPU and memory have both been at or below Down (zero: not now).
	LowSince      time.Time `json:"low_since,omitzero"`
	LastScaleUp   time.Time `json:"last_scale_up,omitzero"`
	LastScaleDown time.Time `json:"last_scale_down,omitzero"`
	LastFailure   time.Time `json:"last_failure,omitzero"`
	// UpOwed is what the last scale-up left out because of max_nodes_per_step;
	// it is added at the next decision despite the cooldown.
	UpOwed int `json:"up_owed,omitempty"`
	// Unneeded: since when each worker (by Node name) has been unneeded
	// (consolidate.go); Empty: since when each has run only DaemonSet and
	// mirror pods. Decide returns new maps; it never changes these.
	Unneeded map[string]time.Time `json:"unneeded_since,omitempty"`
	Empty    map[string]time.Time `json:"empty_since,omitempty"`
	// Usage is the usage the decisions of the last Policy.Lookahead saw,
	// oldest first, one sample per change (trend.go). Decide returns a
	// new slice; it never changes this one.
	Usage []UsageSample `json:"usage,omitempty"`
	// ReplaceFailures counts the replacements' new workers that failed in
	// a row (the reconciler's count; none succeeded since): at
	// MaxReplaceFailures the rolling replacement stops.
	ReplaceFailures int `json:"replace_failures,omitempty"`
}

// MaxReplaceFailures is how many replacements' new workers may fail in a
// row before the rolling replacement stops until the daemon restarts (a
// template that never boots would otherwise clone and destroy for ever).
const MaxReplaceFailures = 3

// Spare is the memory a host can give new workers by this policy: its
// free memory less the reserve. The one place the engine applies
// HostReserve (Host.MemoryFree comes without it).
func (p Policy) Spare(h Host) int64 { return h.MemoryFree - p.HostReserve }
