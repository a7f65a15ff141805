package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestStandbyMetrics: standby's size, ready and stale members and the
// oldest's age reach /metrics.
func TestStandbyMetrics(t *testing.T) {
	m := NewMetrics()
	m.Tick(scaler.Plan{Time: time.Now(), Standby: &scaler.Standby{Size: 2, Ready: 1, Members: []scaler.StandbyMember{
		{VMID: 5007, Age: 3 * time.Hour}, {VMID: 5008, Age: 9 * time.Hour, Stale: "template changed"},
	}}}, nil)
	want := `
# HELP pve_autoscaler_standby_workers Standby workers: size (configured), ready (startable), stale (to be replaced).
# TYPE pve_autoscaler_standby_workers gauge
pve_autoscaler_standby_workers{state="ready"} 1
pve_autoscaler_standby_workers{state="size"} 2
pve_autoscaler_standby_workers{state="stale"} 1
# HELP pve_autoscaler_standby_oldest_age_seconds Age of the oldest standby worker (0: none).
# TYPE pve_autoscaler_standby_oldest_age_seconds gauge
pve_autoscaler_standby_oldest_age_seconds 32400
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "pve_autoscaler_standby_workers", "pve_autoscaler_standby_oldest_age_seconds"); err != nil {
		t.Fatal(err)
	}
	m.Done(scaler.OpRefill, nil)
	if got := testutil.ToFloat64(m.events.WithLabelValues("refill", "success")); got != 1 {
		t.Errorf("refill events %v", got)
	}
}

// TestStuckMetrics: the stuck VMs' count and the stuck provisions among
// the workers reach /metrics.
func TestStuckMetrics(t *testing.T) {
	m := NewMetrics()
	m.Tick(scaler.Plan{Time: time.Now(), Workers: scaler.Workers{Ready: 2, Stuck: 1}}, nil)
	m.Stuck(2)
	want := `
# HELP pve_autoscaler_stuck_vms VMs of ours that make no progress by themselves: kept, backing off after a failure, or provisioning past max_provision_time (see /status stuck).
# TYPE pve_autoscaler_stuck_vms gauge
pve_autoscaler_stuck_vms 2
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "pve_autoscaler_stuck_vms"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.nodes.WithLabelValues("stuck")); got != 1 {
		t.Errorf("workers{state=stuck} %v, want 1", got)
	}
}

// TestPoolMetrics: each pool's workers reach /metrics, and a pool gone
// from the plan leaves no series.
func TestPoolMetrics(t *testing.T) {
	m := NewMetrics()
	m.Tick(scaler.Plan{Time: time.Now(), Pools: []scaler.PoolStatus{{Name: "old", Max: 1}}}, nil)
	m.Tick(scaler.Plan{Time: time.Now(), Pools: []scaler.PoolStatus{
		{Name: "general", Ready: 2, NotReady: 1, Provisioning: 1, Min: 2, Max: 6},
		{Name: "gpu", Provisioning: 1, Max: 1, Pending: 1},
	}}, nil)
	want := `
# HELP pve_autoscaler_pool_workers Workers of each worker pool by state: ready, not_ready, provisioning, min, max, pending (pods counted toward its new workers).
# TYPE pve_autoscaler_pool_workers gauge
pve_autoscaler_pool_workers{pool="general",state="max"} 6
pve_autoscaler_pool_workers{pool="general",state="min"} 2
pve_autoscaler_pool_workers{pool="general",state="not_ready"} 1
pve_autoscaler_pool_workers{pool="general",state="pending"} 0
pve_autoscaler_pool_workers{pool="general",state="provisioning"} 1
pve_autoscaler_pool_workers{pool="general",state="ready"} 2
pve_autoscaler_pool_workers{pool="gpu",state="max"} 1
pve_autoscaler_pool_workers{pool="gpu",state="min"} 0
pve_autoscaler_pool_workers{pool="gpu",state="not_ready"} 0
pve_autoscaler_pool_workers{pool="gpu",state="pending"} 1
pve_autoscaler_pool_workers{pool="gpu",state="provisioning"} 1
pve_autoscaler_pool_workers{pool="gpu",state="ready"} 0
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "pve_autoscaler_pool_workers"); err != nil {
		t.Fatal(err)
	}
}

// TestControlMetrics: a pause and the active boosts reach /metrics, and
// both go when the plan no longer has them.
func TestControlMetrics(t *testing.T) {
	m := NewMetrics()
	until := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	m.Tick(scaler.Plan{Time: time.Now(), Paused: &scaler.Pause{By: "a", Until: until},
		Boosts: []scaler.Boost{{Workers: 4}, {Pool: "gpu", Workers: 1}}}, nil)
	want := fmt.Sprintf(`
# HELP pve_autoscaler_paused 1 while `+"`pve-autoscaler pause`"+` holds every scaling action (see /status plan.paused), else 0.
# TYPE pve_autoscaler_paused gauge
pve_autoscaler_paused 1
# HELP pve_autoscaler_paused_until_timestamp_seconds When the pause ends on its own (Unix time; 0: not paused, or only `+"`resume`"+` ends it).
# TYPE pve_autoscaler_paused_until_timestamp_seconds gauge
pve_autoscaler_paused_until_timestamp_seconds %d
# HELP pve_autoscaler_boost_workers The minimum each active boost (`+"`pve-autoscaler boost`"+`) raises, by pool ("": all pools together).
# TYPE pve_autoscaler_boost_workers gauge
pve_autoscaler_boost_workers{pool=""} 4
pve_autoscaler_boost_workers{pool="gpu"} 1
`, until.Unix())
	names := []string{"pve_autoscaler_paused", "pve_autoscaler_paused_until_timestamp_seconds", "pve_autoscaler_boost_workers"}
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	m.Tick(scaler.Plan{Time: time.Now()}, nil)
	if p, b := testutil.ToFloat64(m.paused), testutil.CollectAndCount(m.boosts); p != 0 || b != 0 {
		t.Errorf("after the pause and boosts: paused %v, %d boost series", p, b)
	}
}
