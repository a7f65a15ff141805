package scaler

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"
)

// horizonWorld is FuzzDecide's world with more clocks: history instants
// that are in the future or precede their Node, the unneeded and empty
// clocks, standby workers with a maximum age.
func horizonWorld(data []byte) (Policy, Snapshot, History) {
	p, s, h := world(data)
	g := &gen{b: data, i: len(data) / 2}
	when := func() time.Time {
		switch g.intn(4) {
		case 0:
			return time.Time{}
		case 1:
			return t0.Add(time.Duration(1+g.intn(400)) * time.Second) // in the future
		default:
			return t0.Add(-time.Duration(g.intn(900)) * time.Second)
		}
	}
	if g.flag() {
		h.CPUHighSince, h.LowSince, h.LastScaleUp, h.LastScaleDown = when(), when(), when(), when()
	}
	for _, n := range s.Nodes {
		if g.flag() {
			if h.Unneeded == nil {
				h.Unneeded = map[string]time.Time{}
			}
			h.Unneeded[n.Name] = when()
		}
		if g.u8()%3 == 0 {
			if h.Empty == nil {
				h.Empty = map[string]time.Time{}
			}
			h.Empty[n.Name] = when()
		}
		if g.u8()%3 == 0 { // only DaemonSet pods: an empty worker
			for i := range n.Pods {
				n.Pods[i].OwnerKind = OwnerDaemonSet
			}
		}
	}
	if g.flag() {
		p.StandbySize = 1 + g.intn(2)
		p.StandbyMaxAge = time.Duration(1+g.intn(10)) * time.Minute
		for i := range g.intn(3) {
			s.Standby = append(s.Standby, StandbyWorker{VMID: 7000 + i, Name: fmt.Sprintf("sb%d", i), Host: "pve0",
				Created: t0.Add(-time.Duration(g.intn(900)) * time.Second)})
		}
	}
	// The load one day ago (seasonal.go): samples 1 to 6 minutes apart
	// around that instant, with steps up and down, the same the days
	// before (onEachDay).
	if g.flag() {
		p.Seasons = []time.Duration{24 * time.Hour}
		if g.flag() {
			p.Seasons = append(p.Seasons, time.Hour)
		}
		at := t0.Add(-24*time.Hour - time.Duration(g.intn(40))*time.Minute)
		d := Resources{MilliCPU: int64(1000 + g.intn(8000)), Memory: int64(1+g.intn(16)) << 30}
		var day []LoadSample
		for at.Before(t0.Add(-23 * time.Hour)) {
			day = append(day, LoadSample{At: at, Demand: d})
			at = at.Add(time.Duration(60+g.intn(300)) * time.Second)
			if g.u8()%4 == 0 {
				d.MilliCPU = max(0, d.MilliCPU+int64(g.intn(4000))-1500)
				d.Memory = max(0, d.Memory+int64(g.intn(8)-3)<<30)
			}
		}
		s.Past = onEachDay(day)
	}
	// The operator's pause and boosts, starting or ending around now.
	if g.u8()%3 == 0 {
		s.Control = &Control{}
		if g.flag() {
			s.Control.Pause = &Pause{By: "fuzz", Since: when(), Until: when()}
		}
		for range g.intn(3) {
			b := Boost{Workers: 1 + g.intn(6), By: "fuzz", Since: when(), Until: when()}
			if len(p.Pools) > 0 && g.flag() {
				b.Pool = p.Pools[0].Name
			}
			s.Control.Boosts = append(s.Control.Boosts, b)
		}
	}
	return p, s, h
}

// course is a plan as far as what it decides: its time, the wording of
// its reasons and the ages it reports left out, and every instant the
// decision set to now (a clock it started, a last scale-up or -down, not
// one of the history h it was given) written as "now".
func course(t *testing.T, p Plan, h History, now time.Time) string {
	t.Helper()
	p.Time = time.Time{}
	p.Load.At = time.Time{} // always now
	nowish := func(x *time.Time, given time.Time) {
		if x.Equal(now) && !given.Equal(now) {
			*x = time.Unix(1, 0) // "now"
		}
	}
	p.NextCheck = time.Time{} // compared on its own (TestHorizon)
	nx := &p.Next
	nowish(&nx.CPUHighSince, h.CPUHighSince)
	nowish(&nx.MemoryHighSince, h.MemoryHighSince)
	nowish(&nx.LowSince, h.LowSince)
	nowish(&nx.LastFailure, h.LastFailure)
	// A scale-up or -down sets its instant to now whatever it was.
	if p.Added() > 0 {
		nowish(&nx.LastScaleUp, time.Time{})
	}
	if _, ok := p.Removal(); ok {
		nowish(&nx.LastScaleDown, time.Time{})
	}
	nx.Unneeded, nx.Empty = maps.Clone(nx.Unneeded), maps.Clone(nx.Empty) // the plan's own are the next history
	for _, mm := range []struct{ next, given map[string]time.Time }{{nx.Unneeded, h.Unneeded}, {nx.Empty, h.Empty}} {
		for k, v := range mm.next {
			nowish(&v, mm.given[k])
			mm.next[k] = v
		}
	}
	quiet := func(rs []Reason) []Reason {
		out := make([]Reason, len(rs))
		for i, r := range rs {
			out[i] = Reason{Code: r.Code}
		}
		return out
	}
	acts := make([]Action, len(p.Actions))
	for i, a := range p.Actions {
		a.Reasons = quiet(a.Reasons)
		acts[i] = a
	}
	p.Actions, p.Holds, p.Notes = acts, quiet(p.Holds), quiet(p.Notes)
	pods := make([]PodVerdict, len(p.Pods))
	for i, v := range p.Pods {
		v.Message = ""
		pods[i] = v
	}
	p.Pods = pods
	if p.Standby != nil {
		sb := *p.Standby
		sb.Members = make([]StandbyMember, len(p.Standby.Members))
		for i, m := range p.Standby.Members {
			m.Age = 0
			if m.Stale != "" {
				m.Stale = "stale" // its wording says how old
			}
			sb.Members[i] = m
		}
		p.Standby = &sb
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHorizon holds scaler.Horizon's claim, on which simulate skips
// decisions: at any moment after now and before the horizon, Decide on
// the same snapshot, policy and history takes the same course.
func TestHorizon(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 2026))
	probes, skipped, stills, seasonal := 0, 0, 0, 0
	check := func(p Policy, s Snapshot, h History) (next History) {
		hz := Horizon(s, p, h, t0)
		plan := Decide(s, p, h, t0)
		if r := RecurringAt(s.Past, p, t0); plan.Utilization != nil && !r.Down.IsZero() && !hz.Equal(t0) {
			seasonal++ // a recurring rise in view
		}
		if len(p.Schedules) > 0 {
			if !hz.Equal(t0) {
				t.Fatalf("a policy with schedules: horizon %s, want now", hz)
			}
			skipped++
			return plan.Next
		}
		if hz.Equal(t0) {
			// No promise: a decision recording a new usage sample draws
			// the trend through its own time. It never changes nothing.
			if len(plan.Actions) == 0 && plan.Next.Equal(h) {
				t.Fatalf("horizon now for a decision that changed nothing\nhistory %+v\n%s", h, dump(plan))
			}
			skipped++
			return plan.Next
		}
		want := course(t, plan, h, t0)
		still := len(plan.Actions) == 0 && plan.Next.Equal(h)
		end := hz
		if end.IsZero() {
			end = t0.Add(3 * time.Hour)
		}
		ats := []time.Time{t0.Add(time.Nanosecond), t0.Add(time.Second), end.Add(-time.Nanosecond)}
		for range 6 {
			ats = append(ats, t0.Add(time.Duration(rng.Int64N(int64(end.Sub(t0))))))
		}
		for _, at := range ats {
			if !at.After(t0) || !at.Before(end) {
				continue
			}
			if RecurringAt(s.Past, p, at) != RecurringAt(s.Past, p, t0) {
				continue // the load one period ago reads otherwise: the caller's to see
			}
			probes++
			then := Decide(s, p, h, at)
			if got := course(t, then, h, at); got != want {
				t.Fatalf("horizon %s (now %s): at %s the course differs\nnow: %s\nthen: %s", hz.Sub(t0), t0, at.Sub(t0), want, got)
			}
			// The next check: the same instant, or for a decision that
			// started a clock, as far from its own now, or an instant of
			// the inputs (a pause ending) before that.
			shifted := plan.NextCheck.Add(at.Sub(t0))
			if n0, n1 := plan.NextCheck, then.NextCheck; !n0.Equal(n1) && (still || n0.IsZero() || n1.Before(n0) || n1.After(shifted)) {
				t.Fatalf("horizon %s: next check %s at now, %s at %s (a decision that changed nothing: %v)\nhistory %+v\n%s\nsnapshot %+v", hz.Sub(t0), n0, n1, at.Sub(t0), still, h, dump(plan), s)
			}
			if still {
				stills++
			}
		}
		return plan.Next
	}
	for range 3600 {
		data := make([]byte, 64+rng.IntN(192))
		for i := range data {
			data[i] = byte(rng.UintN(256))
		}
		p, s, h := horizonWorld(data)
		if rng.IntN(4) != 0 {
			p.Schedules = nil
		}
		// The world as generated, then with the history its decision
		// returns: a replay's next decision on the same cluster, most
		// often one that changes nothing.
		next := check(p, s, h)
		check(p, s, next)
	}
	if probes < 10000 || skipped == 0 || stills < 3000 || seasonal < 100 {
		t.Errorf("%d probes (%d of decisions that changed nothing), %d worlds with schedules, %d with a recurring rise", probes, stills, skipped, seasonal)
	}
	t.Logf("%d probes (%d of decisions that changed nothing), %d worlds with schedules, %d with a recurring rise", probes, stills, skipped, seasonal)
}

// TestHorizonReaches: each kind of clock gives its instant (a horizon
// that ignored one would let a replay skip past it).
func TestHorizonReaches(t *testing.T) {
	p := testPolicy()
	p.UpWindow, p.DownWindow, p.CooldownAfterUp = time.Minute, 5*time.Minute, 3*time.Minute
	p.PendingGrace = 30 * time.Second
	old := worker("a", 50, 50, created(t0.Add(-time.Hour)))
	for _, c := range []struct {
		name string
		s    Snapshot
		h    History
		want time.Time
	}{
		{"nothing runs", Snapshot{Nodes: []Node{old}}, History{}, time.Time{}},
		{"up window", Snapshot{Nodes: []Node{old}}, History{CPUHighSince: t0.Add(-20 * time.Second)}, t0.Add(40 * time.Second)},
		{"unneeded clock", Snapshot{Nodes: []Node{old}}, History{Unneeded: map[string]time.Time{"a": t0.Add(-9 * time.Minute)}}, t0.Add(time.Minute)},
		{"cooldown after scale-up", Snapshot{Nodes: []Node{old}}, History{LastScaleUp: t0.Add(-2*time.Minute - 30*time.Second)}, t0.Add(30 * time.Second)},
		{"a clock in the future", Snapshot{Nodes: []Node{old}}, History{LowSince: t0.Add(7 * time.Second)}, t0.Add(7 * time.Second)},
		{"pending grace", Snapshot{Nodes: []Node{old}, PendingPods: []PendingPod{{Name: "p", Since: t0.Add(-10 * time.Second)}}}, History{}, t0.Add(20 * time.Second)},
		{"new worker settles", Snapshot{Nodes: []Node{worker("b", 50, 50, created(t0.Add(-50*time.Second)))}}, History{}, t0.Add(10 * time.Second)},
	} {
		if got := Horizon(c.s, p, c.h, t0); !got.Equal(c.want) {
			t.Errorf("%s: horizon %v, want %v", c.name, got, c.want)
		}
	}
}
