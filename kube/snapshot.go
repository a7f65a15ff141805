package kube

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	resourcehelper "k8s.io/component-helpers/resource"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// LabelControlPlane marks control-plane nodes.
const LabelControlPlane = "node-role.kubernetes.io/control-plane"

// mirrorAnnotation marks a static pod's mirror.
const mirrorAnnotation = "kubernetes.io/config.mirror"

// MetricsUnavailableError means metrics.k8s.io could not be read: the
// snapshot comes back marked stale and the engine fails static.
type MetricsUnavailableError struct{ Err error }

func (e *MetricsUnavailableError) Error() string {
	return fmt.Sprintf("the Metrics API (metrics.k8s.io) is not available: %v; install metrics-server "+
		"(on Talos with --kubelet-insecure-tls, because kubelet certificates are self-signed); until then no utilization decisions are made", e.Err)
}

func (e *MetricsUnavailableError) Unwrap() error { return e.Err }

// Snapshot builds the engine's view of the cluster from the informers'
// caches and one metrics.k8s.io call. When metrics cannot be read, it still
// returns a snapshot (marked stale) together with a *MetricsUnavailableError.
func (c *Client) Snapshot(ctx context.Context, now time.Time) (scaler.Snapshot, error) {
	if err := c.synced(); err != nil {
		return scaler.Snapshot{}, err
	}
	var control *scaler.Control
	if c.opts.Control.Name != "" {
		// First, and its failure fails the snapshot: nothing is decided
		// on while a pause may hold unseen.
		var err error
		if control, err = c.ReadControl(ctx, c.opts.Control); err != nil {
			return scaler.Snapshot{}, err
		}
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return scaler.Snapshot{}, err
	}
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return scaler.Snapshot{}, err
	}
	pdbs, err := c.pdbs.List(labels.Everything())
	if err != nil {
		return scaler.Snapshot{}, err
	}
	snap := scaler.Snapshot{Control: control}

	usage, metricsErr := c.nodeUsage(ctx, now)
	if metricsErr != nil {
		snap.Metrics = scaler.MetricsState{Stale: true, Error: metricsErr.Error()}
	}

	byNode := map[string][]*corev1.Pod{}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Spec.NodeName != "" {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
			continue
		}
		if cond, ok := unschedulable(p); ok {
			snap.PendingPods = append(snap.PendingPods, c.pendingPod(p, cond))
		}
	}

	for _, n := range nodes {
		if !c.workers.Matches(labels.Set(n.Labels)) {
			// Not one of this cluster's workers (kubernetes.worker_selector):
			// neither capacity nor usage, nor a place pods could move to.
			// daemon.Build refuses a selector our new workers' labels do
			// not match; a Node of ours hidden anyway (labelled by hand)
			// is still found by the direct reads that guard every removal.
			continue
		}
		sn := scaler.Node{
			Name:          n.Name,
			ControlPlane:  hasKey(n.Labels, LabelControlPlane),
			Managed:       n.Labels[scaler.LabelManaged] == "true",
			Host:          n.Labels[scaler.LabelHost],
			Pool:          n.Labels[scaler.LabelPool],
			Ready:         ready(n),
			Unschedulable: n.Spec.Unschedulable,
			Standby:       slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == scaler.TaintStandby }),
			Created:       n.CreationTimestamp.Time,
			ReadySince:    readySince(n),
			Allocatable:   toResources(n.Status.Allocatable),
			Usage:         usage[n.Name],
			Annotations:   n.Annotations,
			Labels:        n.Labels,
			Taints:        n.Spec.Taints,
			Extended:      extended(n.Status.Allocatable),
			// The kubelet reports the machine's SMBIOS UUID; lower case, as
			// the other two systems' UUIDs are compared.
			SystemUUID: scaler.NormalUUID(n.Status.NodeInfo.SystemUUID),
		}
		sn.VMID, _ = strconv.Atoi(n.Labels[scaler.LabelVMID])
		for _, p := range byNode[n.Name] {
			all := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
			sp := c.pod(p, all, pdbs)
			sn.Requests = sn.Requests.Add(sp.Requests)
			sn.Pods = append(sn.Pods, sp)
		}
		snap.Nodes = append(snap.Nodes, sn)
	}
	if metricsErr == nil {
		metricsErr = missingUsage(snap.Nodes, usage, now, c.opts.MetricsMaxAge)
		if metricsErr != nil {
			snap.Metrics = scaler.MetricsState{Stale: true, Error: metricsErr.Error()}
		}
	}
	if metricsErr != nil {
		return snap, metricsErr
	}
	return snap, nil
}

// missingUsage: a schedulable node Ready for longer than maxAge that
// metrics.k8s.io leaves out would count as a node using nothing, and
// make the cluster look idle (a metrics-server that failed to scrape
// some kubelets): the whole set is stale then. A node Ready for less has
// not been scraped yet, and its allocatable counts without usage for that
// while, shorter than any scale-down window.
func missingUsage(nodes []scaler.Node, usage map[string]scaler.Resources, now time.Time, maxAge time.Duration) error {
	for _, n := range nodes {
		if _, ok := usage[n.Name]; ok || !n.Ready || n.Unschedulable || n.ReadySince.IsZero() || now.Sub(n.ReadySince) <= maxAge {
			continue
		}
		return &MetricsUnavailableError{Err: fmt.Errorf("node %s is Ready since %s but metrics.k8s.io has no figures for it", n.Name, n.ReadySince.UTC().Format(time.RFC3339))}
	}
	return nil
}

// nodeUsage reads metrics.k8s.io node metrics; figures older than
// MetricsMaxAge make the whole set stale.
func (c *Client) nodeUsage(ctx context.Context, now time.Time) (map[string]scaler.Resources, error) {
	list, err := c.metrics.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, &MetricsUnavailableError{Err: err}
	}
	out := make(map[string]scaler.Resources, len(list.Items))
	for _, m := range list.Items {
		if age := now.Sub(m.Timestamp.Time); age > c.opts.MetricsMaxAge {
			return nil, &MetricsUnavailableError{Err: fmt.Errorf("node %s's figures are %s old (more than %s)", m.Name, age.Round(time.Second), c.opts.MetricsMaxAge)}
		}
		out[m.Name] = toResources(m.Usage)
	}
	return out, nil
}

// pod is a pod bound to a node, its requests all (resourcehelper.PodRequests).
func (c *Client) pod(p *corev1.Pod, all corev1.ResourceList, pdbs []*policyv1.PodDisruptionBudget) scaler.Pod {
	sp := scaler.Pod{Namespace: p.Namespace, Name: p.Name, Requests: toResources(all),
		NodeSelector: p.Spec.NodeSelector, NodeAffinity: requiredAffinity(p), Tolerations: p.Spec.Tolerations,
		Extended: extended(all), VolumeNodeAffinity: c.volumeAffinity(p)}
	if ref := metav1.GetControllerOf(p); ref != nil {
		sp.OwnerKind = ref.Kind
	}
	if _, ok := p.Annotations[mirrorAnnotation]; ok {
		sp.OwnerKind = scaler.OwnerNode
	}
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir != nil {
			sp.LocalStorage = true
		}
	}
	for _, k := range []string{scaler.AnnotationSafeToEvict, scaler.AnnotationDoNotDisrupt} {
		if v, ok := p.Annotations[k]; ok {
			if sp.Annotations == nil {
				sp.Annotations = map[string]string{}
			}
			sp.Annotations[k] = v
		}
	}
	for _, pdb := range pdbs {
		if pdb.Namespace != p.Namespace || pdb.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if sp.PDB == nil || pdb.Status.DisruptionsAllowed < sp.PDB.DisruptionsAllowed {
			sp.PDB = &scaler.PDBStatus{Name: pdb.Name, DisruptionsAllowed: pdb.Status.DisruptionsAllowed}
		}
	}
	return sp
}

// unschedulable returns the PodScheduled condition of a pending pod the
// scheduler could not place: since when (lastTransitionTime, kept through
// every later refusal) and its last word (message).
func unschedulable(p *corev1.Pod) (corev1.PodCondition, bool) {
	if p.Status.Phase != corev1.PodPending {
		return corev1.PodCondition{}, false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c, true
		}
	}
	return corev1.PodCondition{}, false
}

// podScheduledField is how managedFields name the PodScheduled condition.
var podScheduledField = []byte(`{\"type\":\"PodScheduled\"}`)

// conditionWritten is when the PodScheduled condition last changed: the
// newest managedFields entry on the status subresource that owns it. The
// scheduler writes the condition only when its verdict reads differently
// (a new message), and lastProbeTime is never set, so this is the one
// record of when its latest verdict was reached. Zero when unknown.
func conditionWritten(p *corev1.Pod) time.Time {
	var t time.Time
	for _, mf := range p.ManagedFields {
		if mf.Subresource != "status" || mf.Time == nil || mf.FieldsV1 == nil || !bytes.Contains(mf.FieldsV1.GetRawBytes(), podScheduledField) {
			continue
		}
		if mf.Time.After(t) {
			t = mf.Time.Time
		}
	}
	return t
}

// readySince is when a Ready node turned Ready (zero if it is not).
func readySince(n *corev1.Node) time.Time {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

func toResources(l corev1.ResourceList) scaler.Resources {
	return scaler.Resources{MilliCPU: l.Cpu().MilliValue(), Memory: l.Memory().Value()}
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// pendingPod is an unschedulable pod with what decides whether a worker we
// add could run it (scaler.Unfit).
func (c *Client) pendingPod(p *corev1.Pod, cond corev1.PodCondition) scaler.PendingPod {
	all := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
	pp := scaler.PendingPod{Namespace: p.Namespace, Name: p.Name, Requests: toResources(all),
		Since: cond.LastTransitionTime.Time, Message: cond.Message, MessageTime: conditionWritten(p),
		Priority: corev1helpers.PodPriority(p), NodeSelector: p.Spec.NodeSelector, Tolerations: p.Spec.Tolerations}
	if ref := metav1.GetControllerOf(p); ref != nil {
		pp.OwnerKind = ref.Kind
	}
	pp.NodeAffinity = requiredAffinity(p)
	pp.Extended = extended(all)
	pp.VolumeNodeAffinity = c.volumeAffinity(p)
	return pp
}

// requiredAffinity is the pod's required node affinity, or nil.
func requiredAffinity(p *corev1.Pod) *corev1.NodeSelector {
	if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	return nil
}

// extended is the resources of l other than cpu, memory,
// ephemeral-storage and pods (nvidia.com/gpu, hugepages-2Mi...), in whole
// units; nil when none.
func extended(l corev1.ResourceList) map[string]int64 {
	var out map[string]int64
	for name, q := range l {
		switch name {
		case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, corev1.ResourcePods:
			continue
		}
		if v := q.Value(); v > 0 {
			if out == nil {
				out = map[string]int64{}
			}
			out[string(name)] = v
		}
	}
	return out
}

// volumeAffinity is the node affinity of each PersistentVolume the pod's
// claims are bound to: it runs only where each matches.
func (c *Client) volumeAffinity(p *corev1.Pod) []scaler.VolumeAffinity {
	if c.pvcs == nil || c.pvs == nil {
		return nil // the informers are not started (a direct read before Start)
	}
	var out []scaler.VolumeAffinity
	for _, v := range p.Spec.Volumes {
		claim := ""
		switch {
		case v.PersistentVolumeClaim != nil:
			claim = v.PersistentVolumeClaim.ClaimName
		case v.Ephemeral != nil:
			claim = p.Name + "-" + v.Name // a generic ephemeral volume's claim
		default:
			continue
		}
		pvc, err := c.pvcs.PersistentVolumeClaims(p.Namespace).Get(claim)
		if err != nil || pvc.Spec.VolumeName == "" {
			continue // not bound yet: the scheduler binds it where the pod goes
		}
		pv, err := c.pvs.Get(pvc.Spec.VolumeName)
		if err != nil || pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
			continue
		}
		out = append(out, scaler.VolumeAffinity{Volume: pv.Name, Required: pv.Spec.NodeAffinity.Required})
	}
	return out
}
