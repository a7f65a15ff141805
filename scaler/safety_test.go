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

// clock is a settable reconciler clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeWorld is a reconciler over the fakes with joined workers 1..n, Ready.
type fakeWorld struct {
	infra   *fakeInfra
	os      *fakeOS
	cluster *fakeCluster
	obs     *countingObserver
	clock   *clock
	r       *Reconciler
}

func newWorld(t *testing.T, n int, mod func(*Policy, *ReconcileOptions)) *fakeWorld {
	t.Helper()
	w := &fakeWorld{infra: newFakeInfra(), os: &fakeOS{applied: map[string]int{}}, obs: &countingObserver{done: map[OperationKind][]error{}}, clock: &clock{now: t0}}
	w.cluster = &fakeCluster{infra: w.infra, absent: map[int]bool{}, nodes: map[int]Node{}}
	close(w.infra.release) // creations return at once
	w.infra.cloned = make(chan int, 1000)
	for vmid := 1; vmid <= n; vmid++ {
		w.infra.vms[vmid] = Machine{VMID: vmid, Name: "w" + string(rune('0'+vmid)), Host: "pve1", Step: StepJoined, Created: t0.Add(-time.Hour), UUID: uuidOf(vmid)}
	}
	p := testPolicy()
	p.MinWorkers, p.MaxWorkers = 1, 6
	o := ReconcileOptions{Now: w.clock.Now, Observer: w.obs}
	if mod != nil {
		mod(&p, &o)
	}
	w.r = NewReconciler(w.infra, w.os, w.cluster, p, o)
	return w
}

// tick ticks at the clock's time plus d, and waits for what it started.
func (w *fakeWorld) tick(t *testing.T, d time.Duration) Plan {
	t.Helper()
	w.clock.Add(d)
	p, err := w.r.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w.r.Wait()
	return p
}

func (w *fakeWorld) destroyed() []int {
	w.infra.mu.Lock()
	defer w.infra.mu.Unlock()
	return slices.Clone(w.infra.destroyed)
}

func (w *fakeWorld) deleted() []string {
	w.cluster.mu.Lock()
	defer w.cluster.mu.Unlock()
	return slices.Clone(w.cluster.deleted)
}

func hasHold(p Plan) bool {
	return slices.ContainsFunc(p.Holds, func(r Reason) bool { return r.Code == CodeSafetyHold })
}

// Scenario 1: our VMs drop out of PVE's list (the token loses VM.Audit
// on them, proxmox.url names another PVE, our tags are removed). Nothing
// is deleted; the hold is reported; provisioning goes on.
func TestVMsMissingFromTheListDeleteNothing(t *testing.T) {
	w := newWorld(t, 3, nil)
	w.tick(t, 0)
	for vmid := 1; vmid <= 3; vmid++ {
		// The Nodes stay (the machines run); PVE's list no longer shows them.
		w.cluster.nodes[vmid] = worker(w.infra.vms[vmid].Name, 50, 50, func(n *Node) { n.VMID, n.SystemUUID = vmid, uuidOf(vmid) })
		w.infra.hidden[vmid] = true
	}
	for range 5 {
		p := w.tick(t, 2*ConfirmAbsence)
		if !hasHold(p) {
			t.Fatalf("no safety hold: %+v", p.Holds)
		}
	}
	if d := w.deleted(); len(d) != 0 {
		t.Errorf("Nodes deleted: %v", d)
	}
	if d := w.destroyed(); len(d) != 0 {
		t.Errorf("VMs destroyed: %v", d)
	}
	if st := w.r.Status(); !strings.Contains(st.SafetyHold, "none of the 3 Nodes") {
		t.Errorf("status safety hold %q", st.SafetyHold)
	}
	w.obs.mu.Lock()
	defer w.obs.mu.Unlock()
	if w.obs.holds != 5 {
		t.Errorf("safety holds counted %d, want 5", w.obs.holds)
	}
}

// A Node whose VM is gone is deleted only after two direct reads at least
// ConfirmAbsence apart say "does not exist", with the list sane; never
// when the VM exists but is not listed, nor while the list is not sane.
func TestNodeOfAVMGoneNeedsConfirmation(t *testing.T) {
	cases := []struct {
		name       string
		hidden     bool  // the VM exists, left out of the list
		insane     error // the list cannot be trusted
		wantDelete bool
	}{
		{"gone, confirmed", false, nil, true},
		{"exists but is not listed", true, nil, false},
		{"the template is not visible", false, errors.New("the template is not in the VM list"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, 3, nil)
			w.tick(t, 0)
			w.infra.mu.Lock()
			if c.hidden {
				w.infra.hidden[3] = true
			} else {
				delete(w.infra.vms, 3)
			}
			w.infra.insane = c.insane
			w.infra.mu.Unlock()
			// Its kubelet stopped with the VM: the Node is NotReady (a Ready
			// one is never deleted: TestAReadyNodeIsNeverDeletedForItsVM).
			w.cluster.orphans = []Node{worker("w3", 50, 50, notReady, func(n *Node) { n.VMID, n.SystemUUID = 3, uuidOf(3) })}
			w.tick(t, time.Second)
			w.tick(t, ConfirmAbsence/2)
			if d := w.deleted(); len(d) != 0 {
				t.Fatalf("deleted on reads less than %s apart: %v", ConfirmAbsence, d)
			}
			w.tick(t, ConfirmAbsence)
			if got := slices.Contains(w.deleted(), "w3"); got != c.wantDelete {
				t.Errorf("Node deleted = %v, want %v", got, c.wantDelete)
			}
			if d := w.destroyed(); len(d) != 0 {
				t.Errorf("VMs destroyed: %v", d)
			}
		})
	}
}

// Scenario 4: a joined VM whose Node is missing (kubectl delete node, a
// kubeconfig elsewhere) is removed only once its absence is confirmed,
// through the guards; a renamed VM keeps its Node by identity.
func TestJoinedVMWithoutNode(t *testing.T) {
	t.Run("confirmed, removed without a drain", func(t *testing.T) {
		w := newWorld(t, 3, nil)
		w.tick(t, 0)
		w.cluster.absent[3] = true
		w.tick(t, time.Second)
		w.tick(t, 200*time.Millisecond) // ticks can come 200 ms apart
		w.tick(t, ConfirmAbsence/2)
		if d := w.destroyed(); len(d) != 0 {
			t.Fatalf("destroyed before the absence was confirmed: %v", d)
		}
		w.tick(t, ConfirmAbsence)
		w.tick(t, time.Second)
		if d := w.destroyed(); !slices.Equal(d, []int{3}) {
			t.Errorf("destroyed %v, want [3]", d)
		}
		if d := w.deleted(); len(d) != 0 {
			t.Errorf("Nodes deleted for a VM without one: %v", d)
		}
		if w.os.resets != 1 {
			t.Errorf("%d resets, want 1", w.os.resets)
		}
	})
	t.Run("every VM without its Node: a safety hold", func(t *testing.T) {
		w := newWorld(t, 2, nil)
		w.tick(t, 0)
		w.cluster.absent[1], w.cluster.absent[2] = true, true
		for range 4 {
			if p := w.tick(t, ConfirmAbsence); !hasHold(p) {
				t.Fatalf("no hold: %+v", p.Holds)
			}
		}
		if d := w.destroyed(); len(d) != 0 {
			t.Errorf("destroyed %v", d)
		}
	})
	t.Run("below min_workers without it: replaced first", func(t *testing.T) {
		w := newWorld(t, 2, func(p *Policy, _ *ReconcileOptions) { p.MinWorkers = 2 })
		w.tick(t, 0)
		w.infra.release = make(chan struct{}) // the replacement's clone waits
		w.cluster.absent[2] = true
		for range 4 {
			w.clock.Add(ConfirmAbsence)
			if _, err := w.r.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			// A removal started in this tick is among its operations.
			for _, op := range w.r.Status().Operations {
				if op.Kind == OpRemove {
					t.Fatalf("removal started with one Ready worker and min_workers 2: %+v", op)
				}
			}
		}
		if d := w.destroyed(); len(d) != 0 {
			t.Errorf("destroyed %v with one Ready worker and min_workers 2", d)
		}
		close(w.infra.release) // the replacement joins; now VM 2 may go
		w.r.Wait()
		w.tick(t, time.Second)
		w.tick(t, time.Second)
		if d := w.destroyed(); !slices.Equal(d, []int{2}) {
			t.Errorf("destroyed %v once replaced, want [2]", d)
		}
	})
	t.Run("renamed in PVE: its Node is found by identity", func(t *testing.T) {
		w := newWorld(t, 2, nil)
		w.tick(t, 0)
		w.cluster.nodes[2] = worker("w2", 50, 50, func(n *Node) { n.VMID, n.SystemUUID = 2, uuidOf(2) })
		w.infra.mu.Lock()
		m := w.infra.vms[2]
		m.Name = "renamed-by-hand"
		w.infra.vms[2] = m
		w.infra.mu.Unlock()
		for range 4 {
			w.tick(t, ConfirmAbsence)
		}
		if d := w.destroyed(); len(d) != 0 {
			t.Errorf("destroyed %v", d)
		}
	})
}

// Scenario 3: the daemon was down past max_provision_time after sending
// the config; the worker joined and took pods meanwhile: adopted.
func TestExpiredProvisioningWithAReadyNodeIsAdopted(t *testing.T) {
	w := newWorld(t, 1, nil)
	w.infra.vms[7] = Machine{VMID: 7, Name: "w7", Host: "pve1", Step: StepApplying, Created: t0.Add(-2 * time.Hour), UUID: uuidOf(7)}
	w.cluster.nodes[7] = worker("w7", 50, 50, withPod(Pod{Namespace: "db", Name: "db-0", OwnerKind: "StatefulSet"}), func(n *Node) { n.VMID, n.SystemUUID = 7, uuidOf(7) })
	w.tick(t, 0)
	w.tick(t, time.Second)
	if d := w.destroyed(); len(d) != 0 {
		t.Fatalf("destroyed %v", d)
	}
	w.infra.mu.Lock()
	defer w.infra.mu.Unlock()
	if s := w.infra.vms[7].Step; s != StepJoined {
		t.Errorf("step %q, want joined", s)
	}
}

// An expired provisioning whose Node is not Ready but holds pods is kept;
// one without a Node is cleaned up.
func TestExpiredProvisioningCleanup(t *testing.T) {
	w := newWorld(t, 1, nil)
	w.infra.vms[7] = Machine{VMID: 7, Name: "w7", Host: "pve1", Step: StepApplying, Created: t0.Add(-2 * time.Hour), UUID: uuidOf(7)}
	w.cluster.nodes[7] = worker("w7", 50, 50, notReady, withPod(Pod{Namespace: "db", Name: "db-0", OwnerKind: "StatefulSet"}), func(n *Node) { n.VMID, n.SystemUUID = 7, uuidOf(7) })
	w.infra.vms[8] = Machine{VMID: 8, Name: "w8", Host: "pve1", Step: StepStarted, Created: t0.Add(-2 * time.Hour), UUID: uuidOf(8)}
	w.tick(t, 0)
	w.tick(t, time.Second)
	if d := w.destroyed(); !slices.Equal(d, []int{8}) {
		t.Errorf("destroyed %v, want [8] (7's Node holds pods)", d)
	}
	if st := w.r.Status(); !slices.ContainsFunc(st.Refused, func(s string) bool { return strings.Contains(s, "VM 7") }) {
		t.Errorf("VM 7 kept without a word: %v", st.Refused)
	}
}

// Scenario 8: a drain that fails records joined before it clears the
// removal mark, so a crash in between cannot leave a park of a worker
// whose pods came back.
func TestDrainFailureRecordsJoinedFirst(t *testing.T) {
	w := newWorld(t, 3, func(p *Policy, _ *ReconcileOptions) {
		p.StandbySize = 1
	})
	w.cluster.drainErr = errors.New("Cannot evict pod as it would violate the pod's disruption budget")
	w.infra.mu.Lock()
	m := w.infra.vms[3]
	w.infra.mu.Unlock()
	w.r.startRemoval(removal{m: m, node: "w3", park: true})
	w.r.Wait()
	w.infra.mu.Lock()
	defer w.infra.mu.Unlock()
	joined := slices.Index(w.infra.journal, "record 3 joined")
	cleared := slices.Index(w.infra.journal, "annotate w3 ")
	if joined < 0 || cleared < 0 || joined > cleared {
		t.Errorf("journal %v: joined must be recorded before the mark is cleared", w.infra.journal)
	}
	if w.infra.vms[3].Step != StepJoined {
		t.Errorf("step %q", w.infra.vms[3].Step)
	}
}

// Scenario 9: killed between the Talos reset and its record: the removal
// resumes, the machine no longer answers, and that counts as reset, even
// with reset_unreachable: fail.
func TestResetSentBeforeACrashCountsAsReset(t *testing.T) {
	w := newWorld(t, 3, nil)
	w.infra.mu.Lock()
	m := w.infra.vms[3]
	m.Step = StepResetting
	w.infra.vms[3] = m
	w.infra.mu.Unlock()
	w.cluster.nodes[3] = worker("w3", 0, 0, annotated(AnnotationRemoval, RemovalDrained), annotated(AnnotationCordoned, "true"), cordoned, func(n *Node) { n.VMID, n.SystemUUID, n.Pods = 3, uuidOf(3), nil })
	w.os.resetErr, w.os.unreachable = errors.New("connection refused"), true
	w.tick(t, 0)
	if d := w.destroyed(); !slices.Equal(d, []int{3}) {
		t.Errorf("destroyed %v, want [3]", d)
	}
	// Without a reset sent before, an unreachable machine holds the removal.
	w2 := newWorld(t, 3, nil)
	w2.cluster.nodes[3] = worker("w3", 0, 0, annotated(AnnotationRemoval, RemovalDrained), cordoned, func(n *Node) { n.VMID, n.SystemUUID, n.Pods = 3, uuidOf(3), nil })
	w2.infra.mu.Lock()
	m = w2.infra.vms[3]
	m.Step = StepRemoving
	w2.infra.vms[3] = m
	w2.infra.mu.Unlock()
	w2.os.resetErr, w2.os.unreachable = errors.New("connection refused"), true
	w2.tick(t, 0)
	if d := w2.destroyed(); len(d) != 0 {
		t.Errorf("destroyed %v although no reset was ever sent", d)
	}
}

// An identity conflict: Node w3's vmid label (the kubelet's to write)
// points at VM 3, whose SMBIOS UUID is another machine's, and VM 3's own
// Node is missing. Neither is acted on: a safety hold, nothing removed.
func TestAnIdentityConflictHoldsEverything(t *testing.T) {
	w := newWorld(t, 3, nil)
	w.tick(t, 0)
	w.cluster.nodes[3] = worker("w3", 1, 1, func(n *Node) { n.VMID, n.SystemUUID = 3, uuidOf(99) })
	for range 3 {
		if p := w.tick(t, ConfirmAbsence); !hasHold(p) {
			t.Fatalf("no safety hold: %+v", p.Holds)
		}
	}
	if d := w.destroyed(); len(d) != 0 {
		t.Errorf("destroyed %v", d)
	}
	if d := w.deleted(); len(d) != 0 {
		t.Errorf("deleted %v", d)
	}
}

// Scenario 10: remove_undrained goes on with a node whose drain failed:
// the node is not uncordoned first (no new pods land on it). Without it,
// the node stays and is uncordoned.
func TestRemoveUndrainedKeepsTheNodeCordoned(t *testing.T) {
	for _, undrained := range []bool{true, false} {
		w := newWorld(t, 3, func(_ *Policy, o *ReconcileOptions) { o.RemoveUndrained = undrained })
		w.cluster.drainErr = fmt.Errorf("global timeout reached: 3s: %w", ErrDrainTimedOut) // as kube.DrainError says it
		w.infra.mu.Lock()
		m := w.infra.vms[3]
		w.infra.mu.Unlock()
		w.r.startRemoval(removal{m: m, node: "w3"})
		w.r.Wait()
		w.infra.mu.Lock()
		uncordoned := slices.Contains(w.infra.journal, "cordon w3 false")
		w.infra.mu.Unlock()
		destroyed := slices.Equal(w.destroyed(), []int{3})
		if undrained && (uncordoned || !destroyed) {
			t.Errorf("remove_undrained: uncordoned %v, destroyed %v; want false, true", uncordoned, destroyed)
		}
		if !undrained && (!uncordoned || destroyed) {
			t.Errorf("drain failed, node kept: uncordoned %v, destroyed %v; want true, false (%v)", uncordoned, destroyed, w.infra.journal)
		}
	}
}

// A person cordoned the worker between our decision and our drain: the
// drain's cordon refuses (ForeignCordonError) and nothing is removed,
// even with remove_undrained; their cordon is not taken away.
func TestAPersonsCordonStopsTheRemovalEvenUndrained(t *testing.T) {
	w := newWorld(t, 3, func(_ *Policy, o *ReconcileOptions) { o.RemoveUndrained = true })
	w.cluster.drainErr = fmt.Errorf("drain w3: %w", &ForeignCordonError{Node: "w3"})
	w.infra.mu.Lock()
	m := w.infra.vms[3]
	w.infra.mu.Unlock()
	w.r.startRemoval(removal{m: m, node: "w3"})
	w.r.Wait()
	if d := w.destroyed(); len(d) != 0 {
		t.Errorf("destroyed %v under a person's cordon", d)
	}
	w.infra.mu.Lock()
	defer w.infra.mu.Unlock()
	if w.infra.vms[3].Step != StepJoined || slices.ContainsFunc(w.infra.journal, func(e string) bool { return strings.Contains(e, "resetting") }) {
		t.Errorf("step %q, journal %v: want the removal withdrawn, no reset", w.infra.vms[3].Step, w.infra.journal)
	}
}

// Scenario 2: people remove our tags from two running workers to keep
// them. The VMs exist (a direct read says so): not ours, never touched,
// and their Nodes do not count as missing a VM, so no safety hold stalls
// the rest of the cluster.
func TestWorkersWhoseTagsWereRemovedAreLeftAlone(t *testing.T) {
	// Four workers at 50% hold three: consolidation would rightly remove
	// one of ours (w1 or w2) within the test; a long window keeps it out.
	w := newWorld(t, 4, func(p *Policy, _ *ReconcileOptions) { p.DownWindow = time.Hour })
	w.tick(t, 0)
	for _, vmid := range []int{3, 4} {
		w.cluster.nodes[vmid] = worker(w.infra.vms[vmid].Name, 50, 50, func(n *Node) { n.VMID, n.SystemUUID = vmid, uuidOf(vmid) })
		w.infra.untagged[vmid] = true
	}
	var p Plan
	for range 4 {
		p = w.tick(t, ConfirmAbsence)
	}
	if hasHold(p) {
		t.Errorf("a safety hold over kept workers: %+v", p.Holds)
	}
	if d := w.deleted(); len(d) != 0 {
		t.Errorf("Nodes deleted: %v", d)
	}
	if d := w.destroyed(); len(d) != 0 {
		t.Errorf("VMs destroyed: %v", d)
	}
	if st := w.r.Status(); !slices.ContainsFunc(st.Refused, func(s string) bool { return strings.Contains(s, "VM 3 exists but is not ours") }) {
		t.Errorf("kept worker not reported: %v", st.Refused)
	}
}

// Scenario 11, the other half: when leadership is lost, another daemon may
// lead within seconds; running operations are stopped at once, not given
// the grace a shutdown gets (which is tested in kube's leader tests).
func TestLeadershipLostStopsOperationsAtOnce(t *testing.T) {
	w := newWorld(t, 0, func(_ *Policy, o *ReconcileOptions) { o.StopGrace = time.Hour })
	held := w.cluster.hold("w100") // the first worker's WaitReady waits
	defer close(held)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan struct{})
	go func() {
		w.r.Run(ctx, time.Hour, nil)
		close(done)
	}()
	// Wait until the provisioning waits for its Node.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		w.infra.mu.Lock()
		step := w.infra.vms[100].Step
		w.infra.mu.Unlock()
		if step == StepApplying {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the provisioning never reached applying")
		}
	}
	cancel(ErrLeadershipLost)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run waited for its hour of grace after leadership was lost")
	}
}

// An old decision is not carried out on a new view: a removal found
// before its drain finished (a crash, a lost Lease, a mark that could not
// be cleared) is withdrawn, not drained again without Decide's guards: the
// worker is recorded joined, its Node uncordoned and unmarked.
func TestAnUndrainedRemovalIsWithdrawnNotResumed(t *testing.T) {
	for _, step := range []string{StepRemoving, StepJoined} {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t, 3, nil)
			w.infra.set(3, step)
			w.cluster.nodes[3] = worker("w3", 50, 50, annotated(AnnotationRemoval, RemovalMarked), func(n *Node) {
				n.VMID, n.SystemUUID, n.Unschedulable = 3, uuidOf(3), true
				n.Annotations[AnnotationRemovalOf] = uuidOf(3)
			})
			w.tick(t, 0)
			if w.cluster.drains != 0 {
				t.Errorf("drained %d times on an old decision", w.cluster.drains)
			}
			if d := w.destroyed(); len(d) != 0 {
				t.Errorf("destroyed %v", d)
			}
			w.infra.mu.Lock()
			defer w.infra.mu.Unlock()
			if s := w.infra.vms[3].Step; s != StepJoined {
				t.Errorf("step %q, want joined", s)
			}
			joined := slices.Index(w.infra.journal, "record 3 joined")
			uncordoned := slices.Index(w.infra.journal, "cordon w3 false")
			unmarked := slices.Index(w.infra.journal, "annotate w3 ")
			if (step == StepRemoving && joined < 0) || uncordoned < 0 || unmarked < 0 || joined > uncordoned || uncordoned > unmarked {
				t.Errorf("journal %v: want joined recorded, then uncordoned, then unmarked", w.infra.journal)
			}
		})
	}
}

// A half-removed VM whose Node is confirmed gone is not destroyed on that
// evidence: its reset was never sent, so nothing says the machine left.
// It is withdrawn (joined again), and a Node that comes back keeps it.
func TestAHalfRemovedVMWithoutItsNodeIsNotDestroyedOnOldEvidence(t *testing.T) {
	w := newWorld(t, 3, nil)
	w.infra.set(3, StepRemoving)
	w.cluster.absent[3] = true
	w.tick(t, 0)
	w.tick(t, ConfirmAbsence/2)
	w.tick(t, ConfirmAbsence) // the absence is confirmed
	if d := w.destroyed(); len(d) != 0 {
		t.Fatalf("destroyed %v on a confirmed absence of the Node of a removal that was never reset", d)
	}
	w.infra.mu.Lock()
	step := w.infra.vms[3].Step
	w.infra.mu.Unlock()
	if step != StepJoined {
		t.Fatalf("step %q, want joined (withdrawn)", step)
	}
	w.cluster.mu.Lock()
	w.cluster.absent[3] = false // its kubelet registers again
	w.cluster.mu.Unlock()
	for range 3 {
		w.tick(t, ConfirmAbsence)
	}
	if d := w.destroyed(); len(d) != 0 {
		t.Errorf("destroyed %v once its Node was back", d)
	}
	if w.os.resets != 0 {
		t.Errorf("%d resets", w.os.resets)
	}
}

// A park is reported as a park through its drain (its steps marked and
// drained too), so standby's count never misses it.
func TestAParkIsReportedAsAParkWhileItDrains(t *testing.T) {
	w := newWorld(t, 3, func(p *Policy, _ *ReconcileOptions) { p.StandbySize = 1 })
	w.cluster.drainHold, w.cluster.drainEntered = make(chan struct{}), make(chan string, 1)
	w.infra.mu.Lock()
	m := w.infra.vms[3]
	w.infra.mu.Unlock()
	w.r.startRemoval(removal{m: m, node: "w3", park: true})
	<-w.cluster.drainEntered
	if _, err := w.r.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(w.cluster.drainHold)
	w.r.Wait()
	var got []Operation
	for _, op := range w.r.Status().Operations {
		if op.VMID == 3 {
			got = append(got, op)
		}
	}
	if len(got) != 1 || got[0].Kind != OpRemove || got[0].Step != StepParking {
		t.Errorf("VM 3 reported as %+v while its park drains, want one removal at step parking", got)
	}
}

// A wake finds its Node by identity, never by the VM's name: the standby
// worker's Node is untainted and uncordoned, not another machine's Node
// that took the VM's name.
func TestWakeFindsTheNodeByIdentity(t *testing.T) {
	w := newWorld(t, 2, nil)
	m := Machine{VMID: 3, Name: "w3", Host: "pve1", Step: StepStandby, UUID: uuidOf(3), Created: t0.Add(-time.Hour)}
	w.infra.vms[3] = m
	w.cluster.nodes[3] = worker("node-3", 0, 0, func(n *Node) { n.VMID, n.SystemUUID, n.Standby, n.Unschedulable = 3, uuidOf(3), true, true })
	w.cluster.orphans = []Node{worker("w3", 50, 50, func(n *Node) { n.VMID, n.SystemUUID = 99, uuidOf(99) })}
	w.r.startWake(m, t0, false)
	w.r.Wait()
	w.infra.mu.Lock()
	defer w.infra.mu.Unlock()
	if !slices.Contains(w.infra.journal, "standby node-3 false") || !slices.Contains(w.infra.journal, "cordon node-3 false") {
		t.Errorf("journal %v: the Node of VM 3's identity was not untainted and uncordoned", w.infra.journal)
	}
	for _, e := range w.infra.journal {
		if strings.Contains(e, " w3 ") {
			t.Errorf("journal %v: another machine's Node named like the VM was touched", w.infra.journal)
		}
	}
	if s := w.infra.vms[3].Step; s != StepJoined {
		t.Errorf("step %q, want joined", s)
	}
}

// A safety hold that starts while a removal runs stops it before its next
// destructive step: the drain under way ends, no reset is sent, nothing
// is destroyed, and the removal is left resumable (no failure counted).
func TestARunningRemovalStopsBeforeItsResetDuringAHold(t *testing.T) {
	w := newWorld(t, 3, nil)
	w.cluster.drainHold, w.cluster.drainEntered = make(chan struct{}), make(chan string, 1)
	w.infra.mu.Lock()
	m := w.infra.vms[3]
	w.infra.mu.Unlock()
	w.r.startRemoval(removal{m: m, node: "w3"})
	<-w.cluster.drainEntered
	// The token loses VM.Audit on the other two workers: their Nodes lack VMs.
	w.infra.mu.Lock()
	w.infra.hidden[1], w.infra.hidden[2] = true, true
	w.infra.mu.Unlock()
	if p, err := w.r.Tick(context.Background()); err != nil || !hasHold(p) {
		t.Fatalf("no safety hold (%v): %+v", err, p.Holds)
	}
	close(w.cluster.drainHold)
	w.r.Wait()
	if w.os.resets != 0 {
		t.Errorf("%d resets sent during a safety hold", w.os.resets)
	}
	if d := w.destroyed(); len(d) != 0 {
		t.Errorf("destroyed %v during a safety hold", d)
	}
	w.infra.mu.Lock()
	step := w.infra.vms[3].Step
	w.infra.mu.Unlock()
	if step != StepRemoving {
		t.Errorf("step %q, want removing (resumable)", step)
	}
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.r.failures != 0 {
		t.Errorf("a removal held by the safety hold counted as %d failures", w.r.failures)
	}
}

// A dry run writes nothing: no SafetyHold event either.
func TestADryRunWritesNoSafetyHoldEvent(t *testing.T) {
	for _, dry := range []bool{true, false} {
		w := newWorld(t, 3, func(_ *Policy, o *ReconcileOptions) { o.DryRun = dry })
		w.tick(t, 0)
		w.infra.mu.Lock()
		w.infra.hidden[1], w.infra.hidden[2] = true, true
		w.infra.mu.Unlock()
		if p := w.tick(t, time.Second); !hasHold(p) {
			t.Fatalf("dry run %v: no safety hold: %+v", dry, p.Holds)
		}
		w.cluster.mu.Lock()
		evs := slices.Clone(w.cluster.events)
		w.cluster.mu.Unlock()
		held := slices.ContainsFunc(evs, func(e string) bool { return strings.HasPrefix(e, "SafetyHold ") })
		if held == dry {
			t.Errorf("dry run %v: SafetyHold event written %v (events %v)", dry, held, evs)
		}
	}
}

// One stuck VM does not freeze capacity: a VM whose resumed operation
// fails (its host offline: neither started nor destroyed) backs off
// alone, doubling from the failure cooldown, while pending pods still get
// workers; it does not feed the failure cooldown that holds scale-ups.
func TestAStuckVMDoesNotHoldScaleUps(t *testing.T) {
	w := newWorld(t, 2, nil)
	offline := errors.New("host pve2 is offline")
	w.infra.mu.Lock()
	w.infra.vms[7] = Machine{VMID: 7, Name: "w7", Host: "pve2", Step: StepConfigured, Created: t0, UUID: uuidOf(7)}
	w.infra.failStart[7], w.infra.failDestroy[7] = offline, offline
	w.infra.mu.Unlock()
	starts := func() int {
		w.infra.mu.Lock()
		defer w.infra.mu.Unlock()
		return w.infra.starts[7]
	}
	w.tick(t, 0)
	if starts() != 1 {
		t.Fatalf("VM 7 started %d times, want 1", starts())
	}
	w.cluster.pending = pending(2, 3500, gi, t0.Add(-time.Hour))
	p := w.tick(t, time.Second)
	if slices.ContainsFunc(p.Holds, func(r Reason) bool { return r.Code == CodeCooldownFailure }) {
		t.Errorf("a stuck VM holds scale-ups: %+v", p.Holds)
	}
	if !slices.ContainsFunc(p.Actions, func(a Action) bool { return a.Kind == ActionAdd }) {
		t.Errorf("no worker added for pending pods while VM 7 is stuck: actions %+v, holds %+v", p.Actions, p.Holds)
	}
	if starts() != 1 {
		t.Errorf("VM 7 retried within its backoff: %d starts", starts())
	}
	w.cluster.pending = nil
	w.tick(t, w.r.Backoff(1))
	if starts() != 2 {
		t.Errorf("VM 7 not retried after its backoff: %d starts", starts())
	}
	w.tick(t, w.r.Backoff(1)) // the pause doubled
	if starts() != 2 {
		t.Errorf("VM 7 retried before its doubled backoff: %d starts", starts())
	}
	w.tick(t, w.r.Backoff(2))
	if starts() != 3 {
		t.Errorf("VM 7 not retried after its doubled backoff: %d starts", starts())
	}
}

// discard does nothing once stopping (a shutdown, a lost Lease): another
// daemon may lead now, and the VM's state is resumable.
func TestDiscardDoesNothingOnceStopping(t *testing.T) {
	w := newWorld(t, 1, nil)
	m := Machine{VMID: 7, Name: "w7", Host: "pve1", Step: StepStarted, Created: t0, UUID: uuidOf(7)}
	w.infra.vms[7] = m
	w.r.Abort()
	w.r.discard(m, StepStarted, false)
	if d := w.destroyed(); len(d) != 0 {
		t.Errorf("destroyed %v while stopping", d)
	}
	w2 := newWorld(t, 1, nil) // not stopping: a failed VM without a Node goes
	w2.infra.vms[7] = m
	w2.r.discard(m, StepStarted, false)
	if d := w2.destroyed(); !slices.Equal(d, []int{7}) {
		t.Errorf("destroyed %v, want [7]", d)
	}
}

// A wake uncordons before it takes the standby taint away, as a withdraw
// does: an earlier version parked without our cordon annotation, and the
// taint is then what shows the cordon as ours; gone first, the cordon
// would stay forever.
func TestWakeUncordonsBeforeTheTaintGoes(t *testing.T) {
	w := newWorld(t, 2, nil)
	m := Machine{VMID: 3, Name: "w3", Host: "pve1", Step: StepStandby, UUID: uuidOf(3), Created: t0.Add(-time.Hour)}
	w.infra.vms[3] = m
	w.cluster.nodes[3] = worker("w3", 0, 0, func(n *Node) { n.VMID, n.SystemUUID, n.Standby, n.Unschedulable = 3, uuidOf(3), true, true })
	w.r.startWake(m, t0, false)
	w.r.Wait()
	w.infra.mu.Lock()
	defer w.infra.mu.Unlock()
	uncordon := slices.Index(w.infra.journal, "cordon w3 false")
	untaint := slices.Index(w.infra.journal, "standby w3 false")
	if uncordon < 0 || untaint < 0 || uncordon > untaint {
		t.Errorf("journal %v: the Node must be uncordoned before its standby taint goes", w.infra.journal)
	}
}

// Leadership lost right after a drain succeeded: recording it drained
// fails on the cancelled work context, and that is a halt, not a failed
// drain: no withdraw (no record, uncordon or unmark) without leadership.
func TestLeaseLostAfterTheDrainWithdrawsNothing(t *testing.T) {
	w := newWorld(t, 3, nil)
	w.cluster.marksNeedCtx = true
	w.cluster.afterDrain = func() { w.r.Abort() }
	w.infra.mu.Lock()
	m := w.infra.vms[3]
	w.infra.mu.Unlock()
	w.r.startRemoval(removal{m: m, node: "w3"})
	w.r.Wait()
	w.infra.mu.Lock()
	defer w.infra.mu.Unlock()
	for _, e := range w.infra.journal {
		if e == "record 3 joined" || e == "cordon w3 false" || e == "annotate w3 " {
			t.Errorf("journal %v: withdrawn (%q) after leadership was lost", w.infra.journal, e)
		}
	}
	if !slices.Contains(w.infra.journal, "annotate w3 "+RemovalMarked) {
		t.Errorf("journal %v: the removal never started", w.infra.journal)
	}
	if s := w.infra.vms[3].Step; s != StepRemoving {
		t.Errorf("step %q, want removing (left resumable)", s)
	}
}

// Stuck VMs are shown and are no capacity (issue 15): a provisioning past
// its deadline kept because its Node holds pods, and one backing off after
// its resumed operation failed, are listed in Status.Stuck with why; the
// pending pods get workers as if they were not there, while both still
// count against max_workers.
func TestStuckVMsAreShownAndAreNoCapacity(t *testing.T) {
	w := newWorld(t, 2, nil)
	offline := errors.New("host pve2 is offline")
	w.infra.mu.Lock()
	w.infra.vms[7] = Machine{VMID: 7, Name: "w7", Host: "pve1", Step: StepApplying, Created: t0.Add(-2 * time.Hour), UUID: uuidOf(7)}
	w.infra.vms[8] = Machine{VMID: 8, Name: "w8", Host: "pve2", Step: StepConfigured, Created: t0, UUID: uuidOf(8)}
	w.infra.failStart[8], w.infra.failDestroy[8] = offline, offline
	w.infra.mu.Unlock()
	w.cluster.nodes[7] = worker("w7", 50, 50, notReady, withPod(Pod{Namespace: "db", Name: "db-0", OwnerKind: "StatefulSet"}), func(n *Node) { n.VMID, n.SystemUUID = 7, uuidOf(7) })
	w.tick(t, 0) // VM 8's resumed provisioning fails: it backs off
	w.cluster.pending = pending(2, 3500, gi, t0.Add(-time.Hour))
	p := w.tick(t, time.Second)
	st := w.r.Status()
	reasons := map[int]string{}
	for _, s := range st.Stuck {
		reasons[s.VMID] = s.Reason
	}
	if !strings.Contains(reasons[7], "kept") || !strings.Contains(reasons[8], "backing off") || !strings.Contains(reasons[8], "offline") || len(reasons) != 2 {
		t.Errorf("stuck %+v, want VMs 7 (kept) and 8 (backing off, host offline)", st.Stuck)
	}
	if p.Workers.Stuck != 1 || p.Workers.Current != 4 {
		t.Errorf("workers %+v, want 1 stuck (VM 8; VM 7 counts as its NotReady Node) and 4 in all", p.Workers)
	}
	if p.Added() != 2 {
		t.Errorf("added %d for two pods that need a worker each, want 2 (no stuck VM is capacity): holds %+v", p.Added(), p.Holds)
	}
	// Against max_workers: 2 joined + 7 + 8 + 2 added = 6, the maximum.
	w.cluster.pending = pending(4, 3500, gi, t0.Add(-time.Hour))
	if p := w.tick(t, time.Second); p.Added() > 0 && p.Workers.Current+p.Added() > 6 {
		t.Errorf("added %d with %d workers counted (max 6)", p.Added(), p.Workers.Current)
	}
}

// A machine whose SMBIOS UUID is unknown (its config unreadable when
// listed) is never destroyed nor powered off (issue 15): not by discard,
// not by a retirement, not by a park; each refusal is reported. The one
// exception is a clone this run made that never got its UUID (it never
// started): discard destroys it.
func TestUnknownIdentityIsNeverDestroyedNorPoweredOff(t *testing.T) {
	w := newWorld(t, 2, func(p *Policy, _ *ReconcileOptions) { p.StandbySize = 1 })
	earlier := Machine{VMID: 7, Name: "w7", Host: "pve1", Step: StepStarted, Created: t0}
	w.infra.vms[7] = earlier
	w.r.discard(earlier, StepStarted, false)
	w.r.discard(Machine{VMID: 7, Name: "w7", Host: "pve1", Step: StepCloned}, StepCloned, false) // a clone, but an earlier run's
	if d := w.destroyed(); len(d) != 0 {
		t.Fatalf("destroyed %v: a VM of unknown identity", d)
	}
	own := Machine{VMID: 8, Name: "w8", Host: "pve1", Step: StepCloned, Created: t0}
	w.infra.vms[8] = own
	w.r.discard(own, StepCloned, true)
	if d := w.destroyed(); !slices.Equal(d, []int{8}) {
		t.Fatalf("destroyed %v, want [8] (this run's clone that never got its UUID)", d)
	}
	delete(w.infra.vms, 7)
	// A stale standby worker listed without its UUID: not retired.
	w.infra.vms[9] = Machine{VMID: 9, Name: "w9", Host: "pve1", Step: StepStandby, Stale: "template changed", Created: t0.Add(-time.Hour)}
	w.tick(t, 0)
	if d := w.destroyed(); !slices.Equal(d, []int{8}) {
		t.Errorf("destroyed %v: the standby worker of unknown identity was retired", d)
	}
	// A park whose VM is listed without its UUID, past its drain: not powered off.
	w.infra.vms[2] = Machine{VMID: 2, Name: "w2", Host: "pve1", Step: StepParking, Running: true, Created: t0.Add(-time.Hour)}
	w.cluster.nodes[2] = worker("w2", 0, 0, func(n *Node) {
		n.VMID, n.Unschedulable, n.Pods = 2, true, nil // drained
		n.Annotations = map[string]string{AnnotationCordoned: "true"}
	})
	w.tick(t, time.Second)
	w.infra.mu.Lock()
	off := slices.Clone(w.infra.poweredOff)
	w.infra.mu.Unlock()
	if slices.Contains(off, 2) {
		t.Errorf("powered off %v: VM 2, of unknown identity", off)
	}
	st := w.r.Status()
	for _, vmid := range []string{"VM 7", "VM 9", "VM 2"} {
		if !slices.ContainsFunc(st.Refused, func(s string) bool { return strings.Contains(s, vmid+": its SMBIOS UUID is unknown") }) {
			t.Errorf("%s's refusal not reported: %v", vmid, st.Refused)
		}
	}
}

// discard's destroy never starts once the reconciler stops (issue 15):
// a stop as discard reads the Node is seen before the destroy; one that
// lands as the destroy is called finds the destroy's context ended (it
// runs on halt, not on a context without cancel), and nothing is sent.
func TestDiscardDestroysNothingAfterTheStop(t *testing.T) {
	stops := []struct {
		name string
		do   func(*Reconciler)
	}{
		{"Stop", func(r *Reconciler) { go r.Stop() }},
		{"Abort (a lost Lease)", func(r *Reconciler) { r.Abort() }},
	}
	for _, stop := range stops {
		for _, at := range []string{"reading the Node", "calling destroy"} {
			t.Run(stop.name+" while "+at, func(t *testing.T) {
				w := newWorld(t, 1, nil)
				m := Machine{VMID: 7, Name: "w7", Host: "pve1", Step: StepStarted, Created: t0, UUID: uuidOf(7)}
				w.infra.vms[7] = m
				var once sync.Once
				hook := func() {
					once.Do(func() {
						stop.do(w.r)
						for !w.r.halted() {
							time.Sleep(time.Millisecond)
						}
					})
				}
				if at == "reading the Node" {
					w.cluster.onNodeOf = hook
				} else {
					w.infra.destroyCalled = func(Machine) { hook() }
				}
				w.r.discard(m, StepStarted, false)
				if d := w.destroyed(); len(d) != 0 {
					t.Errorf("destroyed %v after the stop", d)
				}
			})
		}
	}
}

// A standby build found joined whose Node is not seen by identity is
// parked without touching the Node that merely has its name (another
// machine's: its SMBIOS UUID differs): no cordon, no standby taint there.
func TestAParkResumedNeverTouchesANodeByName(t *testing.T) {
	w := newWorld(t, 3, nil)
	w.infra.mu.Lock()
	m := w.infra.vms[3]
	m.ForStandby = true
	w.infra.vms[3] = m
	w.infra.mu.Unlock()
	w.cluster.nodes[3] = worker("w3", 10, 10, func(n *Node) { n.VMID, n.SystemUUID = 3, uuidOf(99) })
	for range 4 {
		w.tick(t, ConfirmAbsence)
	}
	w.infra.mu.Lock()
	defer w.infra.mu.Unlock()
	for _, e := range w.infra.journal {
		if strings.HasPrefix(e, "cordon w3") || strings.HasPrefix(e, "standby w3") {
			t.Errorf("the Node named w3 (another machine's) was touched: %q in %v", e, w.infra.journal)
		}
	}
}

// A standby worker a person started and put to use is not retired: its
// Node, read afresh, is schedulable and holds pods.
func TestARetireLeavesAStandbyWorkerInUse(t *testing.T) {
	for _, inUse := range []bool{true, false} {
		w := newWorld(t, 3, nil)
		w.infra.mu.Lock()
		m := w.infra.vms[3]
		m.Step = StepStandby
		w.infra.vms[3] = m
		w.infra.mu.Unlock()
		if inUse {
			w.cluster.nodes[3] = worker("w3", 40, 40, func(n *Node) {
				n.VMID, n.SystemUUID, n.Pods = 3, uuidOf(3), []Pod{{Name: "db", OwnerKind: "StatefulSet"}}
			})
		} else {
			w.cluster.nodes[3] = worker("w3", 0, 0, annotated(AnnotationCordoned, "true"), cordoned, func(n *Node) {
				n.VMID, n.SystemUUID, n.Standby, n.Ready, n.Pods = 3, uuidOf(3), true, false, nil
			})
		}
		w.r.startRetire(m, false)
		w.r.Wait()
		if destroyed := slices.Equal(w.destroyed(), []int{3}); destroyed == inUse {
			t.Errorf("in use %v: destroyed %v", inUse, w.destroyed())
		}
	}
}

// TestNodelessWorkerPerPool: a joined VM whose Node is confirmed gone is
// removed only while the Ready workers of its own pool meet that pool's
// min_workers; the global min_workers (unused with pools) and the other
// pools' workers count for nothing.
func TestNodelessWorkerPerPool(t *testing.T) {
	for _, c := range []struct {
		name    string
		gpuMin  int
		globMin int
		gone    int // the VM whose Node is gone
		want    []int
	}{
		// Pools general (VMs 1-3, min 2) and gpu (VM 4).
		{name: "the gpu pool's only worker, gpu min_workers 1: kept", gpuMin: 1, gone: 4},
		{name: "the gpu pool's only worker, gpu min_workers 0: removed", gpuMin: 0, gone: 4, want: []int{4}},
		{name: "a general worker, general keeps 2 of min 2: removed, whatever the global min_workers", globMin: 5, gone: 3, want: []int{3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, 4, func(p *Policy, _ *ReconcileOptions) {
				pools := poolPolicy().Pools[:2]
				pools[1].MinWorkers = c.gpuMin
				p.Pools, p.MinWorkers = pools, c.globMin
			})
			w.infra.mu.Lock()
			for vmid := 1; vmid <= 4; vmid++ {
				m := w.infra.vms[vmid]
				m.Pool = "general"
				if vmid == 4 {
					m.Pool = "gpu"
				}
				w.infra.vms[vmid] = m
				w.cluster.nodes[vmid] = worker(m.Name, 50, 50, inPool(m.Pool), annotated(AnnotationScaleDownDisabled, "true"), // no scale-down of its own
					func(n *Node) { n.VMID, n.SystemUUID = vmid, uuidOf(vmid) })
			}
			w.infra.mu.Unlock()
			w.infra.release = make(chan struct{}) // a replacement's clone waits
			w.tick(t, 0)
			w.cluster.absent[c.gone] = true
			for range 4 {
				w.clock.Add(ConfirmAbsence)
				if _, err := w.r.Tick(context.Background()); err != nil {
					t.Fatal(err)
				}
				if c.want != nil {
					w.r.Wait() // no replacement is waiting: the removal ends before the next tick
				}
			}
			close(w.infra.release)
			w.r.Wait()
			if d := w.destroyed(); !slices.Equal(d, c.want) {
				t.Errorf("destroyed %v, want %v", d, c.want)
			}
		})
	}
}
