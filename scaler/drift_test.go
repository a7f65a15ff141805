package scaler

import (
	"strings"
	"testing"
)

// TestDriftListedNotActed: drifted joined workers are listed in the plan
// with a note, by their Node of identity; builds, standby and VMs at other
// steps are not; nothing is done about them.
func TestDriftListedNotActed(t *testing.T) {
	nodes := workers(2, 50, 50)
	nodes[0].SystemUUID, nodes[1].SystemUUID = "u0", "u1"
	machines := []Machine{
		{VMID: 5000, Name: "w0", UUID: "u0", Step: StepJoined, Drift: "cloned from template 9000 whose configuration has changed since"},
		{VMID: 5001, Name: "w1", UUID: "u1", Step: StepJoined},
		{VMID: 5002, Name: "w2", UUID: "u2", Step: StepStandby, Drift: "x", ForStandby: true},
		{VMID: 5003, Name: "w3", UUID: "u3", Step: StepApplying, Drift: "x"},
	}
	got := DriftedOf(machines, nodes)
	if len(got) != 1 || got[0].VMID != 5000 || got[0].Node != "w0" {
		t.Fatalf("drifted %+v, want only VM 5000 on Node w0", got)
	}
	plan := Decide(Snapshot{Nodes: nodes, Drifted: got}, testPolicy(), History{}, t0)
	if len(plan.Drifted) != 1 || !plan.Held(CodeDrifted) || !strings.Contains(reasonOf(plan, CodeDrifted), "w0: cloned from template 9000") {
		t.Errorf("plan drifted %+v, note %q", plan.Drifted, reasonOf(plan, CodeDrifted))
	}
	if len(plan.Actions) != 0 {
		t.Errorf("a drifted worker brought actions: %+v", plan.Actions)
	}
	if plan := Decide(Snapshot{Nodes: nodes}, testPolicy(), History{}, t0); plan.Held(CodeDrifted) || plan.Drifted != nil {
		t.Errorf("nothing drifted, yet %+v", plan.Drifted)
	}
}
