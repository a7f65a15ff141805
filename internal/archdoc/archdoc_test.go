// Package archdoc checks docs/architecture.md against the module.
package archdoc

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
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

// The table's "imports (module)" column is what each package imports
// inside the module (its non-test files), no more and no less.
func TestArchitectureImportsAreTrue(t *testing.T) {
	page, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	const mod = "github.com/pve-autoscaler/pve-autoscaler/"
	row := regexp.MustCompile("^\\| `([^`]+)` \\| ([^|]*) \\|")
	quoted := regexp.MustCompile("`([^`]+)`")
	doc := map[string][]string{}
	for _, line := range strings.Split(string(page), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			var imports []string
			for _, q := range quoted.FindAllStringSubmatch(m[2], -1) {
				imports = append(imports, q[1])
			}
			slices.Sort(imports)
			doc[m[1]] = imports
		}
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		var real []string
		for _, imp := range f[1:] {
			if rel, ok := strings.CutPrefix(imp, mod); ok {
				real = append(real, rel)
			}
		}
		slices.Sort(real)
		documented, ok := doc[pkg]
		if !ok {
			continue // TestArchitectureNamesEveryPackage says so
		}
		n++
		if !slices.Equal(documented, real) {
			t.Errorf("docs/architecture.md: `%s` imports %v, the page says %v", pkg, real, documented)
		}
	}
	if n < 10 {
		t.Errorf("only %d rows of the package table matched: the pattern no longer reads the page", n)
	}
}
