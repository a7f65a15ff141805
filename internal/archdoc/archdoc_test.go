// Package archdoc checks docs/architecture.md against the module.
package archdoc

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Every Go package of the module is named on the architecture page, as
// `path` relative to the module root.
func TestArchitectureNamesEveryPackage(t *testing.T) {
	page, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/pve-autoscaler/pve-autoscaler/"
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages: %q", len(pkgs), out)
	}
	for _, p := range pkgs {
		rel, ok := strings.CutPrefix(p, mod)
		if !ok {
			t.Errorf("package %s outside the module", p)
			continue
		}
		if !strings.Contains(string(page), "`"+rel+"`") {
			t.Errorf("docs/architecture.md does not name package `%s`", rel)
		}
	}
}
