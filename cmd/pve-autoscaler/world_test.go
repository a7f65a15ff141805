package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
)

// newWorld is a simulated world on the package's control plane, closed
// when the test ends.
func newWorld(tb testing.TB) (*kubetest.Env, *world.World) {
	tb.Helper()
	env := kubetest.Require(tb)
	w, err := world.New(env, world.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Close)
	return env, w
}

// writeConfigFile writes c as a config file in dir and returns its path.
func writeConfigFile(tb testing.TB, dir string, c *config.Config) string {
	tb.Helper()
	y, err := c.YAML()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
