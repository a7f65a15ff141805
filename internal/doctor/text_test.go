package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every fix that sends the reader to a README section ("README: Install
// on a Proxmox VE node, step 3") names a section the README has.
func TestFixesNameREADMESections(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			headings[strings.TrimSpace(strings.TrimLeft(h, "#"))] = true
		}
	}
	files, _ := filepath.Glob("*.go")
	ref := regexp.MustCompile(`README: ([^),"]+)`)
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(src), -1) {
			n++
			if !headings[strings.TrimSpace(m[1])] {
				t.Errorf("%s: README has no section %q", f, m[1])
			}
		}
		// Any other mention of the README escapes this check.
		if k := strings.Count(string(src), "README"); k != len(ref.FindAllString(string(src), -1)) {
			t.Errorf("%s: %d mentions of the README, %d in the form \"README: SECTION\"", f, k, len(ref.FindAllString(string(src), -1)))
		}
	}
	if n == 0 {
		t.Error("no README reference found: the pattern no longer matches the fixes")
	}
}

func TestSummaryCountsInWords(t *testing.T) {
	for _, tc := range []struct {
		checks int
		want   string
	}{{1, "\n1 check: 1 OK, 0 WARN, 0 FAIL\n"}, {2, "\n2 checks: 2 OK, 0 WARN, 0 FAIL\n"}} {
		var r Report
		for i := range tc.checks {
			r.add(areaConfig, fmt.Sprint("c", i), OK, "", "fine")
		}
		var b strings.Builder
		if err := r.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(b.String(), tc.want) {
			t.Errorf("%d checks: %q, want it to end with %q", tc.checks, b.String(), tc.want)
		}
	}
}
