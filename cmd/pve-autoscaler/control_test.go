package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/kube"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestPauseResumeBoostCommands: the commands write the control ConfigMap
// (who set it, until when), resume and boost --clear take their part
// away, and the ConfigMap goes once empty; bad flags are usage errors.
func TestPauseResumeBoostCommands(t *testing.T) {
	_, w := newWorld(t)
	c := w.Config()
	path := writeConfigFile(t, t.TempDir(), c)
	kc, err := kube.New(kube.Options{Kubeconfig: c.Kubernetes.Kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	ref := daemon.ControlRef(c)
	read := func() *scaler.Control {
		t.Helper()
		ctl, err := kc.ReadControl(t.Context(), ref)
		if err != nil {
			t.Fatal(err)
		}
		return ctl
	}

	before := time.Now().Add(-time.Second)
	code, out, errs := runMain("pause", "--config", path, "--for", "2h", "--reason", "disk swap")
	if code != exitOK || !strings.Contains(out, "Paused by ") || !strings.Contains(out, "disk swap") {
		t.Fatalf("pause: exit %d\n%s%s", code, out, errs)
	}
	ctl := read()
	if ctl == nil || ctl.Pause == nil || ctl.Pause.Reason != "disk swap" || !strings.Contains(ctl.Pause.By, "@") ||
		ctl.Pause.Until.Before(before.Add(2*time.Hour)) || ctl.Pause.Until.After(time.Now().Add(2*time.Hour)) {
		t.Fatalf("pause recorded: %+v", ctl)
	}
	code, out, errs = runMain("boost", "--config", path, "--workers", "4", "--for", "3h")
	if code != exitOK || !strings.Contains(out, "raises the minimum to 4") {
		t.Fatalf("boost: exit %d\n%s%s", code, out, errs)
	}
	if ctl := read(); ctl.Pause == nil || len(ctl.Boosts) != 1 || ctl.Boosts[0].Workers != 4 {
		t.Fatalf("after boost: %+v", ctl)
	}
	code, out, _ = runMain("resume", "--config", path)
	if code != exitOK || !strings.Contains(out, "Resumed") {
		t.Fatalf("resume: exit %d\n%s", code, out)
	}
	if ctl := read(); ctl.Pause != nil || len(ctl.Boosts) != 1 {
		t.Fatalf("after resume: %+v", ctl)
	}
	if code, out, _ = runMain("boost", "--config", path, "--clear"); code != exitOK || !strings.Contains(out, "Boost cleared") {
		t.Fatalf("boost --clear: exit %d\n%s", code, out)
	}
	if ctl := read(); ctl != nil {
		t.Fatalf("nothing left, yet the ConfigMap holds %+v", ctl)
	}
	if code, out, _ = runMain("resume", "--config", path); code != exitOK || !strings.Contains(out, "Not paused") {
		t.Errorf("resume when not paused: exit %d\n%s", code, out)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"boost", "--config", path, "--workers", "4"}, "--for DURATION"},
		{[]string{"boost", "--config", path, "--workers", "7", "--for", "1h"}, "expected 1 to max_workers (6)"},
		{[]string{"boost", "--config", path, "--workers", "2", "--for", "1h", "--until", "23:30"}, "give one"},
		{[]string{"boost", "--config", path, "--workers", "2", "--pool", "gpu", "--for", "1h"}, `--pool "gpu"`},
		{[]string{"boost", "--config", path, "--workers", "2", "--until", "late"}, "expected HH:MM"},
		{[]string{"pause", "--config", path, "--for", "-1h"}, "--for -1h0m0s"},
	} {
		if code, _, errs := runMain(bad.args...); code != exitUsage || !strings.Contains(errs, bad.want) {
			t.Errorf("%v: exit %d, %q; want usage error with %q", bad.args, code, errs, bad.want)
		}
	}
	if ctl := read(); ctl != nil {
		t.Errorf("a refused command wrote %+v", ctl)
	}
}

// TestBoostEnd: --for and --until, in policy.timezone, the next such time.
func TestBoostEnd(t *testing.T) {
	now := time.Date(2026, 11, 27, 21, 0, 0, 0, time.UTC) // 22:00 in Berlin
	for _, tc := range []struct {
		d     time.Duration
		until string
		tz    string
		want  time.Time
		err   string
	}{
		{d: 3 * time.Hour, tz: "UTC", want: now.Add(3 * time.Hour)},
		{until: "23:30", tz: "UTC", want: time.Date(2026, 11, 27, 23, 30, 0, 0, time.UTC)},
		{until: "23:30", tz: "Europe/Berlin", want: time.Date(2026, 11, 27, 22, 30, 0, 0, time.UTC)},
		{until: "20:00", tz: "UTC", want: time.Date(2026, 11, 28, 20, 0, 0, 0, time.UTC)}, // passed today: tomorrow
		{until: "2026-11-28T01:00:00Z", tz: "UTC", want: time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)},
		{until: "2026-11-27T20:00:00Z", tz: "UTC", err: "within"},
		{d: 40 * 24 * time.Hour, tz: "UTC", err: "expected 1s to"},
		{tz: "UTC", err: "ends on its own"},
	} {
		got, err := boostEnd(now, tc.d, tc.until, tc.tz)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v %q: error %v, want %q", tc.d, tc.until, err, tc.err)
		case tc.err == "" && (err != nil || !got.Equal(tc.want)):
			t.Errorf("%v %q in %s: %v %v, want %v", tc.d, tc.until, tc.tz, got, err, tc.want)
		}
	}
}
