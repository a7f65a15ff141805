package scaler

import (
	"strconv"
	"testing"
	"time"
)

func standbyPolicy(size int) Policy {
	p := testPolicy()
	p.StandbySize = size
	p.StandbyMaxAge = 7 * 24 * time.Hour
	return p
}

func standby(vmid int, host string, age time.Duration) StandbyWorker {
	return StandbyWorker{VMID: vmid, Name: "sb" + strconv.Itoa(vmid), Host: host, Created: t0.Add(-age)}
}

func roomy(names ...string) []Host {
	var hs []Host
	for _, n := range names {
		hs = append(hs, Host{Name: n, Online: true, MemoryFree: 64 * gi})
	}
	return hs
}

func TestStandbyWakesNewestFirstAndChecksHostMemory(t *testing.T) {
	p := standbyPolicy(3)
	s := Snapshot{Nodes: workers(2, 50, 50), PendingPods: pending(3, 3000, gi, t0.Add(-time.Minute)),
		Hosts:   append(roomy("pve1"), Host{Name: "pve2", Online: true, MemoryFree: 10 * gi}), // 10 - 4 reserve < 8
		Standby: []StandbyWorker{standby(7001, "pve1", 3*time.Hour), standby(7002, "pve1", time.Hour), standby(7003, "pve2", time.Minute)}}
	plan := Decide(s, p, History{}, t0)
	add := plan.Actions[0]
	if add.Kind != ActionAdd || add.Count != 3 {
		t.Fatalf("actions %+v", plan.Actions)
	}
	if len(add.Wake) != 2 || add.Wake[0] != 7002 || add.Wake[1] != 7001 {
		t.Errorf("wake %v, want [7002 7001] (newest first; 7003's host lacks memory)", add.Wake)
	}
	if !hasCode(add.Reasons, CodeStandbyWake) || !hasCode(plan.Notes, CodeStandbyNoRoom) {
		t.Errorf("reasons %+v notes %+v", add.Reasons, plan.Notes)
	}
	if plan.Standby == nil || plan.Standby.Size != 3 || plan.Standby.Ready != 3 || len(plan.Standby.Members) != 3 {
		t.Errorf("standby %+v", plan.Standby)
	}
}

func hasCode(rs []Reason, c Code) bool {
	for _, r := range rs {
		if r.Code == c {
			return true
		}
	}
	return false
}

func TestStandbyParksWhileItHasRoom(t *testing.T) {
	p := standbyPolicy(1)
	cold := Snapshot{Nodes: workers(3, 5, 5), Hosts: roomy("pve1")}
	plan := Decide(cold, p, History{LowSince: t0.Add(-time.Hour)}, t0)
	rm, ok := plan.Removal()
	if !ok || !rm.Park || !hasCode(rm.Reasons, CodeStandbyPark) {
		t.Fatalf("removal %+v, want parked", plan.Actions)
	}
	// Standby full: destroyed as before.
	cold.Standby = []StandbyWorker{standby(7001, "pve1", time.Hour)}
	plan = Decide(cold, p, History{LowSince: t0.Add(-time.Hour)}, t0)
	if rm, ok := plan.Removal(); !ok || rm.Park {
		t.Fatalf("standby full: removal %+v, want destroyed", plan.Actions)
	}
	// A host that may not hold standby workers.
	p.StandbyHosts = []string{"pve9"}
	cold.Standby = nil
	plan = Decide(cold, p, History{LowSince: t0.Add(-time.Hour)}, t0)
	if rm, ok := plan.Removal(); !ok || rm.Park || !hasCode(plan.Notes, CodeStandbyPark) {
		t.Fatalf("host not allowed: %+v notes %+v", plan.Actions, plan.Notes)
	}
}

func TestStandbyRefillsOnlyWhenCalm(t *testing.T) {
	p := standbyPolicy(2)
	calm := Snapshot{Nodes: workers(2, 50, 50), Hosts: roomy("pve1"), Standby: []StandbyWorker{standby(7001, "pve1", time.Hour)}}
	plan := Decide(calm, p, History{}, t0)
	if len(plan.Actions) != 1 || plan.Actions[0].Kind != ActionRefill || plan.Actions[0].Count != 1 {
		t.Fatalf("calm, standby 1 of 2: %+v", plan.Actions)
	}
	// One already being built: no second.
	calm.Operations = []Operation{{Kind: OpRefill, VMID: 7002}}
	if plan := Decide(calm, p, History{}, t0); len(plan.Actions) != 0 {
		t.Fatalf("refill in flight: %+v", plan.Actions)
	}
	calm.Operations = nil
	for name, s := range map[string]func(*Snapshot, *History){
		"pending pods": func(s *Snapshot, _ *History) { s.PendingPods = pending(1, 100, gi, t0) },
		"cooldown": func(_ *Snapshot, h *History) {
			h.LastScaleDown = t0.Add(-time.Minute)
			p.CooldownAfterDown = 5 * time.Minute
		},
		"hot":     func(s *Snapshot, _ *History) { s.Nodes = workers(2, 90, 50) },
		"no room": func(s *Snapshot, _ *History) { s.Hosts = []Host{{Name: "pve1", Online: true, MemoryFree: 5 * gi}} },
	} {
		snap, h := calm, History{}
		p.StandbyHosts = nil
		s(&snap, &h)
		plan := Decide(snap, p, h, t0)
		for _, a := range plan.Actions {
			if a.Kind == ActionRefill {
				t.Errorf("%s: refilled", name)
			}
		}
		if !hasCode(plan.Notes, CodeStandbyRefill) && name != "hot" {
			t.Errorf("%s: no note on the waiting refill: %+v", name, plan.Notes)
		}
	}
}

func TestStandbyRetiresStaleWorkers(t *testing.T) {
	p := standbyPolicy(2)
	s := Snapshot{Nodes: workers(2, 50, 50), Hosts: roomy("pve1"), PendingPods: pending(1, 3000, gi, t0.Add(-time.Minute)),
		Standby: []StandbyWorker{standby(7001, "pve1", 8*24*time.Hour), {VMID: 7002, Name: "sb7002", Host: "pve1", Created: t0.Add(-time.Hour), Stale: "template 9000 changed since it was cloned"}}}
	plan := Decide(s, p, History{}, t0)
	var add, retire *Action
	for i := range plan.Actions {
		switch plan.Actions[i].Kind {
		case ActionAdd:
			add = &plan.Actions[i]
		case ActionRetire:
			retire = &plan.Actions[i]
		}
	}
	if add == nil || len(add.Wake) != 0 {
		t.Fatalf("stale standby workers were woken: %+v", plan.Actions)
	}
	if retire == nil || retire.VMID != 7001 || !hasCode(retire.Reasons, CodeStandbyRetire) {
		t.Fatalf("retire %+v", plan.Actions)
	}
	if plan.Standby.Ready != 0 || plan.Standby.Members[0].Stale == "" || plan.Standby.Members[1].Stale == "" {
		t.Errorf("standby %+v", plan.Standby)
	}
}

// TestStandbyNodesAreNotWorkers: a parked worker's Node counts nowhere; a
// waking one counts as capacity on its way, not twice.
func TestStandbyNodesAreNotWorkers(t *testing.T) {
	p := standbyPolicy(1)
	nodes := workers(2, 50, 50)
	parked := worker("sb7001", 0, 0, notReady, cordoned)
	parked.Standby, parked.VMID = true, 7001
	s := Snapshot{Nodes: append(nodes, parked), Standby: []StandbyWorker{standby(7001, "pve1", time.Hour)}, Hosts: roomy("pve1")}
	plan := Decide(s, p, History{}, t0)
	if plan.Workers.Current != 2 || plan.Workers.NotReady != 0 {
		t.Fatalf("workers %+v", plan.Workers)
	}
	// Waking: its Node Ready but still tainted, the operation in flight.
	s.Nodes[2].Ready = true
	s.Standby = nil
	s.Operations = []Operation{{Kind: OpProvision, VMID: 7001, Node: "sb7001", Step: StepWaking}}
	plan = Decide(s, p, History{}, t0)
	if plan.Workers.Current != 3 || plan.Workers.Provisioning != 1 {
		t.Fatalf("waking: workers %+v", plan.Workers)
	}
}
