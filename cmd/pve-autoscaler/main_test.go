package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	planConfig  = "testdata/plan.yaml"
	exampleSnap = "../../docs/snapshot.example.json"
)

func runMain(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// writeConfig writes a valid config whose files exist, plus extra YAML
// appended under the policy section.
func writeConfig(t testing.TB, policyExtra string) string {
	t.Helper()
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret-"+name), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	y := fmt.Sprintf(`cluster: {name: homelab}
proxmox:
  url: https://pve1.lan:8006
  token_id: autoscaler@pve!scaler
  token_secret_file: %s
  template: 9000
talos:
  worker_config_file: %s
  talosconfig_file: %s
kubernetes: {kubeconfig: %s}
policy:
  timezone: UTC
%s`, file("token"), file("worker.yaml"), file("talosconfig"), file("kubeconfig"), policyExtra)
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every command's --help prints its usage once, on stdout, with examples
// whose flags are the command's own.
func TestHelp(t *testing.T) {
	for _, c := range commands() {
		code, out, errOut := runMain(c.name, "--help")
		if code != exitOK || strings.Count(out, "Usage: pve-autoscaler "+c.name) != 1 || errOut != "" {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", c.name, code, out, errOut)
		}
		if !strings.Contains(out, "\nExamples:\n  ") {
			t.Errorf("%s --help has no examples: %q", c.name, out)
		}
		var capture helpCapture
		c.run([]string{"--help"}, &capture, io.Discard)
		commandLines := 0
		for _, line := range c.examples {
			if strings.HasPrefix(line, "#") {
				continue
			}
			commandLines++
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "pve-autoscaler" || f[1] != c.name {
				t.Errorf("%s example %q does not run pve-autoscaler %s", c.name, line, c.name)
				continue
			}
			for _, arg := range f[2:] {
				if name, ok := strings.CutPrefix(arg, "--"); ok && capture.fs.Lookup(strings.SplitN(name, "=", 2)[0]) == nil {
					t.Errorf("%s example %q: no flag --%s", c.name, line, name)
				}
			}
		}
		if commandLines == 0 {
			t.Errorf("%s: no example command line", c.name)
		}
	}
	code, out, _ := runMain("--help")
	if code != exitOK || !strings.Contains(out, "Commands:") || !strings.Contains(out, "plan") {
		t.Errorf("--help: exit %d, %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"scale"}, {"plan", "--bogus"}, {"validate", "extra-arg"}, {"run", "--dry-run=maybe"}} {
		code, _, errOut := runMain(args...)
		if code != exitUsage || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runMain("version")
	if code != exitOK || !strings.HasPrefix(out, "pve-autoscaler dev (go") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestValidate(t *testing.T) {
	p := writeConfig(t, "")
	code, out, errOut := runMain("validate", "--config", p)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"# effective configuration of " + p, "# no pools: one pool named default: template", "name: homelab", "interval: 1m0s", "memory: 8GiB", "scale_up_at: 80"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret-token") {
		t.Error("secret file content printed")
	}
}

func TestValidateWarns(t *testing.T) {
	p := writeConfig(t, "  cpu: {scale_up_at: 70, scale_down_at: 50}\n")
	code, _, errOut := runMain("validate", "--config", p)
	if code != exitOK || !strings.Contains(errOut, "warning: config "+p+": policy.cpu (line 13:3): scale_up_at 70 and scale_down_at 50 are 20 points apart") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	p := writeConfig(t, "  min_workers: 9\n  intervall: 30s\n  cpu: {scale_up_at: 20, scale_down_at: 30}\n")
	code, out, errOut := runMain("validate", "--config", p)
	if code != exitUsage || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{
		"config " + p + ": 3 problems",
		`policy.intervall (line 14:3): unknown field (did you mean "interval"?)`,
		"policy.min_workers (line 13:3): 9 is above max_workers 6",
		"policy.cpu.scale_down_at (line 15:26): 30: expected below scale_up_at (20)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	code, _, errOut = runMain("validate", "--config", filepath.Join(t.TempDir(), "nope.yaml"))
	if code != exitUsage || !strings.Contains(errOut, "nope.yaml") {
		t.Errorf("missing file: exit %d, %q", code, errOut)
	}
}

func TestPlanText(t *testing.T) {
	code, out, errOut := runMain("plan", "--config", planConfig, "--snapshot", exampleSnap)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"Plan at 2026-11-27T17:55:00Z",
		"Workers:      2 now (2 ready, 0 not ready, 0 provisioning; 0 being removed)",
		"4 desired (min 4, max 6)",
		"CPU 86.1% (scale up at 80%, down at 30%)",
		"+ add 2 workers",
		"schedule_min: 2 workers, below the minimum of 4",
		"cpu_high: CPU 86.1% at or above 80% for 3m0s",
		"pending_pods: 2 pods unschedulable for 30s or more",
		`schedule_active: schedule "movie-night" (Fri 18:00-23:59) raises the minimum to 4`,
		"pending_grace: 1 pod unschedulable",
		"Plan: 2 to add, 0 to remove.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
}

func TestPlanJSONAndNow(t *testing.T) {
	// After midnight the movie-night window is over: only CPU and pending pods count.
	code, out, errOut := runMain("plan", "--config", planConfig, "--snapshot", exampleSnap, "--output", "json", "--now", "2026-11-28T00:30:00Z")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var plan struct {
		Time    string
		Workers struct{ Min, Desired int }
		Actions []struct {
			Kind    string
			Count   int
			Reasons []struct{ Code string }
		}
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if plan.Time != "2026-11-28T00:30:00Z" || plan.Workers.Min != 2 || len(plan.Actions) != 1 || plan.Actions[0].Kind != "add" {
		t.Fatalf("plan %+v", plan)
	}
	for _, r := range plan.Actions[0].Reasons {
		if r.Code == "schedule_min" {
			t.Errorf("schedule counted after its window: %+v", plan.Actions[0])
		}
	}
}

func TestPlanErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"time": "2026-11-27T17:55:00Z", "nodes": [{"name": "a", "allocatable": {"cpu": "lots"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	badCfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badCfg, []byte("policy: {max_workers: 0}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		// Without --snapshot the plan is live: the config's files must exist.
		{[]string{"--config", planConfig}, "proxmox.token_secret_file (line 5:3): /etc/pve-autoscaler/pve-token: no such file or directory"},
		{[]string{"--config", planConfig, "--snapshot", exampleSnap, "--output", "yaml"}, `--output "yaml": expected text or json`},
		{[]string{"--config", planConfig, "--snapshot", exampleSnap, "--now", "tomorrow"}, `--now "tomorrow": expected an RFC 3339 time`},
		{[]string{"--config", planConfig, "--snapshot", bad}, `nodes[0].allocatable: cpu: "lots" is not a quantity`},
		{[]string{"--config", planConfig, "--snapshot", filepath.Join(dir, "none.json")}, "none.json"},
		{[]string{"--config", badCfg, "--snapshot", exampleSnap}, "policy.max_workers (line 1:10): 0: expected 1 to 1000"},
	}
	for _, c := range cases {
		code, out, errOut := runMain(append([]string{"plan"}, c.args...)...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("plan %v: exit %d, stdout %q, stderr %q; want %q", c.args, code, out, errOut, c.want)
		}
	}
}

func TestRunRefusesBadInput(t *testing.T) {
	p := writeConfig(t, "")
	code, _, errOut := runMain("run", "--config", p, "--log-level", "loud")
	if code != exitUsage || !strings.Contains(errOut, `daemon.log.level: "loud": expected debug, info, warn or error`) {
		t.Errorf("bad --log-level: exit %d, %q", code, errOut)
	}
	// The config's worker.yaml is not a Talos config: a clear error naming it, exit 1.
	code, _, errOut = runMain("run", "--config", p, "--log-format", "json", "--dry-run")
	if code != exitFailure {
		t.Errorf("run: exit %d, want %d", code, exitFailure)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(errOut, "\n", 2)[0]), &first); err != nil {
		t.Fatalf("--log-format json not applied: %v\n%s", err, errOut)
	}
	if first["msg"] != "starting" || first["dry_run"] != true || first["cluster"] != "homelab" {
		t.Errorf("first log line %v", first)
	}
	if !strings.Contains(errOut, "worker.yaml: not a Talos machine config") || strings.Contains(errOut, "secret-") {
		t.Errorf("run log:\n%s", errOut)
	}
}

// TestPlanShowsPodsAwaitingTheScheduler: a pod held on a worker that joined
// in its second is listed with until when, in text and JSON, and the JSON
// carries the next check at that moment.
func TestPlanShowsPodsAwaitingTheScheduler(t *testing.T) {
	snap := "testdata/awaiting.json"
	code, out, errOut := runMain("plan", "--config", planConfig, "--snapshot", snap, "--now", "2026-11-26T21:00:05Z")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"Awaiting the scheduler",
		"~ ml/trainer-0 on talos-worker-5001 until 2026-11-26T18:00:16Z",
		"fits_new_nodes: 1 pending pod fit on workers that joined after",
	} {
		if strings.Contains(out, want) {
			t.Errorf("three hours on, the hold is over, yet the plan has %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "new_nodes_tried: 1 pending pod fit by requests") || !strings.Contains(out, "+ add 1 worker") {
		t.Errorf("three hours on, no worker for the pod:\n%s", out)
	}

	code, out, errOut = runMain("plan", "--config", planConfig, "--snapshot", snap)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"Awaiting the scheduler",
		"~ ml/trainer-0 on talos-worker-5001 until 2026-11-26T18:00:16Z (11s left)",
		"fits_new_nodes: 1 pending pod fit on workers that joined after",
		"Plan: 0 to add, 0 to remove.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = runMain("plan", "--config", planConfig, "--snapshot", snap, "--output", "json")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var plan struct {
		NextCheck string `json:"next_check"`
		Awaiting  []struct {
			Namespace, Name, Node, Until string
		} `json:"awaiting_scheduler"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	if len(plan.Awaiting) != 1 || plan.Awaiting[0].Name != "trainer-0" || plan.Awaiting[0].Node != "talos-worker-5001" ||
		plan.Awaiting[0].Until != "2026-11-26T18:00:16Z" || plan.NextCheck != "2026-11-26T18:00:16Z" {
		t.Errorf("plan JSON: %+v\n%s", plan, out)
	}
}

// TestPlanNeverContradictsItself: CPU at 86.1%, held by a 10 minute up
// window, is said once, by the up window; no note calls it "under 80%".
func TestPlanNeverContradictsItself(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "plan.yaml")
	base, err := os.ReadFile(planConfig)
	if err != nil {
		t.Fatal(err)
	}
	body, _, _ := strings.Cut(string(base), "  schedules:")
	if err := os.WriteFile(cfg, []byte(body+"  scale_up_after: 10m\n  pending_pods: {enabled: false}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMain("plan", "--config", cfg, "--snapshot", exampleSnap)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "up_window: CPU 86.1% at or above 80%") || strings.Contains(out, "no_scale_up_needed") || strings.Contains(out, "86.1% under") {
		t.Errorf("plan with CPU high inside its up window:\n%s", out)
	}
}
