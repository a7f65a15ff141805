package main

import (
	"strings"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestRenderPools: with several pools, plan names each pool's workers and
// the pool each add is for.
func TestRenderPools(t *testing.T) {
	p := scaler.Plan{
		Pools: []scaler.PoolStatus{{Name: "general", Current: 2, Ready: 2, Min: 2, Max: 6}, {Name: "gpu", Max: 1, Added: 1, Pending: 1}},
		Actions: []scaler.Action{{Kind: scaler.ActionAdd, Count: 1, Pool: "gpu",
			Reasons: []scaler.Reason{{Code: scaler.CodePendingPods, Message: "pool gpu: 1 pod unschedulable"}}}},
	}
	var b strings.Builder
	renderPlan(&b, p, scaler.Policy{})
	for _, want := range []string{
		"Pools:        general: 2 now (2 ready, 0 not ready, 0 provisioning), min 2, max 6\n",
		"              gpu: 0 now (0 ready, 0 not ready, 0 provisioning), min 0, max 1, adding 1, 1 pending pod counted\n",
		"+ add 1 worker to pool gpu\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, b.String())
		}
	}
}
