package simulate

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

func TestMarkPareto(t *testing.T) {
	pt := func(nh, over, pend float64) SweepPoint {
		return SweepPoint{NodeHours: nh, OverMinutes: over, PendingPodMinutes: pend}
	}
	for _, c := range []struct {
		name string
		pts  []SweepPoint
		want []bool
	}{
		{"one point", []SweepPoint{pt(10, 5, 1)}, []bool{true}},
		{"beaten on every figure", []SweepPoint{pt(10, 5, 1), pt(11, 6, 2)}, []bool{true, false}},
		{"beaten on one, equal on the others", []SweepPoint{pt(10, 5, 1), pt(10, 5, 2)}, []bool{true, false}},
		{"a trade-off: both on the front", []SweepPoint{pt(10, 9, 1), pt(12, 3, 1)}, []bool{true, true}},
		{"the same figures: both on the front", []SweepPoint{pt(10, 5, 1), pt(10, 5, 1)}, []bool{true, true}},
		{"three figures", []SweepPoint{pt(10, 5, 9), pt(11, 6, 0), pt(12, 7, 1)}, []bool{true, true, false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			markPareto(c.pts)
			var got []bool
			for _, p := range c.pts {
				got = append(got, p.Pareto)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("front %v, want %v", got, c.want)
			}
		})
	}
}

// TestSweep: each variant's point is what Run gives it alone (the
// parallel replay changes nothing), the user's config is marked, points
// come sorted by node-hours, and the table shows the front with the
// config lines that make each point.
func TestSweep(t *testing.T) {
	tr := shippedTrace(t, "movie-night.csv")
	m := testModel()
	variants := []Variant{{Setup: setup(t, nil)}}
	for _, up := range []float64{70, 90} {
		variants = append(variants, Variant{Lines: []string{"policy.cpu.scale_up_at: " + strconv.FormatFloat(up, 'f', -1, 64)},
			Setup: setup(t, func(c *config.Config) { c.Policy.CPU.ScaleUpAt = up })})
	}
	variants = append(variants, Variant{Lines: []string{"policy.scale_down_after: 30m"},
		Setup: setup(t, func(c *config.Config) { c.Policy.ScaleDownAfter = config.Duration(30 * 60e9) })})
	rep := Sweep(tr, m, variants)
	if len(rep.Points) != len(variants) || rep.LimitNodeHours <= 0 {
		t.Fatalf("%d points, limit %.1f", len(rep.Points), rep.LimitNodeHours)
	}
	current := 0
	for i, p := range rep.Points {
		if i > 0 && p.NodeHours < rep.Points[i-1].NodeHours {
			t.Errorf("not sorted by node-hours: %.1f after %.1f", p.NodeHours, rep.Points[i-1].NodeHours)
		}
		var v Variant
		for _, cand := range variants {
			if strings.Join(cand.Lines, ",") == strings.Join(p.Lines, ",") {
				v = cand
			}
		}
		alone := Run(tr, v.Setup, m)
		if p.NodeHours != alone.NodeHours || p.OverMinutes != alone.OverMinutes || p.PendingPodMinutes != alone.PendingPodMinutes || p.Flaps != alone.Flaps {
			t.Errorf("%v: sweep %+v, alone %.1f/%.0f/%.0f", p.Lines, p, alone.NodeHours, alone.OverMinutes, alone.PendingPodMinutes)
		}
		if p.Current {
			current++
			if len(p.Lines) != 0 {
				t.Errorf("the user's config carries lines %v", p.Lines)
			}
		}
		if p.NodeHours < rep.LimitNodeHours {
			t.Errorf("%v: %.1f node-hours, below the limit %.1f", p.Lines, p.NodeHours, rep.LimitNodeHours)
		}
	}
	if current != 1 {
		t.Errorf("%d points marked current", current)
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, p := range rep.Points {
		if p.Pareto && !p.Current && !strings.Contains(out, strings.Join(p.Lines, ", ")) {
			t.Errorf("front point %v missing from the table:\n%s", p.Lines, out)
		}
		if !p.Pareto && !p.Current && strings.Contains(out, strings.Join(p.Lines, ", ")) {
			t.Errorf("a point off the front, %v, is in the table:\n%s", p.Lines, out)
		}
	}
	if !strings.Contains(out, "(your config)") || !strings.Contains(out, "4 variants") {
		t.Errorf("table:\n%s", out)
	}
	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(svg.String(), "<circle"); n != 2*len(rep.Points)+2 {
		t.Errorf("%d circles in the scatter, want %d (each point on two panels, the user's config ringed on each)", n, 2*len(rep.Points)+2)
	}
}
