package simulate

import (
	"sort"
	"strings"
	"testing"
)

// knownGaps are issue 18's goals the default policy does not meet yet, by
// trace and goal. A gap that closes must leave this list; a goal missed
// that is not listed fails. Never loosen a goal here.
var knownGaps = map[string]bool{
	// None. diurnal-week.csv's pending pods (the 09:00 bursts of four
	// pods onto three workers with room for three) waited a worker's
	// provisioning, 4.9 pod-minutes in all, until policy.recurring_load
	// took the rise of the day before.
}

// TestEfficiencyGoals holds issue 18's goals on the shipped traces with the
// default policy (deterministic outputs of the simulator, not timings):
// node-hours at most 1.2 times the clairvoyant limit, and at most the
// recipe's wherever the recipe serves the load (its pending pod-minutes no
// more than twice ours); minutes over the up threshold and pending
// pod-minutes at most a quarter of the recipe's; no flap.
func TestEfficiencyGoals(t *testing.T) {
	s := setup(t, nil)
	m := testModel()
	var names []string
	for name := range shipped {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rep := Simulate(shippedTrace(t, name), s, m, true)
		ours, recipe, limit := rep.Results[0], rep.Results[1], rep.Results[2]
		if limit.Name != LimitName {
			t.Fatalf("third column %q", limit.Name)
		}
		t.Logf("%s: node-hours %.1f / %.1f / %.1f (ours / recipe / limit), over %.0f / %.0f min, pending %.0f / %.0f pod-min, flaps %d",
			name, ours.NodeHours, recipe.NodeHours, limit.NodeHours, ours.OverMinutes, recipe.OverMinutes, ours.PendingPodMinutes, recipe.PendingPodMinutes, ours.Flaps)
		goal := func(what string, met bool, format string, args ...any) {
			t.Helper()
			key := name + " " + what
			switch {
			case !met && knownGaps[key]:
				t.Logf("known gap, %s: "+format, append([]any{key}, args...)...)
			case !met:
				t.Errorf("%s: "+format, append([]any{key}, args...)...)
			case knownGaps[key]:
				t.Errorf("%s: met now ("+format+"): take it out of knownGaps", append([]any{key}, args...)...)
			}
		}
		goal("limit", ours.NodeHours <= 1.2*limit.NodeHours, "node-hours %.1f, over 1.2 x the limit's %.1f", ours.NodeHours, limit.NodeHours)
		if recipe.PendingPodMinutes <= 2*ours.PendingPodMinutes {
			goal("recipe", ours.NodeHours <= recipe.NodeHours, "node-hours %.1f, over the recipe's %.1f where it serves the load", ours.NodeHours, recipe.NodeHours)
		}
		goal("over", ours.OverMinutes <= recipe.OverMinutes/4, "%.0f minutes over the up threshold, more than a quarter of the recipe's %.0f", ours.OverMinutes, recipe.OverMinutes)
		goal("pending", ours.PendingPodMinutes <= recipe.PendingPodMinutes/4, "%.0f pending pod-minutes, more than a quarter of the recipe's %.0f", ours.PendingPodMinutes, recipe.PendingPodMinutes)
		goal("flaps", ours.Flaps == 0, "%d flaps", ours.Flaps)
	}
	for key := range knownGaps {
		if trace, _, _ := strings.Cut(key, " "); shipped[trace] == nil {
			t.Errorf("known gap %q names no shipped trace", key)
		}
	}
}
