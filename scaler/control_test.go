package scaler

import (
	"strings"
	"testing"
	"time"
)

// TestControlDecisions: what a pause and a boost do to a plan, one row
// per rule (Decide is pure: the control is part of the snapshot).
func TestControlDecisions(t *testing.T) {
	pause := func(until time.Time) *Control {
		return &Control{Pause: &Pause{By: "alice@pve1", Reason: "disk swap", Since: ago(time.Minute), Until: until}}
	}
	boost := func(pool string, n int, since, until time.Time) *Control {
		return &Control{Boosts: []Boost{{Pool: pool, Workers: n, By: "bob@pve2", Since: since, Until: until}}}
	}
	hour := t0.Add(time.Hour)
	cases := []struct {
		name    string
		nodes   []Node
		ctl     *Control
		policy  func(*Policy)
		hist    History
		adds    string // "pool:count ..." as adds renders them
		remove  string
		holds   []Code
		nholds  []Code
		min     int // Workers.Min (0: not checked)
		paused  bool
		recheck time.Time // Plan.NextCheck (zero: not checked)
		check   func(*testing.T, Plan)
	}{
		{name: "a pause withholds a scale-up and says what it withholds", nodes: workers(2, 90, 50), ctl: pause(hour),
			holds: []Code{CodePaused}, paused: true, recheck: hour, check: func(t *testing.T, p Plan) {
				h := reasonOf(p, CodePaused)
				for _, want := range []string{"alice@pve1", "disk swap", "withheld: add 2 workers"} {
					if !strings.Contains(h, want) {
						t.Errorf("pause hold %q lacks %q", h, want)
					}
				}
				if !p.Next.LastScaleUp.IsZero() {
					t.Errorf("a withheld scale-up set LastScaleUp %v: its cooldown would hold the first scale-up after the pause", p.Next.LastScaleUp)
				}
				if p.Workers.Desired != p.Workers.Current {
					t.Errorf("desired %d, current %d: nothing is done while paused", p.Workers.Desired, p.Workers.Current)
				}
			}},
		{name: "a pause withholds a scale-down", nodes: workers(4, 5, 5), ctl: pause(time.Time{}), holds: []Code{CodePaused}, paused: true,
			check: func(t *testing.T, p Plan) {
				if !strings.Contains(reasonOf(p, CodePaused), "until `pve-autoscaler resume`") {
					t.Errorf("a pause without end does not say resume ends it: %q", reasonOf(p, CodePaused))
				}
				if !p.Next.LastScaleDown.IsZero() {
					t.Errorf("a withheld removal set LastScaleDown")
				}
			}},
		{name: "a pause past its end holds nothing", nodes: workers(2, 90, 50), ctl: pause(ago(time.Second)), adds: ":2", nholds: []Code{CodePaused}},
		{name: "a pause ending exactly now holds nothing", nodes: workers(2, 90, 50), ctl: pause(t0), adds: ":2", nholds: []Code{CodePaused}},
		{name: "a pause with nothing to do still shows", nodes: workers(3, 50, 50), ctl: pause(hour), holds: []Code{CodePaused}, paused: true},
		{name: "a boost raises the minimum and is the reason", nodes: workers(2, 50, 50), ctl: boost("", 4, ago(time.Minute), hour),
			adds: ":2", holds: []Code{CodeBoost}, min: 4, recheck: hour, check: func(t *testing.T, p Plan) {
				if len(p.Actions) != 1 || len(p.Actions[0].Reasons) == 0 || p.Actions[0].Reasons[0].Code != CodeBoost {
					t.Errorf("the add's reason is not the boost: %+v", p.Actions)
				}
				if len(p.Boosts) != 1 || p.Boosts[0].Workers != 4 {
					t.Errorf("plan boosts %+v", p.Boosts)
				}
			}},
		{name: "a boost holds the scale-down an idle cluster would make", nodes: workers(4, 5, 5), ctl: boost("", 4, ago(time.Hour), hour),
			holds: []Code{CodeAtMin, CodeBoost}, min: 4},
		{name: "a boost that ended lets the normal rules scale down", nodes: workers(4, 5, 5), ctl: boost("", 4, ago(2*time.Hour), ago(time.Second)),
			remove: "w0", nholds: []Code{CodeBoost}, min: 2},
		{name: "a boost below a schedule's minimum changes nothing", nodes: workers(3, 50, 50), ctl: boost("", 2, ago(time.Minute), hour),
			policy: func(p *Policy) {
				p.Schedules = []Schedule{{Name: "day", Days: [7]bool{true, true, true, true, true, true, true}, Start: 0, End: 23*60 + 59, MinWorkers: 3}}
			}, min: 3},
		{name: "a boost is capped at max_workers", nodes: workers(2, 50, 50), ctl: boost("", 9, ago(time.Minute), hour),
			adds: ":3", min: 6, check: func(t *testing.T, p Plan) {
				// max_nodes_per_step is 3: the rest follows at the next decision.
				if p.Next.UpOwed != 1 {
					t.Errorf("up owed %d, want 1", p.Next.UpOwed)
				}
			}},
		{name: "a boost of a pool raises that pool", nodes: workers(2, 50, 50, inPool("general")), ctl: boost("big", 2, ago(time.Minute), hour),
			policy: func(p *Policy) { *p = poolPolicy() }, adds: "big:2", holds: []Code{CodeBoost}, min: 4},
		{name: "a boost of an unknown pool is only noted", nodes: workers(2, 50, 50, inPool("general")), ctl: boost("tiny", 2, ago(time.Minute), hour),
			policy: func(p *Policy) { *p = poolPolicy() }, holds: []Code{CodeBoost}, min: 2},
		{name: "a pause holds a boost's scale-up", nodes: workers(2, 50, 50),
			ctl:   &Control{Pause: &Pause{By: "a", Since: ago(time.Minute)}, Boosts: []Boost{{Workers: 4, By: "b", Since: ago(time.Minute), Until: hour}}},
			holds: []Code{CodePaused, CodeBoost}, paused: true, min: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			hosts := []Host{{Name: "pve1", Online: true, MemoryFree: 512 * gi}, {Name: "pve2", Online: true, MemoryFree: 512 * gi}}
			plan := Decide(Snapshot{Nodes: tc.nodes, Hosts: hosts, Control: tc.ctl}, p, tc.hist, t0)
			if got := adds(plan); got != tc.adds {
				t.Errorf("adds %q, want %q\n%s", got, tc.adds, dump(plan))
			}
			rm, _ := plan.Removal()
			if rm.Node != tc.remove {
				t.Errorf("removes %q, want %q\n%s", rm.Node, tc.remove, dump(plan))
			}
			for _, c := range tc.holds {
				if !plan.Held(c) {
					t.Errorf("no hold or note %q\n%s", c, dump(plan))
				}
			}
			for _, c := range tc.nholds {
				if plan.Held(c) {
					t.Errorf("unexpected hold or note %q\n%s", c, dump(plan))
				}
			}
			if tc.min != 0 && plan.Workers.Min != tc.min {
				t.Errorf("min %d, want %d", plan.Workers.Min, tc.min)
			}
			if (plan.Paused != nil) != tc.paused {
				t.Errorf("plan paused %v, want %v", plan.Paused, tc.paused)
			}
			if tc.paused && len(plan.Actions) != 0 {
				t.Errorf("paused, yet actions %+v", plan.Actions)
			}
			if !tc.recheck.IsZero() && !plan.NextCheck.Equal(tc.recheck) {
				t.Errorf("next check %v, want %v (the end of the pause or boost)", plan.NextCheck, tc.recheck)
			}
			if tc.check != nil {
				tc.check(t, plan)
			}
		})
	}
}

func reasonOf(p Plan, c Code) string {
	for _, r := range append(append([]Reason{}, p.Holds...), p.Notes...) {
		if r.Code == c {
			return r.Message
		}
	}
	return ""
}
