package scaler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The chaos test drives the reconciler through seeded random sequences of
// load changes, faults (a VM or Node deleted by hand, our tags removed, a
// token that loses VM.Audit, a drain a PDB refuses, a reset nobody
// answers) and daemon crashes at random points, including between an
// adapter call and the step it records. After every tick it checks the
// safety invariants:
//   - no Node deleted while its VM exists;
//   - no VM destroyed while its Node held workload that was not drained;
//   - no VM that is not ours (tags removed, foreign) touched;
//   - no Talos call to a machine whose UUID is not the VM's;
//   - no reset of a machine whose Node was not drained by us since it was
//     last schedulable (a person's cordon is no drain of ours);
//   - no destroy or power-off of a VM whose SMBIOS UUID the daemon did not
//     know (listed without it), unless it never started;
//   - no destroy sent by a daemon that has stopped (crashed, lost its Lease);
// and, once the faults end, that the workers come back within policy.
//
// CHAOS_SEQUENCES sets how many sequences run (20 by default: `make test`;
// `make chaos` runs 200); CHAOS_SEED=N replays one.

// chaosWorld is Proxmox, Talos and Kubernetes in one state, with the
// invariants checked at every call that could break them.
type chaosWorld struct {
	mu         sync.Mutex
	rng        *rand.Rand
	vms        map[int]*chaosVM
	nodes      map[string]*chaosNode
	next       int
	pending    int          // pending pods (each wants a whole worker)
	hideAll    bool         // the token lost VM.Audit: no VM listed, the template neither
	hideNodes  bool         // the kubeconfig points at another cluster
	hidden     map[int]bool // VMs left out of the list (VM.Audit lost on them)
	noUUID     map[int]bool // VMs listed without their UUID (config unreadable)
	down       bool         // the daemon crashed; a new one has not started yet
	drainFails bool
	resetDeaf  bool
	crashP     float64 // chance that a call crashes the daemon right after it succeeds
	crash      func()  // aborts the running reconciler
	crashes    int
	violations []string
	// gen is the template's generation: a VM cloned from an older one
	// has drifted (a rolling replacement's work).
	gen int
	// replacements counts the new VMs made to replace a drifted worker.
	replacements int
}

type chaosVM struct {
	vmid    int
	name    string
	uuid    string
	step    string
	ours    bool // our tags (removed by hand: false)
	foreign bool
	running bool
	ran     bool // started at least once: a machine ran
	created time.Time
	gen     int // the template generation it was cloned from
	// replaces and replacesVMID: the marker of a replacement's new VM.
	replaces     string
	replacesVMID int
}

type chaosNode struct {
	name     string
	vmid     int
	uuid     string
	ready    bool
	workload bool // pods other than DaemonSet ones
	drained  bool
	annot    string
	annotOf  string
	standby  bool
	cordoned bool
	ours     bool // the cordon is ours (AnnotationCordoned)
	// drainedByUs: our drain finished since the Node was last schedulable
	// or cordoned by a person.
	drainedByUs bool
}

func (w *chaosWorld) violate(format string, a ...any) {
	w.violations = append(w.violations, fmt.Sprintf(format, a...))
}

// maybeCrash, called with w.mu held after a call took effect, aborts the
// daemon with probability crashP: what the call did stays, the step it
// belongs to is not recorded.
func (w *chaosWorld) maybeCrash() error {
	if w.crashNow() {
		return errors.New("chaos: the daemon crashed")
	}
	return nil
}

// crashNow aborts the daemon with probability crashP (w.mu held).
func (w *chaosWorld) crashNow() bool {
	if w.crash != nil && w.rng.Float64() < w.crashP {
		w.crashes++
		w.down = true
		w.crash()
		return true
	}
	return false
}

// vm finds one of our VMs for a call that needs one.
func (w *chaosWorld) ourVM(vmid int, what string) (*chaosVM, error) {
	v := w.vms[vmid]
	switch {
	case v == nil:
		return nil, fmt.Errorf("VM %d does not exist", vmid)
	case v.foreign || !v.ours:
		w.violate("%s on VM %d, which is not ours", what, vmid)
		return nil, fmt.Errorf("VM %d is not ours", vmid)
	}
	return v, nil
}

// Infra.

func (w *chaosWorld) Machines(context.Context) ([]Machine, []Host, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Machine
	for _, v := range w.vms {
		if v.ours && !v.foreign && !w.hideAll && !w.hidden[v.vmid] {
			m := Machine{VMID: v.vmid, Name: v.name, Host: "pve1", Running: v.running, Stopped: !v.running, Step: v.step, UUID: v.uuid, Created: v.created,
				Replaces: v.replaces, ReplacesVMID: v.replacesVMID}
			if v.gen != w.gen && v.step == StepJoined {
				m.Drift = "cloned from template 9000 whose configuration has changed since"
			}
			if w.noUUID[v.vmid] {
				m.UUID = ""
			}
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VMID < out[j].VMID })
	return out, []Host{{Name: "pve1", Online: true, MemoryFree: 256 * gi}}, nil
}

func (w *chaosWorld) Create(ctx context.Context, _ string, _ []string, replaces Machine) (Machine, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hideAll {
		return Machine{}, errors.New("proxmox.template not found in the cluster (or the token may not see it)")
	}
	if replaces.VMID != 0 {
		// At most one surge: no other new VM made to replace a worker
		// whose VM is still there.
		for _, o := range w.vms {
			if t := w.vms[o.replacesVMID]; o.replaces != "" && t != nil && NormalUUID(t.uuid) == o.replaces {
				w.violate("a second replacement VM (for VM %d) while VM %d still replaces VM %d", replaces.VMID, o.vmid, o.replacesVMID)
			}
		}
	}
	if replaces.VMID != 0 {
		w.replacements++
	}
	w.next++
	v := &chaosVM{vmid: w.next, name: "w" + strconv.Itoa(w.next), uuid: fmt.Sprintf("uuid-%d-%d", w.next, w.rng.IntN(1<<30)), step: StepCloned, ours: true, created: chaosNow(ctx),
		gen: w.gen, replaces: NormalUUID(replaces.UUID), replacesVMID: replaces.VMID}
	w.vms[v.vmid] = v
	m := Machine{VMID: v.vmid, Name: v.name, Host: "pve1", Step: StepCloned, UUID: v.uuid, Created: v.created}
	return m, w.maybeCrash()
}

// chaosNow is the reconciler's clock, carried in the context by tests.
func chaosNow(context.Context) time.Time { return chaosClock.Now() }

var chaosClock = &clock{now: t0}

func (w *chaosWorld) record(vmid int, step, what string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, err := w.ourVM(vmid, what)
	if err != nil {
		return err
	}
	v.step = step
	return w.maybeCrash()
}

func (w *chaosWorld) Configure(ctx context.Context, vmid int, step string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return w.record(vmid, step, "configure")
}

func (w *chaosWorld) RecordStep(ctx context.Context, vmid int, step string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return w.record(vmid, step, "record "+step)
}

func (w *chaosWorld) Start(ctx context.Context, vmid int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	v, err := w.ourVM(vmid, "start")
	if err != nil {
		return err
	}
	v.running, v.ran = true, true
	if n := w.nodes[v.name]; n != nil && n.uuid == v.uuid {
		n.ready = true // a standby worker boots
	}
	return w.maybeCrash()
}

func (w *chaosWorld) Address(ctx context.Context, vmid int) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return "127.0.0.1", nil
}

func (w *chaosWorld) Destroy(ctx context.Context, m Machine) error {
	if err := ctx.Err(); err != nil {
		return err // the API client sends nothing on an ended context
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.vms[m.VMID]
	if v == nil {
		return nil
	}
	if _, err := w.ourVM(m.VMID, "destroy"); err != nil {
		return err
	}
	if w.down {
		w.violate("VM %d destroyed by a daemon that had stopped", m.VMID)
	}
	if m.UUID == "" && v.ran {
		w.violate("VM %d destroyed while its SMBIOS UUID was unknown to the daemon", m.VMID)
	}
	for _, n := range w.nodes {
		if n.vmid == v.vmid && n.uuid == v.uuid && n.workload && !n.drained {
			w.violate("VM %d destroyed while its Node %s held workload that was not drained", v.vmid, n.name)
		}
	}
	delete(w.vms, m.VMID)
	if n := w.nodes[v.name]; n != nil && n.uuid == v.uuid {
		n.ready = false // its kubelet is gone
	}
	return w.maybeCrash()
}

func (w *chaosWorld) PowerOff(_ context.Context, m Machine) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, err := w.ourVM(m.VMID, "power off")
	if err != nil {
		return err
	}
	if m.UUID == "" {
		w.violate("VM %d powered off while its SMBIOS UUID was unknown to the daemon", m.VMID)
	}
	if m.UUID != v.uuid {
		return fmt.Errorf("power off %d: another machine under that vmid", m.VMID)
	}
	v.running = false
	if n := w.nodes[v.name]; n != nil && n.uuid == v.uuid {
		n.ready = false
	}
	return w.maybeCrash()
}

func (w *chaosWorld) Gone(_ context.Context, vmid int) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.vms[vmid] == nil, nil
}

func (w *chaosWorld) Sane(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hideAll {
		return errors.New("the token lost VM.Audit")
	}
	return nil
}

// NodeOS.

func (w *chaosWorld) talos(m Machine, what string) error {
	v := w.vms[m.VMID]
	if v != nil && m.UUID == "" && what == "apply" {
		// As talos.NodeOS with Identities: a UUID the listing did not know
		// is read afresh from the VM, and the machine must report it.
		m.UUID = v.uuid
	}
	if v == nil || m.UUID == "" || v.uuid != m.UUID {
		w.violate("Talos %s sent to VM %d as %q, whose machine is not that", what, m.VMID, m.UUID)
		return errors.New("not that machine")
	}
	return nil
}

func (w *chaosWorld) Apply(ctx context.Context, m Machine, _ string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.talos(m, "apply"); err != nil {
		return err
	}
	v := w.vms[m.VMID]
	// The machine installs and joins at once.
	w.nodes[v.name] = &chaosNode{name: v.name, vmid: v.vmid, uuid: v.uuid, ready: true, standby: m.ForStandby}
	return w.maybeCrash()
}

func (w *chaosWorld) Reset(_ context.Context, m Machine, _ string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.talos(m, "reset"); err != nil {
		return err
	}
	if w.resetDeaf {
		return errors.New("connection refused")
	}
	for name, n := range w.nodes {
		if n.vmid == m.VMID && n.uuid == m.UUID {
			if n.workload && !n.drained {
				w.violate("machine %d reset while its Node held workload that was not drained", m.VMID)
			}
			if !n.drainedByUs {
				w.violate("machine %d reset while its Node %s was not drained by us (cordoned %v, ours %v)", m.VMID, name, n.cordoned, n.ours)
			}
			delete(w.nodes, name) // a reset machine leaves the cluster
		}
	}
	return w.maybeCrash()
}

func (w *chaosWorld) Unreachable(err error) bool {
	return err != nil && err.Error() == "connection refused"
}

// Cluster.

func (w *chaosWorld) toNode(n *chaosNode) Node {
	u := Resources{MilliCPU: 500, Memory: gi}
	node := Node{Name: n.name, Managed: true, VMID: n.vmid, SystemUUID: n.uuid, Ready: n.ready, Unschedulable: n.cordoned, Standby: n.standby,
		Created: t0.Add(-time.Hour), Allocatable: shape, Usage: u, Requests: u}
	if n.annot != "" || n.ours {
		node.Annotations = map[string]string{}
	}
	if n.annot != "" {
		node.Annotations[AnnotationRemoval], node.Annotations[AnnotationRemovalOf] = n.annot, n.annotOf
	}
	if n.ours {
		node.Annotations[AnnotationCordoned] = "true"
	}
	if n.workload && !n.drained {
		node.Pods = []Pod{{Namespace: "app", Name: n.name + "-app", OwnerKind: "ReplicaSet", Requests: u}}
	}
	return node
}

func (w *chaosWorld) Snapshot(context.Context, time.Time) (Snapshot, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s Snapshot
	for _, n := range w.nodes {
		if !w.hideNodes {
			s.Nodes = append(s.Nodes, w.toNode(n))
		}
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Name < s.Nodes[j].Name })
	for i := range w.pending {
		s.PendingPods = append(s.PendingPods, PendingPod{Namespace: "app", Name: "p" + strconv.Itoa(i), Requests: Resources{MilliCPU: 3500, Memory: gi}, Since: t0.Add(-time.Hour)})
	}
	return s, nil
}

func (w *chaosWorld) NodeOf(_ context.Context, m Machine) (*Node, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// The daemon may die as it reads (the read itself answers): what it
	// started next, a discard's destroy say, must not go out.
	w.crashNow()
	if w.hideNodes {
		return nil, nil
	}
	for _, n := range w.nodes {
		node := w.toNode(n)
		if SameWorker(m, node) {
			return &node, nil
		}
	}
	return nil, nil
}

func (w *chaosWorld) WaitReady(ctx context.Context, name string, _ time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := w.nodes[name]; n == nil || !n.ready {
		return fmt.Errorf("node %s not Ready", name)
	}
	return nil
}

func (w *chaosWorld) node(name string) *chaosNode {
	if n := w.nodes[name]; n != nil {
		return n
	}
	return &chaosNode{} // a Node that is gone: writes are lost
}

func (w *chaosWorld) RecordRemovalStep(_ context.Context, name, step, uuid string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.node(name).annot, w.node(name).annotOf = step, uuid
	return w.maybeCrash()
}

// Cordon is kube.Client.Cordon: a cordon of ours carries our annotation;
// a person's cordon is never claimed nor taken away (the standby taint
// stands for ours, an earlier version's park).
func (w *chaosWorld) Cordon(_ context.Context, name string, on bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cordon(w.node(name), on)
	return w.maybeCrash()
}

func (w *chaosWorld) cordon(n *chaosNode, on bool) {
	switch {
	case on && n.cordoned: // ours already, or a person's: not claimed
	case on:
		n.cordoned, n.ours = true, true
	case n.ours || n.standby:
		n.cordoned, n.ours = false, false
		n.drainedByUs = false // schedulable: pods may land
	}
}

func (w *chaosWorld) SetStandby(_ context.Context, name string, on bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.node(name).standby = on
	return w.maybeCrash()
}

func (w *chaosWorld) Drain(_ context.Context, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.node(name)
	w.cordon(n, true)
	if w.drainFails && n.workload {
		return errors.New("Cannot evict pod as it would violate the pod's disruption budget")
	}
	n.drained, n.drainedByUs = true, true
	return w.maybeCrash()
}

func (w *chaosWorld) DeleteNode(_ context.Context, want Node) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	name := want.Name
	n := w.nodes[name]
	if n == nil {
		return nil
	}
	if n.vmid != want.VMID || n.uuid != want.SystemUUID {
		return fmt.Errorf("Node %s is another machine's now: not deleted", name) // the adapter's identity check
	}
	if v := w.vms[n.vmid]; v != nil && v.uuid == n.uuid {
		w.violate("Node %s deleted while its VM %d exists", name, n.vmid)
	}
	delete(w.nodes, name)
	return w.maybeCrash()
}

func (w *chaosWorld) Event(string, string, string, string)            {}
func (w *chaosWorld) PodEvent(string, string, string, string, string) {}

// chaos faults: each changes the world as a person or an outage would.
var chaosFaults = []struct {
	name string
	do   func(w *chaosWorld)
}{
	{"a VM deleted by hand", func(w *chaosWorld) {
		if v := w.anyVM(); v != nil {
			delete(w.vms, v.vmid)
			if n := w.nodes[v.name]; n != nil && n.uuid == v.uuid {
				n.ready = false // its kubelet is gone
			}
		}
	}},
	{"a Node deleted by hand", func(w *chaosWorld) {
		for _, n := range w.nodes {
			delete(w.nodes, n.name)
			return
		}
	}},
	{"our tags removed from a worker", func(w *chaosWorld) {
		if v := w.anyVM(); v != nil {
			v.ours = false
		}
	}},
	{"the token loses VM.Audit", func(w *chaosWorld) { w.hideAll = true }},
	{"the token loses VM.Audit on two VMs", func(w *chaosWorld) {
		for range 2 {
			if v := w.anyVM(); v != nil {
				w.hidden[v.vmid] = true
			}
		}
	}},
	{"the kubeconfig points at another cluster", func(w *chaosWorld) { w.hideNodes = true }},
	{"drains refused", func(w *chaosWorld) { w.drainFails = true }},
	{"resets unanswered", func(w *chaosWorld) { w.resetDeaf = true }},
	{"a workload lands on every schedulable worker", func(w *chaosWorld) {
		for _, n := range w.nodes {
			if n.ready && !n.cordoned && !n.standby {
				n.workload, n.drained = true, false
			}
		}
	}},
	// A pod that tolerates everything lands on a cordoned, drained worker
	// (a removal's, say): a removal resumed after it must not go on.
	{"a workload lands on a drained worker", func(w *chaosWorld) {
		for _, n := range w.nodes {
			if n.ready && n.cordoned {
				n.workload, n.drained = true, false
			}
		}
	}},
	// A person cordons a worker (kubectl cordon: no annotation of ours),
	// say one a withdraw left with a stale removal mark: no drain of ours.
	{"a person cordons a worker", func(w *chaosWorld) {
		for _, n := range w.nodes {
			if !n.cordoned {
				n.cordoned, n.drainedByUs = true, false
				return
			}
		}
	}},
	// A withdraw crashed between its uncordon and its unmark (a stale
	// "drained" mark of ours), then a person cordoned the Node: their
	// cordon is no drain of ours, the removal must not go on from it.
	{"a person cordons a Node with a stale removal mark", func(w *chaosWorld) {
		for _, n := range w.nodes {
			if v := w.vms[n.vmid]; v != nil && v.uuid == n.uuid && v.step == StepJoined && !n.cordoned && !n.standby {
				n.annot, n.annotOf = RemovalDrained, n.uuid
				n.cordoned, n.ours, n.drainedByUs = true, false, false
				return
			}
		}
	}},
	// A person uncordons a worker (kubectl uncordon leaves annotations).
	{"a person uncordons a worker", func(w *chaosWorld) {
		for _, n := range w.nodes {
			if n.cordoned && !n.standby {
				n.cordoned, n.drainedByUs = false, false
				return
			}
		}
	}},
	// A VM's config is unreadable (its host half up): listed without its
	// SMBIOS UUID, it must not be destroyed or powered off.
	// One being provisioned, removed or parked if there is one (a joined
	// worker's Node then lacks its VM: the safety hold covers that).
	{"a VM listed without its UUID", func(w *chaosWorld) {
		for _, v := range w.vms {
			if !v.foreign && v.step != StepJoined {
				w.noUUID[v.vmid] = true
				return
			}
		}
		if v := w.anyVM(); v != nil {
			w.noUUID[v.vmid] = true
		}
	}},
	// A new template (a Talos upgrade): every worker made before has
	// drifted, and the rolling replacement goes to work.
	{"the template changes", func(w *chaosWorld) { w.gen++ }},
	{"load: pending pods", func(w *chaosWorld) { w.pending = 1 + w.rng.IntN(4) }},
	{"load: none", func(w *chaosWorld) { w.pending = 0 }},
}

func (w *chaosWorld) anyVM() *chaosVM {
	ids := make([]int, 0, len(w.vms))
	for id, v := range w.vms {
		if !v.foreign {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	return w.vms[ids[w.rng.IntN(len(ids))]]
}

// runChaos runs one seeded sequence and returns what broke, and how many
// times the daemon crashed.
func runChaos(seed uint64) ([]string, int) {
	chaosClock = &clock{now: t0}
	w := &chaosWorld{rng: rand.New(rand.NewPCG(seed, 7)), vms: map[int]*chaosVM{}, nodes: map[string]*chaosNode{}, next: 100, hidden: map[int]bool{}, noUUID: map[int]bool{}}
	w.vms[999] = &chaosVM{vmid: 999, name: "w999", uuid: "foreign", foreign: true, running: true}
	p := testPolicy()
	p.MinWorkers, p.MaxWorkers = 2, 5
	p.PendingPods = true
	p.ReplaceDrifted = true
	newReconciler := func() *Reconciler {
		o := ReconcileOptions{Now: chaosClock.Now, MaxProvisionTime: 10 * time.Minute, BackoffMin: time.Second, BackoffMax: time.Second}
		if os.Getenv("CHAOS_DEBUG") != "" {
			o.Log, _ = zap.NewDevelopment()
		}
		return NewReconciler(w, w, w, p, o)
	}
	r := newReconciler()
	w.crash = func() { r.Abort() }
	step := func() {
		chaosClock.Add(time.Duration(5+w.rng.IntN(40)) * time.Second)
		_, _ = r.Tick(context.Background())
		r.Wait()
		if r.halted() { // crashed: a new daemon starts on what is left
			r = newReconciler()
			w.mu.Lock()
			w.crash = func() { r.Abort() }
			w.down = false
			w.mu.Unlock()
		}
	}
	for range 30 + w.rng.IntN(30) {
		w.mu.Lock()
		w.crashP = 0.05
		if w.rng.IntN(4) == 0 {
			f := chaosFaults[w.rng.IntN(len(chaosFaults))]
			if os.Getenv("CHAOS_DEBUG") != "" {
				fmt.Println("FAULT:", f.name)
			}
			f.do(w)
		}
		w.mu.Unlock()
		step()
	}
	// The faults end: the view is whole again, no crash, the workload gone.
	w.mu.Lock()
	w.crashP, w.hideAll, w.hideNodes, w.drainFails, w.resetDeaf, w.pending = 0, false, false, false, false, 0
	w.hidden, w.noUUID = map[int]bool{}, map[int]bool{}
	for _, n := range w.nodes {
		n.workload = false
	}
	// The operator answers the safety hold's message: Nodes whose VMs
	// they deleted by hand are deleted too, and workers whose Node they
	// deleted are rebooted (their kubelet registers again).
	for name, n := range w.nodes {
		if v := w.vms[n.vmid]; v == nil || v.uuid != n.uuid {
			delete(w.nodes, name)
		}
	}
	for _, v := range w.vms {
		if v.ours && !v.foreign && v.step == StepJoined && w.nodes[v.name] == nil {
			w.nodes[v.name] = &chaosNode{name: v.name, vmid: v.vmid, uuid: v.uuid, ready: true}
		}
	}
	for _, v := range w.vms {
		if !v.ours && !v.foreign { // a worker someone kept: it is theirs now
			delete(w.vms, v.vmid)
			for name, n := range w.nodes {
				if n.vmid == v.vmid && n.uuid == v.uuid {
					delete(w.nodes, name)
				}
			}
		}
	}
	w.mu.Unlock()
	for range 40 {
		chaosClock.Add(2 * ConfirmAbsence)
		step()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ready := 0
	for _, n := range w.nodes {
		if v := w.vms[n.vmid]; v != nil && v.uuid == n.uuid && n.ready && !n.standby && v.step == StepJoined {
			ready++
		}
	}
	// A person's cordons can hold a replacement's last step (the minimum
	// of schedulable workers without the old one): one surge is left.
	most := p.MaxWorkers
	for _, n := range w.nodes {
		if n.cordoned && !n.ours && !n.standby {
			most = p.MaxWorkers + 1
		}
	}
	if ready < p.MinWorkers || ready > most {
		st := r.Status()
		var holds []string
		if st.Plan != nil {
			for _, h := range st.Plan.Holds {
				holds = append(holds, h.Message)
			}
		}
		var nodes []string
		for _, n := range w.nodes {
			nodes = append(nodes, fmt.Sprintf("%+v", *n))
		}
		var vms []string
		for _, v := range w.vms {
			vms = append(vms, fmt.Sprintf("%+v", *v))
		}
		w.violate("%d Ready workers after the faults ended, want %d..%d (VMs %v, Nodes %v; holds %v; last error %q)", ready, p.MinWorkers, p.MaxWorkers, vms, nodes, holds, st.LastError)
	}
	if v := w.vms[999]; v == nil || !v.running {
		w.violate("the foreign VM was touched")
	}
	// The rollout is done: every worker is of the current template,
	// unless a person's cordon holds it (a cordoned worker is left alone,
	// and no removal may leave fewer schedulable workers than the minimum).
	cordoned := false
	for _, n := range w.nodes {
		cordoned = cordoned || n.cordoned && !n.ours && !n.standby
	}
	for _, v := range w.vms {
		if !cordoned && v.ours && !v.foreign && v.step == StepJoined && v.gen != w.gen {
			w.violate("VM %d (template generation %d of %d) still drifted after the faults ended (holds %v)", v.vmid, v.gen, w.gen, r.Status().Plan.Holds)
		}
	}
	replaced += w.replacements
	return w.violations, w.crashes
}

// replaced counts the replacements the chaos sequences made (one test at
// a time: TestChaos is not parallel).
var replaced int

func TestChaos(t *testing.T) {
	seqs := 20
	if s := os.Getenv("CHAOS_SEQUENCES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CHAOS_SEQUENCES=%q: expected a whole number of sequences", s)
		}
		seqs = n
	}
	seeds := make([]uint64, seqs)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: expected a whole number", s)
		}
		seeds = []uint64{n}
	}
	start := time.Now()
	crashes := 0
	replaced = 0
	for _, seed := range seeds {
		v, c := runChaos(seed)
		crashes += c
		if len(v) > 0 {
			t.Errorf("seed %d (replay: CHAOS_SEED=%d make chaos): %d violations, first: %v", seed, seed, len(v), v[:min(len(v), 5)])
		}
	}
	if len(seeds) >= 10 && crashes == 0 {
		t.Error("no sequence crashed the daemon: the crash injection does not work")
	}
	if len(seeds) >= 10 && replaced == 0 {
		t.Error("no sequence replaced a drifted worker: the template-change fault does not work")
	}
	t.Logf("%d chaos sequences, %d daemon crashes, %d replacement VMs, in %s", len(seeds), crashes, replaced, time.Since(start).Round(time.Millisecond))
}
