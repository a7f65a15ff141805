package scaler

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSameWorker(t *testing.T) {
	m := Machine{VMID: 5001, Name: "w-5001", UUID: "AbC-1"}
	cases := []struct {
		name string
		n    Node
		want bool
	}{
		{"vmid and UUID agree (case aside)", Node{Name: "other-name", VMID: 5001, SystemUUID: "abc-1"}, true},
		{"same name and vmid, other UUID: another machine", Node{Name: "w-5001", VMID: 5001, SystemUUID: "abc-2"}, false},
		{"same name and UUID, other vmid label", Node{Name: "w-5001", VMID: 5002, SystemUUID: "abc-1"}, false},
		{"no vmid label", Node{Name: "w-5001", SystemUUID: "abc-1"}, false},
		{"the Node reports no UUID while the VM has one", Node{Name: "w-5001", VMID: 5001}, false},
	}
	for _, c := range cases {
		if got := SameWorker(m, c.n); got != c.want {
			t.Errorf("%s: SameWorker = %v, want %v", c.name, got, c.want)
		}
	}
	// Neither side knows a UUID (a snapshot file without them): vmid and name.
	bare := Machine{VMID: 7, Name: "w7"}
	if !SameWorker(bare, Node{Name: "w7", VMID: 7}) || SameWorker(bare, Node{Name: "w8", VMID: 7}) || SameWorker(bare, Node{Name: "w7", VMID: 7, SystemUUID: "x"}) {
		t.Error("without UUIDs, vmid and name together decide")
	}
}

func TestDecideResume(t *testing.T) {
	ready := &Node{Name: "w", VMID: 1, Ready: true}
	marked := func(step string) *Node {
		return &Node{Name: "w", VMID: 1, Ready: true, Annotations: map[string]string{AnnotationRemoval: step}}
	}
	busyNotReady := &Node{Name: "w", VMID: 1, Pods: []Pod{{Name: "db", OwnerKind: "StatefulSet"}}}
	onlyDaemons := &Node{Name: "w", VMID: 1, Pods: []Pod{{Name: "cni", OwnerKind: OwnerDaemonSet}, {Name: "static", OwnerKind: OwnerNode}}}
	// A drained Node as a removal leaves it: cordoned by us (our
	// annotation), only DaemonSet pods.
	cordoned := func(step string, pods ...Pod) *Node {
		n := marked(step)
		n.Unschedulable, n.Pods = true, pods
		if step == "" {
			n.Annotations = map[string]string{}
		}
		n.Annotations[AnnotationCordoned] = "true"
		return n
	}
	// Cordoned by a person: no annotation of ours.
	personCordoned := func(step string) *Node {
		n := marked(step)
		n.Unschedulable = true
		return n
	}
	// The same Node, cordoned by a person instead (no annotation of ours).
	byAPerson := func(step string) *Node {
		n := cordoned(step)
		delete(n.Annotations, AnnotationCordoned)
		return n
	}
	// An earlier version's park: cordoned with our standby taint, no annotation.
	oldPark := func(step string) *Node {
		n := byAPerson(step)
		n.Standby = true
		return n
	}
	app := Pod{Name: "web", OwnerKind: "ReplicaSet"}
	at := func(step string) Machine { return Machine{VMID: 1, Name: "w", Step: step, Running: true} }
	off := func(step string) Machine { return Machine{VMID: 1, Name: "w", Step: step, Stopped: true} }
	unknown := func(step string) Machine { return Machine{VMID: 1, Name: "w", Step: step} } // its host offline
	cases := []struct {
		name string
		f    MachineFacts
		want ResumeKind
		from string
	}{
		{"an operation of ours runs", MachineFacts{Machine: at(StepApplying), Busy: true}, ResumeNothing, ""},
		{"locked by PVE", MachineFacts{Machine: Machine{VMID: 1, Step: StepCloned, Locked: true}}, ResumeNothing, ""},
		{"a fresh clone while a creation runs", MachineFacts{Machine: at(StepCloned), Creating: true}, ResumeNothing, ""},
		{"a clone left over", MachineFacts{Machine: at(StepCloned)}, ResumeProvision, ""},
		{"standby", MachineFacts{Machine: at(StepStandby)}, ResumeNothing, ""},
		{"dry run leaves provisions", MachineFacts{Machine: at(StepStarted), DryRun: true}, ResumeNothing, ""},
		{"a worker with its Node", MachineFacts{Machine: at(StepJoined), Node: ready}, ResumeNothing, ""},
		// Scenario 4: a joined VM whose Node is missing is never removed on one observation.
		{"joined, Node not seen: confirm", MachineFacts{Machine: at(StepJoined)}, ResumeConfirm, ""},
		{"joined, Node confirmed gone", MachineFacts{Machine: at(StepJoined), NodeGone: true}, ResumeRemoveNodeless, ""},
		{"joined, Node gone, dry run", MachineFacts{Machine: at(StepJoined), NodeGone: true, DryRun: true}, ResumeNothing, ""},
		// An old decision is not carried out on a new view: a removal goes
		// on only past its drain, on a cordoned Node without workload.
		{"joined, removal marked on its Node before its drain: withdrawn, not drained again", MachineFacts{Machine: at(StepJoined), Node: marked(RemovalMarked)}, ResumeWithdraw, ""},
		{"joined, marked drained on a cordoned Node", MachineFacts{Machine: at(StepJoined), Node: cordoned(RemovalDrained)}, ResumeRemove, RemovalDrained},
		{"joined, marked drained, but schedulable again", MachineFacts{Machine: at(StepJoined), Node: marked(RemovalDrained)}, ResumeWithdraw, ""},
		{"joined for standby: park", MachineFacts{Machine: Machine{VMID: 1, Step: StepJoined, ForStandby: true}}, ResumePark, RemovalDrained},
		{"removing past its drain: from its annotation", MachineFacts{Machine: at(StepRemoving), Node: cordoned(RemovalDrained, Pod{Name: "cni", OwnerKind: OwnerDaemonSet})}, ResumeRemove, RemovalDrained},
		{"removing, reset recorded on the Node", MachineFacts{Machine: at(StepRemoving), Node: cordoned(RemovalReset)}, ResumeRemove, RemovalReset},
		{"removing before its drain finished (a crash, a lost Lease)", MachineFacts{Machine: at(StepRemoving), Node: cordoned(RemovalMarked)}, ResumeWithdraw, ""},
		{"removing, drained Node schedulable again", MachineFacts{Machine: at(StepRemoving), Node: marked(RemovalDrained)}, ResumeWithdraw, ""},
		{"removing, drained Node holds pods again", MachineFacts{Machine: at(StepRemoving), Node: cordoned(RemovalDrained, app)}, ResumeWithdraw, ""},
		{"removing, no mark on its Node", MachineFacts{Machine: at(StepRemoving), Node: cordoned("")}, ResumeWithdraw, ""},
		// Only our own cordon says the drain was ours and done (issue 15).
		{"removing, marked drained, cordoned by a person: withdrawn", MachineFacts{Machine: at(StepRemoving), Node: byAPerson(RemovalDrained)}, ResumeWithdraw, ""},
		{"removing, reset recorded, cordoned by a person: withdrawn", MachineFacts{Machine: at(StepRemoving), Node: byAPerson(RemovalReset)}, ResumeWithdraw, ""},
		{"joined, marked drained, cordoned by a person: withdrawn", MachineFacts{Machine: at(StepJoined), Node: byAPerson(RemovalDrained)}, ResumeWithdraw, ""},
		{"parking, annotation cleared, cordoned by a person: withdrawn", MachineFacts{Machine: off(StepParking), Node: byAPerson("")}, ResumeWithdraw, ""},
		{"parking, an earlier version's park (standby taint, no annotation): finished", MachineFacts{Machine: off(StepParking), Node: oldPark("")}, ResumePark, RemovalDrained},
		{"removing, Node not seen: confirm", MachineFacts{Machine: at(StepRemoving)}, ResumeConfirm, ""},
		{"removing, Node confirmed gone before its reset: withdrawn, not destroyed", MachineFacts{Machine: at(StepRemoving), NodeGone: true}, ResumeWithdraw, ""},
		// Scenario 9: a reset sent (and maybe done) is not retried forever.
		{"killed after sending a reset", MachineFacts{Machine: at(StepResetting), Node: cordoned(RemovalDrained)}, ResumeRemove, RemovalDrained},
		{"resetting, Node schedulable again: the reset never arrived, not removed", MachineFacts{Machine: at(StepResetting), Node: marked(RemovalDrained)}, ResumeKeep, ""},
		{"resetting, Node holds pods: the reset never arrived, not removed", MachineFacts{Machine: at(StepResetting), Node: cordoned(RemovalDrained, app)}, ResumeKeep, ""},
		{"resetting, Node gone: removal goes on", MachineFacts{Machine: at(StepResetting), NodeGone: true}, ResumeRemove, RemovalDrained},
		{"killed after the reset, before its record on the Node", MachineFacts{Machine: at(StepReset), Node: cordoned(RemovalDrained)}, ResumeRemove, RemovalReset},
		{"reset, Node gone: destroyed", MachineFacts{Machine: at(StepReset), NodeGone: true}, ResumeRemove, RemovalReset},
		{"reset (skipped, unreachable), Node uncordoned by a person: kept", MachineFacts{Machine: at(StepReset), Node: marked(RemovalDrained)}, ResumeKeep, ""},
		{"reset (skipped, unreachable), Node holds pods again: kept", MachineFacts{Machine: at(StepReset), Node: cordoned(RemovalDrained, app)}, ResumeKeep, ""},
		{"reset, Node under a person's cordon: kept", MachineFacts{Machine: at(StepReset), Node: personCordoned(RemovalDrained)}, ResumeKeep, ""},
		{"resetting, Node under a person's cordon: kept", MachineFacts{Machine: at(StepResetting), Node: personCordoned(RemovalDrained)}, ResumeKeep, ""},
		// Scenario 8: a park whose drain failed records joined first; a park with a cleared annotation was drained.
		{"parking, annotation cleared, cordoned", MachineFacts{Machine: at(StepParking), Node: cordoned("")}, ResumePark, RemovalDrained},
		{"parking, drained, cordoned", MachineFacts{Machine: at(StepParking), Node: cordoned(RemovalDrained)}, ResumePark, RemovalDrained},
		{"parking, annotation cleared, schedulable", MachineFacts{Machine: at(StepParking), Node: ready}, ResumeWithdraw, ""},
		{"parking, drained Node holds pods again", MachineFacts{Machine: at(StepParking), Node: cordoned("", app)}, ResumeWithdraw, ""},
		{"parking, Node not seen: confirm before stopping", MachineFacts{Machine: at(StepParking)}, ResumeConfirm, ""},
		{"parking, Node confirmed gone: withdrawn", MachineFacts{Machine: at(StepParking), NodeGone: true}, ResumeWithdraw, ""},
		{"parking, VM stopped, past its drain: finished", MachineFacts{Machine: off(StepParking), Node: cordoned("")}, ResumePark, RemovalDrained},
		{"parking, VM off, Node confirmed gone: finished", MachineFacts{Machine: off(StepParking), NodeGone: true}, ResumePark, RemovalDrained},
		{"parking, VM stopped, Node schedulable: withdrawn, not finished", MachineFacts{Machine: off(StepParking), Node: ready}, ResumeWithdraw, ""},
		{"parking, VM stopped, Node holds pods: withdrawn, not finished", MachineFacts{Machine: off(StepParking), Node: cordoned("", app)}, ResumeWithdraw, ""},
		{"parking, VM stopped, before its drain finished: withdrawn", MachineFacts{Machine: off(StepParking), Node: cordoned(RemovalMarked)}, ResumeWithdraw, ""},
		{"parking, VM state unknown (host offline), Node schedulable: not finished", MachineFacts{Machine: unknown(StepParking), Node: ready}, ResumeWithdraw, ""},
		{"parking, VM state unknown, past its drain: left alone", MachineFacts{Machine: unknown(StepParking), Node: cordoned("")}, ResumeKeep, ""},
		{"parking, VM state unknown, Node gone: left alone", MachineFacts{Machine: unknown(StepParking), NodeGone: true}, ResumeKeep, ""},
		// A Node object a new machine took over under a reused name keeps the
		// old machine's mark: it is not about this one.
		{"joined, a mark written for another machine", MachineFacts{Machine: Machine{VMID: 1, Name: "w", Step: StepJoined, UUID: "new"},
			Node: &Node{Name: "w", VMID: 1, Ready: true, SystemUUID: "new", Annotations: map[string]string{AnnotationRemoval: RemovalReset, AnnotationRemovalOf: "old"}}}, ResumeNothing, ""},
		{"joined, a mark written for this machine", MachineFacts{Machine: Machine{VMID: 1, Name: "w", Step: StepJoined, UUID: "new"},
			Node: &Node{Name: "w", VMID: 1, Ready: true, SystemUUID: "new", Annotations: map[string]string{AnnotationRemoval: RemovalDrained, AnnotationRemovalOf: "NEW", AnnotationCordoned: "true"}, Unschedulable: true}}, ResumeRemove, RemovalDrained},
		{"parking before its drain finished", MachineFacts{Machine: at(StepParking), Node: cordoned(RemovalMarked)}, ResumeWithdraw, ""},
		{"waking", MachineFacts{Machine: at(StepWaking)}, ResumeWake, ""},
		{"retiring", MachineFacts{Machine: at(StepRetiring)}, ResumeRetire, ""},
		// Scenario 3: the daemon was down past max_provision_time; the worker joined meanwhile.
		{"expired, its Node Ready: adopt", MachineFacts{Machine: at(StepApplying), Node: ready, Expired: true}, ResumeAdopt, ""},
		{"expired, Node not Ready but holds pods: keep", MachineFacts{Machine: at(StepApplying), Node: busyNotReady, Expired: true}, ResumeKeep, ""},
		{"expired, Node with DaemonSet pods only: provision (and clean up)", MachineFacts{Machine: at(StepApplying), Node: onlyDaemons, Expired: true}, ResumeProvision, ""},
		{"expired, no Node", MachineFacts{Machine: at(StepStarted), Expired: true}, ResumeProvision, ""},
		{"no step tag (a hand edit): left alone", MachineFacts{Machine: at("")}, ResumeKeep, ""},
		{"a step from a newer daemon: left alone", MachineFacts{Machine: at("installing")}, ResumeKeep, ""},
		{"not expired", MachineFacts{Machine: at(StepApplying), Node: ready}, ResumeProvision, ""},
	}
	for _, c := range cases {
		got := DecideResume(c.f)
		if got.Kind != c.want || got.From != c.from {
			t.Errorf("%s: %+v, want %q from %q", c.name, got, c.want, c.from)
		}
		if got.Why == "" {
			t.Errorf("%s: no reason given", c.name)
		}
	}
}

func TestDisagreement(t *testing.T) {
	joined := func(vmid int) Machine {
		return Machine{VMID: vmid, Name: "w" + string(rune('0'+vmid)), Step: StepJoined, UUID: uuidOf(vmid)}
	}
	nodeOf := func(m Machine) Node {
		return Node{Name: m.Name, VMID: m.VMID, SystemUUID: m.UUID, Managed: true, Ready: true}
	}
	a, b, c := joined(1), joined(2), joined(3)
	renamed := nodeOf(c)
	renamed.SystemUUID = uuidOf(9) // vmid label 3, another machine
	cases := []struct {
		name string
		o    Observation
		want string // a part of the message; "" for none
	}{
		{"all agree", Observation{Machines: []Machine{a, b, c}, Nodes: []Node{nodeOf(a), nodeOf(b), nodeOf(c)}}, ""},
		{"one VM lacks its Node: left to confirmation", Observation{Machines: []Machine{a, b, c}, Nodes: []Node{nodeOf(a), nodeOf(b)}}, ""},
		{"one Node lacks its VM: left to confirmation", Observation{Machines: []Machine{a, b}, Nodes: []Node{nodeOf(a), nodeOf(b), nodeOf(c)}}, ""},
		// Scenario 1: our VMs drop out of PVE's list (VM.Audit lost, another PVE, tags removed).
		{"no VM listed", Observation{Nodes: []Node{nodeOf(a), nodeOf(b)}}, "none of the 2 Nodes"},
		{"a single Node, no VM listed: left to confirmation", Observation{Nodes: []Node{nodeOf(a)}}, ""},
		// A kubeconfig pointing at another cluster.
		{"no Node of ours", Observation{Machines: []Machine{a, b}}, "none of our 2 joined VMs"},
		{"two would go", Observation{Machines: []Machine{a, b, c}, Nodes: []Node{nodeOf(a)}}, "more than one would go"},
		{"an identity conflict: one Node and one VM", Observation{Machines: []Machine{a, b, c}, Nodes: []Node{nodeOf(a), nodeOf(b), renamed}}, "1 Nodes without a VM and 1 VMs without a Node"},
		{"busy VMs are ours to miss", Observation{Machines: []Machine{a, b, c}, Nodes: []Node{nodeOf(a)}, Busy: map[int]bool{2: true, 3: true}}, ""},
		{"provisioning VMs have no Node yet", Observation{Machines: []Machine{a, {VMID: 4, Step: StepApplying}, {VMID: 5, Step: StepStarted}}, Nodes: []Node{nodeOf(a)}}, ""},
		{"nothing at all", Observation{}, ""},
	}
	for _, c := range cases {
		got := c.o.Disagreement()
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestAbsenceNeedsTwoReadsApart(t *testing.T) {
	a := Absence{}
	if a.Seen(1, t0, ConfirmAbsence) {
		t.Fatal("one read confirmed an absence")
	}
	if a.Seen(1, t0.Add(ConfirmAbsence-time.Second), ConfirmAbsence) {
		t.Fatal("two reads less than ConfirmAbsence apart confirmed it")
	}
	if !a.Seen(1, t0.Add(ConfirmAbsence), ConfirmAbsence) {
		t.Fatal("two reads ConfirmAbsence apart did not")
	}
	a.Present(1)
	if a.Seen(1, t0.Add(2*ConfirmAbsence), ConfirmAbsence) {
		t.Fatal("a read that found it present did not start over")
	}
	a.Keep(map[int]bool{})
	if len(a) != 0 {
		t.Fatal("Keep kept what it was not told to")
	}
	// A clock that went back does not confirm.
	a.Seen(2, t0, ConfirmAbsence)
	if a.Seen(2, t0.Add(-time.Hour), ConfirmAbsence) || a.Seen(2, t0.Add(-time.Hour+ConfirmAbsence/2), ConfirmAbsence) {
		t.Fatal("a clock set back confirmed an absence")
	}
}

func TestClassify(t *testing.T) {
	ms := []Machine{
		{VMID: 1, Step: StepJoined},
		{VMID: 2, Step: StepStandby},
		{VMID: 3, Step: StepParking},
		{VMID: 4, Step: StepRemoving},
		{VMID: 5, Step: StepResetting},
		{VMID: 6, Step: StepRetiring},
		{VMID: 7, Step: StepApplying, ForStandby: true},
		{VMID: 8, Step: StepJoined, ForStandby: true},
		{VMID: 9, Step: StepCloned},
		{VMID: 10, Step: StepStarted},
		{VMID: 11, Step: StepStarted}, // running in this process
		{VMID: 12, Step: StepStandby}, // ended while listed: a wake
	}
	nodes := []Node{{Name: "n1", VMID: 1}} // VM 1's Node (no UUIDs: vmid and name decide)
	ms[0].Name = "n1"
	ops, standby := Classify(ms, Counting{Nodes: nodes, Running: map[int]bool{11: true}, Stale: map[int]Operation{12: {Kind: OpProvision, VMID: 12, Step: StepJoined}}, Fresh: 1})
	got := map[int]OperationKind{}
	for _, op := range ops {
		got[op.VMID] = op.Kind
	}
	want := map[int]OperationKind{3: OpRemove, 4: OpRemove, 5: OpRemove, 6: OpRetire, 7: OpRefill, 8: OpRefill, 10: OpProvision, 12: OpProvision}
	if len(got) != len(want) {
		t.Errorf("operations %v, want %v", got, want)
	}
	for vmid, k := range want {
		if got[vmid] != k {
			t.Errorf("VM %d: %q, want %q", vmid, got[vmid], k)
		}
	}
	if len(standby) != 1 || standby[0].VMID != 2 {
		t.Errorf("standby %+v", standby)
	}
	// Without a creation in flight, a clone is a provisioning left over.
	ops, _ = Classify([]Machine{{VMID: 9, Step: StepCloned}}, Counting{})
	if len(ops) != 1 || ops[0].Kind != OpProvision {
		t.Errorf("a left-over clone: %+v", ops)
	}
	// A joined worker whose Node is not seen counts as capacity on its way.
	nodeless := []Machine{{VMID: 1, Name: "n1", Step: StepJoined, UUID: "u1"}}
	other := []Node{{Name: "n1", VMID: 1, SystemUUID: "u2"}}
	ops, _ = Classify(nodeless, Counting{Nodes: other})
	if len(ops) != 1 || ops[0].Kind != OpProvision {
		t.Errorf("a joined worker without its Node: %+v", ops)
	}
	// Once its Node is confirmed gone, it is no capacity: it is replaced.
	if ops, _ = Classify(nodeless, Counting{Nodes: other, NodeGone: map[int]bool{1: true}}); len(ops) != 0 {
		t.Errorf("a joined worker whose Node is confirmed gone: %+v", ops)
	}
}

// TestClassifyStuck: a provisioning VM past max_provision_time, and a VM
// the reconciler keeps or backs off, are operations marked Stuck (no
// capacity on its way); a joined VM without its Node is not, however old
// (a view that lacks Nodes never adds workers without bound), nor a fresh one.
func TestClassifyStuck(t *testing.T) {
	ms := []Machine{
		{VMID: 1, Step: StepApplying, Created: ago(20 * time.Minute)},                     // past its deadline
		{VMID: 2, Step: StepApplying, Created: ago(time.Minute)},                          // on its way
		{VMID: 3, Step: StepJoined, Name: "n3", UUID: "u3", Created: ago(24 * time.Hour)}, // its Node not seen
		{VMID: 4, Step: StepStarted, Created: ago(time.Minute)},                           // kept
		{VMID: 5, Step: StepConfigured, ForStandby: true, Created: ago(time.Hour)},        // a standby build past its deadline
		{VMID: 6, Step: StepResetting, Created: ago(time.Hour)},                           // a removal: no deadline
	}
	ops, _ := Classify(ms, Counting{Now: t0, MaxProvisionTime: 15 * time.Minute, Stuck: map[int]string{4: "kept: its Node holds pods"}})
	got := map[int]string{}
	for _, op := range ops {
		got[op.VMID] = op.Stuck
	}
	want := map[int]string{1: "past max_provision_time 15m0s", 2: "", 3: "", 4: "kept: its Node holds pods", 5: "past max_provision_time 15m0s", 6: ""}
	for vmid, w := range want {
		if g, ok := got[vmid]; !ok || g != w {
			t.Errorf("VM %d: stuck %q (listed %v), want %q", vmid, g, ok, w)
		}
	}
	// Without a deadline (a snapshot file, a test) nothing expires.
	ops, _ = Classify(ms[:1], Counting{Now: t0})
	if len(ops) != 1 || ops[0].Stuck != "" {
		t.Errorf("no max_provision_time: %+v", ops)
	}
}

// TestRunStepsResumesAfterTheRecordedStep: an operation is a list of
// steps; a restarted daemon runs those after the one recorded last, and
// each step it completes is recorded on the operation.
func TestRunStepsResumesAfterTheRecordedStep(t *testing.T) {
	cases := []struct {
		from string
		want []string
	}{
		{"", []string{"b", "c", "d"}}, // "a" is done elsewhere (nil)
		{"a", []string{"b", "c", "d"}},
		{"b", []string{"c", "d"}},
		{"d", nil},
	}
	for _, c := range cases {
		r := NewReconciler(nil, nil, nil, Policy{}, ReconcileOptions{})
		op := &operation{kind: OpRemove, vmid: 1}
		var ran []string
		steps := []step{{"a", nil}}
		for _, name := range []string{"b", "c", "d"} {
			steps = append(steps, step{name, func() error { ran = append(ran, name); return nil }})
		}
		if err := r.runSteps(op, c.from, steps); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ran, c.want) {
			t.Errorf("from %q ran %v, want %v", c.from, ran, c.want)
		}
		if len(c.want) > 0 && op.step != "d" {
			t.Errorf("from %q: the operation's step is %q, want d", c.from, op.step)
		}
	}
	// A step this build does not know runs nothing.
	r0 := NewReconciler(nil, nil, nil, Policy{}, ReconcileOptions{})
	if err := r0.runSteps(&operation{vmid: 1}, "from-a-newer-daemon", []step{{"a", func() error { t.Error("ran after an unknown step"); return nil }}}); err == nil {
		t.Error("an unknown step was taken for none")
	}
	// A failing step stops the list and names itself.
	r := NewReconciler(nil, nil, nil, Policy{}, ReconcileOptions{})
	op := &operation{kind: OpRemove, vmid: 1}
	err := r.runSteps(op, "", []step{{"x", func() error { return errors.New("boom") }}, {"y", func() error { t.Error("y ran after x failed"); return nil }}})
	if err == nil || !strings.Contains(err.Error(), "x: boom") {
		t.Errorf("error %v", err)
	}
}
