package scaler

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"
)

// fakeInfra is a Proxmox whose Create can be held after the clone is
// visible in Machines (its task ended) but before Create returns: the
// window in which a tick lists the fresh clone.
type fakeInfra struct {
	mu        sync.Mutex
	vms       map[int]Machine
	next      int
	cloned    chan int      // told the vmid once the clone is listed
	release   chan struct{} // Create returns once this closes
	configure map[int]int   // Configure calls by vmid
	// onList, if set, runs after Machines has copied the list and before
	// it returns it: what happens there is missing from that list.
	onList func()
	// hidden VMs exist but are left out of the list (a token without
	// VM.Audit on them): reading them directly is refused.
	hidden map[int]bool
	// untagged VMs exist but are not ours any more (our tags removed by
	// hand): left out of the list; Gone says they exist.
	untagged map[int]bool
	insane   error // what Sane answers
	// failStart and failDestroy are what Start and Destroy answer for a
	// VM (its host offline, say); starts counts Start calls by vmid.
	failStart, failDestroy map[int]error
	starts                 map[int]int
	destroyed, poweredOff  []int
	// destroyCalled, if set, hears each Destroy call before it acts.
	destroyCalled func(Machine)
	journal       []string // RecordStep calls and the cluster's RecordRemovalStep, in order
}

func (f *fakeInfra) note(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.journal = append(f.journal, s)
}

func newFakeInfra() *fakeInfra {
	return &fakeInfra{vms: map[int]Machine{}, next: 100, cloned: make(chan int, 8), release: make(chan struct{}), configure: map[int]int{}, hidden: map[int]bool{}, untagged: map[int]bool{},
		failStart: map[int]error{}, failDestroy: map[int]error{}, starts: map[int]int{}}
}

func (f *fakeInfra) Machines(context.Context) ([]Machine, []Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Machine
	for _, m := range f.vms {
		if !f.hidden[m.VMID] && !f.untagged[m.VMID] {
			out = append(out, m)
		}
	}
	if hook := f.onList; hook != nil {
		f.mu.Unlock()
		hook()
		f.mu.Lock()
	}
	return out, []Host{{Name: "pve1", Online: true, MemoryFree: 64 * gi}}, nil
}

func (f *fakeInfra) Create(ctx context.Context, _ string, _ []string, _ Machine) (Machine, error) {
	f.mu.Lock()
	m := Machine{VMID: f.next, Name: fmt.Sprintf("w%d", f.next), Host: "pve1", Step: StepCloned, Created: t0, UUID: uuidOf(f.next)}
	f.next++
	f.vms[m.VMID] = m
	f.mu.Unlock()
	f.cloned <- m.VMID
	select {
	case <-f.release:
	case <-ctx.Done():
		return m, ctx.Err()
	}
	return m, nil
}

func (f *fakeInfra) set(vmid int, step string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.vms[vmid]
	m.Step = step
	f.vms[vmid] = m
}

func (f *fakeInfra) Configure(ctx context.Context, vmid int, step string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.configure[vmid]++
	f.mu.Unlock()
	f.set(vmid, step)
	return nil
}
func (f *fakeInfra) RecordStep(ctx context.Context, vmid int, step string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.note(fmt.Sprintf("record %d %s", vmid, step))
	f.set(vmid, step)
	return nil
}
func (f *fakeInfra) Start(ctx context.Context, vmid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts[vmid]++
	if err := f.failStart[vmid]; err != nil {
		return err
	}
	return ctx.Err()
}
func (f *fakeInfra) Address(ctx context.Context, _ int) (string, error) {
	return "127.0.0.1", ctx.Err()
}
func (f *fakeInfra) PowerOff(_ context.Context, m Machine) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.poweredOff = append(f.poweredOff, m.VMID)
	return nil
}
func (f *fakeInfra) Destroy(ctx context.Context, m Machine) error {
	if f.destroyCalled != nil {
		f.destroyCalled(m)
	}
	if err := ctx.Err(); err != nil {
		return err // as the API client: a request on an ended context is never sent
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failDestroy[m.VMID]; err != nil {
		return err
	}
	delete(f.vms, m.VMID)
	f.destroyed = append(f.destroyed, m.VMID)
	return nil
}
func (f *fakeInfra) Gone(_ context.Context, vmid int) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hidden[vmid] {
		return false, fmt.Errorf("Permission check failed (/vms/%d, VM.Audit)", vmid)
	}
	_, ok := f.vms[vmid]
	return !ok, nil
}
func (f *fakeInfra) Sane(context.Context) error { return f.insane }

// uuidOf is the SMBIOS UUID the fakes give VM vmid.
func uuidOf(vmid int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", vmid) }

// fakeOS counts the machine configs sent, by node; resetErr is what
// Reset answers, unreachable whether that error means no answer.
type fakeOS struct {
	mu          sync.Mutex
	applied     map[string]int
	resets      int
	resetErr    error
	unreachable bool
}

func (o *fakeOS) Apply(_ context.Context, m Machine, _ string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.applied[m.Name]++
	return nil
}
func (o *fakeOS) Reset(context.Context, Machine, string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.resets++
	return o.resetErr
}
func (o *fakeOS) Unreachable(error) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.unreachable
}

// fakeCluster has a Ready worker for each joined VM (and each VM in
// nodes), with the VM's vmid and UUID; nodes join at once.
type fakeCluster struct {
	infra   *fakeInfra
	pending []PendingPod
	mu      sync.Mutex
	ready   map[string]chan struct{} // WaitReady on these names waits for the channel
	// nodes adds Nodes for VMs at other steps (a worker that joined while
	// the daemon was down), by vmid; absent hides the Node of a VM (deleted
	// by hand, another cluster); orphans are Nodes whose VM is gone.
	nodes    map[int]Node
	absent   map[int]bool
	orphans  []Node
	deleted  []string
	drainErr error
	drains   int
	events   []string // reason and node of each Event
	// drainHold, if set, holds every drain until it closes; drainEntered
	// hears each drain that starts.
	drainHold    chan struct{}
	drainEntered chan string
	// afterDrain, if set, runs as a drain succeeds; marksNeedCtx makes
	// RecordRemovalStep fail on a cancelled context, as the API client does.
	afterDrain   func()
	marksNeedCtx bool
	// onNodeOf, if set, runs as NodeOf is called.
	onNodeOf func()
}

func (c *fakeCluster) hold(name string) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready == nil {
		c.ready = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	c.ready[name] = ch
	return ch
}

func (c *fakeCluster) Snapshot(context.Context, time.Time) (Snapshot, error) {
	return Snapshot{PendingPods: c.pending, Nodes: c.list()}, nil
}

func (c *fakeCluster) list() []Node {
	c.infra.mu.Lock()
	defer c.infra.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	var nodes []Node
	for _, m := range c.infra.vms {
		if c.absent[m.VMID] {
			continue
		}
		if n, ok := c.nodes[m.VMID]; ok {
			nodes = append(nodes, n)
		} else if m.Step == StepJoined {
			nodes = append(nodes, worker(m.Name, 50, 50, func(n *Node) { n.VMID, n.SystemUUID = m.VMID, m.UUID }))
		}
	}
	for _, n := range c.orphans {
		if !slices.Contains(c.deleted, n.Name) {
			nodes = append(nodes, n)
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes
}

func (c *fakeCluster) NodeOf(_ context.Context, m Machine) (*Node, error) {
	if c.onNodeOf != nil {
		c.onNodeOf()
	}
	n, ok := NodeOf(m, c.list())
	if !ok {
		return nil, nil
	}
	return &n, nil
}
func (c *fakeCluster) WaitReady(ctx context.Context, name string, _ time.Duration) error {
	c.mu.Lock()
	ch := c.ready[name]
	c.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (c *fakeCluster) RecordRemovalStep(ctx context.Context, name, step, _ string) error {
	c.mu.Lock()
	needCtx := c.marksNeedCtx
	c.mu.Unlock()
	if needCtx && ctx.Err() != nil {
		return ctx.Err()
	}
	c.infra.note("annotate " + name + " " + step)
	return nil
}
func (c *fakeCluster) Cordon(_ context.Context, name string, on bool) error {
	c.infra.note(fmt.Sprintf("cordon %s %v", name, on))
	return nil
}
func (c *fakeCluster) SetStandby(_ context.Context, name string, on bool) error {
	c.infra.note(fmt.Sprintf("standby %s %v", name, on))
	return nil
}
func (c *fakeCluster) Drain(ctx context.Context, name string) error {
	c.mu.Lock()
	c.drains++
	hold, entered := c.drainHold, c.drainEntered
	c.mu.Unlock()
	if entered != nil {
		entered <- name
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	err, after := c.drainErr, c.afterDrain
	c.mu.Unlock()
	if err == nil && after != nil {
		after()
	}
	return err
}
func (c *fakeCluster) DeleteNode(_ context.Context, n Node) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleted = append(c.deleted, n.Name)
	return nil
}
func (c *fakeCluster) Event(node, _, reason, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, reason+" "+node)
}

func (*fakeCluster) PodEvent(string, string, string, string, string) {}

type countingObserver struct {
	mu    sync.Mutex
	done  map[OperationKind][]error
	holds int
}

func (c *countingObserver) Step(OperationKind, string, time.Duration) {}
func (c *countingObserver) SafetyHold(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holds++
}
func (c *countingObserver) Done(kind OperationKind, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done[kind] = append(c.done[kind], err)
}

// TestTickLeavesAFreshCloneToItsCreation: a tick that lists the VM a
// creation has just cloned, before Create has returned, neither resumes it
// as a second provisioning (two configs sent to one machine) nor counts it
// twice as capacity on its way.
func TestTickLeavesAFreshCloneToItsCreation(t *testing.T) {
	infra, os := newFakeInfra(), &fakeOS{applied: map[string]int{}}
	obs := &countingObserver{done: map[OperationKind][]error{}}
	p := testPolicy()
	p.MinWorkers, p.MaxWorkers = 1, 3
	r := NewReconciler(infra, os, &fakeCluster{infra: infra}, p, ReconcileOptions{Now: func() time.Time { return t0 }, Observer: obs})
	ctx := context.Background()
	plan, err := r.Tick(ctx)
	if err != nil || len(plan.Actions) != 1 || plan.Actions[0].Count != 1 {
		t.Fatalf("first tick: %+v, %v", plan.Actions, err)
	}
	vmid := <-infra.cloned
	// The clone is listed, unlocked, at step cloned; Create has not returned.
	plan, err = r.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 0 {
		t.Errorf("second tick adds again: %+v", plan.Actions)
	}
	st := r.Status()
	if len(st.Operations) != 1 {
		t.Errorf("operations while creating: %+v", st.Operations)
	}
	close(infra.release)
	r.Wait()
	if _, err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	r.Wait()
	infra.mu.Lock()
	defer infra.mu.Unlock()
	if infra.configure[vmid] != 1 || infra.vms[vmid].Step != StepJoined {
		t.Errorf("VM %d configured %d times, at step %q", vmid, infra.configure[vmid], infra.vms[vmid].Step)
	}
	if n := os.applied[infra.vms[vmid].Name]; n != 1 {
		t.Errorf("machine config sent %d times", n)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if d := obs.done[OpProvision]; len(d) != 1 || d[0] != nil {
		t.Errorf("provisions finished: %v", d)
	}
}

// TestTickResumesALeftOverClone: with no creation in flight, a clone left
// at step cloned (a crash between clone and configure) is provisioned on.
func TestTickResumesALeftOverClone(t *testing.T) {
	infra, os := newFakeInfra(), &fakeOS{applied: map[string]int{}}
	infra.vms[100] = Machine{VMID: 100, Name: "left", Host: "pve1", Step: StepCloned, Created: t0, UUID: uuidOf(100)}
	infra.next = 101
	p := testPolicy()
	p.MinWorkers, p.MaxWorkers = 1, 3
	r := NewReconciler(infra, os, &fakeCluster{infra: infra}, p, ReconcileOptions{Now: func() time.Time { return t0 }})
	plan, err := r.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 0 {
		t.Errorf("adds beside the clone it resumes: %+v", plan.Actions)
	}
	r.Wait()
	infra.mu.Lock()
	defer infra.mu.Unlock()
	if infra.configure[100] != 1 || infra.vms[100].Step != StepJoined || os.applied["left"] != 1 {
		t.Errorf("left-over clone: configured %d, step %q, applied %d", infra.configure[100], infra.vms[100].Step, os.applied["left"])
	}
}

// TestARefillBeingClonedIsNotCapacity: a standby worker still cloning is
// told to the engine as a refill, so pods going pending meanwhile get a
// worker of their own.
func TestARefillBeingClonedIsNotCapacity(t *testing.T) {
	infra, os := newFakeInfra(), &fakeOS{applied: map[string]int{}}
	infra.vms[99] = Machine{VMID: 99, Name: "w0", Host: "pve1", Step: StepJoined, Created: t0.Add(-time.Hour), UUID: uuidOf(99)}
	cluster := &fakeCluster{infra: infra}
	p := standbyPolicy(1)
	p.MinWorkers = 1
	r := NewReconciler(infra, os, cluster, p, ReconcileOptions{Now: func() time.Time { return t0 }})
	ctx := context.Background()
	plan, err := r.Tick(ctx)
	if err != nil || len(plan.Actions) != 1 || plan.Actions[0].Kind != ActionRefill {
		t.Fatalf("calm tick: %+v, %v", plan.Actions, err)
	}
	<-infra.cloned
	cluster.pending = pending(1, 3000, gi, t0.Add(-time.Minute))
	plan, err = r.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 1 || plan.Actions[0].Kind != ActionAdd || plan.Actions[0].Count != 1 {
		t.Errorf("pending pod while a refill clones: %+v", plan.Actions)
	}
	if ops := r.Status().Operations; len(ops) == 0 || ops[0].Kind != OpRefill {
		t.Errorf("operations: %+v", ops)
	}
	close(infra.release)
	r.Wait()
}

// TestTickDoesNotRedoAStepThatEndedWhileListing: operations that end
// while a tick reads the VMs (the list still shows them at applying) are
// neither resumed nor counted from that list: the tick reads again, and
// after three reads leaves the last one's late ones for the next tick.
func TestTickDoesNotRedoAStepThatEndedWhileListing(t *testing.T) {
	infra, os := newFakeInfra(), &fakeOS{applied: map[string]int{}}
	close(infra.release)
	cluster := &fakeCluster{infra: infra}
	obs := &countingObserver{done: map[OperationKind][]error{}}
	p := testPolicy()
	p.MinWorkers, p.MaxWorkers, p.MaxStep = 3, 6, 3
	var held []chan struct{}
	for vmid := 100; vmid < 103; vmid++ {
		held = append(held, cluster.hold(fmt.Sprintf("w%d", vmid)))
	}
	r := NewReconciler(infra, os, cluster, p, ReconcileOptions{Now: func() time.Time { return t0 }, Observer: obs})
	ctx := context.Background()
	if plan, err := r.Tick(ctx); err != nil || len(plan.Actions) != 1 || plan.Actions[0].Count != 3 {
		t.Fatalf("first tick: %+v, %v", plan.Actions, err)
	}
	// All three wait for their Node at applying.
	for deadline := time.Now().Add(10 * time.Second); ; {
		infra.mu.Lock()
		n := 0
		for _, m := range infra.vms {
			if m.Step == StepApplying {
				n++
			}
		}
		infra.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("provisions never reached applying")
		}
		time.Sleep(time.Millisecond)
	}
	// Each read of the VMs lets one provision finish before returning.
	lists := 0
	infra.onList = func() {
		if lists < len(held) {
			close(held[lists])
			for deadline := time.Now().Add(10 * time.Second); ; {
				r.mu.Lock()
				done := len(r.ops) == 2-lists
				r.mu.Unlock()
				if done || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		lists++
	}
	plan, err := r.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range held[min(lists, len(held)):] {
		close(ch) // read fewer times than expected: let the rest finish
	}
	r.Wait()
	if lists != 3 {
		t.Errorf("the VMs were read %d times, want 3", lists)
	}
	infra.onList = nil
	if len(plan.Actions) != 0 {
		t.Errorf("tick while provisions ended: %+v", plan.Actions)
	}
	if _, err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	r.Wait()
	for vmid := 100; vmid < 103; vmid++ {
		name := fmt.Sprintf("w%d", vmid)
		if os.applied[name] != 1 || infra.vms[vmid].Step != StepJoined {
			t.Errorf("%s: config sent %d times, step %q", name, os.applied[name], infra.vms[vmid].Step)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if d := obs.done[OpProvision]; len(d) != 3 {
		t.Errorf("provisions finished: %v (one redone from a stale list?)", d)
	}
}
