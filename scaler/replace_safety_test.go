package scaler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A hostile review of the rolling replacement: each case failed before
// its fix (under way by identity, not by this tick's drift; the marker
// checked; a resumed surge's failure counted; the pool cloned is the
// pool checked).

// TestReplaceSurgeNotRemovedOnPartialView: while a replacement's old
// worker is still there (same vmid, same SMBIOS UUID, joined), one
// observation that does not show it as due (its drift unreadable this
// tick: proxmox.Client.drift answers "" when the template's digest
// cannot be read; its Node re-registered, so max_age restarts) must not
// turn the surge into "a worker above max_workers" that scale-down
// removes at once, without any clock. Absence of drift is not evidence.
func TestReplaceSurgeNotRemovedOnPartialView(t *testing.T) {
	const why = "cloned from template 9000 whose configuration has changed since"
	base := func() Snapshot {
		nodes := agedNodes(3, 40, 40)
		n := worker("w3", 0, 0, created(t0.Add(-time.Minute)))
		n.VMID, n.SystemUUID, n.Pods = 5003, "uuid-3", nil
		n.Usage, n.Requests = Resources{}, Resources{}
		nodes = append(nodes, n)
		return Snapshot{Nodes: nodes, Hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 64 * gi}},
			Drifted:      []DriftedWorker{{VMID: 5000, Node: "w0", Why: why}, {VMID: 5001, Node: "w1", Why: why}},
			Replacements: []Replacement{{VMID: 5003, Node: "w3", Step: StepJoined, Ready: true, ReplacesVMID: 5000, ReplacesUUID: "uuid-0"}}}
	}
	on := func(p *Policy) { p.MaxWorkers = 3; p.ReplaceDrifted = true; p.DownWindow = 10 * time.Minute }
	cases := []struct {
		name   string
		policy func(*Policy)
		snap   func(*Snapshot)
	}{
		{"the template's digest unreadable this tick: no worker is drifted", on, func(s *Snapshot) { s.Drifted = nil }},
		{"the old worker's drift unreadable this tick, another still drifted", on, func(s *Snapshot) { s.Drifted = s.Drifted[1:] }},
		{"max_age: the old worker's Node re-registered (its age starts over)", func(p *Policy) { on(p); p.MaxAge = 9*time.Hour + 30*time.Minute },
			func(s *Snapshot) { s.Drifted = nil; s.Nodes[0].Created = t0.Add(-time.Minute) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			tc.policy(&p)
			s := base()
			tc.snap(&s)
			plan := Decide(s, p, History{}, t0)
			for _, a := range plan.Actions {
				// Finishing the replacement (the old worker, code replace)
				// would be sound; anything else is a worker destroyed
				// because one observation lacked the old one's drift.
				if a.Kind == ActionRemove && (a.Node != "w0" || a.Reasons[0].Code != CodeReplace) {
					t.Errorf("removes %s (%s) while VM 5003 still replaces VM 5000 (uuid-0), which is there and joined: one observation without its drift destroys a worker\n%s", a.Node, a.Reasons[0].Code, dump(plan))
				}
			}
		})
	}
}

// TestReplaceMarkerIsNotTrusted: the marker is a line in the VM's
// description, writable by anyone with VM.Config (and copied by a person
// cloning a VM of ours by hand). A marker alone must not make the old
// worker go: the marked VM must be a new worker of the old one's pool,
// not the old worker itself. Built through ReplacementsOf, as the daemon
// builds the snapshot.
func TestReplaceMarkerIsNotTrusted(t *testing.T) {
	const why = "cloned from template 9000 whose configuration has changed since"
	cases := []struct {
		name     string
		policy   func() Policy
		nodes    func() []Node
		machines func([]Node) []Machine
		old      string
	}{
		{
			name: "a Ready worker of pool general marked as the replacement of a drifted gpu worker",
			policy: func() Policy {
				p := poolPolicy()
				p.ReplaceDrifted = true
				return p
			},
			nodes: func() []Node {
				nodes := workers(3, 30, 30, inPool("general"))
				nodes[2].Name, nodes[2].Pool = "x0", "gpu"
				for i := range nodes {
					nodes[i].SystemUUID = fmt.Sprintf("uuid-%d", i)
					nodes[i].Created = t0.Add(-time.Duration(10-i) * time.Hour)
				}
				return nodes
			},
			machines: func(nodes []Node) []Machine {
				ms := machinesOf(nodes)
				ms[1].Replaces, ms[1].ReplacesVMID = "uuid-2", 5002 // general VM 5001 "replaces" gpu VM 5002
				return ms
			},
			old: "x0",
		},
		{
			name: "a drifted worker whose own VM names itself: removed with no new worker at all",
			policy: func() Policy {
				p := testPolicy()
				p.MaxWorkers, p.ReplaceDrifted = 3, true
				return p
			},
			nodes: func() []Node {
				nodes := workers(3, 30, 30)
				for i := range nodes {
					nodes[i].SystemUUID = fmt.Sprintf("uuid-%d", i)
					nodes[i].Created = t0.Add(-time.Duration(10-i) * time.Hour)
				}
				return nodes
			},
			machines: func(nodes []Node) []Machine {
				ms := machinesOf(nodes)
				ms[0].Replaces, ms[0].ReplacesVMID = "uuid-0", 5000
				return ms
			},
			old: "w0",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes := tc.nodes()
			machines := tc.machines(nodes)
			var oldVMID int
			for _, n := range nodes {
				if n.Name == tc.old {
					oldVMID = n.VMID
				}
			}
			s := Snapshot{Nodes: nodes, Hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 64 * gi}, {Name: "pve2", Online: true, MemoryFree: 64 * gi}},
				Drifted:      []DriftedWorker{{VMID: oldVMID, Node: tc.old, Why: why}},
				Replacements: ReplacementsOf(machines, nodes)}
			p := tc.policy()
			plan := Decide(s, p, History{}, t0)
			for _, a := range plan.Actions {
				// (A consolidation of it, on its own clocks, is not the marker's doing.)
				if a.Kind == ActionRemove && a.Node == tc.old && a.Reasons[0].Code == CodeReplace {
					t.Errorf("removes %s (%s) on the strength of a marker alone; no new worker of its pool was made for it\n%s", a.Node, a.Reasons[0].Code, dump(plan))
				}
			}
		})
	}
}

// machinesOf is the joined VMs of ours behind nodes (same vmid, UUID and
// pool).
func machinesOf(nodes []Node) []Machine {
	out := make([]Machine, len(nodes))
	for i, n := range nodes {
		out[i] = Machine{VMID: n.VMID, Name: n.Name, Host: "pve1", Running: true, Step: StepJoined, UUID: n.SystemUUID, Pool: n.Pool, Created: n.Created}
	}
	return out
}

// TestReplaceSurgeSurvivesAnUnreadableDriftTick is the reconciler's side
// of TestReplaceSurgeNotRemovedOnPartialView: VM 103 replaces VM 100
// (its marker), both joined, at max_workers + 1. One tick in which VM
// 100's drift cannot be told (its pool's template unreadable or, since
// 624911a, named by two VMs: proxmox.Client.drift answers "") must not
// drain and destroy a worker (here the new, still empty one, which the
// next tick replaces by a new surge: churn on every flake): no reconciler
// guard stands between the plan's above-max removal and the destroy.
func TestReplaceSurgeSurvivesAnUnreadableDriftTick(t *testing.T) {
	infra, os := newFakeInfra(), &fakeOS{applied: map[string]int{}}
	close(infra.release)
	for vmid := 100; vmid <= 103; vmid++ {
		infra.vms[vmid] = Machine{VMID: vmid, Name: fmt.Sprintf("w%d", vmid), Host: "pve1", Step: StepJoined, Running: true, Created: t0.Add(-time.Duration(110-vmid) * time.Hour), UUID: uuidOf(vmid)}
	}
	surge := infra.vms[103]
	surge.Replaces, surge.ReplacesVMID = NormalUUID(uuidOf(100)), 100
	infra.vms[103] = surge
	infra.next = 104
	// The new worker is empty yet: the first a removal above max_workers picks.
	fresh := worker("w103", 0, 0, func(n *Node) { n.VMID, n.SystemUUID, n.Pods, n.Created = 103, uuidOf(103), nil, t0.Add(-time.Minute) })
	cluster := &fakeCluster{infra: infra, nodes: map[int]Node{103: fresh}}
	p := testPolicy()
	p.MinWorkers, p.MaxWorkers, p.ReplaceDrifted = 2, 3, true
	r := NewReconciler(infra, os, cluster, p, ReconcileOptions{Now: func() time.Time { return t0 }})
	plan, err := r.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.Wait()
	for _, a := range plan.Actions {
		// Finishing the replacement (VM 100, code replace) would be sound.
		if a.Kind == ActionRemove && (a.VMID != 100 || a.Reasons[0].Code != CodeReplace) {
			t.Errorf("the plan removes %s (%s) while VM 103 replaces VM 100, both there: %s\n%+v", a.Node, a.Reasons[0].Code, a.Reasons[0].Message, plan.Holds)
		}
	}
	infra.mu.Lock()
	destroyed := slices.Clone(infra.destroyed)
	infra.mu.Unlock()
	if slices.ContainsFunc(destroyed, func(vmid int) bool { return vmid != 100 }) {
		t.Errorf("one tick without VM 100's drift: VMs %v destroyed", destroyed)
	}
}

// TestReplaceFailurePausesTheRollout: a replacement's new VM whose
// provisioning a restarted daemon resumes, and which fails and is
// destroyed, must pause the rollout like any failed surge (the commit:
// "a failed step backs off like any other failure before the rollout
// goes on"). A resumed operation's failure only backs its own VM off
// (Reconciler.finish), and that VM is gone: the very next tick clones a
// new surge, so a broken template after a restart loops clone, fail,
// destroy with no pause.
func TestReplaceFailurePausesTheRollout(t *testing.T) {
	infra, os := newFakeInfra(), &fakeOS{applied: map[string]int{}}
	close(infra.release)
	for vmid := 100; vmid <= 102; vmid++ {
		infra.vms[vmid] = Machine{VMID: vmid, Name: fmt.Sprintf("w%d", vmid), Host: "pve1", Step: StepJoined, Running: true, UUID: uuidOf(vmid)}
	}
	old := infra.vms[100]
	old.Drift = "cloned from template 9000 whose configuration has changed since"
	infra.vms[100] = old
	// The surge for VM 100, left at configured by the last daemon.
	infra.vms[103] = Machine{VMID: 103, Name: "w103", Host: "pve1", Step: StepConfigured, Stopped: true, Created: t0.Add(-time.Minute), UUID: uuidOf(103),
		Replaces: NormalUUID(uuidOf(100)), ReplacesVMID: 100}
	infra.failStart[103] = errors.New("start failed: the new template does not boot")
	infra.next = 104
	cluster := &fakeCluster{infra: infra}
	p := testPolicy()
	p.MinWorkers, p.MaxWorkers, p.ReplaceDrifted = 2, 3, true
	r := NewReconciler(infra, os, cluster, p, ReconcileOptions{Now: func() time.Time { return t0 }, BackoffMin: time.Minute, BackoffMax: 10 * time.Minute})
	ctx := context.Background()
	plan, err := r.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range plan.Actions {
		if a.Kind == ActionReplace {
			t.Fatalf("a second surge while VM 103 is resumed: %+v", a)
		}
	}
	r.Wait()
	infra.mu.Lock()
	destroyed := slices.Clone(infra.destroyed)
	infra.mu.Unlock()
	if !slices.Contains(destroyed, 103) {
		t.Fatalf("the failed surge VM 103 was not cleaned up (destroyed %v): the case does not arise", destroyed)
	}
	plan, err = r.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.Wait()
	for _, a := range plan.Actions {
		if a.Kind == ActionReplace {
			t.Errorf("the tick right after the failed surge was destroyed makes a new one (%s): no pause after the failure (failures counted %d, last error %q)", a.Node, r.Status().Failures, r.Status().LastError)
		}
	}
}

// poolRecorder is fakeInfra that records the pool of each Create.
type poolRecorder struct {
	*fakeInfra
	mu    sync.Mutex
	pools []string
}

func (p *poolRecorder) Create(ctx context.Context, pool string, hosts []string, replaces Machine) (Machine, error) {
	p.mu.Lock()
	p.pools = append(p.pools, pool)
	p.mu.Unlock()
	return p.fakeInfra.Create(ctx, pool, hosts, replaces)
}

// TestReplaceClonesThePoolItChecked: Decide sizes the surge by the old
// worker's Node label pve-autoscaler.io/pool (max_workers, host room,
// max_cores of that pool) and names it in Action.Pool; the reconciler
// ignores Action.Pool and clones the pool of the VM's tag. A Node whose
// label says general (relabelled by hand, or by its kubelet) on a VM
// tagged big makes a 64 GiB surge that no check allowed (the host has no
// room for one after the reserve).
func TestReplaceClonesThePoolItChecked(t *testing.T) {
	// Drifted, the engine sees the VM's pool and holds; due by max_age
	// only, the reconciler refuses.
	for _, byAge := range []bool{false, true} {
		t.Run(fmt.Sprintf("by max_age %v", byAge), func(t *testing.T) { replaceClonesThePoolItChecked(t, byAge) })
	}
}

func replaceClonesThePoolItChecked(t *testing.T, byAge bool) {
	infra := &poolRecorder{fakeInfra: newFakeInfra()}
	os := &fakeOS{applied: map[string]int{}}
	close(infra.release)
	cluster := &fakeCluster{infra: infra.fakeInfra, nodes: map[int]Node{}}
	for vmid := 100; vmid <= 102; vmid++ {
		pool := "general"
		if vmid == 102 {
			pool = "big" // its VM's tag; its Node says general
		}
		m := Machine{VMID: vmid, Name: fmt.Sprintf("w%d", vmid), Host: "pve1", Step: StepJoined, Running: true, UUID: uuidOf(vmid), Pool: pool}
		if vmid == 102 && !byAge {
			m.Drift = "cloned from template 9000 whose configuration has changed since"
		}
		infra.vms[vmid] = m
		cluster.nodes[vmid] = worker(m.Name, 60, 60, inPool("general"), func(n *Node) {
			n.VMID, n.SystemUUID, n.Created = vmid, uuidOf(vmid), t0.Add(-30*time.Minute)
			if vmid == 102 {
				n.Created = t0.Add(-2 * time.Hour)
			}
		})
	}
	infra.next = 104
	p := poolPolicy()
	p.ReplaceDrifted = true
	if byAge {
		p.MaxAge = time.Hour // only w102's Node is older
	}
	r := NewReconciler(infra, os, cluster, p, ReconcileOptions{Now: func() time.Time { return t0 }})
	plan, err := r.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.Wait()
	want := map[string]bool{}
	for _, a := range plan.Actions {
		if a.Kind == ActionReplace || a.Kind == ActionAdd {
			want[a.Pool] = true
		}
	}
	infra.mu.Lock()
	defer infra.mu.Unlock()
	for _, pool := range infra.pools {
		if !want[pool] {
			t.Errorf("cloned a VM of pool %q; the plan's actions checked and named pools %v\n%s", pool, want, dump(plan))
		}
	}
}

// TestReplaceStopsAfterFailedSurges: after MaxReplaceFailures new workers
// for replacements failed in a row, no further surge is made (a template
// that never boots would clone and destroy for ever); one fewer still
// replaces.
func TestReplaceStopsAfterFailedSurges(t *testing.T) {
	nodes := workers(3, 60, 60) // no scale-down: without one, 90%
	for i := range nodes {
		nodes[i].SystemUUID = fmt.Sprintf("uuid-%d", i)
	}
	s := Snapshot{Nodes: nodes, Hosts: []Host{{Name: "pve1", Online: true, MemoryFree: 64 * gi}},
		Drifted: []DriftedWorker{{VMID: 5000, Node: "w0", Why: "cloned from template 9000 whose configuration has changed since"}}}
	p := testPolicy()
	p.MaxWorkers, p.ReplaceDrifted = 3, true
	for _, tc := range []struct {
		failures int
		replace  bool
	}{{0, true}, {MaxReplaceFailures - 1, true}, {MaxReplaceFailures, false}} {
		plan := Decide(s, p, History{ReplaceFailures: tc.failures}, t0)
		got := slices.ContainsFunc(plan.Actions, func(a Action) bool { return a.Kind == ActionReplace })
		stopped := slices.ContainsFunc(plan.Holds, func(r Reason) bool {
			return r.Code == CodeReplaceHeld && strings.Contains(r.Message, "the rollout stops until the daemon restarts")
		})
		if got != tc.replace || stopped == tc.replace {
			t.Errorf("%d failed surges: replace %v (want %v), stop held %v\n%s", tc.failures, got, tc.replace, stopped, dump(plan))
		}
	}
}
