package simulate

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

// goldenVariants are a few policies of the sweep's grid besides the
// defaults: each reaches rules the defaults leave alone (no up window,
// no cooldown, a short down window, a wide margin).
var goldenVariants = []struct {
	name string
	mod  func(*config.Config)
}{
	{"defaults", nil},
	{"eager", func(c *config.Config) {
		c.Policy.ScaleUpAfter, c.Policy.Cooldown.AfterScaleUp = 0, 0
		c.Policy.CPU.ScaleUpAt, c.Policy.Memory.ScaleUpAt = 70, 75
	}},
	{"quick down", func(c *config.Config) {
		c.Policy.ScaleDownAfter = config.Duration(2 * time.Minute)
		c.Policy.ScaleDownMargin = 5
	}},
	{"slow down", func(c *config.Config) {
		c.Policy.ScaleDownAfter = config.Duration(15 * time.Minute)
		c.Policy.ScaleDownMargin = 15
		c.Policy.CPU.ScaleDownAt, c.Policy.Memory.ScaleDownAt = 45, 55
	}},
	// Standby: wakes, refills, and (the quick down window) parks.
	{"standby", func(c *config.Config) { c.Policy.Standby.Size = 1 }},
	{"standby quick down", func(c *config.Config) {
		c.Policy.Standby.Size = 1
		c.Policy.ScaleDownAfter = config.Duration(2 * time.Minute)
		c.Policy.ScaleDownMargin = 5
	}},
}

// golden renders a run exactly: every figure at full precision, every
// event with its reason, and a digest of the chart's points.
func golden(name string, r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "== %s\n", name)
	fmt.Fprintf(&b, "node-hours %v over-min %v pending-pod-min %v ups %d downs %d flaps %d episodes %d ttc %v/%v peak %d end %d\n",
		r.NodeHours, r.OverMinutes, r.PendingPodMinutes, r.ScaleUps, r.ScaleDowns, r.Flaps, r.Episodes, r.MeanTTC, r.WorstTTC, r.Peak, r.End)
	if r.StandbyVMHours > 0 || r.Wakes+r.Parks+r.Refills+r.Retires > 0 {
		fmt.Fprintf(&b, "standby vm-hours %v wakes %d parks %d refills %d retires %d\n", r.StandbyVMHours, r.Wakes, r.Parks, r.Refills, r.Retires)
	}
	for _, e := range r.Events {
		fmt.Fprintf(&b, "%s %+d -> %d: %s\n", e.At, e.Delta, e.Workers, e.Why)
	}
	fmt.Fprintf(&b, "series %d points sha256 %x\n", len(r.Series), sha256.Sum256(fmt.Appendf(nil, "%v", r.Series)))
	return b.String()
}

// TestGoldenRuns holds the replays of the shipped traces to what they
// were when testdata/golden-runs.txt was written (-update rewrites it):
// making a replay cheaper must not change a figure, an event, a reason
// or a point of the chart.
func TestGoldenRuns(t *testing.T) {
	m := testModel()
	var names []string
	for name := range shipped {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		tr := shippedTrace(t, name)
		for _, v := range goldenVariants {
			b.WriteString(golden(name+" "+v.name, Run(tr, setup(t, v.mod), m)))
		}
		b.WriteString(golden(name+" limit", RunLimit(tr, setup(t, nil), m)))
	}
	path := filepath.Join("testdata", "golden-runs.txt")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/simulate -run TestGoldenRuns -update writes it)", err)
	}
	if got := b.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("%s line %d:\n got  %s\n want %s", path, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%s: %d lines, want %d", path, len(gl), len(wl))
	}
}
