package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The release binary carries only what the daemon and its commands run:
// none of the simulated world, the test doubles or the testing package
// (the demo is cmd/pve-autoscaler-demo).
//
// One path to testing is outside our hands: the Talos machinery client
// imports machinery/constants, which imports github.com/containerd/go-cni,
// whose testutils.go (not a _test file) imports testing. That importer is
// allowed by name; any other importer of testing fails.
func TestReleaseBinaryLinksNoTestWorld(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const mod = "github.com/pve-autoscaler/pve-autoscaler/"
	forbidden := []string{mod + "internal/demo", mod + "internal/peers", mod + "internal/world",
		mod + "kube/kubetest", mod + "proxmox/pvesim", mod + "talos/talosfake"}
	allowedTestingImporters := []string{"github.com/containerd/go-cni"}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 50 {
		t.Fatalf("go list -deps listed %d packages: %q", len(lines), out)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		if slices.Contains(forbidden, pkg) {
			t.Errorf("pve-autoscaler links %s", pkg)
		}
		if slices.Contains(imports, "testing") && !slices.Contains(allowedTestingImporters, pkg) {
			t.Errorf("pve-autoscaler links testing through %s", pkg)
		}
	}
}
