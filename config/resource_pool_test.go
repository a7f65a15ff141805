package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// proxmox.pool is resource_pool's old name: still read with a warning,
// an error when both are set.
func TestResourcePoolRename(t *testing.T) {
	for _, tc := range []struct {
		name          string
		old, current  string
		effective     string
		warn, problem string
	}{
		{"new name", "", "workers", "workers", "", ""},
		{"old name", "workers", "", "workers", "renamed proxmox.resource_pool", ""},
		{"both", "a", "b", "b", "", "keep resource_pool only"},
		{"none", "", "", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			c.Proxmox.Pool, c.Proxmox.ResourcePool = tc.old, tc.current
			if got := c.Proxmox.ResourcePoolName(); got != tc.effective {
				t.Errorf("ResourcePoolName %q, want %q", got, tc.effective)
			}
			problems, warnings := c.Validate(ValidateOptions{CheckFiles: true})
			check := func(kind string, list []Problem, want string) {
				if want == "" {
					if len(list) != 0 {
						t.Errorf("%s %v", kind, list)
					}
					return
				}
				if len(list) != 1 || list[0].Path != "proxmox.pool" || !strings.Contains(list[0].Message, want) {
					t.Errorf("%s %v, want proxmox.pool: ...%s...", kind, list, want)
				}
			}
			check("warnings", warnings, tc.warn)
			check("problems", problems, tc.problem)
		})
	}
	// The old key parses from a file.
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("proxmox:\n  pool: workers\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(p)
	if err != nil || c.Proxmox.ResourcePoolName() != "workers" {
		t.Errorf("old key: %v %+v", err, c)
	}
}
