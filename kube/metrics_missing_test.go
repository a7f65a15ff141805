package kube

import (
	"errors"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestMissingUsageMakesMetricsStale: a node metrics-server leaves out
// would count as using nothing; past its first scrape, the set is stale.
func TestMissingUsageMakesMetricsStale(t *testing.T) {
	now := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	old, fresh := now.Add(-10*time.Minute), now.Add(-time.Minute)
	usage := map[string]scaler.Resources{"a": {MilliCPU: 100}}
	for _, c := range []struct {
		name  string
		node  scaler.Node
		stale bool
	}{
		{"has figures", scaler.Node{Name: "a", Ready: true, ReadySince: old}, false},
		{"Ready for 10 minutes, no figures", scaler.Node{Name: "b", Ready: true, ReadySince: old}, true},
		{"Ready for a minute, not scraped yet", scaler.Node{Name: "b", Ready: true, ReadySince: fresh}, false},
		{"NotReady", scaler.Node{Name: "b", ReadySince: old}, false},
		{"cordoned (counts in no utilization)", scaler.Node{Name: "b", Ready: true, Unschedulable: true, ReadySince: old}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := missingUsage([]scaler.Node{{Name: "a", Ready: true, ReadySince: old}, c.node}, usage, now, 5*time.Minute)
			var me *MetricsUnavailableError
			if got := errors.As(err, &me); got != c.stale {
				t.Errorf("stale %v (%v), want %v", got, err, c.stale)
			}
		})
	}
}
