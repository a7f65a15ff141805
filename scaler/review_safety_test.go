package scaler

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Found by a hostile review (now fixed): the "last worker" clause in consider() (rest <= 0 &&
// empty) fires for the last *schedulable* worker, not the last worker,
// and does not look at min_workers. With min_workers 2 and the two other
// workers cordoned by a person (maintenance: cordoned, pods still running),
// the only schedulable worker is removed: 0 schedulable workers left while
// min_workers is 2.
func TestTheLastSchedulableWorkerStaysAboveMin(t *testing.T) {
	p := testPolicy()
	p.MinWorkers, p.DownWindow = 2, 5*time.Minute
	e := worker("e", 2, 4, func(n *Node) {
		n.Pods = []Pod{{Namespace: "kube-system", Name: "ds", OwnerKind: OwnerDaemonSet, Requests: n.Requests}}
	})
	e.VMID = 5000
	c1 := worker("c1", 40, 40, cordoned) // a person's cordon: pods still run
	c1.VMID = 5001
	c2 := worker("c2", 40, 40, cordoned)
	c2.VMID = 5002
	s := Snapshot{Nodes: []Node{e, c1, c2}}
	h := History{Empty: map[string]time.Time{"e": t0.Add(-10 * time.Minute)}}
	plan := Decide(s, p, h, t0)
	if a, ok := plan.Removal(); ok {
		t.Errorf("removes %s, the only schedulable worker, with min_workers %d and the others cordoned by a person: %+v", a.Node, p.MinWorkers, a.Reasons)
	}
}

// Found by a hostile review (now fixed): removeNodeless compares the Ready workers with
// Policy.MinWorkers, which with pools is unused (policy.min_workers may
// not be set; it stays at its default). A pool at its minimum loses a
// worker whose Node is gone before its replacement is Ready, unlike a
// single-pool cluster ("below min_workers without it: replaced first").
func TestANodelessVMIsKeptAtItsPoolsMinimum(t *testing.T) {
	w := newWorld(t, 3, func(p *Policy, _ *ReconcileOptions) {
		// daemon.ScalerPolicy with pools: MinWorkers stays at config's default 2
		p.MinWorkers = 2
		p.Pools = []Pool{
			{Name: DefaultPool, MinWorkers: 3, MaxWorkers: 6, Worker: shape, VMMemory: 8 * gi, VMCores: 4},
			{Name: "gpu", MinWorkers: 0, MaxWorkers: 1, Worker: shape, VMMemory: 8 * gi, VMCores: 4},
		}
	})
	w.tick(t, 0)
	w.infra.release = make(chan struct{}) // the replacement's clone waits
	w.cluster.absent[3] = true
	for range 4 {
		w.clock.Add(ConfirmAbsence)
		if _, err := w.r.Tick(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if d := w.destroyed(); len(d) != 0 || slices.ContainsFunc(w.r.Status().Operations, func(op Operation) bool { return op.Kind == OpRemove }) {
		t.Errorf("VM 3 removed (destroyed %v) with 2 Ready workers in a pool whose min_workers is 3", d)
	}
	close(w.infra.release)
	w.r.Wait()
}

// Found by a hostile review (now fixed): with remove_undrained, every drain error but a
// ForeignCordonError counts as "drain did not finish, remove anyway",
// including errors before a single pod was evicted: kube.Drain returns
// the cordon's own API error raw (kube/nodes.go Drain: Cordon first), and
// the drain helper fails at once, evicting nothing, when one pod is
// protected (safe-to-evict=false / do-not-disrupt, protectedFilter) or the
// pod list fails. The worker is then reset and destroyed with all its pods.
func TestRemoveUndrainedOnlyAfterATimeout(t *testing.T) {
	for _, drainErr := range []string{
		`cordon w3: Get "https://10.0.0.1:6443/api/v1/nodes/w3": dial tcp 10.0.0.1:6443: connect: connection refused`,
		`drain of w3 did not finish, node uncordoned and kept: held by default/db-0 (pod default/db-0 is annotated karpenter.sh/do-not-disrupt=true): pod default/db-0 is annotated karpenter.sh/do-not-disrupt=true`,
	} {
		w := newWorld(t, 3, func(_ *Policy, o *ReconcileOptions) { o.RemoveUndrained = true })
		w.cluster.drainErr = errorString(drainErr)
		w.infra.mu.Lock()
		m := w.infra.vms[3]
		w.infra.mu.Unlock()
		w.r.startRemoval(removal{m: m, node: "w3"})
		w.r.Wait()
		if d := w.destroyed(); len(d) != 0 || w.os.resets != 0 {
			t.Errorf("drain failed before evicting anything (%s): reset %d, destroyed %v", drainErr, w.os.resets, d)
		}
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// Found by a hostile review (now fixed): a VM built for standby at pool-joined is parked
// (drain skipped: From RemovalDrained) whatever its Node shows: a Node a
// person untainted and put to use (schedulable, holding pods) is cordoned
// and its VM powered off without a drain. Retire got this check (57d8812);
// park-on-resume did not.
func TestAStandbyBuildInUseIsNotParked(t *testing.T) {
	m := Machine{VMID: 7, Name: "w7", Step: StepJoined, ForStandby: true, UUID: uuidOf(7), Running: true}
	n := worker("w7", 50, 50, func(n *Node) { n.VMID, n.SystemUUID = 7, uuidOf(7) }) // schedulable, a ReplicaSet pod
	v := DecideResume(MachineFacts{Machine: m, Node: &n})
	if v.Kind == ResumePark {
		t.Errorf("verdict %q (%s) for a standby build whose Node is schedulable and holds pods: it is powered off undrained", v.Kind, v.Why)
	}
}

// Found by a hostile review (now fixed): a Node is deleted on "its VM is gone" (two direct reads,
// a sane list) even while the Node is Ready: its kubelet heartbeated
// within the last node-monitor grace period, which a machine whose VM was
// really destroyed a minute ago cannot do. proxmox.url switched to another
// PVE cluster that has a template of the same name (staging and production
// built alike), or a worker moved by qm remote-migrate: the one worker's
// Node, Ready and holding every pod, is deleted (its pods are garbage
// collected, no drain). With one managed Node the wholesale check
// (managed > 1) does not hold.
func TestAReadyNodeIsNeverDeletedForItsVM(t *testing.T) {
	w := newWorld(t, 1, nil)
	w.tick(t, 0)
	w.infra.mu.Lock()
	delete(w.infra.vms, 1) // the other PVE cluster: no VM 1 there
	w.infra.mu.Unlock()
	// The machine still runs: its Node stays Ready with its pods.
	w.cluster.orphans = []Node{worker("w1", 50, 50, func(n *Node) { n.VMID, n.SystemUUID = 1, uuidOf(1) })}
	for range 3 {
		w.tick(t, ConfirmAbsence)
	}
	if d := w.deleted(); slices.Contains(d, "w1") {
		t.Errorf("deleted the Ready Node w1 (kubelet alive) on VM-gone reads: %v", d)
	}
}

// Found by a hostile review (now fixed): podsFit moves a bound pod by
// CPU and memory only (Pod carries no selector, tolerations or extended
// requests), so a GPU pool's worker running the one pod that needs its
// device is "unneeded" whenever a general worker has the CPU and memory:
// it is drained and destroyed, the pod goes pending, a new GPU worker is
// cloned: a flap that evicts the GPU workload every cycle.
func TestAGPUWorkerIsNotConsolidatedOntoGeneral(t *testing.T) {
	p := testPolicy()
	p.MinWorkers, p.DownWindow = 0, 5*time.Minute
	p.Pools = []Pool{
		{Name: "general", MinWorkers: 1, MaxWorkers: 4, Worker: shape, VMMemory: 8 * gi, VMCores: 4},
		{Name: "gpu", MinWorkers: 0, MaxWorkers: 1, Worker: shape, VMMemory: 8 * gi, VMCores: 4},
	}
	g := worker("g1", 20, 20, func(n *Node) { n.Pool = "general" })
	g.VMID = 5000
	gpu := worker("gpu1", 10, 10, func(n *Node) {
		n.Pool = "gpu"
		n.Pods[0].Name = "plex-0" // needs the iGPU, which no general worker has
		n.Pods[0].Extended = map[string]int64{"gpu.intel.com/i915": 1}
		n.Pods[0].Tolerations = []corev1.Toleration{tolerGPU}
	})
	gpu.VMID = 5001
	s := Snapshot{Nodes: []Node{g, gpu}}
	h := History{LowSince: t0.Add(-time.Hour), Unneeded: map[string]time.Time{"gpu1": t0.Add(-time.Hour)}}
	plan := Decide(s, p, h, t0)
	if a, ok := plan.Removal(); ok && a.Node == "gpu1" {
		t.Errorf("removes gpu1, whose plex pod can run on no general worker: %v", a.Reasons)
	}
}

// Found by a hostile review (now fixed): a removal that finished after
// the tick's VM list was read left that list showing its VM half-way (at
// reset, its Node marked): a second removal could start on it and run
// destroy again. Nothing starts on a VM whose last operation ended after
// the list; the next tick's list is right.
func TestNoSecondOperationOnAStaleList(t *testing.T) {
	w := newWorld(t, 3, nil)
	w.tick(t, 0)
	w.infra.mu.Lock()
	m := w.infra.vms[3]
	w.infra.mu.Unlock()
	// A removal of VM 3 ends after this tick's list was read.
	w.r.mu.Lock()
	w.r.ends++
	w.r.ended[3] = endedOp{at: w.r.ends, op: Operation{Kind: OpRemove, VMID: 3}}
	w.r.mu.Unlock()
	w.r.startRemoval(removal{m: m, node: "w3", from: RemovalReset})
	w.r.Wait()
	if d := w.destroyed(); len(d) != 0 {
		t.Fatalf("a second removal ran on the stale list: destroyed %v", d)
	}
	// A list read after it: the VM may be acted on again.
	w.tick(t, time.Second)
	w.r.Wait()
	w.r.startRemoval(removal{m: m, node: "w3", from: RemovalReset})
	w.r.Wait()
	if d := w.destroyed(); !slices.Equal(d, []int{3}) {
		t.Errorf("after a fresh list: destroyed %v, want [3]", d)
	}
}
