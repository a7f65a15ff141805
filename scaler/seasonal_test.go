package scaler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// series is one sample a minute from start, of the CPU millicores given
// (memory 1 GiB per core).
func series(start time.Time, milli ...int64) []LoadSample {
	out := make([]LoadSample, len(milli))
	for i, m := range milli {
		out[i] = LoadSample{At: start.Add(time.Duration(i) * time.Minute), Demand: Resources{MilliCPU: m, Memory: m << 20}}
	}
	return out
}

// repeated is the same shape (series from off before each instant) at
// each of the last SeasonRepeats periods before t0, in time order.
func repeated(period, off time.Duration, milli ...int64) []LoadSample {
	var out []LoadSample
	for k := SeasonRepeats; k >= 1; k-- {
		out = append(out, series(t0.Add(-time.Duration(k)*period-off), milli...)...)
	}
	return out
}

func TestSeasonalRise(t *testing.T) {
	day := 24 * time.Hour
	m3 := 3 * time.Minute
	step := []int64{4000, 4000, 4000, 4000, 4000, 6000, 6000}
	for _, c := range []struct {
		name    string
		past    []LoadSample
		periods []time.Duration
		want    int64 // CPU millicores, over 3 minutes ahead
	}{
		{"nothing recorded", nil, []time.Duration{day}, 0},
		{"flat", repeated(day, m3, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 4000), []time.Duration{day}, 0},
		{"a step within the window", repeated(day, m3, step...), []time.Duration{day}, 2000},
		{"the step's peak, not its end", repeated(day, m3, 4000, 4000, 4000, 4000, 7000, 5000, 5000), []time.Duration{day}, 3000},
		{"a step beyond the window", repeated(day, m3, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 6000), []time.Duration{day}, 0},
		{"a fall is no rise", repeated(day, m3, 6000, 6000, 6000, 6000, 3000, 3000, 3000), []time.Duration{day}, 0},
		{"a longer record", repeated(day, 10*time.Minute, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 6000, 6000), []time.Duration{day}, 2000},
		// The last sample before then is older than SeasonGap: the daemon
		// was not running then.
		{"too old a base", repeated(day, SeasonGap+time.Minute, 4000), []time.Duration{day}, 0},
		// Noise of ±1 core around then: a rise of 1.5 cores is within it.
		{"within the noise", repeated(day, m3, 4000, 5000, 4000, 5000, 4000, 5500, 4000), []time.Duration{day}, 0},
		{"clear of the noise", repeated(day, m3, 4000, 4100, 4000, 4100, 4000, 8000, 4000), []time.Duration{day}, 3900},
		{"a period without samples", repeated(day, m3, step...), []time.Duration{7 * day}, 0},
		// A rise the load made once is not made again.
		{"seen one day ago only", series(t0.Add(-day-m3), step...), []time.Duration{day}, 0},
		{"seen two days ago only", series(t0.Add(-2*day-m3), step...), []time.Duration{day}, 0},
		{"the smaller of the two", append(series(t0.Add(-2*day-m3), 4000, 4000, 4000, 4000, 4000, 9000),
			series(t0.Add(-day-m3), step...)...), []time.Duration{day}, 2000},
		{"the largest over the periods", append(repeated(7*day, m3, 4000, 4000, 4000, 4000, 9000),
			repeated(day, m3, step...)...), []time.Duration{day, 7 * day}, 5000},
	} {
		t.Run(c.name, func(t *testing.T) {
			slices.SortStableFunc(c.past, func(a, b LoadSample) int { return a.At.Compare(b.At) })
			got, cpuAt, _ := seasonalRise(c.past, c.periods, t0, m3, SeasonRepeats)
			if got.MilliCPU != c.want {
				t.Errorf("rise %dm, want %dm", got.MilliCPU, c.want)
			}
			if (got.MilliCPU > 0) != (cpuAt > 0) {
				t.Errorf("rise %dm seen at period %s", got.MilliCPU, cpuAt)
			}
		})
	}
}

// dayBefore is the demand of the last SeasonRepeats days around now:
// flat at flatMilli, then from stepAt after that instant up by rise.
func dayBefore(flatMilli, rise int64, stepAt time.Duration) []LoadSample {
	var out []LoadSample
	for k := SeasonRepeats; k >= 1; k-- {
		out = append(out, dayAgo(flatMilli, rise, stepAt, time.Duration(k)*24*time.Hour)...)
	}
	return out
}

// dayAgo is dayBefore's shape around ago before now.
func dayAgo(flatMilli, rise int64, stepAt, ago time.Duration) []LoadSample {
	var out []LoadSample
	for m := -30; m <= 30; m++ {
		at := t0.Add(-ago + time.Duration(m)*time.Minute)
		d := Resources{MilliCPU: flatMilli, Memory: 4 * gi}
		if time.Duration(m)*time.Minute >= stepAt {
			d.MilliCPU += rise
		}
		out = append(out, LoadSample{At: at, Demand: d})
	}
	return out
}

func TestRecurringScaleUp(t *testing.T) {
	p := testPolicy()
	p.Seasons = []time.Duration{24 * time.Hour}
	p.UpWindow, p.Lookahead = time.Minute, 2*time.Minute
	nodes := workers(3, 60, 30) // 7.2 of 12 cores
	// Yesterday at this time the demand was 7.2 cores and rose by 3 two
	// minutes later: 10.2 of 12 cores is 85%, over the 80% threshold.
	s := Snapshot{Nodes: nodes, Past: dayBefore(7200, 3000, 2*time.Minute)}
	plan := Decide(s, p, History{}, t0)
	if !plan.Held(CodeUpWindow) || !plan.Next.CPUHighSince.Equal(t0) {
		t.Fatalf("the recurring rise does not count as high\n%s", dump(plan))
	}
	plan = Decide(s, p, History{CPUHighSince: t0.Add(-time.Minute)}, t0)
	if plan.Added() == 0 {
		t.Fatalf("no scale-up ahead of yesterday's rise\n%s", dump(plan))
	}
	if msg := plan.Actions[0].Reasons[0].Message; !strings.Contains(msg, "as it did 24h0m0s and 48h0m0s ago") {
		t.Errorf("the reason does not say where the rise comes from: %s", msg)
	}
	// The same rise beyond the horizon (lookahead plus up window), seen
	// one day only, or off.
	for name, mod := range map[string]func(*Snapshot, *Policy){
		"seen once":          func(s *Snapshot, _ *Policy) { s.Past = dayAgo(7200, 3000, 2*time.Minute, 24*time.Hour) },
		"beyond the horizon": func(s *Snapshot, _ *Policy) { s.Past = dayBefore(7200, 3000, 4*time.Minute) },
		"off":                func(_ *Snapshot, p *Policy) { p.Seasons = nil },
	} {
		s2, p2 := s, p
		mod(&s2, &p2)
		if plan := Decide(s2, p2, History{CPUHighSince: t0.Add(-time.Minute)}, t0); plan.Added() > 0 || !plan.Next.CPUHighSince.IsZero() {
			t.Errorf("%s: scales up\n%s", name, dump(plan))
		}
	}
}

func TestRecurringRiseHoldsRemoval(t *testing.T) {
	p := testPolicy()
	p.Seasons = []time.Duration{24 * time.Hour}
	p.DownWindow = 5 * time.Minute
	// Three workers at 35%: without one, 52.5%, under 80 - 10. Unneeded
	// for an hour.
	nodes := workers(3, 35, 30)
	h := History{Unneeded: map[string]time.Time{"w0": t0.Add(-time.Hour), "w1": t0.Add(-time.Hour), "w2": t0.Add(-time.Hour)}}
	if plan := Decide(Snapshot{Nodes: nodes}, p, h, t0); func() bool { _, ok := plan.Removal(); return !ok }() {
		t.Fatalf("no removal without a recurring rise\n%s", dump(plan))
	}
	// Yesterday the demand rose by 2.5 cores ten minutes from now: 6.7 of
	// 8 cores (84%) without the worker: it would come back.
	s := Snapshot{Nodes: nodes, Past: dayBefore(4200, 2500, 10*time.Minute)}
	if plan := Decide(s, p, h, t0); func() bool { _, ok := plan.Removal(); return ok }() {
		t.Fatalf("removes a worker the recurring rise brings back within the flap window\n%s", dump(plan))
	}
	// Seen one day only, it holds the removal all the same: keeping a
	// worker is the cheap side of the error.
	s.Past = dayAgo(4200, 2500, 10*time.Minute, 24*time.Hour)
	if plan := Decide(s, p, h, t0); func() bool { _, ok := plan.Removal(); return ok }() {
		t.Fatalf("a rise seen once does not hold the removal\n%s", dump(plan))
	}
	// A rise past the flap window does not hold it.
	s.Past = dayBefore(4200, 2500, SeasonDownAhead(p)+time.Minute)
	if plan := Decide(s, p, h, t0); func() bool { _, ok := plan.Removal(); return !ok }() {
		t.Fatalf("a rise beyond the flap window holds the removal\n%s", dump(plan))
	}
}

func TestPlanLoad(t *testing.T) {
	p := testPolicy()
	nodes := workers(2, 50, 50) // 4 cores, 8 GiB used
	pods := pending(3, 500, gi, t0)
	pods[2].OwnerKind = OwnerDaemonSet // a pod no new worker runs: not demand
	plan := Decide(Snapshot{Nodes: nodes, PendingPods: pods}, p, History{}, t0)
	want := Resources{MilliCPU: 4000 + 1000, Memory: 8*gi + 2*gi}
	if !plan.Load.At.Equal(t0) || plan.Load.Demand != want {
		t.Errorf("load %+v, want %v at %v", plan.Load, want, t0)
	}
	stale := Decide(Snapshot{Nodes: nodes, Metrics: MetricsState{Stale: true}}, p, History{}, t0)
	if !stale.Load.At.IsZero() {
		t.Errorf("stale metrics recorded a load: %+v", stale.Load)
	}
}

func TestLoadMemory(t *testing.T) {
	p := testPolicy()
	p.Seasons = []time.Duration{time.Hour, 24 * time.Hour}
	m := NewLoadMemory(p)
	start := t0.Add(-50 * time.Hour)
	for i := range 50 * 60 {
		m.Add(LoadSample{At: start.Add(time.Duration(i) * time.Minute), Demand: Resources{MilliCPU: int64(i)}})
	}
	m.Add(LoadSample{At: start, Demand: Resources{MilliCPU: 1}}) // the clock set back: dropped
	keep := SeasonRepeats*24*time.Hour + SeasonGap + SeasonDownAhead(p)
	if n := m.Len(); n < int(keep/time.Minute) || n > 2*int(keep/time.Minute)+2 {
		t.Errorf("%d samples kept, want about %d", n, int(keep/time.Minute))
	}
	past := m.Past(p, t0)
	for i := 1; i < len(past); i++ {
		if !past[i].At.After(past[i-1].At) {
			t.Fatalf("windows out of order at %d: %v then %v", i, past[i-1].At, past[i].At)
		}
	}
	ahead := SeasonDownAhead(p)
	for _, ago := range []time.Duration{time.Hour, 2 * time.Hour, 24 * time.Hour, 48 * time.Hour} {
		then := t0.Add(-ago)
		var n int
		for _, s := range past {
			if !s.At.Before(then.Add(-SeasonGap-ahead)) && !s.At.After(then.Add(ahead)) {
				n++
			}
		}
		if want := int((SeasonGap + 2*ahead) / time.Minute); n < want {
			t.Errorf("%s ago: %d samples in its window, want %d", ago, n, want)
		}
	}
	if len(past) > int(4*(SeasonGap+2*ahead)/time.Minute)+4 {
		t.Errorf("%d samples handed to Decide: more than the windows", len(past))
	}
	// Ticks a second apart (a skewed clock's next checks) are kept
	// SampleGap apart, at their peak.
	fast := NewLoadMemory(p)
	for i := range 600 {
		fast.Add(LoadSample{At: t0.Add(time.Duration(i) * time.Second), Demand: Resources{MilliCPU: int64(i % 97)}})
	}
	if n := fast.Len(); n != int(600*time.Second/SampleGap) {
		t.Errorf("%d samples kept of ten minutes of ticks a second apart, want %d", n, int(600*time.Second/SampleGap))
	}
	if peak := fast.samples[0].Demand.MilliCPU; peak != 29 {
		t.Errorf("the first sample's demand %dm, want the peak of its ticks, 29m", peak)
	}
	off := NewLoadMemory(testPolicy())
	if off.Add(LoadSample{At: t0}); off.Len() != 0 {
		t.Error("a memory without periods keeps samples")
	}
}

// TestReconcilerRemembersLoad: load handed to RememberLoad (the daemon's
// trace file, read back after a restart) and the load of its own ticks
// reach Decide as Snapshot.Past.
func TestReconcilerRemembersLoad(t *testing.T) {
	infra := newFakeInfra()
	for vmid := 100; vmid < 102; vmid++ {
		infra.vms[vmid] = Machine{VMID: vmid, Name: fmt.Sprintf("w%d", vmid), Host: "pve1", Step: StepJoined, Running: true, Created: t0.Add(-48 * time.Hour), UUID: uuidOf(vmid)}
	}
	p := testPolicy()
	p.Seasons = []time.Duration{24 * time.Hour}
	p.Lookahead = 2 * time.Minute
	now := t0
	r := NewReconciler(infra, &fakeOS{applied: map[string]int{}}, &fakeCluster{infra: infra}, p, ReconcileOptions{Now: func() time.Time { return now }})
	// Two workers at 50% (4 of 8 cores); one day ago the demand was 4
	// cores and rose by 3 a minute later: 87.5%, over the 80% threshold.
	r.RememberLoad(dayBefore(4000, 3000, time.Minute))
	plan, err := r.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if plan.Next.CPUHighSince.IsZero() || plan.Added() == 0 {
		t.Fatalf("the remembered rise was not seen\n%s", dump(plan))
	}
	close(infra.release) // the clones go on and end
	r.Wait()
	// The tick's own load is remembered for the next day.
	if l := r.past.Past(p, t0.Add(24*time.Hour)); len(l) == 0 || !l[len(l)-1].At.Equal(t0) || l[len(l)-1].Demand.MilliCPU != 4000 {
		t.Errorf("the tick's load is not remembered: %+v", l)
	}
}
