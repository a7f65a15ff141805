package scaler

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// flapLoad is CPU demand in cores at minute m: it hovers around 5.8 cores,
// where 3 four-core workers sit just under 50% and 2 sit just over 70%.
func flapLoad(m int) float64 { return 5.8 + 0.15*math.Sin(float64(m)/3) }

// recipe is the Python script the product replaces: average CPU only, +1/-1,
// one cooldown after any change.
type recipe struct {
	up, down float64
	cooldown time.Duration
	last     time.Time
}

func (r *recipe) decide(cpuPct float64, n, minW, maxW int, now time.Time) int {
	if !r.last.IsZero() && now.Sub(r.last) < r.cooldown {
		return 0
	}
	switch {
	case cpuPct >= r.up && n < maxW:
		r.last = now
		return 1
	case cpuPct <= r.down && n > minW:
		r.last = now
		return -1
	}
	return 0
}

// countFlaps counts direction changes (an addition after a removal or the
// other way round) in a sequence of scale events.
func countFlaps(events []int) int {
	flaps := 0
	for i := 1; i < len(events); i++ {
		if events[i] != events[i-1] {
			flaps++
		}
	}
	return flaps
}

// TestFlappingStory replays the recipe users lived with: a 60 s cooldown and
// 70/50 thresholds made a Proxmox host add and remove a node three times in
// 20 minutes. The same load and the same thresholds must not flap here.
func TestFlappingStory(t *testing.T) {
	const minutes = 20
	// The recipe, on the load, starting from 2 workers.
	r := &recipe{up: 70, down: 50, cooldown: time.Minute}
	n := 2
	var recipeEvents []int
	for m := 0; m < minutes; m++ {
		cpu := flapLoad(m) * 1000 / float64(n*4000) * 100
		if d := r.decide(cpu, n, 2, 6, t0.Add(time.Duration(m)*time.Minute)); d != 0 {
			n += d
			recipeEvents = append(recipeEvents, d)
		}
	}
	if countFlaps(recipeEvents) < 5 {
		t.Fatalf("the load does not make the recipe flap (events %v): the test proves nothing", recipeEvents)
	}

	// Our engine, same thresholds and cooldowns, no sustained windows (worst case).
	p := testPolicy()
	p.CPU = Threshold{Up: 70, Down: 50}
	p.CooldownAfterUp, p.CooldownAfterDown = time.Minute, time.Minute
	var h History
	n = 2
	var events []int
	var log []string
	for m := 0; m < minutes; m++ {
		now := t0.Add(time.Duration(m) * time.Minute)
		perNode := flapLoad(m) * 1000 / float64(n)
		ns := make([]Node, n)
		for i := range ns {
			ns[i] = worker(fmt.Sprintf("w%d", i), 0, 20)
			ns[i].Usage.MilliCPU = int64(perNode)
			ns[i].Requests.MilliCPU = int64(perNode)
			ns[i].Pods[0].Requests.MilliCPU = int64(perNode)
		}
		plan := Decide(Snapshot{Nodes: ns}, p, h, now)
		h = plan.Next
		if a := plan.Added(); a > 0 {
			n += a // new workers join before the next tick: the fastest case
			events = append(events, +1)
			log = append(log, fmt.Sprintf("%2dm +%d", m, a))
		}
		if _, ok := plan.Removal(); ok {
			n--
			events = append(events, -1)
			log = append(log, fmt.Sprintf("%2dm -1", m))
		}
	}
	if f := countFlaps(events); f > 0 {
		t.Errorf("engine flapped %d times in %d minutes: %v (the recipe flapped %d times)", f, minutes, log, countFlaps(recipeEvents))
	}
	if n != 3 {
		t.Errorf("ended with %d workers, want 3 (the count that holds the load between the thresholds); events %v", n, log)
	}
}
