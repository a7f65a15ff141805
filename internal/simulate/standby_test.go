package simulate

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// withStandby sets policy.standby.size (and more, if given).
func withStandby(size int, more ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Policy.Standby.Size = size
		for _, f := range more {
			f(c)
		}
	}
}

// readyAfter is how long after the replay's first scale-up its n-th new
// worker turned Ready, read off the chart's points (one a second on a
// trace under 2,000 s).
func readyAfter(t *testing.T, r Result, n int) time.Duration {
	t.Helper()
	if len(r.Events) == 0 || r.Events[0].Delta <= 0 {
		t.Fatalf("no scale-up first: %+v", r.Events)
	}
	up := r.Events[0].At
	before := -1
	for _, p := range r.Series {
		if p.At < up {
			continue
		}
		if before < 0 {
			before = p.Workers
		}
		if p.Workers >= before+n {
			return p.At - up
		}
	}
	t.Fatalf("the scale-up at %s never brought %d workers: %+v", up, n, r.Events)
	return 0
}

// TestStandbyWakeIsReadyAfterTheStart: a scale-up the standby pool can
// serve starts its worker, Ready after the start task and an installed
// worker's boot, not after a clone and an install; what the pool cannot
// serve is cloned.
func TestStandbyWakeIsReadyAfterTheStart(t *testing.T) {
	m := testModel()
	provision := m.Provision(false, 1)
	// 2 workers at 40% CPU, then a load one more worker carries (CPU
	// 6.4 cores: 81% of two, 54% of three), or five more (18 cores).
	one := trace(t, "0,3.2,4,0", "300,6.4,4,0", "1500,6.4,4,0")
	five := trace(t, "0,3.2,4,0", "300,18,12,0", "1500,18,12,0")
	for _, c := range []struct {
		name  string
		tr    Trace
		size  int
		boot  time.Duration
		n     int // the n-th new worker
		want  time.Duration
		wakes int
	}{
		{"standby off: cloned", one, 0, 0, 1, provision, 0},
		{"standby 1: started", one, 1, 0, 1, m.Start + m.Boot, 1},
		{"standby 1, a slow boot: started", one, 1, time.Minute, 1, m.Start + time.Minute, 1},
		{"standby 1, five needed: the first started", five, 1, 0, 1, m.Start + m.Boot, 1},
		{"standby 1, five needed: the second cloned", five, 1, 0, 2, provision, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			mm := m
			if c.boot > 0 {
				mm.Boot = c.boot
			}
			r := Run(c.tr, setup(t, withStandby(c.size)), mm)
			if got := readyAfter(t, r, c.n); got != c.want {
				t.Errorf("new worker %d Ready %s after the scale-up, want %s (events %+v)", c.n, got, c.want, r.Events)
			}
			if r.Wakes != c.wakes {
				t.Errorf("%d wakes, want %d", r.Wakes, c.wakes)
			}
		})
	}
}

// TestStandbyParksWhileThePoolHasRoom: a scale-down while the pool has
// room (its worker woken, no refill yet) parks the drained worker, and
// the next decisions see it as a standby worker; with the pool full (a
// refill came first) or standby off, a scale-down destroys.
func TestStandbyParksWhileThePoolHasRoom(t *testing.T) {
	// One more worker needed from 300 s to 420 s, then the load of before.
	tr := trace(t, "0,3.2,4,0", "300,6.4,4,0", "420,3.2,4,0", "3600,3.2,4,0")
	quick := func(c *config.Config) { c.Policy.ScaleDownAfter = config.Duration(2 * time.Minute) }
	slow := func(c *config.Config) { c.Policy.ScaleDownAfter = config.Duration(15 * time.Minute) }
	for _, c := range []struct {
		name                   string
		mod                    func(*config.Config)
		parks, refills, downs  int
		standbyAtEnd, poolSize int
	}{
		{"room: parked", withStandby(1, quick), 1, 0, 1, 1, 1},
		{"full after a refill: destroyed", withStandby(1, slow), 0, 1, 1, 1, 1},
		{"standby off: destroyed", withStandby(0, quick), 0, 0, 1, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := setup(t, c.mod)
			var last scaler.Plan
			s.Decided = func(p scaler.Plan) { last = p }
			r := Run(tr, s, testModel())
			if r.Parks != c.parks || r.Refills != c.refills || r.ScaleDowns != c.downs {
				t.Errorf("parks %d refills %d scale-downs %d, want %d %d %d (events %+v)", r.Parks, r.Refills, r.ScaleDowns, c.parks, c.refills, c.downs, r.Events)
			}
			if r.End != 2 {
				t.Errorf("ended with %d workers, want 2", r.End)
			}
			switch sb := last.Standby; {
			case c.poolSize == 0 && sb != nil:
				t.Errorf("standby off, the plan shows %+v", sb)
			case c.poolSize > 0 && (sb == nil || sb.Size != c.poolSize || sb.Ready != c.standbyAtEnd || len(sb.Members) != c.standbyAtEnd):
				t.Errorf("the last plan's standby %+v, want %d of %d ready", sb, c.standbyAtEnd, c.poolSize)
			}
		})
	}
}

// TestStandbyNotInNodeHours: a stopped standby worker costs standby
// VM-hours, not node-hours (min = max = 2: nothing scales).
func TestStandbyNotInNodeHours(t *testing.T) {
	tr := trace(t, "0,3.2,4,0", "7200,3.2,4,0")
	for _, c := range []struct {
		size                    int
		nodeHours, standbyHours float64
	}{
		{0, 4, 0},
		{1, 4, 2},
		{2, 4, 4},
	} {
		s := setup(t, withStandby(c.size, func(c *config.Config) { c.Policy.MinWorkers, c.Policy.MaxWorkers = 2, 2 }))
		r := Run(tr, s, testModel())
		if r.NodeHours != c.nodeHours || r.StandbyVMHours != c.standbyHours {
			t.Errorf("standby %d: %v node-hours and %v standby VM-hours, want %v and %v", c.size, r.NodeHours, r.StandbyVMHours, c.nodeHours, c.standbyHours)
		}
		var b bytes.Buffer
		if err := (Report{Results: []Result{r}}).WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), "standby VM-hours"); got != (c.size > 0) {
			t.Errorf("standby %d: the table's standby row shown %v:\n%s", c.size, got, b.String())
		}
	}
}

// TestSweepMarksStandby: a sweep's standby variants carry their size and
// their standby VM-hours, and the table says which rows keep standby.
func TestSweepMarksStandby(t *testing.T) {
	tr := shippedTrace(t, "movie-night.csv")
	rep := Sweep(tr, testModel(), []Variant{
		{Setup: setup(t, nil)},
		{Lines: []string{"policy.standby.size: 1"}, Setup: setup(t, withStandby(1))},
	})
	var off, on *SweepPoint
	for i := range rep.Points {
		if rep.Points[i].Current {
			off = &rep.Points[i]
		} else {
			on = &rep.Points[i]
		}
	}
	if off.StandbySize != 0 || off.StandbyVMHours != 0 || on.StandbySize != 1 || on.StandbyVMHours <= 0 {
		t.Fatalf("points %+v", rep.Points)
	}
	if !on.Pareto {
		t.Errorf("standby on the movie night is off the front: %+v", rep.Points)
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "standby (stopped VM-hours)") {
		t.Errorf("no standby column:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "policy.standby.size: 1") && !strings.Contains(l, " 1 (") {
			t.Errorf("the standby row is not marked: %q", l)
		}
	}
}
