package scaler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Steps recorded on a VM (as a tag step-<name>) while it is provisioned or
// removed, so that a restarted daemon resumes where the last one stopped.
const (
	StepCloned     = "cloned"     // the VM exists; only its description says it is ours
	StepConfigured = "configured" // sized and tagged
	StepStarted    = "started"
	StepApplying   = "applying" // the Talos config is being sent: never sent twice
	StepJoined     = "joined"   // a Ready node: provisioning done
	StepRemoving   = "removing"
	StepResetting  = "resetting" // drained; the Talos reset is being sent
	StepReset      = "reset"     // the machine was reset: only the VM's destroy is left
	StepParking    = "parking"   // drained, being stopped into standby
	StepStandby    = "standby"   // stopped in standby
	StepWaking     = "waking"    // a standby worker being started
	StepRetiring   = "retiring"  // a stale standby worker being destroyed
)

// StandbyPrefix marks the provisioning steps of a VM built for standby
// ("pool-started"): a resumed build parks the worker instead of serving.
const StandbyPrefix = "pool-"

// Removal steps, recorded on the Node (annotation AnnotationRemoval).
const (
	RemovalMarked  = "marked"
	RemovalDrained = "drained"
	RemovalReset   = "reset"
)

// AnnotationRemoval records on a Node how far its removal got, and
// AnnotationRemovalOf the SMBIOS UUID of the machine it is about.
const (
	AnnotationRemoval   = "pve-autoscaler.io/removal"
	AnnotationRemovalOf = "pve-autoscaler.io/removal-of"
)

// AnnotationCordoned marks a cordon of ours, written in the same request
// as the cordon: only such a cordon (or one on a Node with our standby
// taint, an earlier version's park) is ever taken away; a Node a person
// cordoned stays cordoned, even once our removal marked it.
const AnnotationCordoned = "pve-autoscaler.io/cordoned"

// Machine is one of this cluster's VMs as the infrastructure reports it.
type Machine struct {
	VMID int    `json:"vmid"`
	Name string `json:"name"`
	Host string `json:"host"`
	// UUID is the VM's SMBIOS UUID (smbios1 uuid=, which PVE generates
	// for every clone): the identity a Node (systemUUID) and a Talos
	// machine (SystemInformation) must show to be this VM. Empty: unknown.
	UUID    string `json:"uuid,omitempty"`
	Running bool   `json:"running"`
	// Stopped: PVE reports the VM stopped. Not running and not stopped:
	// its state is unknown (its host offline).
	Stopped bool   `json:"stopped,omitempty"`
	Step    string `json:"step"`
	// Locked is true while PVE holds a lock on the VM (a clone still copying).
	Locked bool `json:"locked,omitempty"`
	// Created is when the VM was cloned (zero: unknown).
	Created time.Time `json:"created,omitzero"`
	// ForStandby: built for standby (its steps carry StandbyPrefix).
	ForStandby bool `json:"for_standby,omitempty"`
	// Pool is the worker pool the VM was made in (its tag pool-<name>;
	// "": made before pools, or the first pool).
	Pool string `json:"pool,omitempty"`
	// Stale, for a standby worker, says why it must not be started
	// (its template changed since it was cloned).
	Stale string `json:"stale,omitempty"`
	// Drift, for a joined worker, says how it differs from what a new
	// worker would be (template, size, Talos config): listed by plan.
	Drift string `json:"drift,omitempty"`
	// Replaces and ReplacesVMID name the worker this VM was made to
	// replace (its SMBIOS UUID and vmid, from the clone's description):
	// a rolling replacement's new worker (Replacement).
	Replaces     string `json:"replaces,omitempty"`
	ReplacesVMID int    `json:"replaces_vmid,omitempty"`
}

// Infra is the Proxmox side of the reconciler.
type Infra interface {
	// Machines lists this cluster's VMs, wherever they run now, and the hosts' room.
	Machines(ctx context.Context) ([]Machine, []Host, error)
	// Create places (on one of hosts, when given), allocates an id and
	// clones a VM of worker pool pool ("": the first pool) whose
	// description marks it ours; when replaces names a worker (its VMID
	// and UUID), the same description records it (Machine.Replaces): the
	// new VM is that worker's replacement from its first moment.
	Create(ctx context.Context, pool string, hosts []string, replaces Machine) (Machine, error)
	// Configure sizes and tags a VM, recording step.
	Configure(ctx context.Context, vmid int, step string) error
	// RecordStep re-tags a VM with the step reached.
	RecordStep(ctx context.Context, vmid int, step string) error
	Start(ctx context.Context, vmid int) error
	// Address is the VM's IP (guest agent or DHCP reservations).
	Address(ctx context.Context, vmid int) (string, error)
	// Destroy stops and destroys one of our VMs; a VM gone is success. The
	// adapter checks ownership (and m's UUID, when known) on a fresh read
	// right before each destructive call.
	Destroy(ctx context.Context, m Machine) error
	// PowerOff shuts one of our VMs down and keeps it; stopped already is
	// success. Like Destroy, it checks ownership and m's UUID (when known)
	// on a fresh read first.
	PowerOff(ctx context.Context, m Machine) error
	// Gone reads one VM directly (not a list) and reports true only when
	// PVE answers that it does not exist on any online host.
	Gone(ctx context.Context, vmid int) (bool, error)
	// Sane checks that the VM list can be trusted to show what is missing:
	// the template is visible and the token still holds VM.Audit.
	Sane(ctx context.Context) error
}

// NodeOS is the Talos side: the operating system on the worker VM.
type NodeOS interface {
	Apply(ctx context.Context, m Machine, ip string) error
	Reset(ctx context.Context, m Machine, ip string) error
	// Unreachable reports whether a Reset error means the node did not answer.
	Unreachable(err error) bool
}

// Cluster is the Kubernetes side.
type Cluster interface {
	Snapshot(ctx context.Context, now time.Time) (Snapshot, error)
	WaitReady(ctx context.Context, name string, timeout time.Duration) error
	// RecordRemovalStep records a removal step on the Node ("" clears it),
	// with the SMBIOS UUID of the machine being removed
	// (AnnotationRemovalOf): a Node object a new machine took over under a
	// reused name never inherits a removal.
	RecordRemovalStep(ctx context.Context, name, step, uuid string) error
	// Cordon fails with *ForeignCordonError on a Node cordoned by someone
	// else.
	Cordon(ctx context.Context, name string, on bool) error
	// SetStandby taints (on) or untaints a Node TaintStandby.
	SetStandby(ctx context.Context, name string, on bool) error
	Drain(ctx context.Context, name string) error
	// DeleteNode deletes Node n.Name only while it is still n's machine:
	// read afresh, its vmid label and SMBIOS UUID are n's (SameWorker), and
	// the delete is conditional on the object read (a Node re-created under
	// the name meanwhile stays). A Node gone already is success.
	DeleteNode(ctx context.Context, n Node) error
	// NodeOf reads the Node of m's identity (vmid label and SMBIOS UUID,
	// see SameWorker) directly from the API server, with the pods bound
	// to it; nil when there is none.
	NodeOf(ctx context.Context, m Machine) (*Node, error)
	Event(node, eventType, reason, message string)
	// PodEvent records an Event on a pod (a pending pod's verdict).
	PodEvent(namespace, name, eventType, reason, message string)
}

// endedOp is an operation that has finished: when (in Reconciler.ends)
// and what it was.
type endedOp struct {
	at uint64
	op Operation
}

// ReconcileOptions are the reconciler's settings.
type ReconcileOptions struct {
	MaxProvisionTime time.Duration
	// BackoffMin and BackoffMax bound the exponential pause after failures (5m, 30m).
	BackoffMin, BackoffMax time.Duration
	// SkipUnreachableReset: go on with the removal when Talos does not
	// answer the reset (talos.reset_unreachable: skip).
	SkipUnreachableReset bool
	// RemoveUndrained: remove a node whose drain did not finish.
	RemoveUndrained bool
	// ConfirmAbsence is how far apart two direct reads must find a VM or a
	// Node gone before its absence counts (default ConfirmAbsence).
	ConfirmAbsence time.Duration
	// PodEventEvery is how often a pending pod is told the same verdict
	// again (default PodEventEvery).
	PodEventEvery time.Duration
	// StopGrace bounds how long running steps may finish after the context ends.
	StopGrace time.Duration
	DryRun    bool
	Log       *zap.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AfterStep, if set, is called after each step; tests use it to crash.
	AfterStep func(kind OperationKind, vmid int, step string)
	// Observer, if set, hears step durations and operation outcomes (metrics).
	Observer Observer
	// Wake, if set, signals that the cluster changed in a way worth a
	// decision now (a pod became unschedulable); Run decides at once instead
	// of at its next interval.
	Wake <-chan struct{}
}

// MinTickGap is the shortest pause Run makes between two decisions, so a
// burst of wake-ups (a Deployment scaled up, its pods going pending one by
// one) is decided on together.
const MinTickGap = 200 * time.Millisecond

// Observer hears what the reconciler does, for metrics.
type Observer interface {
	Step(kind OperationKind, step string, took time.Duration)
	Done(kind OperationKind, err error)
	// SafetyHold hears a tick on which destructive actions were withheld
	// because the observations disagreed (Observation.Disagreement).
	SafetyHold(reason string)
}

// Reconciler carries plans out and keeps operations going across restarts.
type Reconciler struct {
	infra   Infra
	os      NodeOS
	cluster Cluster
	policy  Policy
	o       ReconcileOptions
	log     *zap.Logger

	mu       sync.Mutex
	ops      map[int]*operation  // by vmid
	creating map[creatingKey]int // provisions and standby builds still cloning (no vmid yet), by kind and pool
	// ends counts finished operations; ended is, by vmid, the count when
	// an operation on that VM finished, so a VM list read before that is
	// not taken for the VM's state (its last step may be missing from it).
	ends  uint64
	ended map[int]endedOp
	// listGen is ends when the VM list this tick acts on was read: an
	// operation that ended after it may show in that list at an earlier
	// step, and nothing starts on its VM until a later list.
	listGen  uint64
	hist     History
	past     *LoadMemory            // the load of the decisions made, for Policy.Seasons
	said     map[string]saidVerdict // pending pods' last event, by namespace/name
	failures int
	lastErr  string // the last error seen, kept until another replaces it
	// replaceFailures: replacements' new workers failed in a row;
	// resumedFailure: when such a resumed one last failed (replacementDone).
	replaceFailures int
	resumedFailure  time.Time
	// vmGone and nodeGone hold the direct reads that found a VM (of a
	// managed Node) or a Node (of a joined VM) gone, by vmid.
	vmGone, nodeGone Absence
	hold             string       // why destructive actions are withheld ("" when not)
	kept             map[int]bool // vmids whose VM exists but is not ours (see Observation.Kept)
	stuck            map[int]stuckVM
	keptWhy          map[int]string // VMs the last resume kept (ResumeKeep), with why
	refused          []string       // the last refusals (refuse), newest last
	last             Status
	wg               sync.WaitGroup
	work             context.Context
	cancel           context.CancelFunc
	// halt ends as soon as the reconciler stops (Stop or Abort), before
	// work (which running steps keep through StopGrace): what must not
	// start once stopping, such as discard's destroy, runs on it.
	halt     context.Context
	haltNow  context.CancelFunc
	stopping bool
	// paused is the pause the last tick read (Snapshot.Control): running
	// operations stop at their next step boundary, left resumable.
	paused *Pause
}

type operation struct {
	kind    OperationKind
	vmid    int
	name    string
	host    string
	step    string
	started time.Time
	park    bool    // a removal that parks the worker in standby
	machine Machine // the VM as listed when the operation started
	// resumed: an operation found on a VM at a tick (not a plan's new
	// action); its failure backs that VM off alone (Reconciler.stuck).
	resumed bool
	pool    string // the worker pool of a provision
}

// creatingKey counts creations in flight by kind and worker pool.
type creatingKey struct {
	kind OperationKind
	pool string
}

// stuckVM is a VM whose resumed operation failed: it is not resumed again
// before until, and each failure doubles the pause (Backoff).
type stuckVM struct {
	failures int
	until    time.Time
	err      string // the last failure
}

// report is the operation as Decide counts it (r.mu held): a park is a
// park through all its steps (its drain's marked and drained too), so
// standby's count never misses it.
func (op *operation) report() Operation {
	o := Operation{Kind: op.kind, VMID: op.vmid, Node: op.name, Host: op.host, Step: op.step, Started: op.started, Pool: op.pool}
	if op.park {
		o.Step = StepParking
	}
	return o
}

// Status is what the reconciler reports (the daemon's /status).
type Status struct {
	Time       time.Time   `json:"time"`
	Plan       *Plan       `json:"plan,omitempty"`
	Machines   []Machine   `json:"machines"`
	Operations []Operation `json:"operations"`
	// LastError is the last error seen (it stays until another replaces it).
	LastError string `json:"last_error,omitempty"`
	// SafetyHold says why nothing destructive is done while the
	// observations disagree ("" when they agree).
	SafetyHold string `json:"safety_hold,omitempty"`
	// Refused lists VMs that stopped being ours, or machines that did not
	// prove their identity, and why: they are left alone.
	Refused []string `json:"refused,omitempty"`
	// Stuck lists our VMs that make no progress by themselves: kept
	// (ResumeKeep), backing off after a failure, or provisioning past
	// max_provision_time. They count against max_workers, never as
	// capacity; a person may have to look at them.
	Stuck    []StuckVM `json:"stuck,omitempty"`
	Failures int       `json:"consecutive_failures"`
	DryRun   bool      `json:"dry_run"`
}

// StuckVM is one VM of Status.Stuck.
type StuckVM struct {
	VMID   int    `json:"vmid"`
	Name   string `json:"name"`
	Step   string `json:"step"`
	Reason string `json:"reason"`
}

// stuckList names the machines that make no progress by themselves:
// those in why (kept, backing off) and those ops marks Stuck, by vmid.
func stuckList(machines []Machine, ops []Operation, why map[int]string) []StuckVM {
	var out []StuckVM
	for _, m := range machines {
		reason := why[m.VMID]
		if reason == "" {
			if i := slices.IndexFunc(ops, func(o Operation) bool { return o.VMID == m.VMID && o.Stuck != "" }); i >= 0 {
				reason = ops[i].Stuck
			}
		}
		if reason != "" {
			out = append(out, StuckVM{VMID: m.VMID, Name: m.Name, Step: m.Step, Reason: reason})
		}
	}
	slices.SortFunc(out, func(a, b StuckVM) int { return a.VMID - b.VMID })
	return out
}

// RememberLoad adds load recorded before this reconciler started (the
// daemon's trace file, read back), oldest first, to what its decisions
// read of one Policy.Seasons period ago. Call it before the first tick:
// a sample not after the newest is dropped.
func (r *Reconciler) RememberLoad(samples []LoadSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range samples {
		r.past.Add(s)
	}
}

// NewReconciler builds a reconciler; Run or Tick drive it.
// RememberedPast is what a decision at now reads of the load this
// reconciler remembers (Snapshot.Past).
func (r *Reconciler) RememberedPast(now time.Time) []LoadSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.past.Past(r.policy, now)
}

func NewReconciler(infra Infra, os NodeOS, cluster Cluster, p Policy, o ReconcileOptions) *Reconciler {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxProvisionTime == 0 {
		o.MaxProvisionTime = 15 * time.Minute
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = 5 * time.Minute
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = 6 * o.BackoffMin
	}
	if o.ConfirmAbsence == 0 {
		o.ConfirmAbsence = ConfirmAbsence
	}
	if o.PodEventEvery == 0 {
		o.PodEventEvery = PodEventEvery
	}
	if o.StopGrace == 0 {
		o.StopGrace = 30 * time.Second
	}
	r := &Reconciler{infra: infra, os: os, cluster: cluster, policy: p, o: o, log: o.Log, ops: map[int]*operation{}, creating: map[creatingKey]int{}, ended: map[int]endedOp{}, vmGone: Absence{}, nodeGone: Absence{}, kept: map[int]bool{}, stuck: map[int]stuckVM{}, past: NewLoadMemory(p)}
	r.work, r.cancel = context.WithCancel(context.Background())
	r.halt, r.haltNow = context.WithCancel(r.work)
	return r
}

// Backoff is the pause after n consecutive failures: BackoffMin doubling up to BackoffMax.
func (r *Reconciler) Backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := r.o.BackoffMin
	for i := 1; i < n && d < r.o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, r.o.BackoffMax)
}

// Status returns the last tick's report.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// Run ticks every interval until ctx ends, then lets running steps finish
// (up to StopGrace) and returns; everything left is resumable.
// A plan's NextCheck and a Wake signal bring the next tick forward.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration, onTick func(Plan, error)) {
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		started := time.Now()
		next := started.Add(interval)
		plan, err := r.Tick(ctx)
		if onTick != nil {
			onTick(plan, err)
		}
		wait := time.Until(next)
		if !plan.NextCheck.IsZero() {
			// NextCheck is on the reconciler's clock (scaled in the demo). A
			// check asked for again and again (a clock skewed against the
			// API server's timestamps) costs at most one tick a second.
			wait = min(wait, max(plan.NextCheck.Sub(r.o.Now())+10*time.Millisecond, time.Second))
		}
		wait = max(wait, MinTickGap-time.Since(started), 0)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrLeadershipLost) {
				// Another daemon may lead within seconds: no grace.
				r.Abort()
				r.Wait()
				return
			}
			r.Stop()
			return
		case <-timer.C:
		case <-r.o.Wake:
			timer.Stop() // Go 1.23 timers: no stale tick after Stop
			// Let the rest of a burst arrive, within MinTickGap of the last tick.
			if d := MinTickGap - time.Since(started); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
	}
}

// ResentResetTimeout bounds a Talos reset sent again to a machine that
// got one before a crash or a failed attempt: no answer within it counts
// as reset.
const ResentResetTimeout = 20 * time.Second

// ErrLeadershipLost is the cause of a Run context ended because another
// daemon may lead now: running operations are stopped at once (Abort), not
// given StopGrace.
var ErrLeadershipLost = errors.New("leadership lost")

// Stop starts nothing new and waits for running operations to reach a
// step boundary, cancelling them after StopGrace.
func (r *Reconciler) Stop() {
	r.mu.Lock()
	r.stopping = true
	r.haltNow()
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.o.StopGrace):
		r.cancel()
		<-done
	}
	r.cancel()
}

// Abort stops at once, as a crash would: running operations end at their
// next step boundary or are cancelled mid-step; what they leave is
// resumable by a new reconciler.
func (r *Reconciler) Abort() {
	r.mu.Lock()
	r.stopping = true
	r.haltNow()
	r.mu.Unlock()
	r.cancel()
}

// UnknownIdentityError is a destructive call refused because the
// machine's SMBIOS UUID is unknown (its config was unreadable when
// listed, its host offline): nothing tells the VM under its vmid to be
// the one decided on. The next listing that reads it decides again.
type UnknownIdentityError struct {
	VMID int
	Op   string
}

func (e *UnknownIdentityError) Error() string {
	return fmt.Sprintf("%s VM %d: its SMBIOS UUID is unknown, so it cannot be told to be the machine decided on: refused until a listing reads it", e.Op, e.VMID)
}

// ForeignCordonError is Cluster.Cordon refusing to cordon a Node someone
// else has cordoned already (no AnnotationCordoned, no standby taint): a
// person took the worker out of service; we neither claim that cordon nor
// drain and remove the worker under it, not even with remove_undrained.
type ForeignCordonError struct {
	Node string
}

func (e *ForeignCordonError) Error() string {
	return fmt.Sprintf("node %s is cordoned by someone else (not by pve-autoscaler): left alone, not drained or removed; uncordon it to let the autoscaler remove it", e.Node)
}

// ErrDrainTimedOut marks a drain that cordoned the Node and evicted until
// policy.drain.timeout ran out (errors.Is): the only failed drain
// remove_undrained goes on after. A drain that failed before that (an
// API error, a pod it may not evict at all) never removes the worker.
var ErrDrainTimedOut = errors.New("the drain timed out")

// identified refuses op (destroy, power off) on m while its identity is
// unknown, and reports it.
func (r *Reconciler) identified(m Machine, op string) error {
	if m.UUID != "" {
		return nil
	}
	err := &UnknownIdentityError{VMID: m.VMID, Op: op}
	r.refuse(err.Error())
	return err
}

// Wait blocks until no operation runs (tests).
func (r *Reconciler) Wait() { r.wg.Wait() }

// Tick observes, resumes what an earlier run left half-done, decides, and
// starts the plan's actions. It returns the plan.
func (r *Reconciler) Tick(ctx context.Context) (Plan, error) {
	now := r.o.Now()
	snap, machines, hosts, stale, err := r.observe(ctx, now)
	if err != nil {
		return Plan{}, r.fail(now, err)
	}
	for i := range machines {
		if step, ok := strings.CutPrefix(machines[i].Step, StandbyPrefix); ok {
			machines[i].Step, machines[i].ForStandby = step, true
		}
	}
	snap.Hosts = hosts

	r.mu.Lock()
	busy := map[int]bool{}
	for vmid := range r.ops {
		busy[vmid] = true
	}
	r.mu.Unlock()
	for vmid := range stale {
		busy[vmid] = true
	}
	r.mu.Lock()
	kept := maps.Clone(r.kept)
	r.mu.Unlock()
	obs := Observation{Machines: machines, Nodes: snap.Nodes, Busy: busy, Kept: kept}
	hold := obs.Disagreement()
	r.setHold(hold, snap.Nodes)
	paused := snap.Control.PausedAt(now)
	r.setPaused(paused)
	if paused == nil {
		// While paused, nothing half-done is taken up again either (no
		// resume, no withdraw, no Node deleted): the next tick after the
		// pause does it.
		r.resume(ctx, snap, machines, stale, hold, now)
	}
	// A Node that is not Ready and has no VM is no capacity, whether or not
	// it may be deleted yet: the engine does not count it as a worker, so
	// the minimum is met with workers that run.
	orphans, _ := obs.Absences()
	snap.Nodes = slices.DeleteFunc(slices.Clone(snap.Nodes), func(n Node) bool {
		return !n.Ready && slices.ContainsFunc(orphans, func(o Node) bool { return o.Name == n.Name })
	})

	r.mu.Lock()
	running := map[int]bool{}
	for vmid, op := range r.ops {
		running[vmid] = true
		snap.Operations = append(snap.Operations, op.report())
	}
	fresh := 0 // creations in flight, counted here; a fresh clone listed may be one of them
	for k, n := range r.creating {
		for range n {
			snap.Operations = append(snap.Operations, Operation{Kind: k.kind, Step: "creating", Pool: k.pool})
			fresh++
		}
	}
	gone := map[int]bool{}
	if hold == "" {
		for vmid := range r.nodeGone {
			if r.nodeGone.Confirmed(vmid, now, r.o.ConfirmAbsence) {
				gone[vmid] = true
			}
		}
	}
	stuckWhy := map[int]string{}
	for vmid, why := range r.keptWhy {
		stuckWhy[vmid] = "kept: " + why
	}
	for vmid, st := range r.stuck {
		if now.Before(st.until) && !running[vmid] {
			stuckWhy[vmid] = fmt.Sprintf("backing off after %d failed attempt(s), until %s: %s", st.failures, st.until.UTC().Format(time.RFC3339), st.err)
		}
	}
	ops, standby := Classify(machines, Counting{Nodes: snap.Nodes, Running: running, Stale: stale, Fresh: fresh, NodeGone: gone,
		Stuck: stuckWhy, Now: now, MaxProvisionTime: r.o.MaxProvisionTime})
	stuck := stuckList(machines, ops, stuckWhy)
	snap.Operations = append(snap.Operations, ops...)
	snap.Standby = append(snap.Standby, standby...)
	snap.Drifted = DriftedOf(machines, snap.Nodes)
	snap.Replacements = ReplacementsOf(machines, snap.Nodes)
	p := r.policy
	p.CooldownAfterFailure = r.Backoff(r.failures)
	hist := r.hist
	// Kept apart from r.hist: a resumed operation may end before this
	// tick's plan replaces r.hist with what it read.
	hist.ReplaceFailures = r.replaceFailures
	snap.Past = r.past.Past(p, now)
	if r.resumedFailure.After(hist.LastFailure) {
		hist.LastFailure = r.resumedFailure
	}
	r.mu.Unlock()
	sort.Slice(snap.Operations, func(i, j int) bool { return snap.Operations[i].VMID < snap.Operations[j].VMID })

	plan := Decide(snap, p, hist, now)
	if hold != "" {
		plan = withhold(plan, hold)
	}
	r.mu.Lock()
	r.hist = plan.Next
	r.past.Add(plan.Load)
	r.last = Status{Time: now, Plan: &plan, Machines: machines, Operations: snap.Operations, Failures: r.failures, DryRun: r.o.DryRun, LastError: r.lastErr, SafetyHold: hold, Refused: slices.Clone(r.refused), Stuck: stuck}
	stopping := r.stopping
	r.mu.Unlock()
	r.logPlan(plan)
	if r.o.DryRun || stopping || paused != nil {
		return plan, nil
	}
	r.podEvents(plan, now)
	byVMID := make(map[int]Machine, len(machines))
	for _, m := range machines {
		byVMID[m.VMID] = m
	}
	nodes := make(map[string]Node, len(snap.Nodes))
	for _, n := range snap.Nodes {
		nodes[n.Name] = n
	}
	for _, a := range plan.Actions {
		switch a.Kind {
		case ActionAdd:
			for _, vmid := range a.Wake {
				r.startWake(byVMID[vmid], now, false)
			}
			for range a.Count - len(a.Wake) {
				r.startProvision(Machine{Pool: a.Pool}, now)
			}
		case ActionRemove:
			// The Node's vmid label is the kubelet's to write: the VM to
			// remove must be that Node's by identity too.
			m, listed := byVMID[a.VMID]
			if !listed || !SameWorker(m, nodes[a.Node]) {
				r.refuse(fmt.Sprintf("Node %s (vmid label %d) is not the Node of any VM of ours by vmid and SMBIOS UUID: not removed", a.Node, a.VMID))
				continue
			}
			why := ""
			if len(a.Reasons) > 0 {
				why = a.Reasons[0].Message
			}
			r.cluster.Event(a.Node, "Normal", "ScaleDown", "pve-autoscaler removes this worker: "+why)
			r.startRemoval(removal{m: m, node: a.Node, park: a.Park})
		case ActionReplace:
			// The worker to replace, by vmid and SMBIOS UUID: the new VM
			// records that identity, which a restarted daemon reads back.
			m, listed := byVMID[a.VMID]
			if !listed || m.UUID == "" || m.Step != StepJoined || !SameWorker(m, nodes[a.Node]) {
				r.refuse(fmt.Sprintf("Node %s (vmid label %d) is not the Node of a joined VM of ours of known SMBIOS UUID: not replaced", a.Node, a.VMID))
				continue
			}
			if a.Pool != "" && m.Pool != "" && a.Pool != m.Pool {
				// Decide checked room and limits for a.Pool: a clone of
				// another pool's size was checked by nothing.
				r.refuse(fmt.Sprintf("Node %s is labelled pool %s but VM %d is in pool %s: not replaced", a.Node, a.Pool, m.VMID, m.Pool))
				continue
			}
			if old, ok := r.oldStillThere(ctx, snap.Replacements, byVMID); ok {
				r.refuse(fmt.Sprintf("no new worker to replace Node %s: VM %d, which an earlier replacement replaces, is not confirmed gone", a.Node, old))
				continue
			}
			why := ""
			if len(a.Reasons) > 0 {
				why = a.Reasons[0].Message
			}
			r.cluster.Event(a.Node, "Normal", "Replace", "pve-autoscaler makes a new worker to replace this one: "+why)
			r.startProvision(Machine{Pool: m.Pool, Replaces: NormalUUID(m.UUID), ReplacesVMID: m.VMID}, now)
		case ActionRefill:
			r.startProvision(Machine{ForStandby: true, Pool: a.Pool}, now)
		case ActionRetire:
			r.startRetire(byVMID[a.VMID], false)
		}
	}
	return plan, nil
}

// oldStillThere reports a VM that an earlier replacement replaces and
// that may still exist: listed (Replacement.OldListed), or missing from
// the list without a direct read that finds it gone (absence in a list is
// no evidence: a VM the token cannot see is not listed). A vmid listed
// under another SMBIOS UUID is another machine: the old one is gone.
func (r *Reconciler) oldStillThere(ctx context.Context, reps []Replacement, byVMID map[int]Machine) (int, bool) {
	for _, rp := range reps {
		if rp.OldListed {
			return rp.ReplacesVMID, true
		}
		if _, listed := byVMID[rp.ReplacesVMID]; listed {
			continue
		}
		if gone, err := r.infra.Gone(ctx, rp.ReplacesVMID); err != nil || !gone {
			return rp.ReplacesVMID, true
		}
	}
	return 0, false
}

// withhold drops a plan's destructive actions (removals, retirements)
// while the observations disagree, and says so in its holds.
func withhold(p Plan, why string) Plan {
	kept := p.Actions[:0:0]
	dropped := 0
	for _, a := range p.Actions {
		if a.Kind == ActionRemove || a.Kind == ActionRetire || a.Kind == ActionReplace {
			dropped++
			continue
		}
		kept = append(kept, a)
	}
	p.Actions = kept
	msg := "nothing is destroyed, reset, drained or deleted while the observations disagree: " + why
	if dropped > 0 {
		msg = fmt.Sprintf("%d removal(s) withheld: %s", dropped, msg)
	}
	p.Holds = append(p.Holds, Reason{Code: CodeSafetyHold, Message: msg})
	return p
}

// setHold records the safety hold of this tick and reports it loudly:
// an error log and an event each tick it holds, the observer's counter.
func (r *Reconciler) setHold(hold string, nodes []Node) {
	r.mu.Lock()
	was := r.hold
	r.hold = hold
	r.mu.Unlock()
	if hold != "" && was == "" {
		// What was read towards confirming an absence before the views
		// fell apart is forgotten: confirmation starts over once they agree.
		r.mu.Lock()
		clear(r.vmGone)
		clear(r.nodeGone)
		r.mu.Unlock()
	}
	switch {
	case hold != "":
		r.log.Error("safety hold: the Proxmox and Kubernetes views disagree; nothing destructive is done, provisioning goes on", zap.String("why", hold))
		if r.o.Observer != nil {
			r.o.Observer.SafetyHold(hold)
		}
		if hold != was && !r.o.DryRun { // a dry run writes nothing, events neither
			for _, n := range nodes {
				if n.Managed {
					r.cluster.Event(n.Name, "Warning", "SafetyHold", "pve-autoscaler does nothing destructive: "+hold)
					break
				}
			}
		}
	case was != "":
		r.log.Info("safety hold over: the views agree again")
	}
}

// holding reports whether destructive actions are withheld.
func (r *Reconciler) holding() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hold != ""
}

// refuse reports a VM or machine left alone, in the log and /status.
func (r *Reconciler) refuse(why string) {
	r.log.Error("refused", zap.String("why", why))
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(r.refused, why); i >= 0 {
		r.refused = slices.Delete(r.refused, i, i+1)
	}
	r.refused = append(r.refused, why)
	if len(r.refused) > maxRefused {
		r.refused = r.refused[len(r.refused)-maxRefused:]
	}
	r.last.Refused = slices.Clone(r.refused)
}

// maxRefused bounds the refusals /status keeps.
const maxRefused = 20

func (r *Reconciler) fail(now time.Time, err error) error {
	r.mu.Lock()
	r.lastErr = err.Error()
	r.last.Time, r.last.LastError = now, r.lastErr
	r.mu.Unlock()
	r.log.Error("tick failed", zap.Error(err))
	return err
}

func (r *Reconciler) logPlan(p Plan) {
	fields := []zap.Field{zap.Int("current", p.Workers.Current), zap.Int("desired", p.Workers.Desired), zap.Bool("dry_run", r.o.DryRun)}
	if p.Utilization != nil {
		fields = append(fields, zap.Float64("cpu_pct", p.Utilization.CPU), zap.Float64("memory_pct", p.Utilization.Memory))
	}
	for _, a := range p.Actions {
		msgs := make([]string, len(a.Reasons))
		for i, rs := range a.Reasons {
			msgs[i] = string(rs.Code) + ": " + rs.Message
		}
		r.log.Info("decision", append(fields, zap.String("action", string(a.Kind)), zap.Int("count", a.Count), zap.String("node", a.Node), zap.Strings("reasons", msgs))...)
	}
	if len(p.Actions) == 0 {
		holds := make([]string, len(p.Holds))
		for i, h := range p.Holds {
			holds[i] = string(h.Code) + ": " + h.Message
		}
		r.log.Info("no action", append(fields, zap.Strings("holds", holds))...)
	}
}

// observe reads the cluster and the VMs. An operation that ends while they
// are read can leave the two disagreeing (a Node deleted after the
// snapshot, its VM gone from the list), so they are read again, up to
// twice; what still disagrees is named in stale.
func (r *Reconciler) observe(ctx context.Context, now time.Time) (snap Snapshot, machines []Machine, hosts []Host, stale map[int]Operation, err error) {
	for attempt := 0; ; attempt++ {
		r.mu.Lock()
		before := r.ends
		r.mu.Unlock()
		snap, err = r.cluster.Snapshot(ctx, now)
		if err != nil && len(snap.Nodes) == 0 && !snap.Metrics.Stale {
			return snap, nil, nil, nil, fmt.Errorf("kubernetes snapshot: %w", err)
		}
		if machines, hosts, err = r.infra.Machines(ctx); err != nil {
			return snap, nil, nil, nil, fmt.Errorf("proxmox inventory: %w", err)
		}
		r.mu.Lock()
		ended := r.ends != before
		r.mu.Unlock()
		if !ended || attempt == 2 {
			r.mu.Lock()
			r.listGen = before
			r.mu.Unlock()
			return snap, machines, hosts, r.staleIn(machines, before), nil
		}
	}
}

// staleIn names, in a VM list read when listed operations had finished,
// the VMs whose operation has finished since, with that operation: the
// list may show them at a step before their last (a provisioned worker
// still at applying, a woken one still standby), so this tick does not
// resume them and counts them as the operation they were (the cluster
// snapshot, read before, may not show its outcome yet); the next tick's
// list has them right.
func (r *Reconciler) staleIn(machines []Machine, listed uint64) map[int]Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	stale := map[int]Operation{}
	for _, m := range machines {
		if e, ok := r.ended[m.VMID]; ok && e.at > listed {
			stale[m.VMID] = e.op
		}
	}
	for vmid, e := range r.ended {
		if e.at <= listed {
			delete(r.ended, vmid) // this list was read after it finished
		}
	}
	return stale
}

// resume picks up what is half-done (provisions, removals, parks of an
// earlier run), as DecideResume says for each machine, and deals with
// what is missing: a Node whose VM is gone, a joined VM whose Node is
// gone, each only once direct reads confirm it (ConfirmAbsence). While
// hold says the observations disagree, nothing destructive starts.
func (r *Reconciler) resume(ctx context.Context, snap Snapshot, machines []Machine, stale map[int]Operation, hold string, now time.Time) {
	r.mu.Lock()
	creating := false
	for _, n := range r.creating {
		creating = creating || n > 0
	}
	r.mu.Unlock()
	listed := map[int]bool{}
	keptWhy := map[int]string{}
	for i, m := range machines {
		listed[m.VMID] = true
		r.mu.Lock()
		_, running := r.ops[m.VMID]
		r.mu.Unlock()
		_, ended := stale[m.VMID]
		f := MachineFacts{Machine: m, Busy: running || ended, Creating: creating, DryRun: r.o.DryRun,
			Expired: !m.Created.IsZero() && now.Sub(m.Created) > r.o.MaxProvisionTime}
		if n, ok := NodeOf(m, snap.Nodes); ok {
			f.Node = &n
			r.mu.Lock()
			r.nodeGone.Present(m.VMID)
			r.mu.Unlock()
		} else {
			r.mu.Lock()
			f.NodeGone = r.nodeGone.Confirmed(m.VMID, now, r.o.ConfirmAbsence)
			r.mu.Unlock()
		}
		v := DecideResume(f)
		if v.Kind != ResumeNothing {
			r.log.Debug("resume", zap.Int("vmid", m.VMID), zap.String("step", m.Step), zap.String("verdict", string(v.Kind)), zap.String("why", v.Why))
		}
		r.mu.Lock()
		st, stuck := r.stuck[m.VMID]
		r.mu.Unlock()
		if stuck && now.Before(st.until) && v.Kind != ResumeNothing && v.Kind != ResumeConfirm && v.Kind != ResumeKeep {
			continue // backing off alone after its resumed operation failed
		}
		node := m.Name
		if f.Node != nil {
			node = f.Node.Name
		}
		destructive := v.Kind == ResumeRemove || v.Kind == ResumePark || v.Kind == ResumeRetire || v.Kind == ResumeRemoveNodeless ||
			(v.Kind == ResumeProvision && f.Expired) // its next step is a clean-up
		if hold != "" && destructive {
			continue
		}
		switch v.Kind {
		case ResumeProvision:
			r.log.Info("resuming provisioning", zap.Int("vmid", m.VMID), zap.String("step", m.Step), zap.Bool("for_standby", m.ForStandby))
			r.startProvision(m, now)
		case ResumeAdopt:
			r.adopt(ctx, m, node)
		case ResumeKeep:
			keptWhy[m.VMID] = v.Why
			r.refuse(fmt.Sprintf("VM %d: %s", m.VMID, v.Why))
		case ResumeRemove:
			r.startRemoval(removal{m: m, node: nodeIf(f.Node), from: v.From, resetSent: m.Step == StepResetting, resumed: true})
		case ResumePark:
			// Its Node by identity, or none: never a Node that only has the
			// VM's name (cordoned and tainted, it could be another machine's).
			r.startRemoval(removal{m: m, node: nodeIf(f.Node), from: v.From, park: true, resumed: true})
		case ResumeWithdraw:
			if r.withdrawn(ctx, m, f.Node, v.Why) {
				machines[i].Step = StepJoined // counted as the worker it is again
			}
		case ResumeWake:
			r.startWake(m, now, true)
		case ResumeRetire:
			r.startRetire(m, true)
		case ResumeConfirm:
			if hold == "" { // reads on a view that disagrees prove nothing
				r.confirmNodeGone(ctx, m, now)
			}
		case ResumeRemoveNodeless:
			r.removeNodeless(ctx, snap, m)
		}
	}
	r.mu.Lock()
	r.keptWhy = keptWhy
	r.nodeGone.Keep(listed)
	for vmid := range r.stuck {
		if !listed[vmid] {
			delete(r.stuck, vmid)
		}
	}
	r.mu.Unlock()
	r.deleteOrphanNodes(ctx, snap, machines, hold, now)
}

func nodeIf(n *Node) string {
	if n == nil {
		return ""
	}
	return n.Name
}

// confirmNodeGone reads the Node of a joined VM directly; a read that
// finds none counts towards ConfirmAbsence.
func (r *Reconciler) confirmNodeGone(ctx context.Context, m Machine, now time.Time) {
	n, err := r.cluster.NodeOf(ctx, m)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.log.Warn("could not read the Node of a joined worker", zap.Int("vmid", m.VMID), zap.Error(err))
	case n != nil:
		r.nodeGone.Present(m.VMID)
	default:
		if !r.nodeGone.Seen(m.VMID, now, r.o.ConfirmAbsence) {
			r.log.Warn("the Node of a joined worker is not there; removing its VM once a read at least "+r.o.ConfirmAbsence.String()+" later agrees",
				zap.Int("vmid", m.VMID), zap.String("name", m.Name))
		}
	}
}

// removeNodeless removes a joined worker whose Node is confirmed gone,
// through the removal guards: one removal at a time, and only while the
// Ready, schedulable workers meet the cluster's minimum (the pools' summed,
// schedules included) and those of its pool the pool's min_workers,
// without it. It has no Node to
// drain; its machine is reset (identity checked) and its VM destroyed.
func (r *Reconciler) removeNodeless(ctx context.Context, snap Snapshot, m Machine) {
	if n, err := r.cluster.NodeOf(ctx, m); err != nil || n != nil {
		return // a last direct read: it is back, or cannot be read
	}
	r.mu.Lock()
	removing := false
	for _, op := range r.ops {
		removing = removing || op.kind == OpRemove
	}
	r.mu.Unlock()
	// The minimums: the cluster's (pools summed, schedules), and the
	// VM's pool's, each over the Ready, schedulable workers.
	pool := r.policy.PoolOfName(m.Pool)
	minPool := 0
	for _, pl := range r.policy.WorkerPools() {
		if len(r.policy.Pools) == 0 || pl.Name == pool {
			minPool = pl.MinWorkers
		}
	}
	ready, readyPool := 0, 0
	for _, n := range snap.Nodes {
		if n.Managed && n.Ready && !n.Unschedulable && !n.ControlPlane && !n.Standby {
			ready++
			if len(r.policy.Pools) == 0 || r.policy.PoolOfName(n.Pool) == pool {
				readyPool++
			}
		}
	}
	switch {
	case removing:
		return
	case ready < r.policy.MinAt(r.o.Now()) || readyPool < minPool:
		r.log.Warn("a joined worker's Node is gone, but the Ready workers are below the minimum: its VM is kept (a new worker comes first)",
			zap.Int("vmid", m.VMID), zap.Int("ready", ready), zap.String("pool", pool), zap.Int("ready_in_pool", readyPool), zap.Int("pool_min", minPool))
		return
	}
	r.log.Info("the Node of a joined worker is confirmed gone; removing its VM", zap.Int("vmid", m.VMID), zap.String("name", m.Name))
	r.startRemoval(removal{m: m, from: RemovalDrained, resumed: true})
}

// nodeAlive reads a Node again by its identity: true when it is Ready (or
// cannot be read), so that it is not deleted.
func (r *Reconciler) nodeAlive(ctx context.Context, n Node) bool {
	if n.Ready {
		return true
	}
	fresh, err := r.cluster.NodeOf(ctx, Machine{VMID: n.VMID, UUID: n.SystemUUID, Name: n.Name})
	return err != nil || (fresh != nil && fresh.Ready)
}

// deleteOrphanNodes deals with managed Nodes whose VM is not among ours.
// Each such VM is read directly: one that exists is not ours any more (a
// person removed our tags to keep the worker): its Node is left alone and
// no longer counts as missing a VM. One that PVE says does not exist,
// twice at least ConfirmAbsence apart with the list sane in between, has
// its Node deleted, never while the views disagree.
func (r *Reconciler) deleteOrphanNodes(ctx context.Context, snap Snapshot, machines []Machine, hold string, now time.Time) {
	r.mu.Lock()
	busy := map[int]bool{}
	for vmid := range r.ops {
		busy[vmid] = true
	}
	r.mu.Unlock()
	// Kept VMs are read again too: a VM deleted after its tags were removed
	// is gone, and its Node is an orphan like any other.
	orphans, _ := Observation{Machines: machines, Nodes: snap.Nodes, Busy: busy}.Absences()
	keys := map[int]bool{}
	for _, n := range orphans {
		keys[n.VMID] = true
	}
	r.mu.Lock()
	r.vmGone.Keep(keys)
	for vmid := range r.kept {
		if !keys[vmid] {
			delete(r.kept, vmid) // ours again, or its Node is gone
		}
	}
	r.mu.Unlock()
	if len(orphans) == 0 || r.o.DryRun {
		return
	}
	if err := r.infra.Sane(ctx); err != nil {
		r.log.Error("a Node's VM is missing from the list, but the list cannot be trusted: no Node deleted", zap.Error(err))
		return
	}
	listed := map[int]bool{}
	for _, m := range machines {
		listed[m.VMID] = true
	}
	const maxReads = 10 // direct reads a tick: the rest waits for the next
	for i, n := range orphans {
		if i == maxReads {
			break
		}
		if listed[n.VMID] {
			// Its vmid is one of ours, its UUID another machine's: an
			// identity conflict, never resolved by deleting anything.
			r.refuse(fmt.Sprintf("Node %s says vmid %d, but VM %d is another machine (SMBIOS UUID %s on the Node): nothing is done about either", n.Name, n.VMID, n.VMID, n.SystemUUID))
			continue
		}
		gone, err := r.infra.Gone(ctx, n.VMID)
		if err != nil {
			r.log.Warn("could not read the VM of a Node", zap.String("node", n.Name), zap.Int("vmid", n.VMID), zap.Error(err))
			continue
		}
		r.mu.Lock()
		confirmed := false
		switch {
		case !gone:
			r.vmGone.Present(n.VMID)
			if !r.kept[n.VMID] {
				r.kept[n.VMID] = true
				r.mu.Unlock()
				r.refuse(fmt.Sprintf("VM %d exists but is not ours (our tags, vmid range or marker are gone): it and its Node %s are left alone", n.VMID, n.Name))
				r.mu.Lock()
			}
		case hold == "":
			delete(r.kept, n.VMID)
			confirmed = r.vmGone.Seen(n.VMID, now, r.o.ConfirmAbsence)
		default:
			delete(r.kept, n.VMID)
		}
		r.mu.Unlock()
		switch {
		case !gone || hold != "":
		case !confirmed:
			r.log.Warn("a Node's VM does not exist; deleting the Node once a read at least "+r.o.ConfirmAbsence.String()+" later agrees", zap.String("node", n.Name), zap.Int("vmid", n.VMID))
		case r.nodeAlive(ctx, n):
			// A kubelet that heartbeats runs on some machine: a VM moved to
			// another cluster, or proxmox.url pointed elsewhere. Never deleted.
			r.refuse(fmt.Sprintf("Node %s: its VM %d does not exist, but the Node is Ready (its kubelet is alive): not deleted; if the machine is gone for good, kubectl delete node %s", n.Name, n.VMID, n.Name))
		default:
			r.log.Info("deleting the Node of a VM that is gone (confirmed)", zap.String("node", n.Name), zap.Int("vmid", n.VMID))
			r.cluster.Event(n.Name, "Warning", "VMGone", fmt.Sprintf("pve-autoscaler deletes this Node: its VM %d does not exist (read twice, %s apart)", n.VMID, r.o.ConfirmAbsence))
			if err := r.cluster.DeleteNode(ctx, n); err != nil {
				r.log.Warn("delete node", zap.String("node", n.Name), zap.Error(err))
			}
		}
	}
}

// adopt records joined for a provisioning past its deadline whose Node of
// its identity is Ready: the worker serves, and is not destroyed.
func (r *Reconciler) adopt(ctx context.Context, m Machine, node string) {
	step := StepJoined
	if m.ForStandby {
		step = StandbyPrefix + StepJoined // parked by the next tick
	}
	if err := r.infra.RecordStep(ctx, m.VMID, step); err != nil {
		r.log.Warn("could not adopt a worker", zap.Int("vmid", m.VMID), zap.Error(err))
		return
	}
	r.log.Info("adopted a worker past max_provision_time whose Node is Ready", zap.Int("vmid", m.VMID), zap.String("node", node))
	r.cluster.Event(node, "Normal", "Adopted", fmt.Sprintf("pve-autoscaler adopted this worker (VM %d): its Node is Ready although provisioning outlived max_provision_time", m.VMID))
}

// runStep runs one step at a step boundary (none once stopping or
// paused), timing it, recording it on the operation, and telling AfterStep.
func (r *Reconciler) runStep(op *operation, next string, f func() error) error {
	if r.halted() {
		return errHalted
	}
	if r.pausedNow() {
		return errPaused
	}
	t0 := time.Now()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", next, err)
	}
	r.observeStep(op.kind, next, time.Since(t0))
	r.setStep(op, next)
	r.after(op.kind, op.vmid, next)
	return nil
}

func (r *Reconciler) observeStep(kind OperationKind, step string, d time.Duration) {
	if r.o.Observer != nil {
		r.o.Observer.Step(kind, step, d)
	}
}

func (r *Reconciler) after(kind OperationKind, vmid int, step string) {
	if r.o.AfterStep != nil {
		r.o.AfterStep(kind, vmid, step)
	}
}

// halted reports whether the reconciler is stopping: steps end at the next boundary.
func (r *Reconciler) halted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping || r.work.Err() != nil
}

// errHalted ends an operation at a step boundary, leaving it resumable.
var errHalted = errors.New("stopping: left resumable")

// errHeld ends an operation before a destructive step while a safety hold
// is on (the views disagree); like errHalted, it leaves it resumable, and
// the tick that finds it once the views agree decides on it afresh.
var errHeld = fmt.Errorf("withheld while the views disagree (a safety hold): %w", errHalted)

// errPaused ends an operation at a step boundary while a pause holds
// (`pve-autoscaler pause`); like errHalted, it leaves it resumable, and
// the first tick after the pause takes it up again.
var errPaused = fmt.Errorf("paused: %w", errHalted)

// setPaused records the pause a tick read, and says when it starts and ends.
func (r *Reconciler) setPaused(p *Pause) {
	r.mu.Lock()
	was := r.paused
	r.paused = p
	r.mu.Unlock()
	switch {
	case p != nil && was == nil:
		r.log.Warn("paused: nothing is created, removed, parked or woken; running operations stop at their next step", zap.String("pause", p.String()))
	case p == nil && was != nil:
		r.log.Info("pause over: scaling again")
	}
}

// pausedNow reports whether the last tick found a pause.
func (r *Reconciler) pausedNow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paused != nil
}

// unlessHeld runs a destructive step only while no safety hold is on.
func (r *Reconciler) unlessHeld(do func() error) func() error {
	return func() error {
		if r.holding() {
			return errHeld
		}
		return do()
	}
}

func (r *Reconciler) startProvision(m Machine, now time.Time) {
	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		return
	}
	kind := provisionKind(m)
	var op *operation
	if _, running := r.ops[m.VMID]; running && m.VMID != 0 {
		r.mu.Unlock()
		return
	}
	if m.VMID == 0 {
		r.creating[creatingKey{kind, m.Pool}]++
	} else {
		started := m.Created
		if started.IsZero() {
			started = now
		}
		op = &operation{kind: kind, vmid: m.VMID, name: m.Name, host: m.Host, step: m.Step, started: started, resumed: true, pool: m.Pool}
		r.ops[m.VMID] = op
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		vmid, err := r.provision(m, op, now)
		r.finish(kind, vmid, err)
		if m.Replaces != "" && !m.ForStandby {
			r.replacementDone(err, op != nil)
		}
	}()
}

// replacementDone counts a replacement's new worker that failed, resumed
// or not (a resumed failure otherwise backs off only its own VM, which is
// gone): the rollout waits out the cooldown after a failure (counted
// once: finish counts a new operation's), and stops
// after MaxReplaceFailures in a row (Decide holds it).
func (r *Reconciler) replacementDone(err error, resumed bool) {
	if errors.Is(err, errHalted) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.replaceFailures = 0
		return
	}
	r.replaceFailures++
	if resumed {
		// finish counted a new one's failure already.
		r.failures++
		r.resumedFailure = r.o.Now()
		r.last.Failures = r.failures
	}
}

// provisionKind is a provisioning's kind: a build for standby is a refill.
func provisionKind(m Machine) OperationKind {
	if m.ForStandby {
		return OpRefill
	}
	return OpProvision
}

func (r *Reconciler) setStep(op *operation, step string) {
	r.mu.Lock()
	op.step = step
	r.mu.Unlock()
}

// provision runs the provisioning steps from where m is; it returns the
// vmid (known once cloned).
func (r *Reconciler) provision(m Machine, op *operation, now time.Time) (int, error) {
	started := now
	if op != nil {
		started = op.started
	}
	ctx, cancel := r.provisionContext(started)
	defer cancel()
	if op == nil {
		t0 := time.Now()
		var hosts []string
		if m.ForStandby {
			hosts = r.policy.StandbyHosts // a standby build goes where standby workers may be kept
		}
		created, err := r.infra.Create(ctx, m.Pool, hosts, Machine{VMID: m.ReplacesVMID, UUID: m.Replaces})
		if err == nil {
			r.observeStep(OpProvision, StepCloned, time.Since(t0))
		}
		kind := provisionKind(m)
		r.mu.Lock()
		r.creating[creatingKey{kind, m.Pool}]--
		if created.VMID != 0 {
			// Registered even on failure: while its clean-up runs, no tick
			// may take the half-made VM for one to resume.
			step := StepCloned
			if err != nil {
				step = "cleanup"
			}
			op = &operation{kind: kind, vmid: created.VMID, name: created.Name, host: created.Host, step: step, started: started, pool: m.Pool}
			r.ops[created.VMID] = op
		}
		r.mu.Unlock()
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("not a Ready node within max_provision_time %s: %w", r.o.MaxProvisionTime, err)
			}
			if created.VMID != 0 {
				r.discard(created, StepCloned, true)
			}
			return created.VMID, fmt.Errorf("create VM: %w", err)
		}
		created.ForStandby = m.ForStandby
		created.Replaces, created.ReplacesVMID = m.Replaces, m.ReplacesVMID
		m = created
		m.Step = StepCloned
		r.after(op.kind, m.VMID, StepCloned)
	}
	err := r.provisionSteps(ctx, m, op)
	if err == nil && m.ForStandby {
		// Built for standby: park it (its Node registered tainted), its
		// Node found by identity, never by the VM's name.
		op.park = true
		var n *Node
		if n, err = r.cluster.NodeOf(ctx, m); err == nil && n == nil {
			err = fmt.Errorf("VM %d joined, but no Node has its identity", m.VMID)
		}
		if err == nil {
			err = r.runSteps(op, "", r.parkSteps(r.work, m, n.Name))
		}
		if err != nil && !errors.Is(err, errHalted) {
			r.log.Warn("parking a new standby worker failed, destroying it", zap.Int("vmid", m.VMID), zap.Error(err))
			r.discard(m, StepJoined, !op.resumed)
		}
		return m.VMID, err
	}
	if err == nil || errors.Is(err, errHalted) {
		return m.VMID, err
	}
	if r.work.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return m.VMID, errHalted // shut down mid-step: resumable
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("not a Ready node within max_provision_time %s: %w", r.o.MaxProvisionTime, err)
	}
	r.log.Warn("provisioning failed, destroying the VM", zap.Int("vmid", m.VMID), zap.String("node", m.Name), zap.Error(err))
	r.mu.Lock()
	reached := op.step
	r.mu.Unlock()
	r.discard(m, reached, !op.resumed)
	return m.VMID, err
}

// provisionContext bounds a provisioning (or a wake) that started at
// started, a time on the reconciler's clock, by what is left of
// MaxProvisionTime on that same clock, turned into a timeout: the time the
// VM recorded and the daemon's clock are never compared with the wall
// clock that context deadlines use.
func (r *Reconciler) provisionContext(started time.Time) (context.Context, context.CancelFunc) {
	// A start in the future (a clock set back, another host's clock ahead)
	// counts as now: the timeout is never longer than MaxProvisionTime.
	left := min(started.Add(r.o.MaxProvisionTime).Sub(r.o.Now()), r.o.MaxProvisionTime)
	return context.WithTimeout(r.work, left)
}

// discard destroys a VM whose provisioning (or wake, or park into
// standby) failed after it reached step reached, unless the Node of its
// identity says it serves: a Ready Node is adopted, a Node holding
// workload is kept and reported. A Node that is neither goes with its VM.
// Nothing is destroyed while the views disagree, when the Node cannot be
// read, or when the VM's identity is unknown, except for own: a clone
// this run made that never got its UUID (its task timed out, its config
// unreadable), which never started, so no machine ran and no Node can be
// its (the adapter destroys it only as its own fresh clone, see
// proxmox.Workers.Destroy). Once the reconciler stops, nothing is
// destroyed: the destroy runs on halt, which a Stop or Abort ends, so it
// never starts after the stop.
func (r *Reconciler) discard(m Machine, reached string, own bool) {
	if r.halted() {
		// Stopping (a shutdown, a lost Lease): another daemon may lead now
		// and the VM's state is resumable; nothing is destroyed on the way out.
		r.log.Info("a failed VM is left to the next run: stopping", zap.Int("vmid", m.VMID))
		return
	}
	if r.pausedNow() {
		r.log.Info("a failed VM is left to the first tick after the pause", zap.Int("vmid", m.VMID))
		return
	}
	ctx, cancel := context.WithTimeout(r.halt, 10*time.Minute)
	defer cancel()
	if r.holding() {
		r.refuse(fmt.Sprintf("VM %d: its provisioning failed, but it is not destroyed while the views disagree", m.VMID))
		return
	}
	fresh := own && reached == StepCloned && m.UUID == ""
	if !fresh {
		if err := r.identified(m, "destroy the failed"); err != nil {
			return
		}
	}
	var n *Node
	var err error
	if !fresh {
		n, err = r.cluster.NodeOf(ctx, m)
	}

	switch {
	case err != nil:
		r.log.Error("could not read the Node of a failed VM: not destroyed", zap.Int("vmid", m.VMID), zap.Error(err))
		return
	case n != nil && n.Ready:
		r.adopt(ctx, m, n.Name)
		return
	case n != nil && HoldsWorkload(*n):
		r.refuse(fmt.Sprintf("VM %d: its provisioning failed, but its Node %s holds pods: kept", m.VMID, n.Name))
		return
	}
	if r.halted() {
		r.log.Info("a failed VM is left to the next run: stopping", zap.Int("vmid", m.VMID))
		return
	}
	if err := r.infra.Destroy(ctx, m); err != nil {
		r.log.Error("could not destroy the failed VM", zap.Int("vmid", m.VMID), zap.Error(err))
		return
	}
	if n != nil {
		r.deleteNode(*n)
	}
}

func (r *Reconciler) provisionSteps(ctx context.Context, m Machine, op *operation) error {
	// A build for standby records its steps with StandbyPrefix.
	rec := func(s string) string {
		if m.ForStandby {
			return StandbyPrefix + s
		}
		return s
	}
	err := r.runSteps(op, m.Step, []step{
		{StepCloned, nil}, // done by Create
		{StepConfigured, func() error { return r.infra.Configure(ctx, m.VMID, rec(StepConfigured)) }},
		{StepStarted, func() error {
			if err := r.infra.Start(ctx, m.VMID); err != nil {
				return err
			}
			return r.infra.RecordStep(ctx, m.VMID, rec(StepStarted))
		}},
		{StepApplying, func() error {
			ip, err := r.infra.Address(ctx, m.VMID)
			if err != nil {
				return err
			}
			// Recorded before the config is sent: a config is never sent twice.
			if err := r.infra.RecordStep(ctx, m.VMID, rec(StepApplying)); err != nil {
				return err
			}
			return r.os.Apply(ctx, m, ip)
		}},
		{StepJoined, func() error {
			deadline, _ := ctx.Deadline()
			if err := r.cluster.WaitReady(ctx, m.Name, time.Until(deadline)); err != nil {
				return err
			}
			if err := r.infra.RecordStep(ctx, m.VMID, rec(StepJoined)); err != nil {
				return err
			}
			if !m.ForStandby {
				r.cluster.Event(m.Name, "Normal", "ScaleUp", fmt.Sprintf("pve-autoscaler added this worker (VM %d on %s)", m.VMID, m.Host))
			}
			return nil
		}},
	})
	return err
}

// step is one named step of an operation: what it does, and the name
// recorded once it is done. An operation is a list of steps run by
// runSteps, which starts after the step recorded last, so a restarted
// daemon resumes where the last one stopped and adding a step is one line.
type step struct {
	name string
	do   func() error // nil: a step done elsewhere, only a place in the list
}

// runSteps runs steps in order, from the one after from (all of them when
// from is none of theirs), each at a step boundary (runStep).
func (r *Reconciler) runSteps(op *operation, from string, steps []step) error {
	start := -1
	for i, s := range steps {
		if s.name == from {
			start = i + 1
		}
	}
	switch {
	case from == "":
		start = 0
	case start < 0:
		// A step this build does not know (a newer daemon's, a hand edit):
		// running the list from the top could send a second machine config.
		return fmt.Errorf("recorded step %q is not one of this operation's: left alone", from)
	}
	for _, s := range steps[start:] {
		if s.do == nil {
			continue
		}
		if err := r.runStep(op, s.name, s.do); err != nil {
			return err
		}
	}
	return nil
}

// launch registers op on its VM (unless stopping, or the VM has an
// operation already) and runs it in the background, finishing with its
// outcome.
func (r *Reconciler) launch(op *operation, run func() error) {
	r.mu.Lock()
	if r.stopping || op.vmid == 0 || r.ops[op.vmid] != nil {
		r.mu.Unlock()
		return
	}
	if e, ok := r.ended[op.vmid]; ok && e.at > r.listGen {
		// Its last operation ended after the list was read: the list may
		// show it half-way (a removal at reset), and a second removal
		// would run its steps again. The next tick's list is right.
		r.mu.Unlock()
		r.log.Info("not started: the VM's last operation ended after this tick's list was read", zap.Int("vmid", op.vmid), zap.String("kind", string(op.kind)))
		return
	}
	r.ops[op.vmid] = op
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		r.finish(op.kind, op.vmid, run())
	}()
}

// removal is a removal (or a park) to start: the machine, its Node's name
// ("" when it has none: nothing to drain, mark or delete), the removal
// step to go on from, and whether a reset was sent already.
type removal struct {
	m         Machine
	node      string
	from      string
	park      bool
	resetSent bool
	resumed   bool // found at a tick, not a plan's new removal
}

func (r *Reconciler) startRemoval(rm removal) {
	m := rm.m
	st := rm.from
	if rm.park {
		st = StepParking // what Decide counts as a park in flight
	}
	op := &operation{kind: OpRemove, vmid: m.VMID, name: rm.node, host: m.Host, step: st, started: r.o.Now(), park: rm.park, machine: m, resumed: rm.resumed, pool: m.Pool}
	r.launch(op, func() error { return r.remove(op, rm) })
}

func (r *Reconciler) remove(op *operation, rm removal) error {
	ctx := r.work
	m, node := rm.m, rm.node
	mark := StepRemoving
	if op.park {
		mark = StepParking
	}
	steps := []step{
		{RemovalMarked, func() error {
			if err := r.cluster.RecordRemovalStep(ctx, node, RemovalMarked, m.UUID); err != nil {
				return err
			}
			return r.infra.RecordStep(ctx, m.VMID, mark)
		}},
		{RemovalDrained, r.unlessHeld(func() error { return r.drain(ctx, m, node) })},
	}
	if op.park {
		return r.runSteps(op, rm.from, append(steps, r.parkSteps(ctx, m, node)...))
	}
	return r.runSteps(op, rm.from, append(steps,
		step{RemovalReset, r.unlessHeld(func() error { return r.reset(ctx, m, node, rm.resetSent) })},
		step{"destroyed", r.unlessHeld(func() error {
			if err := r.identified(m, "destroy"); err != nil {
				return err
			}
			return r.infra.Destroy(ctx, m)
		})},
		// Not held: the Node of a machine we have just destroyed is ours to
		// delete, and left over it would keep the views disagreeing.
		step{"deleted", func() error {
			if node == "" {
				return nil // it had no Node
			}
			// The Node of this machine's identity, never whatever Node took the name.
			return r.cluster.DeleteNode(ctx, Node{Name: node, VMID: m.VMID, SystemUUID: m.UUID})
		}},
	))
}

// drain drains the Node and records it drained. When the drain fails and
// policy.drain.remove_undrained does not say otherwise, the node stays:
// back to joined, unmarked, uncordoned. Joined is recorded first: a crash
// in between leaves a joined VM with a marked Node, whose removal a later
// tick resumes from its drain, never a park or destroy of a worker whose
// pods came back. (The drain leaves the node cordoned, so that with
// remove_undrained nothing lands on a node about to go.)
func (r *Reconciler) drain(ctx context.Context, m Machine, node string) error {
	err := r.cluster.Drain(ctx, node)
	if err != nil && r.halted() {
		return errHalted // stopped mid-drain (leadership lost, say): resumed from marked, not rolled back
	}
	var foreign *ForeignCordonError
	if err != nil && r.o.RemoveUndrained && errors.Is(err, ErrDrainTimedOut) && !errors.As(err, &foreign) {
		r.log.Warn("drain timed out; removing anyway (policy.drain.remove_undrained)", zap.String("node", node), zap.Error(err))
		err = nil
	}
	if err == nil {
		err = r.cluster.RecordRemovalStep(ctx, node, RemovalDrained, m.UUID)
	}
	if err == nil || errors.Is(err, errHalted) {
		return err
	}
	if r.halted() {
		return errHalted // its record failed on a work context cancelled meanwhile: no withdraw without leadership
	}
	r.cluster.Event(node, "Warning", "DrainFailed", err.Error())
	if werr := r.withdraw(context.WithoutCancel(ctx), m, node, false, true); werr != nil {
		return fmt.Errorf("%w (and %v; a later tick withdraws the removal again)", err, werr)
	}
	return err
}

// withdraw takes back a removal or park: the worker is recorded joined
// first (a crash after that leaves a joined worker whose marked Node is
// withdrawn again, never a removal or park to go on with), then its Node
// is uncordoned (the adapter takes away only a cordon of ours, which the
// removal mark and the standby taint still show as ours), untainted and
// unmarked, in that order.
func (r *Reconciler) withdraw(ctx context.Context, m Machine, node string, untaint, unmark bool) error {
	if err := r.infra.RecordStep(ctx, m.VMID, StepJoined); err != nil {
		return fmt.Errorf("recording joined failed: %w", err)
	}
	if node == "" {
		return nil
	}
	if err := r.cluster.Cordon(ctx, node, false); err != nil {
		return fmt.Errorf("uncordoning failed: %w", err)
	}
	if untaint {
		if err := r.cluster.SetStandby(ctx, node, false); err != nil {
			return fmt.Errorf("removing the standby taint failed: %w", err)
		}
	}
	if unmark {
		if err := r.cluster.RecordRemovalStep(ctx, node, "", ""); err != nil {
			return fmt.Errorf("clearing the removal mark failed: %w", err)
		}
	}
	return nil
}

// withdrawn withdraws a removal or park found at a tick that this view
// does not support (DecideResume's ResumeWithdraw), and reports whether
// the worker is recorded joined again.
func (r *Reconciler) withdrawn(ctx context.Context, m Machine, n *Node, why string) bool {
	name := nodeIf(n)
	untaint := n != nil && n.Standby
	unmark := n != nil && n.Annotations[AnnotationRemoval] != ""
	if err := r.withdraw(ctx, m, name, untaint, unmark); err != nil {
		r.log.Warn("could not withdraw a removal", zap.Int("vmid", m.VMID), zap.String("node", name), zap.Error(err))
		return false
	}
	r.log.Info("removal withdrawn", zap.Int("vmid", m.VMID), zap.String("step", m.Step), zap.String("node", name), zap.String("why", why))
	if name != "" {
		r.cluster.Event(name, "Normal", "RemovalWithdrawn", fmt.Sprintf("pve-autoscaler withdrew the removal of this worker (VM %d): %s", m.VMID, why))
	}
	return true
}

// reset resets the machine through Talos (its identity checked by the
// adapter), recording on the VM that a reset is on its way and then that
// it is done. A machine that no longer answers after a reset was sent
// (by this run or a crashed one) counts as reset.
func (r *Reconciler) reset(ctx context.Context, m Machine, node string, sentBefore bool) error {
	if err := r.identified(m, "reset"); err != nil {
		return err
	}
	ip, err := r.infra.Address(ctx, m.VMID)
	noAddress := err != nil
	timedOut := false
	if err == nil {
		// Recorded right before it is sent: a crash in between counts it
		// as sent, and a machine that then no longer answers as reset.
		if err := r.infra.RecordStep(ctx, m.VMID, StepResetting); err != nil {
			return err
		}
		rctx := ctx
		if sentBefore {
			// A machine that got its reset before is usually down within
			// seconds: it is not waited for as long as a first reset.
			var cancel context.CancelFunc
			rctx, cancel = context.WithTimeout(ctx, ResentResetTimeout)
			defer cancel()
		}
		err = r.os.Reset(rctx, m, ip)
		if err != nil && sentBefore && rctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s after a reset was sent: %w", ResentResetTimeout, err)
			timedOut = true
		}
	}
	// Unreachable: the machine did not answer (not: PVE could not tell its
	// address, which says nothing about the machine).
	unreachable := err != nil && !noAddress && (timedOut || r.os.Unreachable(err))
	switch {
	case err == nil:
	case unreachable && sentBefore:
		r.log.Info("the machine no longer answers after a reset was sent: counted as reset", zap.Int("vmid", m.VMID), zap.Error(err))
	case (unreachable || noAddress) && r.o.SkipUnreachableReset:
		r.log.Warn("Talos reset skipped: node unreachable (talos.reset_unreachable: skip)", zap.Int("vmid", m.VMID), zap.Error(err))
	default:
		return err
	}
	if err := r.infra.RecordStep(ctx, m.VMID, StepReset); err != nil {
		return err
	}
	if node != "" {
		// Best effort: a reset node may already have left the cluster.
		if err := r.cluster.RecordRemovalStep(ctx, node, RemovalReset, m.UUID); err != nil {
			r.log.Info("could not record the reset on the Node", zap.String("node", node), zap.Error(err))
		}
	}
	return nil
}

// parkSteps keep a drained worker in standby: its Node tainted and
// cordoned (nothing schedules there), its VM shut down and tagged standby.
// Each step is idempotent: a park that stopped half-way is run again.
func (r *Reconciler) parkSteps(ctx context.Context, m Machine, node string) []step {
	return []step{
		{StepParking, func() error {
			if err := r.infra.RecordStep(ctx, m.VMID, StepParking); err != nil {
				return err
			}
			if node == "" {
				return nil // its Node is gone (a park finished on a VM that is off)
			}
			if err := r.cluster.SetStandby(ctx, node, true); err != nil {
				return err
			}
			if err := r.cluster.Cordon(ctx, node, true); err != nil {
				return err
			}
			return r.cluster.RecordRemovalStep(ctx, node, "", "")
		}},
		{StepStandby, func() error {
			if r.holding() {
				return errHeld
			}
			if err := r.identified(m, "power off"); err != nil {
				return err
			}
			if err := r.infra.PowerOff(ctx, m); err != nil {
				return err
			}
			if err := r.infra.RecordStep(ctx, m.VMID, StepStandby); err != nil {
				return err
			}
			if node != "" {
				r.cluster.Event(node, "Normal", "Standby", fmt.Sprintf("pve-autoscaler parked this worker in standby (VM %d on %s, stopped)", m.VMID, m.Host))
			}
			return nil
		}},
	}
}

// startWake starts a standby worker: its VM boots, its Node comes back
// Ready, the taint and the cordon go.
func (r *Reconciler) startWake(m Machine, now time.Time, resumed bool) {
	op := &operation{kind: OpProvision, vmid: m.VMID, name: m.Name, host: m.Host, step: StepWaking, started: now, resumed: resumed, pool: m.Pool}
	r.launch(op, func() error { return r.wake(op, m) })
}

func (r *Reconciler) wake(op *operation, m Machine) error {
	ctx, cancel := r.provisionContext(op.started)
	defer cancel()
	err := r.runSteps(op, "", []step{
		{StepWaking, func() error {
			if err := r.infra.RecordStep(ctx, m.VMID, StepWaking); err != nil {
				return err
			}
			return r.infra.Start(ctx, m.VMID)
		}},
		{StepJoined, func() error {
			// Its Node by identity, never whatever Node has the VM's name:
			// the parked Node, or the one its kubelet registers again.
			name := m.Name
			if n, err := r.cluster.NodeOf(ctx, m); err != nil {
				return err
			} else if n != nil {
				name = n.Name
			}
			deadline, _ := ctx.Deadline()
			if err := r.cluster.WaitReady(ctx, name, time.Until(deadline)); err != nil {
				return err
			}
			n, err := r.cluster.NodeOf(ctx, m)
			switch {
			case err != nil:
				return err
			case n == nil:
				return fmt.Errorf("Node %s turned Ready, but no Node has VM %d's vmid and SMBIOS UUID", name, m.VMID)
			}
			// Uncordoned before the taint goes, as a withdraw does: the
			// standby taint is what shows an earlier version's cordon as ours.
			if err := r.cluster.Cordon(ctx, n.Name, false); err != nil {
				return err
			}
			if err := r.cluster.SetStandby(ctx, n.Name, false); err != nil {
				return err
			}
			return r.infra.RecordStep(ctx, m.VMID, StepJoined)
		}},
	})
	switch {
	case err == nil:
		r.cluster.Event(m.Name, "Normal", "ScaleUp", fmt.Sprintf("pve-autoscaler started this worker from standby (VM %d on %s)", m.VMID, m.Host))
		return nil
	case errors.Is(err, errHalted):
		return err
	case r.work.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return errHalted
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("not a Ready node within max_provision_time %s: %w", r.o.MaxProvisionTime, err)
	}
	r.log.Warn("waking a standby worker failed, destroying it", zap.Int("vmid", m.VMID), zap.String("node", m.Name), zap.Error(err))
	r.discard(m, StepWaking, false)
	return fmt.Errorf("wake %s: %w", m.Name, err)
}

// startRetire destroys a stale standby worker (too old, or its template
// changed) and deletes its Node. Its VM is stopped, so there is no Talos
// API to reset: destroying it purges its disks, which is what the reset
// would have wiped, and the Node is deleted as the reset's leave would.
func (r *Reconciler) startRetire(m Machine, resumed bool) {
	op := &operation{kind: OpRetire, vmid: m.VMID, name: m.Name, host: m.Host, step: StepRetiring, started: r.o.Now(), resumed: resumed, pool: m.Pool}
	ctx := r.work
	r.launch(op, func() error {
		return r.runSteps(op, "", []step{
			{StepRetiring, func() error { return r.infra.RecordStep(ctx, m.VMID, StepRetiring) }},
			{"destroyed", func() error {
				if r.holding() {
					return errHeld
				}
				if err := r.identified(m, "retire"); err != nil {
					return err
				}
				// A standby worker someone started and put to use (its
				// Node, read afresh by identity, schedulable or holding
				// pods) is not retired.
				n, err := r.cluster.NodeOf(ctx, m)
				if err != nil {
					return err
				}
				if n != nil && ((!n.Standby && !OurCordon(*n)) || HoldsWorkload(*n)) {
					return fmt.Errorf("retire VM %d: its Node %s is in use (schedulable or holding pods): left alone", m.VMID, n.Name)
				}
				return r.infra.Destroy(ctx, m)
			}},
			{"deleted", func() error {
				// Its Node by identity, never whatever Node has its name.
				n, err := r.cluster.NodeOf(ctx, m)
				if err != nil || n == nil {
					return err
				}
				return r.cluster.DeleteNode(ctx, *n)
			}},
		})
	})
}

func (r *Reconciler) deleteNode(n Node) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.work), time.Minute)
	defer cancel()
	if err := r.cluster.DeleteNode(ctx, n); err != nil {
		r.log.Warn("delete node", zap.String("node", n.Name), zap.Error(err))
	}
}

// finish ends an operation and records its outcome.
func (r *Reconciler) finish(kind OperationKind, vmid int, err error) {
	if r.o.Observer != nil && !errors.Is(err, errHalted) {
		r.o.Observer.Done(kind, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	resumed := false
	if op := r.ops[vmid]; op != nil && vmid != 0 {
		resumed = op.resumed
	}
	if vmid != 0 {
		r.ends++
		e := endedOp{at: r.ends, op: Operation{Kind: kind, VMID: vmid}}
		if op := r.ops[vmid]; op != nil {
			e.op = op.report()
		}
		r.ended[vmid] = e
		delete(r.ops, vmid)
	}
	switch {
	case err == nil:
		r.failures = 0
		delete(r.stuck, vmid)
	case errors.Is(err, errHalted):
	case resumed:
		// One stuck VM (its host offline, its identity refused) backs off
		// alone; it does not hold every scale-up through the failure cooldown.
		st := r.stuck[vmid]
		st.failures++
		pause := r.Backoff(st.failures)
		st.until = r.o.Now().Add(pause)
		st.err = err.Error()
		r.stuck[vmid] = st
		r.lastErr = err.Error()
		r.last.LastError = r.lastErr
		r.log.Error("resumed operation failed; its VM backs off alone", zap.String("kind", string(kind)), zap.Int("vmid", vmid),
			zap.Int("failures", st.failures), zap.Duration("retry_in", pause), zap.Error(err))
	default:
		r.failures++
		r.hist.LastFailure = r.o.Now()
		r.lastErr = err.Error()
		r.last.LastError, r.last.Failures = r.lastErr, r.failures
		r.log.Error("operation failed", zap.String("kind", string(kind)), zap.Int("vmid", vmid), zap.Int("consecutive_failures", r.failures), zap.Error(err))
	}
}
