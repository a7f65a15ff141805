package demo

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
)

// TestDemoScenario runs the demo at 20x: the load ramp scales up to
// capacity, the fall scales down to the minimum, one removal at a time.
func TestDemoScenario(t *testing.T) {
	if miss := kubetest.Missing(); len(miss) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Kubernetes test bed missing %v: run make kube-testbed", miss)
		}
		t.Skipf("Kubernetes test bed missing %v: run make kube-testbed", miss)
	}
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{Speed: 20, Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if sum.Peak < 4 || sum.FinalWorkers != 2 || sum.ScaleDowns < 2 || sum.TimeToCapacity <= 0 || sum.NodeMinutes <= 0 {
		t.Errorf("summary %+v\n%s", sum, out.String())
	}
	for _, want := range []string{"---- load ramp", "---- capacity reached", "---- load falls", "---- gpu worker", "no worker made for it", "remove talos-worker-", "summary: peak"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("live view lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDemoUpgrade runs the upgrade act at 20x: the template changes and
// both workers are replaced, one at a time, never fewer than two Ready.
func TestDemoUpgrade(t *testing.T) {
	if miss := kubetest.Missing(); len(miss) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Kubernetes test bed missing %v: run make kube-testbed", miss)
		}
		t.Skipf("Kubernetes test bed missing %v: run make kube-testbed", miss)
	}
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{Speed: 20, Out: &out, Scenario: ScenarioUpgrade})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if sum.FinalWorkers != 2 {
		t.Errorf("summary %+v\n%s", sum, out.String())
	}
	for _, want := range []string{"---- upgrade: template 9000 changes", "replace talos-worker-", "remove talos-worker-5000: worker talos-worker-5000 drifted", "---- upgrade done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("live view lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := Run(context.Background(), Options{Scenario: "rollout"}); err == nil || !strings.Contains(err.Error(), `unknown scenario "rollout"`) {
		t.Errorf("an unknown scenario: %v", err)
	}
}
