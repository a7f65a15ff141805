package simulate

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// A family of realistic traces: seeded, so the same seed gives the same
// rows. Every row is a minute, as a daemon's own trace at the default
// interval; the noise is metrics-server's minute to minute wobble.
type family struct {
	name string
	gen  func(r *rand.Rand) []byte
}

// families are the shapes a user's week brings: a working day's curve
// with bursts of pending pods, an evening spike, a memory-heavy batch.
var families = []family{
	{"diurnal", genDiurnal},
	{"spike", genSpike},
	{"batch", genBatch},
}

// noise is a smoothed random wobble of about +-amp.
type noise struct {
	r   *rand.Rand
	v   float64
	amp float64
}

func (n *noise) next() float64 {
	n.v = 0.7*n.v + 0.3*(2*n.r.Float64()-1)*n.amp*2
	return n.v
}

func minuteRows(comment string, minutes int, row func(min int) (cpu, mem float64, pending int)) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n%s\n", comment, TraceHeader)
	for m := 0; m <= minutes; m++ {
		cpu, mem, p := row(m)
		fmt.Fprintf(&b, "%d,%.2f,%.2f,%d\n", m*60, max(cpu, 0.1), max(mem, 0.5), max(p, 0))
	}
	return b.Bytes()
}

// genDiurnal: two working days. Night load 2-4 cores; a day's curve
// peaking at 8-14 cores between 12:00 and 16:00; memory 1-1.6 GiB per
// core on top of a 6-10 GiB floor; 1-4 bursts a day of 2-5 pods pending
// for 5-20 minutes at random times.
func genDiurnal(r *rand.Rand) []byte {
	night, peak := 2+2*r.Float64(), 8+6*r.Float64()
	floor, perCore := 6+4*r.Float64(), 1+0.6*r.Float64()
	at := 12 + 4*r.Float64()
	width := 7 + 3*r.Float64()
	type burst struct{ from, to, pods int }
	var bursts []burst
	for day := range 2 {
		for range 1 + r.IntN(4) {
			from := day*1440 + 7*60 + r.IntN(12*60)
			bursts = append(bursts, burst{from, from + 5 + r.IntN(16), 2 + r.IntN(4)})
		}
	}
	nc, nm := noise{r: r, amp: 0.4 + 0.4*r.Float64()}, noise{r: r, amp: 0.3}
	return minuteRows("generated: diurnal", 2*1440, func(m int) (float64, float64, int) {
		hour := float64(m%1440) / 60
		shape := math.Max(0, math.Cos((hour-at)/width*math.Pi))
		load := night + (peak-night)*shape
		p := 0
		for _, b := range bursts {
			if m >= b.from && m < b.to {
				p += b.pods
			}
		}
		return load + nc.next(), floor + perCore*(load-night) + nm.next(), p
	})
}

// genSpike: six hours; a quiet 2-3 cores, then at 30-150 minutes a rise
// over 3-20 minutes to 9-15 cores with 2-8 pods pending during the
// rise, held 30-120 minutes, then a fall over 10-60 minutes.
func genSpike(r *rand.Rand) []byte {
	quiet, high := 2+r.Float64(), 9+6*r.Float64()
	start := 30 + r.IntN(120)
	rise, hold, fall := 3+r.IntN(18), 30+r.IntN(91), 10+r.IntN(51)
	pods := 2 + r.IntN(7)
	memQuiet, memHigh := 5+2*r.Float64(), 8+4*r.Float64()
	nc, nm := noise{r: r, amp: 0.3 + 0.4*r.Float64()}, noise{r: r, amp: 0.2}
	return minuteRows("generated: spike", 360, func(m int) (float64, float64, int) {
		f, p := 0.0, 0
		switch {
		case m >= start && m < start+rise:
			f = float64(m-start) / float64(rise)
			p = int(float64(pods) * f)
		case m >= start+rise && m < start+rise+hold:
			f, p = 1, pods
		case m >= start+rise+hold && m < start+rise+hold+fall:
			f = 1 - float64(m-start-rise-hold)/float64(fall)
		}
		return quiet + (high-quiet)*f + nc.next(), memQuiet + (memHigh-memQuiet)*f + nm.next(), p
	})
}

// genBatch: four hours; CPU moderate (2-5 cores); at 20-60 minutes a
// memory surge over 5-20 minutes from 6-10 GiB to 24-38 GiB with 4-10
// job pods pending for its first minutes, lasting 60-120 minutes.
func genBatch(r *rand.Rand) []byte {
	cpu := 2 + 3*r.Float64()
	lo, hi := 6+4*r.Float64(), 24+14*r.Float64()
	start, rise, hold := 20+r.IntN(41), 5+r.IntN(16), 60+r.IntN(61)
	pods := 4 + r.IntN(7)
	nc, nm := noise{r: r, amp: 0.3}, noise{r: r, amp: 0.4}
	return minuteRows("generated: batch", 240, func(m int) (float64, float64, int) {
		f, p, c := 0.0, 0, cpu
		switch {
		case m >= start && m < start+rise:
			f = float64(m-start) / float64(rise)
			p = pods - int(float64(pods)/2*f)
			c += f
		case m >= start+rise && m < start+rise+hold:
			f, c = 1, cpu+1
		}
		return c + nc.next(), lo + (hi-lo)*f + nm.next(), p
	})
}

// generatedGaps are the goals the default policy misses on the generated
// traces, by family and goal: how many of the generatedSeeds traces miss
// it. TestEfficiencyGoalsGenerated fails when a count changes either
// way, so a change that closes a gap must lower it, and one that opens a
// new one is seen. Why they stay open:
//
//   - diurnal over: the recipe's minutes over are few (11 to 45 in two
//     days) and ours come from bursts of pending pods on a full cluster
//     and noise at the threshold, where a quarter is 3 to 11 minutes.
//   - diurnal pending: a burst of pods that does not fit waits a worker's
//     provisioning (1m56s modelled): one pod is 1.9 pod-minutes, and the
//     recipe's total is 0 to 87. The bursts come at random times each
//     day, so policy.recurring_load has nothing to take from the day
//     before; only standing room avoids it: lower thresholds, or a
//     schedule before a known burst.
//   - spike over: a rise faster than the lookahead sees (3 to 5 minutes
//     to the peak) is over the threshold for the provisioning time.
//   - spike pending: pods pending from the first minute of a rise.
//   - batch limit: a worker sized for the memory ramp's projection that
//     the plateau, at 64% memory on six, cannot let go (76% on five).
var generatedGaps = map[string]int{
	"diurnal over":    12,
	"diurnal pending": 9,
	"spike over":      5,
	"spike pending":   1,
	"batch limit":     1,
}

const generatedSeeds = 12

// TestEfficiencyGoalsGenerated holds issue 18's goals (TestEfficiencyGoals)
// with the default policy on generated realistic traces: generatedSeeds
// of each family, deterministic. A goal not in generatedGaps holds on
// every trace of the family.
func TestEfficiencyGoalsGenerated(t *testing.T) {
	s := setup(t, nil)
	m := testModel()
	missed := map[string]int{}
	for _, f := range families {
		for seed := range uint64(generatedSeeds) {
			tr, err := ParseTrace(fmt.Sprintf("%s-%d.csv", f.name, seed), bytes.NewReader(f.gen(rand.New(rand.NewPCG(seed, 18)))))
			if err != nil {
				t.Fatal(err)
			}
			rep := Simulate(tr, s, m, true)
			o, r, l := rep.Results[0], rep.Results[1], rep.Results[2]
			goals := map[string]bool{
				"limit":   o.NodeHours <= 1.2*l.NodeHours,
				"recipe":  r.PendingPodMinutes > 2*o.PendingPodMinutes || o.NodeHours <= r.NodeHours,
				"over":    o.OverMinutes <= r.OverMinutes/4,
				"pending": o.PendingPodMinutes <= r.PendingPodMinutes/4,
				"flaps":   o.Flaps == 0,
			}
			var miss []string
			for g, ok := range goals {
				if !ok {
					missed[f.name+" "+g]++
					miss = append(miss, g)
				}
			}
			sort.Strings(miss)
			t.Logf("%s: node-hours %.1f / %.1f / %.1f (ours / recipe / limit), over %.1f / %.1f min, pending %.1f / %.1f pod-min, flaps %d; missed %v",
				tr.Name, o.NodeHours, r.NodeHours, l.NodeHours, o.OverMinutes, r.OverMinutes, o.PendingPodMinutes, r.PendingPodMinutes, o.Flaps, miss)
		}
	}
	for _, f := range families {
		for _, g := range []string{"limit", "recipe", "over", "pending", "flaps"} {
			key := f.name + " " + g
			if got, want := missed[key], generatedGaps[key]; got != want {
				t.Errorf("%s: missed on %d of %d traces, generatedGaps says %d", key, got, generatedSeeds, want)
			}
		}
	}
}
