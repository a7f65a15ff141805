package scaler

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// cores is a sample of c cores and 8 GiB at t0 + at.
func cores(at time.Duration, c float64) UsageSample {
	return UsageSample{At: t0.Add(at), Used: Resources{MilliCPU: int64(c * 1000), Memory: 8 * gi}}
}

func TestProjectUsage(t *testing.T) {
	const look = 2 * time.Minute
	for _, c := range []struct {
		name    string
		samples []UsageSample
		want    int64 // millicores
	}{
		{"none", nil, 0},
		{"two samples: no line", []UsageSample{cores(-time.Minute, 2), cores(0, 4)}, 4000},
		{"a span shorter than the lookahead", []UsageSample{cores(-90*time.Second, 2), cores(-time.Minute, 3), cores(0, 4)}, 4000},
		{"a steady ramp of 1 core a minute: 2 more in 2 minutes", []UsageSample{cores(-4*time.Minute, 2), cores(-3*time.Minute, 3), cores(-2*time.Minute, 4), cores(-time.Minute, 5), cores(0, 6)}, 8000},
		{"falling: the usage now", []UsageSample{cores(-4*time.Minute, 6), cores(-2*time.Minute, 5), cores(0, 4)}, 4000},
		{"flat", []UsageSample{cores(-4*time.Minute, 4), cores(-2*time.Minute, 4), cores(0, 4)}, 4000},
		{"noise around 4 cores: no trend", []UsageSample{cores(-4*time.Minute, 4), cores(-3*time.Minute, 4.6), cores(-2*time.Minute, 3.5), cores(-time.Minute, 4.4), cores(0, 4.3)}, 4300},
		{"a step is no line either", []UsageSample{cores(-4*time.Minute, 2), cores(-3*time.Minute, 2), cores(-2*time.Minute, 2), cores(-time.Minute, 2), cores(0, 8)}, 8000},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := projectUsage(c.samples, look)
			if got.MilliCPU != c.want {
				t.Errorf("projected %dm, want %dm", got.MilliCPU, c.want)
			}
			if len(c.samples) > 0 && got.Memory != 8*gi {
				t.Errorf("flat memory projected to %d", got.Memory)
			}
		})
	}
}

func TestRecordUsage(t *testing.T) {
	const window = 4 * time.Minute
	u := func(c float64) Resources { return Resources{MilliCPU: int64(c * 1000), Memory: gi} }
	prev := []UsageSample{cores(-10*time.Minute, 1), cores(-3*time.Minute, 2), cores(-time.Minute, 3), cores(time.Minute, 9)}
	got := recordUsage(prev, u(4), t0, window)
	// The one past the window goes, the one from the future too; the new one is added.
	if len(got) != 3 || !got[0].At.Equal(t0.Add(-3*time.Minute)) || !got[2].At.Equal(t0) || got[2].Used != u(4) {
		t.Fatalf("kept %+v", got)
	}
	if prev[0].Used.MilliCPU != 1000 || len(prev) != 4 {
		t.Fatalf("changed the history it was given: %+v", prev)
	}
	// The same usage again: the history as it was; its samples leave the
	// line by their age.
	later := t0.Add(3 * time.Minute)
	again := recordUsage(got, u(4), later, window)
	if len(again) != 3 || &again[0] != &got[0] {
		t.Fatalf("the same usage: kept %+v", again)
	}
	if w := inWindow(again, later, window); len(w) != 2 || !w[0].At.Equal(t0.Add(-time.Minute)) {
		t.Fatalf("in the window 3 minutes later: %+v", w)
	}
	if recordUsage(prev, u(4), t0, 0) != nil {
		t.Fatal("no lookahead: samples kept")
	}
}

// TestRisingSlopeScalesUpAhead: two workers at 70% CPU, climbing a core a
// minute: nothing is at its threshold, but the trend reaches it within the
// lookahead, so after the up window the engine adds workers sized on the
// projection; without a lookahead, or with the load flat, it waits.
func TestRisingSlopeScalesUpAhead(t *testing.T) {
	p := testPolicy()
	p.UpWindow, p.Lookahead = time.Minute, 2*time.Minute
	snap := Snapshot{Nodes: []Node{worker("a", 70, 50), worker("b", 70, 50)}} // 5.6 cores of 8
	ramp := func(step float64) []UsageSample {
		var h []UsageSample
		for i := 4; i >= 1; i-- {
			h = append(h, UsageSample{At: t0.Add(-time.Duration(i) * time.Minute), Used: Resources{MilliCPU: 5600 - int64(float64(i)*step*1000), Memory: 8 * gi}})
		}
		return h
	}
	for _, c := range []struct {
		name      string
		lookahead time.Duration
		usage     []UsageSample
		highSince time.Time
		add       int
		hold      Code
	}{
		{"rising, the window held: adds 2 for the projection (1 would do for now)", 2 * time.Minute, ramp(1), t0.Add(-time.Minute), 2, ""},
		{"rising, the window starts", 2 * time.Minute, ramp(0.5), time.Time{}, 0, CodeUpWindow},
		{"rising, no lookahead", 0, ramp(0.5), t0.Add(-time.Minute), 0, CodeNoScaleUpNeed},
		{"flat", 2 * time.Minute, ramp(0), t0.Add(-time.Minute), 0, CodeNoScaleUpNeed},
	} {
		t.Run(c.name, func(t *testing.T) {
			p.Lookahead = c.lookahead
			plan := Decide(snap, p, History{Usage: c.usage, CPUHighSince: c.highSince}, t0)
			if got := plan.Added(); got != c.add {
				t.Fatalf("added %d, want %d\n%s", got, c.add, dump(plan))
			}
			if c.add > 0 && !strings.Contains(plan.Actions[0].Reasons[0].Message, "rising to") {
				t.Errorf("reason %q does not say the trend", plan.Actions[0].Reasons[0].Message)
			}
			noted := slices.ContainsFunc(plan.Notes, func(r Reason) bool { return r.Code == c.hold })
			if c.hold != "" && !plan.Held(c.hold) && !noted {
				t.Errorf("neither held nor noted %s\n%s", c.hold, dump(plan))
			}
		})
	}
}

// TestRisingSlopeHoldsRemoval: a worker whose removal leaves CPU under
// scale_up_at - margin now, but not on the trend, stays.
func TestRisingSlopeHoldsRemoval(t *testing.T) {
	p := testPolicy()
	p.Lookahead, p.DownWindow = 2*time.Minute, time.Minute
	old := t0.Add(-time.Hour)
	snap := Snapshot{Nodes: []Node{worker("a", 30, 30), worker("b", 30, 30), worker("c", 30, 30)}} // 3.6 cores of 12
	h := History{Unneeded: map[string]time.Time{"a": old, "b": old, "c": old}}
	if plan := Decide(snap, p, h, t0); func() bool { _, ok := plan.Removal(); return !ok }() {
		t.Fatalf("flat load: no removal\n%s", dump(plan))
	}
	for i := 4; i >= 1; i-- { // a core a minute: 5.6 cores in 2 minutes, 70% of two workers
		h.Usage = append(h.Usage, UsageSample{At: t0.Add(-time.Duration(i) * time.Minute), Used: Resources{MilliCPU: 3600 - int64(i)*1000, Memory: 3 * gi}})
	}
	plan := Decide(snap, p, h, t0)
	if rm, ok := plan.Removal(); ok {
		t.Fatalf("removes %s on a rising trend\n%s", rm.Node, dump(plan))
	}
	if !plan.Held(CodeProjection) {
		t.Errorf("no projection hold\n%s", dump(plan))
	}
}
