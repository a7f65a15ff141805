package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Bad flags and unknown scenarios are refused before anything starts.
func TestRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--runs", "0"}, 2, "--runs must be at least 1"},
		{[]string{"--diurnal", "-1h"}, 2, "positive"},
		{[]string{"--nope"}, 2, "unknown flag"},
		{[]string{"--scenarios", "burst,nope", "--doc", ""}, 1, `unknown scenario "nope"`},
		{[]string{"--scenarios", "diurnal", "--trace", "/nonexistent/trace.csv", "--doc", ""}, 1, "diurnal trace"},
	} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, errb.String(), c.want)
		}
	}
}
