package scaler

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// A second hostile review of the rolling replacement: stray or forged
// markers. Each test failed before its fix.

// TestReplaceForgedMarkerRemovesNoWorkerThatIsNotDue: since deb90fc a
// replacement is under way whenever its old worker is ours by vmid and
// SMBIOS UUID, drifted or not, and finishReplace then drains and
// destroys that worker (CodeReplace). The marker is a line of a VM
// description (VM.Config): written on any Ready worker of the same pool
// and naming any other worker, it makes the daemon drain and destroy a
// worker that nothing holds due (no drift, no max_age), with no
// utilization, down window or new worker behind it. A replacement's old
// worker should be destroyed only on this tick's evidence that it is due
// (under way by identity may hold scale-down; it may not destroy).
func TestReplaceForgedMarkerRemovesNoWorkerThatIsNotDue(t *testing.T) {
	nodes := agedNodes(4, 40, 40) // 4 workers, none drifted, none aged
	machines := machinesOf(nodes)
	// w3 (VM 5003), an ordinary worker, is edited to "replace" w1.
	machines[3].Replaces, machines[3].ReplacesVMID = "uuid-1", 5001
	s := Snapshot{Nodes: nodes, Hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 64 * gi}},
		Replacements: ReplacementsOf(machines, nodes)}
	p := testPolicy()
	p.MaxWorkers, p.ReplaceDrifted = 4, true // at max: no scale-down by count either
	plan := Decide(s, p, History{}, t0)
	for _, a := range plan.Actions {
		if a.Kind == ActionRemove && a.Reasons[0].Code == CodeReplace {
			t.Errorf("removes %s (%s) though no worker is drifted or past max_age: a forged marker chose it\n%s", a.Node, a.Reasons[0].Message, dump(plan))
		}
	}
}

// TestReplaceMarkerNamingAStandbyHoldsNothingForEver: a marker naming a
// VM of ours that is listed but is no serving worker (here a standby,
// whose Node is a Standby Node, not a worker) makes replWait: every
// scale-down, above max_workers too, and the whole rollout are held
// for as long as that VM exists, and the marked VM is pinned by
// replacementBlocker. One forged description line pins capacity above
// max_workers indefinitely. A replacement only waits for an old VM that
// is (or was) a joined worker; a standby, a provisioning VM, or a VM of
// no Node for longer than confirm_absence is no replacement's old worker.
func TestReplaceMarkerNamingAStandbyHoldsNothingForEver(t *testing.T) {
	nodes := agedNodes(4, 20, 20) // max_workers 3 below: one too many
	machines := machinesOf(nodes)
	sb := Node{Name: "sb0", Managed: true, Standby: true, VMID: 5009, SystemUUID: "uuid-9", Host: "pve1", Allocatable: shape, Created: t0.Add(-20 * time.Hour)}
	nodes = append(nodes, sb)
	machines = append(machines, Machine{VMID: 5009, Name: "sb0", Host: "pve1", Stopped: true, Step: StepStandby, UUID: "uuid-9", Created: sb.Created})
	machines[3].Replaces, machines[3].ReplacesVMID = "uuid-9", 5009
	s := Snapshot{Nodes: nodes, Hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 64 * gi}},
		Standby:      []StandbyWorker{{VMID: 5009, Name: "sb0", Host: "pve1", Created: sb.Created}},
		Replacements: ReplacementsOf(machines, nodes)}
	p := testPolicy()
	p.MaxWorkers, p.ReplaceDrifted = 3, true
	plan := Decide(s, p, History{}, t0)
	if !slices.ContainsFunc(plan.Actions, func(a Action) bool { return a.Kind == ActionRemove && a.Reasons[0].Code == CodeAboveMax }) {
		t.Errorf("4 workers above max_workers 3, nothing removed: a marker naming standby VM 5009 holds every scale-down\n%s", dump(plan))
	}
}

// TestReplaceInvalidMarkerPinsNoWorker: replacing() says a marker naming
// its own VM (or a worker of another pool, or a worker two VMs claim) "is
// not taken for a replacement", but replacementBlocker still takes it for
// one: the marked VM is no scale-down candidate for as long as the VM
// it names is listed, i.e. for ever when it names itself, and with
// replace_drifted off too (replacementBlocker does not look at the
// policy). Self-markers on the workers keep the cluster above
// max_workers for ever.
func TestReplaceInvalidMarkerPinsNoWorker(t *testing.T) {
	for _, replace := range []bool{true, false} {
		t.Run(fmt.Sprintf("replace_drifted %v", replace), func(t *testing.T) {
			nodes := agedNodes(3, 20, 20)
			machines := machinesOf(nodes)
			for i := range machines {
				machines[i].Replaces, machines[i].ReplacesVMID = machines[i].UUID, machines[i].VMID
			}
			s := Snapshot{Nodes: nodes, Hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 64 * gi}},
				Replacements: ReplacementsOf(machines, nodes)}
			p := testPolicy()
			p.MaxWorkers, p.ReplaceDrifted = 2, replace
			plan := Decide(s, p, History{}, t0)
			if !slices.ContainsFunc(plan.Actions, func(a Action) bool { return a.Kind == ActionRemove && a.Reasons[0].Code == CodeAboveMax }) {
				t.Errorf("3 workers above max_workers 2, nothing removed: markers the engine does not take for replacements pin every worker\n%s", dump(plan))
			}
		})
	}
}

// TestReplaceSecondClaimDoesNotMakeTheSurgeAWorkerTooMany: a replacement
// under way (VM 5003 replaces w0, both joined, at max_workers + 1) and,
// on one observation, a second VM's description naming w0 too. Both
// markers are then "not taken for a replacement": nothing is under way,
// replWait is unset, and planScaleDown counts the surge as a worker too
// many and drains and destroys another worker as above max_workers on
// that one observation (the surge itself is pinned by replacementBlocker,
// so a worker that is not the surge goes). A claim the engine cannot
// trust should hold scale-down (as replWait does), not release it.
func TestReplaceSecondClaimDoesNotMakeTheSurgeAWorkerTooMany(t *testing.T) {
	nodes := agedNodes(4, 20, 20)
	nodes[3].Created = t0.Add(-time.Minute)
	machines := machinesOf(nodes)
	machines[3].Replaces, machines[3].ReplacesVMID = "uuid-0", 5000 // the real surge
	machines[2].Replaces, machines[2].ReplacesVMID = "uuid-0", 5000 // the second claim
	s := Snapshot{Nodes: nodes, Hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 64 * gi}},
		Drifted:      []DriftedWorker{{VMID: 5000, Node: "w0", Why: "cloned from template 9000 whose configuration has changed since"}},
		Replacements: ReplacementsOf(machines, nodes)}
	p := testPolicy()
	p.MaxWorkers, p.ReplaceDrifted = 3, true
	plan := Decide(s, p, History{}, t0)
	for _, a := range plan.Actions {
		if a.Kind == ActionRemove && a.Reasons[0].Code == CodeAboveMax {
			t.Errorf("removes %s as above max_workers on one observation of a second claim: the surge was counted as a worker too many\n%s", a.Node, dump(plan))
		}
	}
}
