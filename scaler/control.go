package scaler

import (
	"fmt"
	"slices"
	"time"
)

// Control is what an operator set by hand, read from the cluster at each
// decision (`pve-autoscaler pause`, `resume`, `boost`; kube.ReadControl):
// a pause and temporary minimums. Both end on their own at their Until.
type Control struct {
	Pause  *Pause  `json:"pause,omitempty"`
	Boosts []Boost `json:"boosts,omitempty"`
}

// Pause stops every scaling act: while it holds, nothing is created,
// removed, parked or woken, and running operations stop at their next
// step boundary (left resumable).
type Pause struct {
	// By is who set it (the kubeconfig's user, as the API server knows it,
	// and the host it was set from).
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Until is when it ends on its own (zero: only `resume` ends it).
	Until time.Time `json:"until,omitzero"`
}

// Boost is a temporary minimum that starts when it is set: like a
// schedule's window from Since to Until.
type Boost struct {
	// Pool is the worker pool it raises ("": all pools together, like a
	// schedule: the rest of the minimum goes to the utilization pool).
	Pool    string    `json:"pool,omitempty"`
	Workers int       `json:"workers"`
	By      string    `json:"by"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
}

// ActiveAt reports whether the pause holds at now: set, and not past its Until.
func (p *Pause) ActiveAt(now time.Time) bool {
	return p != nil && (p.Until.IsZero() || now.Before(p.Until))
}

// ActiveAt reports whether the boost raises the minimum at now.
func (b Boost) ActiveAt(now time.Time) bool {
	return !now.Before(b.Since) && now.Before(b.Until)
}

// PausedAt returns the pause holding at now, or nil.
func (c *Control) PausedAt(now time.Time) *Pause {
	if c == nil || !c.Pause.ActiveAt(now) {
		return nil
	}
	return c.Pause
}

// BoostsAt returns the boosts active at now.
func (c *Control) BoostsAt(now time.Time) []Boost {
	if c == nil {
		return nil
	}
	var out []Boost
	for _, b := range c.Boosts {
		if b.ActiveAt(now) {
			out = append(out, b)
		}
	}
	return out
}

// String says who paused, why and until when.
func (p *Pause) String() string {
	s := "paused by " + p.By
	if p.Reason != "" {
		s += fmt.Sprintf(" (%s)", p.Reason)
	}
	s += " since " + p.Since.UTC().Format(time.RFC3339)
	if p.Until.IsZero() {
		return s + ", until `pve-autoscaler resume`"
	}
	return s + ", until " + p.Until.UTC().Format(time.RFC3339)
}

// String says what the boost raises, who set it and until when.
func (b Boost) String() string {
	what := "the minimum"
	if b.Pool != "" {
		what = "pool " + b.Pool + "'s minimum"
	}
	s := fmt.Sprintf("boost by %s raises %s to %d until %s", b.By, what, b.Workers, b.Until.UTC().Format(time.RFC3339))
	if b.Reason != "" {
		s += fmt.Sprintf(" (%s)", b.Reason)
	}
	return s
}

// applyBoosts raises the minimums by the boosts active now: a boost of
// no pool (or of the one pool of a single-pool policy) raises the
// minimum of all workers, as a schedule does; a pool's boost, that
// pool's minimum (within its max_workers).
func (d *decision) applyBoosts() {
	for _, b := range d.s.Control.BoostsAt(d.now) {
		d.recheck(b.Until)
		pi, named := d.poolIdx[b.Pool]
		switch {
		case b.Pool != "" && !named:
			d.note(CodeBoost, "%s: no such worker pool, ignored", b)
			continue
		case b.Pool == "" || !d.multi():
			if b.Workers > d.minWorkers {
				d.boosted = true
				d.minWorkers = b.Workers
			}
		default:
			ps := &d.pools[pi]
			if w := min(b.Workers, ps.MaxWorkers); w > ps.MinWorkers {
				ps.MinWorkers = w
				ps.boosted = true
			}
		}
		d.note(CodeBoost, "%s", b)
	}
	if d.multi() {
		sum := 0
		for _, ps := range d.pools {
			sum += ps.MinWorkers
		}
		d.minWorkers = max(d.minWorkers, sum)
	}
}

// applyPause turns the plan's actions into a hold while a pause holds:
// Decide still says what it would do, and nothing of it is done. The
// history's scaling times stay what they were (nothing scaled).
func (d *decision) applyPause() {
	c := d.s.Control
	if c != nil && c.Pause != nil && !c.Pause.Until.IsZero() && d.now.Before(c.Pause.Until) {
		d.recheck(c.Pause.Until)
	}
	p := c.PausedAt(d.now)
	if p == nil {
		return
	}
	pp := *p
	d.plan.Paused = &pp
	msg := p.String() + ": nothing is created, removed, parked or woken; running operations stop at their next step"
	if n := len(d.plan.Actions); n > 0 {
		var what []string
		for _, a := range d.plan.Actions {
			what = append(what, a.describe())
		}
		msg += fmt.Sprintf("; withheld: %s", joinAnd(what))
	}
	d.hold(CodePaused, "%s", msg)
	d.plan.Actions = []Action{}
	d.added = 0
	d.plan.Next.LastScaleUp, d.plan.Next.LastScaleDown, d.plan.Next.UpOwed = d.h.LastScaleUp, d.h.LastScaleDown, d.h.UpOwed
}

// describe is an action in a few words.
func (a Action) describe() string {
	switch a.Kind {
	case ActionAdd:
		s := "add " + count(a.Count, "worker")
		if a.Pool != "" {
			s += " to pool " + a.Pool
		}
		return s
	case ActionRemove:
		return "remove " + a.Node
	case ActionRefill:
		return "build a standby worker"
	case ActionRetire:
		return "retire standby " + a.Node
	case ActionReplace:
		return "replace " + a.Node
	}
	return string(a.Kind)
}

func joinAnd(s []string) string {
	s = slices.Clone(s)
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	out := ""
	for i, x := range s {
		switch {
		case i == 0:
		case i == len(s)-1:
			out += " and "
		default:
			out += ", "
		}
		out += x
	}
	return out
}
