package scaler

import (
	"math"
	"time"
)

// The trend: scaling up ahead of the threshold on a rising slope.
//
// A worker takes Policy.Lookahead (about its clone-to-Ready time) to
// serve, so a scale-up started when utilization reaches scale_up_at
// leaves the cluster over it for the up window plus that time, and
// sized on the usage of the moment it falls short when the load is
// still climbing. The engine therefore remembers the usage (absolute
// cores and bytes, not percentages: a removal or an addition moves the
// percentages, not the usage) of the last Lookahead in History.Usage,
// and projects it Lookahead ahead along the slope from the oldest
// sample to the newest. A resource whose projection reaches its
// scale_up_at counts as high (the up window still applies), a
// scale-up is sized on the projection, and a removal must leave the
// projection under scale_up_at - scale_down_margin: the projection
// never lowers a figure, only a rise raises it.

// UsageSample is the usage of the Ready, schedulable workers that one
// decision saw.
type UsageSample struct {
	At   time.Time `json:"at"`
	Used Resources `json:"used"`
}

// TrendSpans is how many lookaheads of samples the trend is drawn
// through.
const TrendSpans = 2

// TrendSignificance: the rise the line projects over the lookahead must
// be at least this many times the samples' scatter around it (their
// root-mean-square distance) to count. On the generated noisy traces of
// internal/simulate's TestEfficiencyGoalsGenerated, 3 leaves 2 flaps and
// 1 trace over 1.2 x the limit's node-hours where no such test leaves 4
// and 4; the shipped traces' figures are the same either way.
const TrendSignificance = 3

// recordUsage returns the samples a decision at now keeps. While the
// usage is the newest sample's, prev itself: the history stays as it
// was, and samples leave the trend by their age alone (inWindow).
// Otherwise those of the last span (none from the future) and used. It
// never changes prev.
func recordUsage(prev []UsageSample, used Resources, now time.Time, span time.Duration) []UsageSample {
	if span <= 0 {
		return nil
	}
	if unchanged(prev, used, now) {
		return prev
	}
	var keep []UsageSample
	for _, s := range prev {
		if !s.At.After(now) && !s.At.Before(now.Add(-span)) && !s.At.Equal(now) {
			keep = append(keep, s)
		}
	}
	return append(keep, UsageSample{At: now, Used: used})
}

// unchanged: the newest sample, not from the future, is used.
func unchanged(samples []UsageSample, used Resources, now time.Time) bool {
	n := len(samples)
	return n > 0 && samples[n-1].Used == used && !samples[n-1].At.After(now)
}

// inWindow is the run of samples the trend is drawn through at now: those
// of the last span, none from the future.
func inWindow(samples []UsageSample, now time.Time, span time.Duration) []UsageSample {
	i := 0
	for i < len(samples) && samples[i].At.Before(now.Add(-span)) {
		i++
	}
	j := i
	for j < len(samples) && !samples[j].At.After(now) {
		j++
	}
	return samples[i:j]
}

// drawn reports whether samples are enough for a line: three or more,
// spanning window at least.
func drawn(samples []UsageSample, window time.Duration) bool {
	return window > 0 && len(samples) >= 3 && samples[len(samples)-1].At.Sub(samples[0].At) >= window
}

// projectUsage is the usage window ahead on the trend of samples (in
// time order, the newest the usage now): per resource, the least-squares
// line through the samples, read window after the newest. A line drawn
// through every sample of the last TrendSpans x window, rather than from
// one sample to another, lets the noise of metrics-server's figures
// mostly cancel out. Without a rise, a rise within the noise
// (TrendSignificance), with fewer than three samples, or over a span
// shorter than window, it is the newest.
func projectUsage(samples []UsageSample, window time.Duration) Resources {
	if len(samples) == 0 {
		return Resources{}
	}
	newest := samples[len(samples)-1]
	if !drawn(samples, window) {
		return newest.Used
	}
	at := func(s UsageSample) float64 { return s.At.Sub(newest.At).Seconds() }
	ahead := window.Seconds()
	line := func(v func(Resources) int64) int64 {
		var n, sx, sy, sxx, sxy float64
		for _, s := range samples {
			x, y := at(s), float64(v(s.Used))
			n++
			sx += x
			sy += y
			sxx += x * x
			sxy += x * y
		}
		den := n*sxx - sx*sx
		if den <= 0 {
			return v(newest.Used)
		}
		slope := (n*sxy - sx*sy) / den
		if slope <= 0 {
			return v(newest.Used)
		}
		icept := (sy - slope*sx) / n
		// A rise within the scatter of the samples around the line is
		// noise, not a trend.
		var ss float64
		for _, s := range samples {
			e := float64(v(s.Used)) - (icept + slope*at(s))
			ss += e * e
		}
		if slope*ahead < TrendSignificance*math.Sqrt(ss/n) {
			return v(newest.Used)
		}
		// The line at the newest sample (x = 0), then window ahead.
		return int64(icept + slope*ahead)
	}
	return Resources{
		MilliCPU: line(func(r Resources) int64 { return r.MilliCPU }),
		Memory:   line(func(r Resources) int64 { return r.Memory }),
	}
}
