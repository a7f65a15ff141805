package scaler

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Labels the Talos config puts on every node the scaler creates; the
// Kubernetes adapter reads them back.
const (
	LabelManaged = "pve-autoscaler.io/managed"
	LabelVMID    = "pve-autoscaler.io/vmid"
	LabelHost    = "pve-autoscaler.io/pve-host"
)

// Annotations and labels the engine reads.
const (
	// AnnotationScaleDownDisabled on a Node keeps it from being removed.
	AnnotationScaleDownDisabled = "pve-autoscaler.io/scale-down-disabled"
	// AnnotationCAScaleDownDisabled is the Cluster Autoscaler's equivalent, honoured too.
	AnnotationCAScaleDownDisabled = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
	// AnnotationSafeToEvict=false on a pod keeps its node from being removed.
	AnnotationSafeToEvict = "cluster-autoscaler.kubernetes.io/safe-to-evict"
	// AnnotationDoNotDisrupt=true on a pod (Karpenter's) keeps its node from being removed.
	AnnotationDoNotDisrupt = "karpenter.sh/do-not-disrupt"
)

// Owner kinds the engine treats specially.
const (
	OwnerDaemonSet = "DaemonSet"
	// OwnerNode marks a mirror (static) pod.
	OwnerNode = "Node"
)

// Snapshot is everything Decide knows about the world at one moment. The
// adapters gather it; tests and `plan --snapshot` write it by hand.
type Snapshot struct {
	// Nodes are the cluster's worker nodes (control-plane nodes are left out
	// by the adapter, or marked ControlPlane and ignored here).
	Nodes []Node `json:"nodes"`
	// PendingPods are pods whose PodScheduled condition is False with reason Unschedulable.
	PendingPods []PendingPod `json:"pending_pods,omitempty"`
	// Operations are provisions and removals the reconciler has in flight.
	Operations []Operation `json:"operations,omitempty"`
	// Hosts is the PVE hosts' room for new VMs; nil means unknown (no cap).
	Hosts []Host `json:"hosts,omitempty"`
	// Standby is the standby workers: stopped workers, installed and joined.
	Standby []StandbyWorker `json:"standby,omitempty"`
	// Metrics tells whether usage figures are present and fresh.
	Metrics MetricsState `json:"metrics"`
	// Control is the operator's pause and boosts (nil: none).
	Control *Control `json:"control,omitempty"`
	// Drifted are the joined workers no longer what a new worker would be.
	Drifted []DriftedWorker `json:"drifted,omitempty"`
	// Replacements are the workers made to replace another
	// (ReplacementsOf): a rolling replacement under way.
	Replacements []Replacement `json:"replacements,omitempty"`
	// Past is the load the decisions around one Policy.Seasons period
	// ago saw (SeasonWindows of the daemon's LoadMemory), oldest first.
	Past []LoadSample `json:"past,omitempty"`
}

// MetricsState says whether the metrics.k8s.io usage in the snapshot can be trusted.
type MetricsState struct {
	// Stale is true when the Metrics API was missing, failing or old.
	Stale bool `json:"stale,omitempty"`
	// Error is the adapter's explanation when Stale.
	Error string `json:"error,omitempty"`
}

// Node is one Kubernetes worker node.
type Node struct {
	Name string `json:"name"`
	// Managed is true when the scaler created the node's VM (our labels on the Node).
	Managed bool `json:"managed,omitempty"`
	// ControlPlane nodes never count as workers.
	ControlPlane bool `json:"control_plane,omitempty"`
	// Standby marks the Node of a worker parked in standby (tainted
	// TaintStandby): not a worker until woken.
	Standby bool `json:"standby,omitempty"`
	VMID    int  `json:"vmid,omitempty"`
	// SystemUUID is the kubelet's status.nodeInfo.systemUUID: the machine's
	// SMBIOS UUID, which for one of our workers is its VM's smbios1 uuid.
	SystemUUID string `json:"system_uuid,omitempty"`
	// Host is the PVE host the VM runs on.
	Host string `json:"host,omitempty"`
	// Pool is the worker pool the Node is labelled with (LabelPool).
	Pool          string    `json:"pool,omitempty"`
	Ready         bool      `json:"ready"`
	Unschedulable bool      `json:"unschedulable,omitempty"`
	Created       time.Time `json:"created,omitempty"`
	// ReadySince is when the Node last turned Ready (its Ready condition's
	// lastTransitionTime while Ready); zero when unknown, and Created
	// stands in for it.
	ReadySince  time.Time `json:"ready_since,omitzero"`
	Allocatable Resources `json:"allocatable"`
	// Usage is from metrics.k8s.io; meaningless when the snapshot's metrics are stale.
	Usage Resources `json:"usage"`
	// Requests is the sum of the requests of the pods bound to the node.
	Requests    Resources         `json:"requests"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Labels and Taints are the Node's: whether a pod of a worker to be
	// removed could move here (podsFit, with the scheduling helpers).
	Labels map[string]string `json:"labels,omitempty"`
	Taints []corev1.Taint    `json:"taints,omitempty"`
	// Extended are the extended resources (nvidia.com/gpu, ...) it
	// advertises as allocatable, in whole units.
	Extended map[string]int64 `json:"extended,omitempty"`
	// Pods are the pods bound to the node that matter for its removal.
	Pods []Pod `json:"pods,omitempty"`
}

// Pod is a pod bound to a node, as far as removal is concerned.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// OwnerKind is the controller's kind ("ReplicaSet", "StatefulSet",
	// "DaemonSet", "Job", "Node" for a mirror pod), empty for a bare pod.
	OwnerKind string    `json:"owner_kind,omitempty"`
	Requests  Resources `json:"requests"`
	// LocalStorage is true when the pod uses emptyDir (or other node-local) volumes.
	LocalStorage bool              `json:"local_storage,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	// PDB is the PodDisruptionBudget covering the pod, if any.
	PDB *PDBStatus `json:"pdb,omitempty"`

	// Where it could run instead (as PendingPod's): a removal needs a
	// place for it on another worker.

	NodeSelector       map[string]string    `json:"node_selector,omitempty"`
	NodeAffinity       *corev1.NodeSelector `json:"node_affinity,omitempty"`
	Tolerations        []corev1.Toleration  `json:"tolerations,omitempty"`
	Extended           map[string]int64     `json:"extended,omitempty"`
	VolumeNodeAffinity []VolumeAffinity     `json:"volume_node_affinity,omitempty"`
}

// PDBStatus is the part of a PodDisruptionBudget the engine needs.
type PDBStatus struct {
	Name               string `json:"name"`
	DisruptionsAllowed int32  `json:"disruptions_allowed"`
}

// PendingPod is an unschedulable pod.
type PendingPod struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Requests  Resources `json:"requests"`
	// Since is when the pod was first marked Unschedulable: the
	// PodScheduled condition's lastTransitionTime, which the scheduler keeps
	// through every later refusal.
	Since time.Time `json:"since"`
	// Message is the scheduler's last word on the pod, the PodScheduled
	// condition's message: "0/3 nodes are available: 1 Insufficient cpu, ...".
	Message string `json:"message,omitempty"`
	// MessageTime is when the scheduler last changed that condition (a
	// refusal that reads differently from the one before), from the pod's
	// managedFields; zero when unknown.
	MessageTime time.Time `json:"message_time,omitzero"`

	// What decides whether a worker we add could run it (Unfit).

	// Priority is the pod's spec.priority; below Policy.PriorityCutoff a
	// pod adds no worker.
	Priority int32 `json:"priority,omitempty"`
	// OwnerKind is its controller's kind; a DaemonSet's pod never adds a worker.
	OwnerKind string `json:"owner_kind,omitempty"`
	// NodeSelector is spec.nodeSelector.
	NodeSelector map[string]string `json:"node_selector,omitempty"`
	// NodeAffinity is spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.
	NodeAffinity *corev1.NodeSelector `json:"node_affinity,omitempty"`
	// Tolerations is spec.tolerations.
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// Extended are its requests of resources other than cpu, memory and
	// ephemeral-storage (nvidia.com/gpu, hugepages-2Mi...), in whole units.
	Extended map[string]int64 `json:"extended,omitempty"`
	// VolumeNodeAffinity is the node affinity of each PersistentVolume
	// its claims are bound to.
	VolumeNodeAffinity []VolumeAffinity `json:"volume_node_affinity,omitempty"`
}

// OperationKind is what an in-flight operation does.
type OperationKind string

const (
	// OpProvision is a worker being created (clone .. Node Ready).
	OpProvision OperationKind = "provision"
	// OpRemove is a worker being removed (cordon .. destroy, or parked).
	OpRemove OperationKind = "remove"
	// OpRefill is a standby worker being built: not capacity for the cluster.
	OpRefill OperationKind = "refill"
	// OpRetire is a stale standby worker being destroyed.
	OpRetire OperationKind = "retire"
)

// Operation is a provision or removal in flight.
type Operation struct {
	Kind OperationKind `json:"kind"`
	VMID int           `json:"vmid,omitempty"`
	// Node is the node (or VM) name.
	Node    string    `json:"node,omitempty"`
	Host    string    `json:"host,omitempty"`
	Step    string    `json:"step,omitempty"`
	Started time.Time `json:"started,omitempty"`
	// Pool is the worker pool of its VM.
	Pool string `json:"pool,omitempty"`
	// Stuck, when set, says why this operation makes no progress by itself
	// (past max_provision_time, kept, backing off after a failure): it
	// counts against max_workers, never as capacity on its way.
	Stuck string `json:"stuck,omitempty"`
}

// TaintStandby keeps pods off a standby worker's Node (NoSchedule).
const TaintStandby = "pve-autoscaler.io/standby"

// StandbyWorker is one stopped worker in standby.
type StandbyWorker struct {
	VMID int    `json:"vmid"`
	Name string `json:"name"`
	Host string `json:"host"`
	// Created is when its VM was cloned.
	Created time.Time `json:"created"`
	// Stale, when set, says why it must not be started (its template changed).
	Stale string `json:"stale,omitempty"`
	// Pool is the worker pool it was made for.
	Pool string `json:"pool,omitempty"`
}

// Host is one PVE host's room for new workers.
type Host struct {
	Name   string `json:"name"`
	Online bool   `json:"online"`
	// MemoryFree is the memory not yet promised to VMs, in bytes, with the
	// VMs in flight on this host already subtracted by the adapter, and
	// the reserve not (Policy.Spare subtracts it).
	MemoryFree int64 `json:"memory_free"`
}
