package simulate

import (
	"fmt"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

// stepTrace is 10 minutes at a load two workers carry, then a step to one
// that needs six (18 cores: 76% of six 4-core workers), held for an hour.
func stepTrace(tb testing.TB) Trace {
	return trace(tb, "0,3,4,0", "600,18,12,0", "4200,18,12,0")
}

// BenchmarkTimeToCapacity replays the 2 -> 6 worker step through the engine
// and the recipe with the same modelled latencies (the recipe's terraform
// apply set to one worker's modelled provisioning), and reports both times
// to capacity and their ratio (goal: at least 3).
func BenchmarkTimeToCapacity(b *testing.B) {
	s := setup(b, nil)
	m := testModel()
	m.RecipeApply = m.Provision(s.FullClone, 1)
	tr := stepTrace(b)
	var ours, recipe Result
	for range b.N {
		rep := Simulate(tr, s, m, true)
		ours, recipe = rep.Results[0], rep.Results[1]
	}
	if ours.End != 6 || recipe.End != 6 {
		b.Fatalf("ended at %d and %d workers, want 6", ours.End, recipe.End)
	}
	b.ReportMetric(ours.WorstTTC.Seconds(), "ours-s")
	b.ReportMetric(recipe.WorstTTC.Seconds(), "recipe-s")
	b.ReportMetric(recipe.WorstTTC.Seconds()/ours.WorstTTC.Seconds(), "x-faster")
}

// TestTimeToCapacityGoal holds the benchmark's goal: the engine reaches the
// capacity of a 2 -> 6 step at least 3 times sooner than the recipe on the
// same latencies.
func TestTimeToCapacityGoal(t *testing.T) {
	s := setup(t, nil)
	m := testModel()
	m.RecipeApply = m.Provision(s.FullClone, 1)
	rep := Simulate(stepTrace(t), s, m, true)
	ours, recipe := rep.Results[0], rep.Results[1]
	if ours.WorstTTC*3 > recipe.WorstTTC {
		t.Errorf("time to capacity %s, recipe %s: less than 3x", ours.WorstTTC, recipe.WorstTTC)
	}
	var b []string
	for _, e := range ours.Events {
		b = append(b, fmt.Sprintf("%s %+d", clock(e.At), e.Delta))
	}
	t.Logf("engine %s (%v), recipe %s with %s per apply", ours.WorstTTC, b, recipe.WorstTTC, m.RecipeApply)
	if ours.WorstTTC > 10*time.Minute {
		t.Errorf("engine took %s", ours.WorstTTC)
	}
}

// BenchmarkRunWeek replays the shipped week through the default policy
// once: one variant of a sweep (BenchmarkSweepWeek runs 865 of them).
func BenchmarkRunWeek(b *testing.B) { benchmarkRunWeek(b, nil) }

// BenchmarkRunWeekStandby is BenchmarkRunWeek with one standby worker:
// the sweep's other half.
func BenchmarkRunWeekStandby(b *testing.B) { benchmarkRunWeek(b, withStandby(1)) }

func benchmarkRunWeek(b *testing.B, mod func(*config.Config)) {
	s := setup(b, mod)
	m := DefaultModel()
	tr := shippedTrace(b, "diurnal-week.csv")
	b.ReportAllocs()
	var r Result
	for range b.N {
		r = Run(tr, s, m)
	}
	b.ReportMetric(float64(len(r.Events)), "events")
	b.ReportMetric(float64(r.decided), "decisions")
	b.ReportMetric(float64(r.skipped), "skipped")
}
