package scaler

import (
	"cmp"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestReplaceDecisions: the rolling replacement's decision, one row per
// rule: one at a time, a surge of one within max_workers + 1 and host
// room, the old worker removed only once its new one is Ready, and every
// hold said.
func TestReplaceDecisions(t *testing.T) {
	const why = "cloned from template 9000 whose configuration has changed since"
	// Three workers at 40%: w0 (the oldest) and w1 drifted, w2 not.
	base := func() Snapshot {
		nodes := agedNodes(3, 40, 40)
		return Snapshot{Nodes: nodes, Hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 64 * gi}},
			Drifted: []DriftedWorker{{VMID: 5000, Node: "w0", Why: why}, {VMID: 5001, Node: "w1", Why: why}}}
	}
	// surge adds the new worker VM 5003 (Node w3) replacing w0.
	surge := func(ready bool) func(*Snapshot) {
		return func(s *Snapshot) {
			n := worker("w3", 0, 0, created(t0.Add(-time.Minute)))
			n.VMID, n.SystemUUID, n.Ready, n.Pods = 5003, "uuid-3", ready, nil
			n.Usage, n.Requests = Resources{}, Resources{}
			s.Nodes = append(s.Nodes, n)
			s.Replacements = []Replacement{{VMID: 5003, Node: "w3", Step: StepJoined, Ready: ready, ReplacesVMID: 5000, ReplacesUUID: "uuid-0", OldListed: true}}
		}
	}
	on := func(p *Policy) { p.MaxWorkers = 3; p.ReplaceDrifted = true; p.DownWindow = 10 * time.Minute }
	cases := []struct {
		name    string
		policy  func(*Policy)
		snap    func(*Snapshot)
		hist    History
		replace string // the Node an ActionReplace names ("": none)
		remove  string // the Node an ActionRemove names ("": none)
		// removeCode is the removal's first reason (default CodeReplace).
		adds       int
		removeCode Code
		holds      []Code
		held       string // in the CodeReplaceHeld hold
	}{
		{name: "off: drifted workers are only listed", policy: func(p *Policy) { p.MaxWorkers = 3; p.DownWindow = 10 * time.Minute }, holds: []Code{CodeDrifted}},
		{name: "the oldest drifted worker gets a new worker first, one only, at max_workers", policy: on, replace: "w0"},
		{name: "above max_workers no surge", policy: func(p *Policy) { on(p); p.CooldownAfterDown = 10 * time.Minute }, hist: History{LastScaleDown: ago(time.Minute)}, snap: func(s *Snapshot) {
			n := worker("x", 40, 40)
			n.VMID = 5009
			s.Nodes = append(s.Nodes, n)
		}, holds: []Code{CodeReplaceHeld}, held: "above max_workers 3"},
		{name: "no host room, no surge", policy: on, snap: func(s *Snapshot) { s.Hosts[0].MemoryFree = 10 * gi },
			holds: []Code{CodeReplaceHeld}, held: "no room for one more worker"},
		{name: "host room unknown, no surge", policy: on, snap: func(s *Snapshot) { s.Hosts = nil },
			holds: []Code{CodeReplaceHeld}, held: "host room unknown"},
		{name: "max_cores reached, no surge", policy: func(p *Policy) { on(p); p.VMCores = 4; p.MaxCores = 12 },
			holds: []Code{CodeReplaceHeld}, held: "max_cores 12"},
		{name: "an operation in flight holds it", policy: on, snap: func(s *Snapshot) {
			s.Operations = []Operation{{Kind: OpRefill, VMID: 5100, Step: StepStarted}}
		}, holds: []Code{CodeReplaceHeld}, held: "1 operation in flight"},
		{name: "a stuck VM holds it", policy: on, snap: func(s *Snapshot) { s.Operations = stuck(provisions(1)) },
			holds: []Code{CodeReplaceHeld}},
		{name: "a failure pauses the rollout", policy: func(p *Policy) { on(p); p.CooldownAfterFailure = 10 * time.Minute },
			hist: History{LastFailure: ago(time.Minute)}, holds: []Code{CodeReplaceHeld}, held: "paused after a failed operation"},
		{name: "a NotReady worker of ours holds it", policy: on, snap: func(s *Snapshot) { s.Nodes[2].Ready = false },
			holds: []Code{CodeReplaceHeld}, held: "not Ready"},
		{name: "a drifted worker that may not go is skipped for the next", policy: on, snap: func(s *Snapshot) {
			s.Nodes[0].Annotations = map[string]string{AnnotationScaleDownDisabled: "true"}
		}, replace: "w1"},
		{name: "a drifted worker of unknown identity is not replaced", policy: on, snap: func(s *Snapshot) {
			s.Nodes[0].SystemUUID, s.Nodes[1].SystemUUID = "", ""
		}, holds: []Code{CodeReplaceHeld}, held: "SMBIOS UUID is unknown"},
		{name: "paused: the surge is withheld", policy: on, snap: func(s *Snapshot) {
			s.Control = &Control{Pause: &Pause{By: "alice", Since: ago(time.Minute)}}
		}, holds: []Code{CodePaused}},
		{name: "the new worker not Ready yet: wait, no second surge, no scale-down", policy: on, snap: surge(false),
			holds: []Code{CodeReplaceHeld, CodeReplacing}, held: "waiting for the new worker VM 5003"},
		{name: "the new worker still provisioning: wait", policy: on, snap: func(s *Snapshot) {
			s.Operations = []Operation{{Kind: OpProvision, VMID: 5003, Step: StepStarted}}
			s.Replacements = []Replacement{{VMID: 5003, Step: StepStarted, ReplacesVMID: 5000, ReplacesUUID: "uuid-0"}}
		}, holds: []Code{CodeReplaceHeld}, held: "waiting for the new worker VM 5003"},
		{name: "the new worker stuck: the rollout says so", policy: on, snap: func(s *Snapshot) {
			s.Operations = stuck([]Operation{{Kind: OpProvision, VMID: 5003, Step: StepStarted}})
			s.Replacements = []Replacement{{VMID: 5003, Step: StepStarted, ReplacesVMID: 5000, ReplacesUUID: "uuid-0"}}
		}, holds: []Code{CodeReplaceHeld}, held: "is stuck"},
		{name: "the new worker Ready: the old one is removed, at max_workers + 1", policy: on, snap: surge(true), remove: "w0"},
		{name: "a PDB allowing no disruption holds the old one's removal", policy: on, snap: func(s *Snapshot) {
			surge(true)(s)
			s.Nodes[0].Pods[0].PDB = &PDBStatus{Name: "guard", DisruptionsAllowed: 0}
		}, holds: []Code{CodeReplaceHeld}, held: "PodDisruptionBudget guard allows no disruption"},
		{name: "the minimum Ready without the old one holds it", policy: func(p *Policy) { on(p); p.MinWorkers = 3 }, snap: func(s *Snapshot) {
			surge(true)(s)
			s.Nodes[2].Unschedulable = true // a person's cordon: not serving
		}, holds: []Code{CodeReplaceHeld}, held: "below the minimum of 3"},
		{name: "its pods must fit elsewhere", policy: on, snap: func(s *Snapshot) {
			surge(true)(s)
			s.Nodes[0].Pods[0].NodeSelector = map[string]string{"disk": "ssd"}
		}, holds: []Code{CodeReplaceHeld}, held: "fits on no other worker"},
		{name: "a failure pauses the old one's removal", policy: func(p *Policy) { on(p); p.CooldownAfterFailure = 10 * time.Minute },
			snap: surge(true), hist: History{LastFailure: ago(time.Minute)}, holds: []Code{CodeReplaceHeld}, held: "paused after a failed operation"},
		{name: "the marker names another machine under the vmid: not under way", policy: on, snap: func(s *Snapshot) {
			surge(true)(s)
			s.Replacements[0].ReplacesUUID, s.Replacements[0].OldListed = "uuid-other", false
		}, remove: "w3", removeCode: CodeAboveMax, holds: []Code{CodeReplaceHeld}, held: "this plan already acts"},
		{name: "the old worker gone: the next one's turn", policy: on, snap: func(s *Snapshot) {
			surge(true)(s)
			s.Nodes = s.Nodes[1:]
			s.Drifted = s.Drifted[1:]
			s.Replacements[0].OldListed = false
		}, replace: "w1"},
		{name: "a worker lost mid-replacement: the old one does not count toward the minimum, a worker is added", policy: on, snap: func(s *Snapshot) {
			surge(true)(s)
			s.Nodes = []Node{s.Nodes[0], s.Nodes[3]}
			s.Drifted = s.Drifted[:1]
		}, adds: 1, holds: []Code{CodeReplaceHeld}, held: "below the minimum of 2"},
		{name: "its drift not read this tick: still under way, nothing removed (the old one waits for the evidence, the new one is no worker too many)", policy: on, snap: func(s *Snapshot) {
			surge(true)(s)
			s.Drifted = nil
		}, holds: []Code{CodeReplaceHeld, CodeReplacing}, held: "its removal waits for that evidence"},
		{name: "max_age: an old worker is due too", policy: func(p *Policy) { on(p); p.MaxAge = 9*time.Hour + 30*time.Minute },
			snap: func(s *Snapshot) { s.Drifted = nil }, replace: "w0", held: ""},
		{name: "max_age alone does nothing with replace_drifted off", policy: func(p *Policy) { p.MaxWorkers = 3; p.MaxAge = time.Hour; p.DownWindow = 10 * time.Minute },
			snap: func(s *Snapshot) { s.Drifted = nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			s := base()
			if tc.snap != nil {
				tc.snap(&s)
			}
			plan := Decide(s, p, tc.hist, t0)
			var replace, remove string
			for _, a := range plan.Actions {
				switch a.Kind {
				case ActionReplace:
					if replace != "" {
						t.Errorf("two replacements in one plan\n%s", dump(plan))
					}
					replace = a.Node
					if !strings.HasPrefix(a.Reasons[0].Message, "worker "+a.Node+" drifted (") {
						t.Errorf("replace reason %q", a.Reasons[0].Message)
					}
				case ActionRemove:
					remove = a.Node
					if want := cmp.Or(tc.removeCode, CodeReplace); a.Reasons[0].Code != want {
						t.Errorf("removal of %s for %s, want %s", a.Node, a.Reasons[0].Code, want)
					}
				case ActionAdd:
				default:
					t.Errorf("unexpected action %+v\n%s", a, dump(plan))
				}
			}
			if plan.Added() != tc.adds {
				t.Errorf("adds %d, want %d\n%s", plan.Added(), tc.adds, dump(plan))
			}
			if replace != tc.replace || remove != tc.remove {
				t.Errorf("replace %q remove %q, want %q %q\n%s", replace, remove, tc.replace, tc.remove, dump(plan))
			}
			if len(plan.Actions) > 1 {
				t.Errorf("%d actions: one thing at a time\n%s", len(plan.Actions), dump(plan))
			}
			for _, c := range tc.holds {
				if !plan.Held(c) {
					t.Errorf("no %s hold\n%s", c, dump(plan))
				}
			}
			if tc.held != "" && !strings.Contains(reasonOf(plan, CodeReplaceHeld), tc.held) {
				t.Errorf("replace hold %q lacks %q\n%s", reasonOf(plan, CodeReplaceHeld), tc.held, dump(plan))
			}
			checkInvariants(t, p, s, tc.hist, plan)
		})
	}
}

// TestReplacementsOf: a VM's marker makes it a replacement while it is
// provisioned or serves, Ready only once its Node (by identity) is.
func TestReplacementsOf(t *testing.T) {
	machines := []Machine{
		{VMID: 7, UUID: "u7", Step: StepJoined, Replaces: "U1", ReplacesVMID: 1},
		{VMID: 8, UUID: "u8", Step: StepStarted, Replaces: "u2", ReplacesVMID: 2},
		{VMID: 9, UUID: "u9", Step: StepRemoving, Replaces: "u3", ReplacesVMID: 3},
		{VMID: 10, UUID: "u10", Step: StepJoined},
		{VMID: 11, UUID: "u11", Step: StepJoined, Replaces: "u4", ReplacesVMID: 4, ForStandby: true},
	}
	nodes := []Node{{Name: "w7", VMID: 7, SystemUUID: "u7", Ready: true}, {Name: "w8", VMID: 8, SystemUUID: "u8", Ready: true}}
	got := ReplacementsOf(machines, nodes)
	if len(got) != 2 {
		t.Fatalf("got %+v, want VMs 7 and 8", got)
	}
	if r := got[0]; r.VMID != 7 || !r.Ready || r.Node != "w7" || r.ReplacesUUID != "u1" || r.ReplacesVMID != 1 {
		t.Errorf("first %+v", r)
	}
	if r := got[1]; r.VMID != 8 || r.Ready {
		t.Errorf("a replacement still starting is not Ready: %+v", r)
	}
}

// agedNodes is n joined workers w0.. with SMBIOS UUIDs uuid-0.., the
// oldest first (w0 registered 10 hours ago, each next one an hour later).
func agedNodes(n int, cpu, mem float64) []Node {
	nodes := workers(n, cpu, mem)
	for i := range nodes {
		nodes[i].SystemUUID = fmt.Sprintf("uuid-%d", i)
		nodes[i].Created = t0.Add(-time.Duration(10-i) * time.Hour)
	}
	return nodes
}
