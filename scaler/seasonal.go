package scaler

import (
	"cmp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Recurring load: scaling up ahead of a rise seen one period ago.
//
// The trend (trend.go) sees a climb once it has begun; a step (the CI
// jobs every weekday at 09:00, a backup at 02:00) has no slope before
// it, so its pods wait a whole provisioning. A homelab's load recurs
// by the day and the week, so the engine also looks at what the load
// did one Policy.Seasons period ago, from that instant on: the rise of
// the demand (usage plus the requests of the pods pending then; Plan.Load)
// from then to its peak within the horizon ahead, added to the usage of
// now. The up decision reads it SeasonUpAhead(p) ahead (about a
// worker's clone-to-Ready time plus the up window), and only a rise seen
// at each of the last SeasonRepeats periods (the smallest counts): a
// one-off flood is not replayed. A removal reads it SeasonDownAhead(p)
// ahead (that, plus the flap window) and is held by a rise seen once, so
// no worker goes that the rise would bring back. Only a rise counts, and
// only one clear of the noise around it (SeasonSignificance): a quiet
// or noisy past adds nothing. A day unlike the ones before costs the
// workers sized for their rise, for an unneeded while: bounded by
// max_workers, max_nodes_per_step and the cooldowns (a capped step's
// UpOwed goes on within the cooldown while the rise is in view).

// LoadSample is the demand one decision saw: the usage of the Ready,
// schedulable workers plus the requests of the pending pods a new
// worker of the utilization pool could run.
type LoadSample struct {
	At     time.Time `json:"at"`
	Demand Resources `json:"demand"`
}

// SeasonRepeats is how many periods in a row a rise must have been seen
// at (the smallest of them counts) to scale up for it: a rise the load
// made once (a pod flood, a broken Job) adds no worker a day and a week
// later. A removal is held by a rise seen once: keeping a worker a while
// is the cheap side of the error.
const SeasonRepeats = 2

// seasonAgos names the instants a rise of period was seen at: "24h0m0s
// and 48h0m0s".
func seasonAgos(period time.Duration) string {
	var agos []string
	for k := 1; k <= SeasonRepeats; k++ {
		agos = append(agos, fmtDur(time.Duration(k)*period))
	}
	if len(agos) == 1 {
		return agos[0]
	}
	return strings.Join(agos[:len(agos)-1], ", ") + " and " + agos[len(agos)-1]
}

// FlapWindow is how soon after a removal an addition counts as a flap;
// the removal check looks this much further ahead in the load of one
// period ago.
const FlapWindow = 15 * time.Minute

// SeasonGap is the farthest the last sample at or before one period ago
// may be from that instant: with none that close, the period says
// nothing (the daemon was not running then).
const SeasonGap = 5 * time.Minute

// SeasonSignificance: a rise counts when it is at least this many times
// the median change between successive samples around it (the noise of
// metrics-server's figures).
const SeasonSignificance = 3

// SeasonUpAhead is how far ahead of one period ago the up decision
// looks: a worker's clone-to-Ready time (Lookahead) and the up window,
// so that the worker is Ready when the rise comes.
func SeasonUpAhead(p Policy) time.Duration { return p.Lookahead + p.UpWindow }

// SeasonDownAhead is how far ahead the removal check looks.
func SeasonDownAhead(p Policy) time.Duration { return SeasonUpAhead(p) + FlapWindow }

// Recurring is what a decision reads of the load one period ago: the
// rises over the up horizon (and the periods they were seen at) and over
// the removal's. Decide depends on Snapshot.Past and on the clock through
// Past only by way of it, so a replay that finds it unchanged, before
// Horizon, may skip the decision (Horizon leaves Past to the caller).
type Recurring struct {
	Up, Down     Resources
	CPUAt, MemAt time.Duration
}

// RecurringAt is the Recurring a decision at now reads in past (in time
// order; any part of it that covers SeasonWindows: the whole of a
// LoadMemory, or a Snapshot.Past).
func RecurringAt(past []LoadSample, p Policy, now time.Time) Recurring {
	if len(p.Seasons) == 0 {
		return Recurring{}
	}
	var r Recurring
	r.Up, r.CPUAt, r.MemAt = seasonalRise(past, p.Seasons, now, SeasonUpAhead(p), SeasonRepeats)
	r.Down, _, _ = seasonalRise(past, p.Seasons, now, SeasonDownAhead(p), 1)
	return r
}

// seasonalRise is, per resource, the largest rise over the periods of
// the demand in past from one period before now to its peak within
// ahead after that (zero without one, or when the rise is within the
// noise), and the period it was seen at (zero: none). past is in time
// order.
func seasonalRise(past []LoadSample, periods []time.Duration, now time.Time, ahead time.Duration, repeats int) (rise Resources, cpuAt, memAt time.Duration) {
	for _, period := range periods {
		// Seen at each of the last repeats periods: the smallest.
		r := riseAt(past, now.Add(-period), ahead)
		for k := 2; k <= repeats; k++ {
			rk := riseAt(past, now.Add(-time.Duration(k)*period), ahead)
			r = Resources{MilliCPU: min(r.MilliCPU, rk.MilliCPU), Memory: min(r.Memory, rk.Memory)}
		}
		if r.MilliCPU > rise.MilliCPU {
			rise.MilliCPU, cpuAt = r.MilliCPU, period
		}
		if r.Memory > rise.Memory {
			rise.Memory, memAt = r.Memory, period
		}
	}
	return rise, cpuAt, memAt
}

// riseAt is the rise of the demand from the last sample at or before
// then (within SeasonGap) to its peak in (then, then+ahead].
func riseAt(past []LoadSample, then time.Time, ahead time.Duration) Resources {
	// i: the first sample after then.
	i := sort.Search(len(past), func(k int) bool { return past[k].At.After(then) })
	if i == 0 || then.Sub(past[i-1].At) > SeasonGap {
		return Resources{}
	}
	base := past[i-1].Demand
	j := i
	for j < len(past) && !past[j].At.After(then.Add(ahead)) {
		j++
	}
	if j == i {
		return Resources{}
	}
	// The noise: successive changes from a window as long before then as
	// ahead reaches after it.
	lo := i - 1
	for lo > 0 && !past[lo-1].At.Before(then.Add(-ahead)) {
		lo--
	}
	one := func(v func(Resources) int64) int64 {
		peak := v(base)
		for _, s := range past[i:j] {
			peak = max(peak, v(s.Demand))
		}
		r := peak - v(base)
		if r <= 0 || r < SeasonSignificance*medianStep(past[lo:j], v) {
			return 0
		}
		return r
	}
	return Resources{
		MilliCPU: one(func(r Resources) int64 { return r.MilliCPU }),
		Memory:   one(func(r Resources) int64 { return r.Memory }),
	}
}

// medianStep is the median of the absolute changes between successive
// samples (0 with fewer than two).
func medianStep(s []LoadSample, v func(Resources) int64) int64 {
	if len(s) < 2 {
		return 0
	}
	var buf [64]int64
	steps := buf[:0]
	for k := 1; k < len(s); k++ {
		d := v(s[k].Demand) - v(s[k-1].Demand)
		steps = append(steps, max(d, -d))
	}
	slices.Sort(steps)
	return steps[len(steps)/2]
}

// SeasonWindows is the part of past (in time order) a decision at now
// reads: for each period and each of the last SeasonRepeats of it, from
// SeasonGap and SeasonDownAhead(p) before that instant to
// SeasonDownAhead(p) after it. The adapters hand Decide no more than
// this (Snapshot.Past).
func SeasonWindows(past []LoadSample, p Policy, now time.Time) []LoadSample {
	var agos []time.Duration
	for _, period := range p.Seasons {
		for k := 1; k <= SeasonRepeats; k++ {
			agos = append(agos, time.Duration(k)*period)
		}
	}
	// The oldest window first, so the windows come in time order;
	// overlapping ones are taken once.
	slices.SortFunc(agos, func(a, b time.Duration) int { return cmp.Compare(b, a) })
	agos = slices.Compact(agos)
	ahead := SeasonDownAhead(p)
	var out []LoadSample
	last := time.Time{}
	for _, ago := range agos {
		from, to := now.Add(-ago-SeasonGap-ahead), now.Add(-ago+ahead)
		if !from.After(last) {
			from = last.Add(time.Nanosecond)
		}
		i := sort.Search(len(past), func(k int) bool { return !past[k].At.Before(from) })
		for ; i < len(past) && !past[i].At.After(to); i++ {
			out = append(out, past[i])
			last = past[i].At
		}
	}
	return out
}

// SampleGap is the least time between two samples LoadMemory keeps:
// at most 2 a minute, about 40,000 (1.6 MB) for two weeks.
const SampleGap = 30 * time.Second

// LoadMemory keeps the samples of the longest period (and the windows
// around it): the daemon's and the replay's memory of their own load.
// Not safe for concurrent use.
type LoadMemory struct {
	keep    time.Duration
	samples []LoadSample
}

// SeasonsKeep is how far back p's periods read (0: none).
func SeasonsKeep(p Policy) time.Duration {
	var longest time.Duration
	for _, s := range p.Seasons {
		longest = max(longest, s)
	}
	if longest == 0 {
		return 0
	}
	return SeasonRepeats*longest + SeasonGap + SeasonDownAhead(p)
}

// NewLoadMemory keeps what p's periods read.
func NewLoadMemory(p Policy) *LoadMemory {
	return &LoadMemory{keep: SeasonsKeep(p)}
}

// Add records a sample; one not after the newest is dropped (a clock set
// back), and samples older than the memory keeps are let go.
func (m *LoadMemory) Add(s LoadSample) {
	if m.keep <= 0 || s.At.IsZero() {
		return
	}
	n := len(m.samples)
	if n > 0 && !s.At.After(m.samples[n-1].At) {
		return
	}
	if n > 0 && s.At.Sub(m.samples[n-1].At) < SampleGap {
		// Ticks closer than SampleGap are one sample, at its peak: the
		// memory stays a few MB however fast the daemon ticks.
		last := &m.samples[n-1]
		last.Demand = Resources{MilliCPU: max(last.Demand.MilliCPU, s.Demand.MilliCPU), Memory: max(last.Demand.Memory, s.Demand.Memory)}
		return
	}
	m.samples = append(m.samples, s)
	cut := sort.Search(len(m.samples), func(k int) bool { return !m.samples[k].At.Before(s.At.Add(-m.keep)) })
	if cut > len(m.samples)/2 {
		m.samples = append(m.samples[:0:0], m.samples[cut:]...)
	}
}

// Past is what a decision at now reads of the memory (SeasonWindows).
func (m *LoadMemory) Past(p Policy, now time.Time) []LoadSample {
	return SeasonWindows(m.samples, p, now)
}

// Recurring is RecurringAt on the memory.
func (m *LoadMemory) Recurring(p Policy, now time.Time) Recurring {
	return RecurringAt(m.samples, p, now)
}

// Len is the samples kept.
func (m *LoadMemory) Len() int { return len(m.samples) }
