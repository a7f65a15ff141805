package scaler

import (
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// NewWorkerName is the name the template Node of a new worker carries
// (its kubernetes.io/hostname): no real Node has it, so a pod pinned to a
// host by name never fits a worker not yet created.
const NewWorkerName = "pve-autoscaler-new-worker"

// Kubelet's well-known labels a new worker's Node registers with: a
// Proxmox VM running Talos is linux/amd64.
const (
	labelHostname = "kubernetes.io/hostname"
	labelOS       = "kubernetes.io/os"
	labelArch     = "kubernetes.io/arch"
)

// NewWorker is what the Node of a worker the scaler adds looks like to the
// scheduler, as far as a pending pod's constraints go: its labels and
// taints (from the Talos worker config and its patches, machine.nodeLabels
// and machine.nodeTaints, plus ours and the kubelet's well-known labels)
// and the extended resources it advertises. Its CPU and memory are the
// decision's worker shape.
type NewWorker struct {
	Labels map[string]string
	Taints []corev1.Taint
	// Extended are the extended resources (e.g. nvidia.com/gpu) a new
	// worker's Node advertises, in whole units; none on today's workers.
	Extended map[string]int64
}

// Node is the Node a new worker registers, with allocatable alloc: the
// template every pending pod is judged against, and what tests add to a
// real cluster (a kwok Node) to compare with kube-scheduler.
func (w NewWorker) Node(name string, alloc Resources) *corev1.Node {
	lb := map[string]string{labelOS: "linux", labelArch: "amd64", LabelManaged: "true"}
	maps.Copy(lb, w.Labels)
	lb[labelHostname] = name
	rl := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(alloc.MilliCPU, resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(alloc.Memory, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	for k, v := range w.Extended {
		rl[corev1.ResourceName(k)] = *resource.NewQuantity(v, resource.DecimalSI)
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lb},
		Spec:       corev1.NodeSpec{Taints: slices.Clone(w.Taints)},
		Status:     corev1.NodeStatus{Capacity: rl, Allocatable: rl.DeepCopy()},
	}
}

// VolumeAffinity is the node affinity of a PersistentVolume a pending
// pod's claim is bound to: the pod runs only where it matches.
type VolumeAffinity struct {
	// Volume is the PersistentVolume's name.
	Volume   string               `json:"volume"`
	Required *corev1.NodeSelector `json:"required"`
}

// noLog discards what the scheduling helpers would log.
var noLog = klog.Logger{}

// taintsThatRepel are the effects that keep a pod off a Node.
func taintsThatRepel(t *corev1.Taint) bool {
	return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
}

// Unfit says why the pending pod pp cannot run on node (a new worker's
// template Node, NewWorker.Node), or "" when it can: its node selector and
// required node affinity, the Node's NoSchedule and NoExecute taints
// against its tolerations, its requests (CPU, memory and extended
// resources) against the Node's allocatable, and the node affinity of the
// PersistentVolumes its claims are bound to. It uses Kubernetes' own
// helpers (k8s.io/component-helpers/scheduling/corev1), as kube-scheduler
// does. Inter-pod affinity and topology spread are not judged: such a pod
// counts as fitting.
func Unfit(pp *PendingPod, node *corev1.Node) string {
	if why := unfitConstraints(pp, node); why != "" {
		return why
	}
	return unfitRequests(pp, node)
}

// unfitRequests judges the pod's CPU and memory requests.
func unfitRequests(pp *PendingPod, node *corev1.Node) string {
	alloc := node.Status.Allocatable
	shape := Resources{MilliCPU: alloc.Cpu().MilliValue(), Memory: alloc.Memory().Value()}
	if !pp.Requests.Fits(shape) {
		return fmt.Sprintf("requests %s, more than a new worker has (%s)", pp.Requests, shape)
	}
	return ""
}

// unconstrained reports whether the pod has none of the constraints
// unfitConstraints judges beyond what every pod tolerates.
func unconstrained(pp *PendingPod) bool {
	return len(pp.NodeSelector) == 0 && pp.NodeAffinity == nil && len(pp.Tolerations) == 0 &&
		len(pp.Extended) == 0 && len(pp.VolumeNodeAffinity) == 0
}

// unfitConstraints judges everything but the CPU and memory requests:
// pods of one controller share it, so a decision judges each set of
// constraints once (fitCache).
func unfitConstraints(pp *PendingPod, node *corev1.Node) string {
	if len(pp.NodeSelector) > 0 {
		if ok, _ := nodeaffinity.NewRequiredNodeAffinity(pp.NodeSelector, nil).Match(node); !ok {
			return "node selector " + fmtSelector(pp.NodeSelector) + " does not match a new worker's labels"
		}
	}
	if pp.NodeAffinity != nil {
		ok, err := nodeaffinity.NewLazyErrorNodeSelector(pp.NodeAffinity).Match(node)
		if err != nil {
			return "required node affinity is invalid: " + err.Error()
		}
		if !ok {
			return "required node affinity does not match a new worker's labels"
		}
	}
	if t, ok := corev1helpers.FindMatchingUntoleratedTaint(noLog, node.Spec.Taints, pp.Tolerations, taintsThatRepel, true); ok {
		return fmt.Sprintf("it does not tolerate a new worker's taint %s", fmtTaint(t))
	}
	alloc := node.Status.Allocatable
	for _, name := range slices.Sorted(maps.Keys(pp.Extended)) {
		want := pp.Extended[name]
		if want <= 0 {
			continue
		}
		have, ok := alloc[corev1.ResourceName(name)]
		if !ok || have.Value() == 0 {
			return fmt.Sprintf("requests %d %s, which a new worker does not have", want, name)
		}
		if have.Value() < want {
			return fmt.Sprintf("requests %d %s, more than a new worker has (%d)", want, name, have.Value())
		}
	}
	for _, v := range pp.VolumeNodeAffinity {
		if v.Required == nil {
			continue
		}
		ok, err := nodeaffinity.NewLazyErrorNodeSelector(v.Required).Match(node)
		if err != nil {
			return fmt.Sprintf("the node affinity of its volume %s is invalid: %v", v.Volume, err)
		}
		if !ok {
			return fmt.Sprintf("its volume %s is bound to other nodes (its node affinity does not match a new worker)", v.Volume)
		}
	}
	return ""
}

func fmtSelector(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}

func fmtTaint(t corev1.Taint) string {
	if t.Value == "" {
		return t.Key + ":" + string(t.Effect)
	}
	return t.Key + "=" + t.Value + ":" + string(t.Effect)
}

// fitCache remembers, for one decision, the verdict of unfitConstraints
// per set of constraints: the pods of a Deployment share theirs, and
// parsing a node affinity costs more than hashing and comparing it.
type fitCache struct {
	node    *corev1.Node
	seed    maphash.Seed
	entries map[uint64][]fitEntry
	// bare is the verdict for pods with no constraint.
	bare     string
	bareDone bool
}

type fitEntry struct {
	pod *PendingPod // the first pod seen with these constraints
	why string
}

func newFitCache(node *corev1.Node) *fitCache {
	return &fitCache{node: node, seed: maphash.MakeSeed(), entries: map[uint64][]fitEntry{}}
}

// unfit is Unfit(pp, c.node), with the constraints judged once per set.
func (c *fitCache) unfit(pp *PendingPod) string {
	var why string
	if unconstrained(pp) {
		if !c.bareDone {
			c.bare, c.bareDone = unfitConstraints(pp, c.node), true
		}
		why = c.bare
	} else {
		h := c.hash(pp)
		found := false
		for _, e := range c.entries[h] {
			if sameConstraints(e.pod, pp) {
				why, found = e.why, true
				break
			}
		}
		if !found {
			why = unfitConstraints(pp, c.node)
			c.entries[h] = append(c.entries[h], fitEntry{pod: pp, why: why})
		}
	}
	if why != "" {
		return why
	}
	return unfitRequests(pp, c.node)
}

// hash is a hash of the pod's constraints: equal constraints hash alike
// (maps in sorted key order).
func (c *fitCache) hash(pp *PendingPod) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	str := func(s string) { h.WriteString(s); h.WriteByte(0) }
	// Maps: a sum of the entries' hashes, whatever their order.
	var sum uint64
	for k, v := range pp.NodeSelector {
		sum += c.entry(k, v)
	}
	h.WriteString(strconv.FormatUint(sum, 16))
	h.WriteByte(1)
	hashSelector(&h, pp.NodeAffinity)
	for _, t := range pp.Tolerations {
		str(t.Key)
		str(string(t.Operator))
		str(t.Value)
		str(string(t.Effect))
	}
	h.WriteByte(1)
	sum = 0
	for k, v := range pp.Extended {
		sum += c.entry(k, strconv.FormatInt(v, 10))
	}
	h.WriteString(strconv.FormatUint(sum, 16))
	h.WriteByte(1)
	for _, v := range pp.VolumeNodeAffinity {
		str(v.Volume)
		hashSelector(&h, v.Required)
	}
	return h.Sum64()
}

func (c *fitCache) entry(k, v string) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(k)
	h.WriteByte(0)
	h.WriteString(v)
	return h.Sum64()
}

func hashSelector(h *maphash.Hash, ns *corev1.NodeSelector) {
	if ns == nil {
		h.WriteByte(2)
		return
	}
	for _, t := range ns.NodeSelectorTerms {
		for _, set := range [][]corev1.NodeSelectorRequirement{t.MatchExpressions, t.MatchFields} {
			for _, r := range set {
				h.WriteString(r.Key)
				h.WriteByte(0)
				h.WriteString(string(r.Operator))
				h.WriteByte(0)
				for _, v := range r.Values {
					h.WriteString(v)
					h.WriteByte(0)
				}
				h.WriteByte(3)
			}
			h.WriteByte(4)
		}
		h.WriteByte(5)
	}
}

// sameConstraints reports whether two pods' constraints are equal.
func sameConstraints(a, b *PendingPod) bool {
	return maps.Equal(a.NodeSelector, b.NodeSelector) && sameSelector(a.NodeAffinity, b.NodeAffinity) &&
		slices.EqualFunc(a.Tolerations, b.Tolerations, func(x, y corev1.Toleration) bool {
			return x.Key == y.Key && x.Operator == y.Operator && x.Value == y.Value && x.Effect == y.Effect
		}) &&
		maps.Equal(a.Extended, b.Extended) &&
		slices.EqualFunc(a.VolumeNodeAffinity, b.VolumeNodeAffinity, func(x, y VolumeAffinity) bool {
			return x.Volume == y.Volume && sameSelector(x.Required, y.Required)
		})
}

func sameSelector(a, b *corev1.NodeSelector) bool {
	if a == nil || b == nil {
		return a == b
	}
	same := func(x, y []corev1.NodeSelectorRequirement) bool {
		return slices.EqualFunc(x, y, func(p, q corev1.NodeSelectorRequirement) bool {
			return p.Key == q.Key && p.Operator == q.Operator && slices.Equal(p.Values, q.Values)
		})
	}
	return slices.EqualFunc(a.NodeSelectorTerms, b.NodeSelectorTerms, func(x, y corev1.NodeSelectorTerm) bool {
		return same(x.MatchExpressions, y.MatchExpressions) && same(x.MatchFields, y.MatchFields)
	})
}
