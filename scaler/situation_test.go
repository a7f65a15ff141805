package scaler

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/internal/testclock"
)

func TestParseSituation(t *testing.T) {
	at := func(h, m int) string {
		return t0.Add(time.Duration(h-12)*time.Hour + time.Duration(m)*time.Minute).Format(time.RFC3339)
	}
	in := `{
  "time": "` + at(18, 0) + `",
  "nodes": [{"name": "w1", "managed": true, "ready": true, "created": "` + at(17, 58) + `", "ready_since": "` + at(17, 59) + `",
             "allocatable": {"cpu": "4", "memory": "8Gi"},
             "usage": {"cpu": "3500m", "memory": "6Gi"},
             "requests": {"cpu": 3, "memory": "4Gi"},
             "pods": [{"namespace": "a", "name": "p", "owner_kind": "ReplicaSet", "requests": {"cpu": "1"},
                       "pdb": {"name": "p", "disruptions_allowed": 1}}]}],
  "pending_pods": [{"namespace": "a", "name": "q", "requests": {"cpu": "500m", "memory": "512Mi"}, "since": "` + at(17, 59) + `",
                    "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", "message_time": "` + at(18, 0) + `"}],
  "operations": [{"kind": "provision", "vmid": 5001, "step": "clone"}, {"kind": "refill", "vmid": 5002, "step": "pool-started"},
                 {"kind": "retire", "vmid": 5003, "step": "retiring"}, {"kind": "remove", "vmid": 5004, "step": "parking"}],
  "hosts": [{"name": "pve1", "online": true, "memory_free": 34359738368}],
  "metrics": {"stale": false},
  "history": {"last_scale_up": "` + at(17, 50) + `"}
}`
	s, err := ParseSituation("s.json", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	n := s.Nodes[0]
	if n.Allocatable != (Resources{4000, 8 * gi}) || n.Usage != (Resources{3500, 6 * gi}) || n.Requests.MilliCPU != 3000 {
		t.Errorf("node resources %+v", n)
	}
	if n.Pods[0].PDB.DisruptionsAllowed != 1 || s.PendingPods[0].Requests.Memory != 512<<20 || s.Operations[0].Kind != OpProvision || s.Operations[1].Kind != OpRefill || s.Operations[2].Kind != OpRetire || s.Operations[3].Kind != OpRemove {
		t.Errorf("situation %+v", s)
	}
	if pp := s.PendingPods[0]; n.ReadySince.Format(time.RFC3339) != at(17, 59) || pp.MessageTime.Format(time.RFC3339) != at(18, 0) || !strings.HasPrefix(pp.Message, "0/1 nodes") {
		t.Errorf("ready since %v, pending pod %+v", n.ReadySince, pp)
	}
	if s.History.LastScaleUp.Format(time.RFC3339) != at(17, 50) || s.Time.Format(time.RFC3339) != at(18, 0) {
		t.Errorf("times %v %v", s.Time, s.History)
	}
}

func TestParseSituationErrors(t *testing.T) {
	in := `{"nodes": [{"name": "", "allocatable": {"cpu": "four"}, "usage": {"gpu": "1"}, "readdy": true}],
	        "operations": [{"kind": "resize"}], "history": {"last_scale_up": "yesterday"},
	        "control": {"boosts": [{"workers": -1, "by": "x", "since": "2026-11-27T12:00:00Z", "until": "2026-11-27T11:00:00Z"}]}}`
	_, err := ParseSituation("bad.json", []byte(in))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"snapshot bad.json",
		`nodes[0].allocatable: cpu: "four" is not a quantity`,
		`nodes[0].usage: unknown resource "gpu"`,
		`nodes[0].readdy: unknown field (did you mean "ready"?)`,
		"nodes[0].name: required",
		`operations[0].kind: "resize": expected provision, remove, refill or retire`,
		"history.last_scale_up:",
		"time: required",
		"control.boosts[0].workers: -1: expected 0 to 100000",
		"control.boosts[0].until: 2026-11-27T11:00:00Z: expected after since",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestResourcesJSONRoundTrip(t *testing.T) {
	r := Resources{MilliCPU: 3500, Memory: 6 * gi}
	b, err := json.Marshal(r)
	if err != nil || string(b) != `{"cpu":"3500m","memory":"6Gi"}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	var back Resources
	if err := json.Unmarshal(b, &back); err != nil || back != r {
		t.Fatalf("unmarshal = %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"cpu":"-1"}`), &back); err == nil {
		t.Error("negative accepted")
	}
}

func TestScheduleWindows(t *testing.T) {
	fri := func(h, m int) time.Time { return testclock.Date(2026, 11, 27, h, m) }
	evening := win("evening", time.Friday, 18*60, 23*60+59, 4)
	night := win("night", time.Friday, 22*60, 2*60, 4)
	cases := []struct {
		s    Schedule
		at   time.Time
		lead time.Duration
		want bool
	}{
		{evening, fri(18, 0), 0, true},
		{evening, fri(17, 59), 0, false},
		{evening, fri(17, 51), 10 * time.Minute, true},
		{evening, fri(17, 49), 10 * time.Minute, false},
		{evening, fri(23, 59), 0, false},
		{evening, fri(18, 0).AddDate(0, 0, 1), 0, false},
		{night, fri(23, 0), 0, true},
		{night, fri(1, 0), 0, false},                  // Friday 01:00 belongs to Thursday's night
		{night, fri(1, 0).AddDate(0, 0, 1), 0, true},  // Saturday 01:00
		{night, fri(2, 0).AddDate(0, 0, 1), 0, false}, // Saturday 02:00, the end
	}
	for i, c := range cases {
		if got := c.s.activeAt(c.at, c.lead); got != c.want {
			t.Errorf("%d: %s at %v lead %v = %v, want %v", i, c.s, c.at, c.lead, got, c.want)
		}
	}
}

func TestHistoryClocks(t *testing.T) {
	p := testPolicy()
	p.UpWindow, p.DownWindow = time.Minute, time.Minute
	// High CPU at t0 starts the clock; at t0+30s it keeps its start; a dip resets it.
	plan := Decide(Snapshot{Nodes: workers(3, 90, 50)}, p, History{}, t0)
	if !plan.Next.CPUHighSince.Equal(t0) || !plan.Next.LowSince.IsZero() {
		t.Fatalf("after high: %+v", plan.Next)
	}
	plan = Decide(Snapshot{Nodes: workers(3, 90, 50)}, p, plan.Next, t0.Add(30*time.Second))
	if !plan.Next.CPUHighSince.Equal(t0) {
		t.Fatalf("clock restarted: %+v", plan.Next)
	}
	plan = Decide(Snapshot{Nodes: workers(3, 50, 50)}, p, plan.Next, t0.Add(60*time.Second))
	if !plan.Next.CPUHighSince.IsZero() {
		t.Fatalf("clock not reset by a dip: %+v", plan.Next)
	}
	// Stale metrics reset every clock (fail static).
	h := History{CPUHighSince: t0, MemoryHighSince: t0, LowSince: t0, LastScaleUp: t0}
	plan = Decide(Snapshot{Nodes: workers(3, 90, 90), Metrics: MetricsState{Stale: true, Error: "metrics.k8s.io unavailable"}}, p, h, t0.Add(time.Minute))
	if !plan.Next.CPUHighSince.IsZero() || !plan.Next.MemoryHighSince.IsZero() || !plan.Next.LowSince.IsZero() || !plan.Next.LastScaleUp.Equal(t0) {
		t.Fatalf("stale metrics: %+v", plan.Next)
	}
	if plan.Utilization != nil || !strings.Contains(plan.Holds[0].Message, "metrics.k8s.io unavailable") {
		t.Fatalf("stale plan: %+v", plan)
	}
	// A scale-up records its time and voids low-utilization evidence.
	plan = Decide(Snapshot{Nodes: workers(1, 10, 10)}, p, History{LowSince: t0.Add(-time.Hour)}, t0)
	if plan.Added() != 1 || !plan.Next.LastScaleUp.Equal(t0) || !plan.Next.LowSince.IsZero() {
		t.Fatalf("scale-up history: %+v", plan.Next)
	}
}

func TestPlanJSON(t *testing.T) {
	plan := Decide(Snapshot{Nodes: workers(2, 90, 50)}, testPolicy(), History{}, t0)
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	actions := back["actions"].([]any)
	a := actions[0].(map[string]any)
	if a["kind"] != "add" || a["count"] != float64(2) || back["workers"].(map[string]any)["desired"] != float64(4) {
		t.Errorf("plan JSON %s", b)
	}
	if u := back["utilization"].(map[string]any); u["cpu"] != float64(90) {
		t.Errorf("utilization %v", u)
	}
}
