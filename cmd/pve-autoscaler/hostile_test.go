package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestEveryCommandRefusesANonConfig: an empty, comment-only, list or
// scalar config file panicked in the validator (issue 20); every command
// that reads the config now exits 2 with an error naming the file.
func TestEveryCommandRefusesANonConfig(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace.csv")
	if err := os.WriteFile(trace, []byte("time_s,cpu_cores,memory_gib,pending_pods\n0,1,1,0\n60,1,1,0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"empty":    "",
		"comments": "# only a comment\n",
		"list":     "- a\n- b\n",
		"scalar":   "homelab\n",
		"twice":    "cluster: {name: a}\ncluster: {name: b}\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"validate", "--config", p},
			{"plan", "--config", p},
			{"plan", "--config", p, "--snapshot", exampleSnap},
			{"simulate", "--config", p, "--trace", trace},
			{"doctor", "--config", p},
			{"status", "--config", p},
			{"run", "--config", p, "--dry-run"},
		} {
			code, out, errOut := runMain(args...)
			if code != exitUsage || !strings.Contains(errOut+out, p) {
				t.Errorf("%s: %v: exit %d, stdout %q, stderr %q; want exit 2 naming the file", name, args, code, out, errOut)
			}
		}
	}
}

// TestBrokenSnapshotsAndTraces: a truncated snapshot is refused with its
// position, exit 2; a trace with a byte order mark is read.
func TestBrokenSnapshotsAndTraces(t *testing.T) {
	dir := t.TempDir()
	snap := filepath.Join(dir, "cut.json")
	if err := os.WriteFile(snap, []byte("{\n  \"time\": \"2026-11-27T18:00:00Z\",\n  \"nodes\": [{\"name\": "), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMain("plan", "--config", planConfig, "--snapshot", snap)
	if code != exitUsage || out != "" || !strings.Contains(errOut, "snapshot "+snap+": line 3:") || !strings.Contains(errOut, "truncated") {
		t.Errorf("truncated snapshot: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	trace := filepath.Join(dir, "bom.csv")
	if err := os.WriteFile(trace, []byte("\ufefftime_s,cpu_cores,memory_gib,pending_pods\r\n0,1,1,0\r\n3600,1,1,0\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runMain("simulate", "--config", planConfig, "--trace", trace); code != exitOK {
		t.Errorf("trace with a BOM: exit %d, %s", code, errOut)
	}
}

// TestHugeInputsAreNotReadWhole: a config or a snapshot past its limit,
// or a path without end (/dev/zero), is refused with what it holds, exit
// 2, after reading one byte past the limit.
func TestHugeInputsAreNotReadWhole(t *testing.T) {
	dir := t.TempDir()
	snap := filepath.Join(dir, "huge.json")
	f, err := os.Create(snap)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: 64 MiB + 1 without writing them.
	if err := f.Truncate(scaler.MaxSnapshotSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "--config", planConfig, "--snapshot", snap}, "snapshot " + snap + ": 67108865 bytes: a snapshot may hold at most 64 MiB"},
		{[]string{"plan", "--config", planConfig, "--snapshot", "/dev/zero"}, "snapshot /dev/zero: more than 67108864 bytes: a snapshot may hold at most 64 MiB"},
		{[]string{"validate", "--config", "/dev/zero"}, "config /dev/zero: 1 problem\n  more than 1048576 bytes: a config file may hold at most 1 MiB"},
	} {
		if _, err := os.Stat(c.args[len(c.args)-1]); err != nil {
			continue // no /dev/zero here
		}
		code, out, errOut := runMain(c.args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, out, errOut, c.want)
		}
	}
}
