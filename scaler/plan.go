package scaler

import "time"

// Code is a machine-readable reason for an action or a hold.
type Code string

// Reasons for actions.
const (
	CodeBelowMin    Code = "below_min"
	CodeScheduleMin Code = "schedule_min"
	// CodeBoost: a boost (`pve-autoscaler boost`) raised the minimum.
	CodeBoost         Code = "boost"
	CodeCPUHigh       Code = "cpu_high"
	CodeMemoryHigh    Code = "memory_high"
	CodePendingPods   Code = "pending_pods"
	CodeAboveMax      Code = "above_max"
	CodeUnderutilized Code = "underutilized"
)

// Reasons for holds and notes.
const (
	CodeMaxWorkers         Code = "max_workers"
	CodeMaxStep            Code = "max_step"
	CodeHostRoom           Code = "host_room"
	CodeInFlight           Code = "in_flight"
	CodeCooldownUp         Code = "cooldown_after_scale_up"
	CodeCooldownDown       Code = "cooldown_after_scale_down"
	CodeCooldownFailure    Code = "cooldown_after_failure"
	CodeMetricsStale       Code = "metrics_stale"
	CodeNoCapacity         Code = "no_capacity"
	CodeUpWindow           Code = "up_window"
	CodeDownWindow         Code = "down_window"
	CodeNotLow             Code = "not_low"
	CodeAtMin              Code = "at_min"
	CodeCapacityWanted     Code = "capacity_wanted"
	CodePendingHold        Code = "pods_pending"
	CodeProvisioning       Code = "provisioning"
	CodeRemoving           Code = "removal_in_progress"
	CodeUnready            Code = "unready_nodes"
	CodeNoCandidate        Code = "no_candidate"
	CodeProjection         Code = "projection_too_high"
	CodePodsDoNotFit       Code = "pods_do_not_fit"
	CodePendingGrace       Code = "pending_grace"
	CodeScheduleActive     Code = "schedule_active"
	CodeHostsUnknown       Code = "hosts_unknown"
	CodeCandidateSelection Code = "candidate"
	CodeNoScaleUpNeed      Code = "no_scale_up_needed"
	CodeNewNodes           Code = "fits_new_nodes"
	CodeNewNodesTried      Code = "new_nodes_tried"
	CodeNoWorkerFits       Code = "no_worker_fits"
	CodeMaxResources       Code = "max_resources"
	CodePoolAtMin          Code = "pool_at_min"
	// CodePaused: `pve-autoscaler pause` holds every action.
	CodePaused Code = "paused"
	// CodeDrifted: workers no longer what a new worker would be (Plan.Drifted).
	CodeDrifted Code = "drifted"
)

// Reason is one machine-readable code with the sentence a person reads.
type Reason struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// ActionKind says what an action does.
type ActionKind string

const (
	// ActionAdd provisions Count new workers.
	ActionAdd ActionKind = "add"
	// ActionRemove drains and removes one managed worker (Park: keeps it
	// stopped in standby instead of destroying it).
	ActionRemove ActionKind = "remove"
	// ActionRefill builds one standby worker.
	ActionRefill ActionKind = "refill"
	// ActionRetire destroys a standby worker too old or built from an old template.
	ActionRetire ActionKind = "retire"
	// ActionReplace makes one new worker of Pool to replace the drifted
	// worker Node (VMID): a surge of one, its VM marked with the old
	// worker's identity (Machine.Replaces). Once it is Ready, an
	// ActionRemove of the old worker follows (replace.go).
	ActionReplace ActionKind = "replace"
)

// Action is one thing the plan wants done, with why.
type Action struct {
	Kind  ActionKind `json:"kind"`
	Count int        `json:"count,omitempty"`
	Node  string     `json:"node,omitempty"`
	VMID  int        `json:"vmid,omitempty"`
	Host  string     `json:"host,omitempty"`
	// Wake lists the standby workers (vmids) an add starts; the rest of
	// Count is cloned.
	Wake []int `json:"wake,omitempty"`
	// Park: a removal keeps the drained worker stopped in standby.
	Park bool `json:"park,omitempty"`
	// Pool is the worker pool an add or refill makes its workers in ("":
	// the one pool of a single-pool policy).
	Pool    string   `json:"pool,omitempty"`
	Reasons []Reason `json:"reasons"`
}

// Workers counts the workers the plan saw and the count it aims at.
type Workers struct {
	Ready        int `json:"ready"`
	NotReady     int `json:"not_ready"`
	Provisioning int `json:"provisioning"`
	// Stuck are provisions without a Node that make no progress by
	// themselves (Operation.Stuck): counted against max_workers, never as
	// capacity on its way.
	Stuck    int `json:"stuck,omitempty"`
	Removing int `json:"removing"`
	// Current is ready + not ready + provisioning + stuck; nodes being removed are already gone.
	Current int `json:"current"`
	// Min is the effective minimum (raised by an active schedule).
	Min     int `json:"min"`
	Max     int `json:"max"`
	Desired int `json:"desired"`
}

// Standby is the standby workers as the plan saw them.
type Standby struct {
	// Size is the configured size; Ready the members that can be started.
	Size    int             `json:"size"`
	Ready   int             `json:"ready"`
	Members []StandbyMember `json:"members"`
}

// StandbyMember is one standby worker.
type StandbyMember struct {
	VMID int           `json:"vmid"`
	Name string        `json:"name"`
	Host string        `json:"host"`
	Age  time.Duration `json:"age_ns"`
	// Stale, when set, is why it will be destroyed rather than started.
	Stale string `json:"stale,omitempty"`
}

// AwaitingPod is a pending pod counted as placed on a newer worker, which
// the scheduler has not tried for it yet.
type AwaitingPod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Node is the newer worker whose free room it is counted on.
	Node string `json:"node"`
	// Until is when it stops being counted there (NewWorkerRetry after the
	// worker turned Ready), unless the scheduler refuses it there before.
	Until time.Time `json:"until"`
}

// Utilization is the cluster's usage over allocatable of its Ready,
// schedulable workers, in percent.
type Utilization struct {
	CPU    float64 `json:"cpu"`
	Memory float64 `json:"memory"`
	// Used is the usage those percentages are of (the daemon's trace file
	// records it).
	Used Resources `json:"used"`
}

// Plan is Decide's answer: what to do now, why, and what held back.
type Plan struct {
	Time    time.Time `json:"time"`
	Workers Workers   `json:"workers"`
	// Utilization is nil when it cannot be computed (stale metrics, no ready worker).
	Utilization *Utilization `json:"utilization,omitempty"`
	Actions     []Action     `json:"actions"`
	// Standby is nil when standby is off and no standby worker is left.
	Standby *Standby `json:"standby,omitempty"`
	Holds   []Reason `json:"holds"`
	Notes   []Reason `json:"notes,omitempty"`
	// Pending is the number of unschedulable pods in the snapshot.
	Pending int `json:"pending_pods"`
	// Load is the demand this decision saw (zero without utilization):
	// the sample the caller's LoadMemory records for the decisions one
	// Policy.Seasons period later.
	Load LoadSample `json:"load,omitzero"`
	// Awaiting are the pending pods not counted toward new workers because
	// they fit on a worker that joined after they were marked unschedulable
	// (CodeNewNodes), each until the scheduler has had its chance there.
	Awaiting []AwaitingPod `json:"awaiting_scheduler,omitempty"`
	// Pods is the verdict on each pending pod past its grace (with
	// pending_pods on): those no new worker can run first, then those
	// awaiting the scheduler, then those counted toward new workers.
	Pods []PodVerdict `json:"pods,omitempty"`
	// Pools is each worker pool's workers.
	Pools []PoolStatus `json:"pools,omitempty"`
	// Paused is the pause holding every action (nil: none); Boosts the
	// boosts raising the minimum now (Snapshot.Control).
	Paused *Pause  `json:"paused,omitempty"`
	Boosts []Boost `json:"boosts,omitempty"`
	// Drifted lists the joined workers that are no longer what a new
	// worker would be (Snapshot.Drifted).
	Drifted []DriftedWorker `json:"drifted,omitempty"`
	// NextCheck, when set, is the moment a held condition ripens (an up
	// window, a pending pod's grace or an Awaiting hold ends): the reconciler decides again
	// then instead of at its next interval.
	NextCheck time.Time `json:"next_check,omitzero"`
	// Next is the History to pass to the next Decide.
	Next History `json:"next_history"`
}

// Added returns how many workers the plan adds.
func (p Plan) Added() int {
	n := 0
	for _, a := range p.Actions {
		if a.Kind == ActionAdd {
			n += a.Count
		}
	}
	return n
}

// Removal returns the removal action, if the plan has one.
func (p Plan) Removal() (Action, bool) {
	for _, a := range p.Actions {
		if a.Kind == ActionRemove {
			return a, true
		}
	}
	return Action{}, false
}

// Held reports whether the plan carries a hold or note with code c.
func (p Plan) Held(c Code) bool {
	for _, r := range p.Holds {
		if r.Code == c {
			return true
		}
	}
	for _, r := range p.Notes {
		if r.Code == c {
			return true
		}
	}
	return false
}
