package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// --help prints the usage with its examples once, on stdout, and exits 0;
// bad flags exit 2 before anything is set up.
func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{args: []string{"--help"}, code: exitOK, out: "Examples:\n  # the scenario"},
		{args: []string{"--speed", "0"}, code: exitUsage, err: "--speed 0: expected more than 0"},
		{args: []string{"--speed", "101"}, code: exitUsage, err: "at most 100"},
		{args: []string{"--bogus"}, code: exitUsage, err: "unknown flag: --bogus"},
		{args: []string{"--scenario", "rollout"}, code: exitUsage, err: `--scenario "rollout": expected upgrade`},
		{args: []string{"extra"}, code: exitUsage, err: `unexpected argument "extra"`},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tc.args, code, stdout.String(), stderr.String(), tc.code, tc.out, tc.err)
		}
		if tc.args[0] == "--help" && (stderr.Len() > 0 || strings.Count(stdout.String(), "Usage:") != 1) {
			t.Errorf("--help: usage not printed exactly once on stdout: stdout %q, stderr %q", stdout.String(), stderr.String())
		}
	}
}
