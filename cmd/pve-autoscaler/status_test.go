package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

func TestStatusURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9464":        "http://127.0.0.1:9464/status",
		"http://x":              "http://x/status",
		"http://pve1.lan:9464/": "http://pve1.lan:9464/status",
		"https://pve1.lan:9464": "https://pve1.lan:9464/status",
		"[::1]:9464":            "http://[::1]:9464/status",
	} {
		if got := statusURL(in); got != want {
			t.Errorf("statusURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Durations in the log carry their unit: "interval":"1m0s", not 60.
func TestLogDurationsHaveUnits(t *testing.T) {
	var b bytes.Buffer
	log, err := newLogger(config.Log{Level: "info", Format: "json"}, &b)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("starting", zap.Duration("interval", time.Minute))
	if !strings.Contains(b.String(), `"interval":"1m0s"`) {
		t.Errorf("log line %s", b.String())
	}
}

// status sends the token of --token-file (or of daemon.status_token_file);
// a wrong or missing token is refused with a message that says which file.
func TestStatusTokenFile(t *testing.T) {
	srv := daemon.NewServer(scaler.NewReconciler(nil, nil, nil, scaler.Policy{}, scaler.ReconcileOptions{}), daemon.NewMetrics(), time.Minute)
	srv.SetLeader(true)
	srv.RequireStatusToken("correct-horse")
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	_ = os.WriteFile(good, []byte("correct-horse\n"), 0o600)
	_ = os.WriteFile(bad, []byte("wrong-horse\n"), 0o600)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--token-file", good}, exitOK, "pve-autoscaler: leader"},
		{[]string{"--token-file", bad}, exitFailure, "401 Unauthorized: /status needs the token of daemon.status_token_file (--token-file)"},
		{nil, exitFailure, "401 Unauthorized"},
		{[]string{"--token-file", filepath.Join(dir, "missing")}, exitUsage, "daemon.status_token_file"},
		// A file without end is refused after 4 KiB, not read whole.
		{[]string{"--token-file", "/dev/zero"}, exitUsage, "daemon.status_token_file: /dev/zero: more than 4096 bytes: expected a token of at most 4096 bytes"},
	} {
		var out, errb bytes.Buffer
		code := statusCmd(append([]string{"--address", ts.URL}, tc.args...), &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("status %v: exit %d, want %d with %q\n%s%s", tc.args, code, tc.code, tc.want, out.String(), errb.String())
		}
	}
}

// status shows the safety hold, the stuck VMs with why, and the refusals.
func TestRenderStatusShowsStuckVMs(t *testing.T) {
	var b bytes.Buffer
	renderStatus(&b, scaler.Status{Time: time.Unix(0, 0),
		Stuck:      []scaler.StuckVM{{VMID: 5003, Name: "talos-worker-5003", Step: scaler.StepConfigured, Reason: "backing off after 1 failed attempt(s)"}},
		Operations: []scaler.Operation{{Kind: scaler.OpProvision, VMID: 5003, Node: "talos-worker-5003", Step: scaler.StepConfigured, Stuck: "backing off"}},
		SafetyHold: "none of our 2 joined VMs has a Node", Refused: []string{"VM 5004: not ours"}}, true)
	for _, want := range []string{
		"Stuck: 1 VM(s) make no progress by themselves",
		"VM 5003 (talos-worker-5003) at configured: backing off after 1 failed attempt(s)",
		"(stuck: backing off)",
		"Safety hold (nothing destructive is done): none of our 2 joined VMs has a Node",
		"VM 5004: not ours",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, b.String())
		}
	}
}

// A dry run's status says it leads nothing (its /status says leader false).
func TestRenderStatusOfADryRun(t *testing.T) {
	for _, tc := range []struct {
		st     scaler.Status
		leader bool
		want   string
	}{
		{scaler.Status{DryRun: true}, false, "pve-autoscaler: dry run (plans only, changes nothing, takes no part in leader election), last tick"},
		{scaler.Status{}, true, "pve-autoscaler: leader, last tick"},
		{scaler.Status{}, false, "pve-autoscaler: standby (another daemon leads), last tick"},
	} {
		var b bytes.Buffer
		renderStatus(&b, tc.st, tc.leader)
		if !strings.HasPrefix(b.String(), tc.want) {
			t.Errorf("status of %+v (leader %v) starts %q, want %q", tc.st, tc.leader, strings.SplitN(b.String(), "\n", 2)[0], tc.want)
		}
	}
}
