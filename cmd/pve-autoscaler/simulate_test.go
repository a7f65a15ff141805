package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/simulate"
)

const movieNight = "../../internal/simulate/testdata/movie-night.csv"

func TestSimulate(t *testing.T) {
	cfg := writeConfig(t, "")
	dir := t.TempDir()
	svg, page := filepath.Join(dir, "c.svg"), filepath.Join(dir, "c.html")
	code, out, errs := runMain("simulate", "--config", cfg, "--trace", movieNight, "--compare", "recipe", "--chart", svg)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"pve-autoscaler", "recipe", "node-hours", "minutes over the up threshold", "pending pod-minutes", "flaps", "time to capacity, mean", "terraform apply", "chart: " + svg} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(svg); err != nil || !strings.HasPrefix(string(b), "<svg") {
		t.Fatalf("chart: %v %.40q", err, b)
	}
	// The same again, with an HTML page: the table is byte-identical.
	code, again, _ := runMain("simulate", "--config", cfg, "--trace", movieNight, "--compare", "recipe", "--chart", page)
	if code != exitOK || strings.ReplaceAll(again, page, svg) != out {
		t.Errorf("a second run differs (exit %d)", code)
	}
	if b, err := os.ReadFile(page); err != nil || !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "node-hours") {
		t.Errorf("html page: %v", err)
	}
	code, js, _ := runMain("simulate", "--config", cfg, "--trace", movieNight, "--output", "json")
	if code != exitOK || !strings.Contains(js, `"node_hours"`) || strings.Contains(js, `"recipe"`) {
		t.Errorf("json (no --compare): exit %d %.200s", code, js)
	}
}

func TestSimulateErrors(t *testing.T) {
	cfg := writeConfig(t, "")
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("time_s,cpu_cores,memory_gib,pending_pods\n0,1,1,0\n60,two,1,0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badCfg := writeConfig(t, "  min_workers: 9\n")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--config", cfg}, "--trace: required"},
		{[]string{"--config", cfg, "--trace", movieNight, "--compare", "karpenter"}, `--compare "karpenter": expected "recipe"`},
		{[]string{"--config", cfg, "--trace", movieNight, "--chart", "out.png"}, "expected a file name ending in .svg or .html"},
		{[]string{"--config", cfg, "--trace", bad}, bad + `:3: cpu_cores "two": expected a number`},
		{[]string{"--config", cfg, "--trace", "/nonexistent.csv"}, "--trace: open /nonexistent.csv"},
		{[]string{"--config", cfg, "--trace", movieNight, "--pod-cpu", "0"}, `--pod-cpu "0": expected a positive quantity`},
		{[]string{"--config", cfg, "--trace", movieNight, "--start", "monday"}, `--start "monday": expected an RFC 3339 time`},
		{[]string{"--config", badCfg, "--trace", movieNight}, "policy.min_workers"},
		{[]string{"--config", cfg, "--trace", movieNight, "--start-workers", "7"}, "--start-workers 7: expected at most policy.max_workers (6)"},
	}
	for _, c := range cases {
		code, _, errs := runMain(append([]string{"simulate"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
}

// TestPlanShowsStandby: plan names the standby workers a scale-up
// starts and shows standby with ages and what is stale.
func TestPlanShowsStandby(t *testing.T) {
	data, err := os.ReadFile(exampleSnap)
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]any
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	snap["standby"] = []any{
		map[string]any{"vmid": 5007, "name": "talos-worker-5007", "host": "pve1", "created": "2026-11-27T08:00:00Z"},
		map[string]any{"vmid": 5008, "name": "talos-worker-5008", "host": "pve2", "created": "2026-11-27T09:00:00Z", "stale": "cloned from template 9000 whose configuration has changed since"},
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "snap.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "  standby: {size: 2}\n")
	code, out, errs := runMain("plan", "--config", cfg, "--snapshot", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"Standby:      1 of 2 ready to start",
		"talos-worker-5007 (vmid 5007 on pve1), 9h55m0s old, ready",
		"talos-worker-5008 (vmid 5008 on pve2), 8h55m0s old, stale: cloned from template 9000",
		"start standby 5007, clone",
		"standby_wake: 1 standby worker started",
		"- retire standby talos-worker-5008 (vmid 5008 on pve2): destroy VM and Node",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
}

// TestSimulateSweep: the grid's variants are replayed and the Pareto front
// printed with the config lines of each point; JSON carries every point;
// the scatter is written; --sweep and --compare together are refused.
func TestSimulateSweep(t *testing.T) {
	cfg := writeConfig(t, "")
	svg := filepath.Join(t.TempDir(), "sweep.svg")
	code, out, errs := runMain("simulate", "--config", cfg, "--trace", movieNight, "--sweep", "--chart", svg)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"Pareto front", "(your config)", "node-hours", "policy.", "chart: " + svg} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(svg); err != nil || !strings.HasPrefix(string(b), "<svg") || !strings.Contains(string(b), "<circle") {
		t.Errorf("scatter: %v %.60q", err, b)
	}
	code, js, _ := runMain("simulate", "--config", cfg, "--trace", movieNight, "--sweep", "--output", "json")
	var rep struct {
		Points []struct {
			Config  []string `json:"config"`
			Current bool     `json:"current"`
			Pareto  bool     `json:"pareto"`
		} `json:"points"`
		Invalid int `json:"invalid_variants"`
	}
	if err := json.Unmarshal([]byte(js), &rep); code != exitOK || err != nil {
		t.Fatalf("json: exit %d, %v", code, err)
	}
	current, front := 0, 0
	for _, p := range rep.Points {
		if p.Current {
			current++
		} else if len(p.Config) == 0 {
			t.Error("a variant with no config lines that is not the user's config")
		}
		if p.Pareto {
			front++
		}
	}
	if current != 1 || front == 0 || len(rep.Points)+rep.Invalid < 150 {
		t.Errorf("%d points (%d invalid), %d current, %d on the front", len(rep.Points), rep.Invalid, current, front)
	}
	if code, _, errs := runMain("simulate", "--config", cfg, "--trace", movieNight, "--sweep", "--compare", "recipe"); code != exitUsage || !strings.Contains(errs, "--sweep and --compare") {
		t.Errorf("--sweep --compare: exit %d, %s", code, errs)
	}
}

// TestSweepGrid: each variant's lines are exactly the settings that differ
// from the user's config, and applying them gives the variant's policy.
func TestSweepGrid(t *testing.T) {
	c, code := loadConfig(writeConfig(t, ""), nil, config.ValidateOptions{}, io.Discard)
	if code != exitOK {
		t.Fatal(code)
	}
	vs, invalid, err := sweepVariants(c, sweepGrid())
	if err != nil {
		t.Fatal(err)
	}
	// The defaults' margin (10) is not in the grid: every combination differs.
	if len(vs)-1+invalid != 864 || len(vs[0].Lines) != 0 || invalid > 80 {
		t.Errorf("%d variants and %d invalid, want 864 after the user's config", len(vs)-1, invalid)
	}
	seen := map[string]bool{}
	for _, v := range vs[1:] {
		key := strings.Join(v.Lines, "\n")
		if seen[key] || key == "" {
			t.Errorf("variant %q twice or empty", key)
		}
		seen[key] = true
		for _, l := range v.Lines {
			switch {
			case l == "policy.cpu.scale_up_at: 80", l == "policy.memory.scale_up_at: 85", l == "policy.scale_up_after: 1m",
				l == "policy.scale_down_after: 5m", l == "policy.cooldown.after_scale_up: 5m", l == "policy.scale_down_margin: 10", l == "policy.scale_up_lookahead: 2m", l == "policy.standby.size: 0":
				t.Errorf("variant %q names a default value", key)
			}
		}
	}
	if !seen["policy.cpu.scale_up_at: 70\npolicy.memory.scale_up_at: 75\npolicy.scale_down_after: 15m\npolicy.scale_down_margin: 15"] {
		t.Error("a variant changing the up points and the down window is missing")
	}
	// Standby: half the grid keeps one standby worker, and says so.
	standby := 0
	for _, v := range vs[1:] {
		if v.Setup.Policy.StandbySize == 1 {
			standby++
			if !slices.Contains(v.Lines, "policy.standby.size: 1") {
				t.Errorf("standby variant %q does not name its standby size", v.Lines)
			}
		}
	}
	if standby != (len(vs)-1)/2 || standby == 0 {
		t.Errorf("%d standby variants of %d", standby, len(vs)-1)
	}
}

// BenchmarkSweepWeek: the default grid over the shipped week (goal: under
// 10 s on 2 cores).
func BenchmarkSweepWeek(b *testing.B) {
	c, code := loadConfig(writeConfig(b, ""), nil, config.ValidateOptions{}, io.Discard)
	if code != exitOK {
		b.Fatal(code)
	}
	f, err := os.Open("../../internal/simulate/testdata/diurnal-week.csv")
	if err != nil {
		b.Fatal(err)
	}
	tr, err := simulate.ParseTrace("diurnal-week.csv", f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	vs, _, err := sweepVariants(c, sweepGrid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		simulate.Sweep(tr, simulate.DefaultModel(), vs)
	}
	b.ReportMetric(float64(len(vs)), "variants")
	// The goal is per 200 variants: the grid grew from 217 to 433, then
	// to 865 (standby size).
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*200/float64(len(vs)), "s/200-variants")
}
