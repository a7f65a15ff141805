package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// The man pages come from the command table and each command's own flag
// set: every command has its page, every flag its entry with its usage and
// default, and groff renders them without a warning.
func TestGenMan(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"gen-man", "--version", "1.2.3", "--date", "2026-11-27", dir}, &stdout, &stderr); code != exitOK {
		t.Fatalf("gen-man: exit %d: %s", code, stderr.String())
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.8"))
	if len(pages) != len(commands())+1 {
		t.Errorf("pages %v, want pve-autoscaler.8 and one per command of %d", pages, len(commands()))
	}
	top, err := os.ReadFile(filepath.Join(dir, "pve-autoscaler.8"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands() {
		if !strings.Contains(string(top), ".BR pve\\-autoscaler\\-"+manCode(c.name)+" (8)") {
			t.Errorf("pve-autoscaler.8 does not list %s", c.name)
		}
		page, err := os.ReadFile(filepath.Join(dir, "pve-autoscaler-"+c.name+".8"))
		if err != nil {
			t.Error(err)
			continue
		}
		if !strings.Contains(string(page), `.TH PVE\-AUTOSCALER\-`+strings.ToUpper(manCode(c.name))+` 8 "2026-11-27" "pve-autoscaler 1.2.3"`) {
			t.Errorf("%s: header:\n%s", c.name, page)
		}
		for _, ex := range c.examples {
			if !strings.HasPrefix(ex, "#") && !strings.Contains(string(page), ".EX\n"+manCode(ex)+"\n.EE") {
				t.Errorf("%s page lacks the example %q", c.name, ex)
			}
		}
		// The flags, read independently of the generator from --help.
		var capture helpCapture
		c.run([]string{"--help"}, &capture, &stderr)
		capture.fs.VisitAll(func(f *pflag.Flag) {
			_, usage := pflag.UnquoteUsage(f)
			if !strings.Contains(string(page), `\-\-`+manCode(f.Name)) || !strings.Contains(string(page), manText(usage)) {
				t.Errorf("%s page lacks --%s %q", c.name, f.Name, usage)
			}
			if !zeroDefault(f) && !strings.Contains(string(page), "(default: "+manText(f.DefValue)+")") {
				t.Errorf("%s page lacks the default of --%s: %q", c.name, f.Name, f.DefValue)
			}
		})
	}
	if strings.Contains(stdout.String()+usageText(), "gen-man") {
		t.Error("gen-man is listed in the usage: it is hidden")
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff missing: pages not rendered")
	}
	for _, p := range pages {
		// What lintian runs (groff-message): every warning is a finding.
		out, err := exec.Command(groff, "-man", "-ww", "-Tutf8", "-z", p).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v\n%s", filepath.Base(p), err, out)
		}
	}
}

func usageText() string {
	var b bytes.Buffer
	usage(&b)
	return b.String()
}
