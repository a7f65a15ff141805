package main

import (
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/internal/simulate"
)

// sweepField is one policy setting: the config line and what it sets.
type sweepField struct {
	line string // "policy.cpu.scale_up_at: 70"
	set  func(*config.Policy)
}

// sweepAxis is what a sweep varies in one place: each value sets one or
// more fields (the CPU and memory thresholds move together).
type sweepAxis [][]sweepField

func thresholds(field string, pairs ...[2]float64) sweepAxis {
	var a sweepAxis
	for _, p := range pairs {
		cpu, mem := p[0], p[1]
		up := field == "scale_up_at"
		a = append(a, []sweepField{
			{"policy.cpu." + field + ": " + num(cpu), func(p *config.Policy) {
				if up {
					p.CPU.ScaleUpAt = cpu
				} else {
					p.CPU.ScaleDownAt = cpu
				}
			}},
			{"policy.memory." + field + ": " + num(mem), func(p *config.Policy) {
				if up {
					p.Memory.ScaleUpAt = mem
				} else {
					p.Memory.ScaleDownAt = mem
				}
			}},
		})
	}
	return a
}

func durations(path string, set func(*config.Policy, config.Duration), ds ...time.Duration) sweepAxis {
	var a sweepAxis
	for _, d := range ds {
		a = append(a, []sweepField{{path + ": " + config.ShortDuration(d), func(p *config.Policy) { set(p, config.Duration(d)) }}})
	}
	return a
}

func counts(path string, set func(*config.Policy, int), ns ...int) sweepAxis {
	var a sweepAxis
	for _, n := range ns {
		a = append(a, []sweepField{{path + ": " + strconv.Itoa(n), func(p *config.Policy) { set(p, n) }}})
	}
	return a
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// sweepGrid is the default grid: 864 combinations of the scale-up and
// scale-down points, the two windows, the scale-up lookahead (off or on),
// the scale-up cooldown, the scale-down margin and the standby size (off
// or one worker).
func sweepGrid() []sweepAxis {
	return []sweepAxis{
		thresholds("scale_up_at", [2]float64{70, 75}, [2]float64{80, 85}, [2]float64{90, 90}),
		thresholds("scale_down_at", [2]float64{20, 30}, [2]float64{30, 40}, [2]float64{45, 55}),
		durations("policy.scale_up_after", func(p *config.Policy, d config.Duration) { p.ScaleUpAfter = d }, 0, time.Minute),
		durations("policy.scale_up_lookahead", func(p *config.Policy, d config.Duration) { p.ScaleUpLookahead = d }, 0, 2*time.Minute),
		durations("policy.scale_down_after", func(p *config.Policy, d config.Duration) { p.ScaleDownAfter = d }, 2*time.Minute, 5*time.Minute, 15*time.Minute),
		durations("policy.cooldown.after_scale_up", func(p *config.Policy, d config.Duration) { p.Cooldown.AfterScaleUp = d }, 0, 5*time.Minute),
		{
			{{"policy.scale_down_margin: 5", func(p *config.Policy) { p.ScaleDownMargin = 5 }}},
			{{"policy.scale_down_margin: 15", func(p *config.Policy) { p.ScaleDownMargin = 15 }}},
		},
		counts("policy.standby.size", func(p *config.Policy, n int) { p.Standby.Size = n }, 0, 1),
	}
}

// sweepVariants is the user's config first, then every combination of the
// grid that differs from it, once each; a variant's lines are the
// settings it changes from the user's config. Combinations the
// validation refuses (a scale-down point too close to its scale-up
// point for the margin) are counted, not run.
func sweepVariants(c *config.Config, grid []sweepAxis) (vs []simulate.Variant, invalid int, err error) {
	base, err := daemon.ScalerPolicy(c)
	if err != nil {
		return nil, 0, err
	}
	vs = append(vs, simulate.Variant{Setup: simulate.SetupFrom(c, base)})
	seen := map[string]bool{"": true}
	idx := make([]int, len(grid))
	for {
		cc := *c
		var lines []string
		for i, a := range grid {
			for _, f := range a[idx[i]] {
				alone := c.Policy
				f.set(&alone)
				if !reflect.DeepEqual(alone, c.Policy) {
					lines = append(lines, f.line)
				}
				f.set(&cc.Policy)
			}
		}
		if key := strings.Join(lines, "\n"); !seen[key] {
			seen[key] = true
			if problems, _ := cc.Validate(config.ValidateOptions{}); len(problems) > 0 {
				invalid++
			} else if p, perr := daemon.ScalerPolicy(&cc); perr != nil {
				invalid++
			} else {
				vs = append(vs, simulate.Variant{Lines: lines, Setup: simulate.SetupFrom(&cc, p)})
			}
		}
		// The next combination, the last axis fastest.
		i := len(grid) - 1
		for ; i >= 0; i-- {
			if idx[i]++; idx[i] < len(grid[i]) {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return vs, invalid, nil
		}
	}
}
