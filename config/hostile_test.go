package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostileConfigs are the config files of issue 20's "Hostile input", each
// with what its error must say. They are FuzzLoad's seeds too.
var hostileConfigs = []struct {
	name, yaml string
	want       []string // each must be in the error
}{
	{"empty", "", []string{"the file is empty"}},
	{"comments only", "# nothing\n\n# here\n", []string{"the file is empty"}},
	{"null", "~\n", []string{"holds no settings"}},
	{"a list", "- cluster\n- proxmox\n", []string{"line 1:1: expected a mapping of sections", "got a list"}},
	{"a scalar", "homelab\n", []string{"line 1:1: expected a mapping of sections", `got the value "homelab"`}},
	{"not YAML", "cluster: [\n", []string{"line 1", "not valid YAML"}},
	{"duplicate section", "cluster: {name: a}\npolicy:\n  min_workers: 5\npolicy:\n  interval: 30s\n", []string{"policy (line 4:1): appears twice in one mapping (first at line 2)"}},
	{"duplicate key", "policy:\n  min_workers: 5\n  min_workers: 1\n", []string{"policy.min_workers (line 3:3): appears twice"}},
	{"second document", "cluster: {name: a}\n---\ncluster: {name: b}\n", []string{"line 2:1: a second YAML document"}},
	{"InfGiB", "proxmox:\n  vm:\n    memory: InfGiB\n", []string{"proxmox.vm.memory (line 3:5)", `expected a size such as "8GiB"`}},
	{"NaNGiB", "proxmox:\n  host_memory_reserve: NaNGiB\n", []string{"proxmox.host_memory_reserve (line 2:3)", "expected a size"}},
	{"overflowing size", "proxmox:\n  vm:\n    memory: 10000000TiB\n", []string{"proxmox.vm.memory (line 3:5)", "too large"}},
	{"absurd memory", "proxmox:\n  vm:\n    memory: 100000TiB\n", []string{"proxmox.vm.memory (line 3:5)", "at most 4TiB"}},
	{"infinite number", "policy:\n  cpu: {scale_up_at: .inf}\n", []string{"policy.cpu.scale_up_at (line 2:22)", "finite"}},
	{"huge count", "policy:\n  max_nodes_per_step: 1000000000000\n", []string{"policy.max_nodes_per_step (line 2:3)", "expected 1 to 100"}},
	{"huge interval", "policy:\n  interval: 100000h\n", []string{"policy.interval (line 2:3)", "expected 1s to 1h"}},
	{"bad listen", "daemon:\n  listen: notahost:99999\n", []string{"daemon.listen (line 2:3)", "1..65535"}},
	{"template with spaces", "proxmox:\n  template: talos worker template\n", []string{"proxmox.template (line 2:3)", "no spaces"}},
	{"schedule without a name", "policy:\n  schedules:\n    - window: Fri 18:00-23:59\n      min_workers: 3\n", []string{"policy.schedules[0].name (line 3:7): required"}},
	{"schedules with one name", "policy:\n  schedules:\n    - {name: a, window: Fri 18:00-23:59, min_workers: 3}\n    - {name: a, window: Sat 18:00-23:59, min_workers: 3}\n", []string{"policy.schedules[1].name (line 4:8)", "also the name of policy.schedules[0]"}},
	{"password in url", "proxmox:\n  url: https://root:hunter2@pve1:8006\n", []string{"proxmox.url (line 2:3): holds a user name or password"}},
	{"long list", "proxmox:\n  hosts: [" + strings.Repeat("pve,", 300) + "pve]\n", []string{"proxmox.hosts (line 2:10): 301 entries: at most 256"}},
	{"non-scalar key", "? [a, b]\n: 1\n", []string{"line 1:3: a key must be a plain name"}},
}

func TestHostileConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range hostileConfigs {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(p, ValidateOptions{}, func(c *Config) { c.Cluster.Name = "x" })
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want a config error, got %v", err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("the password is shown:\n%s", msg)
			}
			checkNamesWhere(t, cerr)
		})
	}
}

// checkNamesWhere is FuzzLoad's invariant: every problem names a field
// path or a line, except one problem about the whole file.
func checkNamesWhere(t *testing.T, e *Error) {
	t.Helper()
	if len(e.Problems) == 0 {
		t.Fatalf("an error without problems: %v", e)
	}
	for _, p := range e.Problems {
		if p.Path == "" && p.Line == 0 && len(e.Problems) > 1 {
			t.Errorf("problem %q names no field and no line", p.Message)
		}
	}
}

func TestFilesOverTheLimitAreNotRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// 50 MB of hosts, written in pieces (the file is sparse-free but never held in memory here).
	line := []byte(strings.Repeat("  - pve\n", 1024))
	if _, err := f.WriteString("proxmox:\n  hosts:\n"); err != nil {
		t.Fatal(err)
	}
	for written := 0; written < 50<<20; written += len(line) {
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, err = Load(p, ValidateOptions{}, nil)
	if err == nil || !strings.Contains(err.Error(), "at most 1 MiB") || !strings.Contains(err.Error(), "52428818 bytes") {
		t.Fatalf("50 MB config: %v", err)
	}
	// Exactly the limit is read; one byte more is not.
	ok := []byte("cluster: {name: a}\n")
	ok = append(ok, []byte("#"+strings.Repeat("x", MaxFileSize-len(ok)-2)+"\n")...)
	if len(ok) != MaxFileSize {
		t.Fatalf("built %d bytes", len(ok))
	}
	if _, err := ParseBytes("max.yaml", ok); err != nil {
		t.Errorf("a file of exactly 1 MiB: %v", err)
	}
	if _, err := ParseBytes("over.yaml", append(ok, '\n')); err == nil || !strings.Contains(err.Error(), "at most 1 MiB") {
		t.Errorf("a file of 1 MiB + 1: %v", err)
	}
}

// FuzzLoad: no input panics the loader or the validator, and an error
// names a field path or a line (or is the one problem of the whole file).
func FuzzLoad(f *testing.F) {
	for _, tc := range hostileConfigs {
		f.Add([]byte(tc.yaml))
	}
	if ex, err := os.ReadFile(examplePath); err == nil {
		f.Add(ex)
	}
	f.Add([]byte("a: &x [1, *x]\n"))
	f.Add([]byte("<<: {cluster: {name: a}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseBytes("fuzz.yaml", data)
		var cerr *Error
		if err != nil {
			if !errors.As(err, &cerr) {
				t.Fatalf("not a config error: %v", err)
			}
			checkNamesWhere(t, cerr)
		}
		if c == nil {
			return
		}
		problems, warnings := c.Validate(ValidateOptions{})
		for _, p := range append(problems, warnings...) {
			if p.Path == "" {
				t.Errorf("validation problem without a path: %v", p)
			}
		}
	})
}
