package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/kubectl/pkg/drain"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// WaitReady waits for a node to register and report Ready. It polls the
// informer cache.
func (c *Client) WaitReady(ctx context.Context, name string, timeout time.Duration) error {
	return c.waitReady(ctx, name, timeout, nil)
}

// waitReady is WaitReady, calling progress (if set) when what it sees changes.
func (c *Client) waitReady(ctx context.Context, name string, timeout time.Duration, progress func(string)) error {
	if err := c.synced(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	report := func(s string) {
		if s != last {
			last = s
			c.log.Info("waiting for node", zap.String("node", name), zap.String("state", s))
			if progress != nil {
				progress(s)
			}
		}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := c.nodes.Get(name)
		switch {
		case apierrors.IsNotFound(err):
			report("not registered")
		case err != nil:
			report("lookup failed: " + err.Error())
		case ready(n):
			report("Ready")
			return nil
		default:
			report("registered, not Ready")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready within %s (last seen: %s)", name, timeout, last)
		case <-tick.C:
		}
	}
}

// Cordon cordons (true) or uncordons (false) a node, and takes away
// only a cordon of ours. A cordon of ours carries scaler.AnnotationCordoned,
// set in the same patch; a Node with our standby taint counts as cordoned
// by us too (an earlier version parked without the annotation). Our
// removal mark does not: a person may have cordoned the Node before our
// drain. A Node cordoned by someone else is never claimed: cordoning it
// fails with *scaler.ForeignCordonError (so nothing is drained under it),
// and it stays cordoned when we uncordon. The writes are merge patches
// of the fields they change, as kubectl cordon's are: never an Update of
// the whole object racing the kubelet's status writes.
func (c *Client) Cordon(ctx context.Context, name string, cordon bool) error {
	verb := "cordon"
	if !cordon {
		verb = "uncordon"
	}
	n, err := c.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	_, marked := n.Annotations[scaler.AnnotationCordoned]
	ours := marked || slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == scaler.TaintStandby })
	var spec map[string]any
	var ann map[string]*string
	switch {
	case cordon && n.Spec.Unschedulable && !ours:
		// A person's cordon: never claimed, and nothing is drained or
		// removed under it.
		return &scaler.ForeignCordonError{Node: name}
	case cordon && n.Spec.Unschedulable && !marked:
		return nil // an earlier version's park (our standby taint)
	case cordon && n.Spec.Unschedulable:
		return nil
	case cordon:
		yes := "true"
		spec, ann = map[string]any{"unschedulable": true}, map[string]*string{scaler.AnnotationCordoned: &yes}
	case !n.Spec.Unschedulable && !marked:
		return nil
	case !n.Spec.Unschedulable:
		ann = map[string]*string{scaler.AnnotationCordoned: nil} // a stale mark of ours
	case !ours:
		c.log.Info("node cordoned by someone else: left cordoned", zap.String("node", name))
		return nil
	default:
		spec, ann = map[string]any{"unschedulable": nil}, map[string]*string{scaler.AnnotationCordoned: nil}
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": ann}}
	if spec != nil {
		patch["spec"] = spec
	}
	b, err := jsonMarshal(patch)
	if err != nil {
		return err
	}
	if _, err := c.cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	if spec != nil {
		c.settle(ctx, name, func(n *corev1.Node) bool { return n == nil || n.Spec.Unschedulable == cordon })
	}
	return nil
}

// settleTimeout bounds how long a write waits to be seen in the informer's cache.
const settleTimeout = 5 * time.Second

// settle waits until the informer's cache shows what a write of ours did
// (done gets nil while the cache has no such Node), so the next snapshot, read from
// that cache, agrees with the step just recorded: a tick right after a
// standby worker was woken must not see it tainted still and add another.
// The watch delivers within milliseconds; past settleTimeout it gives up
// (the write itself succeeded).
func (c *Client) settle(ctx context.Context, name string, done func(*corev1.Node) bool) {
	if c.nodes == nil {
		return // informers not started (one-shot commands)
	}
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		n, err := c.nodes.Get(name)
		if apierrors.IsNotFound(err) {
			n, err = nil, nil
		}
		if err == nil && done(n) {
			return
		}
		select {
		case <-ctx.Done():
			c.log.Debug("node write not yet in the cache", zap.String("node", name))
			return
		case <-time.After(wait):
		}
	}
}

// PodHold is a pod that kept a drain from finishing, and why.
type PodHold struct {
	Namespace, Name, Reason string
}

// DrainError is a drain that did not finish: the node was uncordoned and
// stays; Pods says what held it.
type DrainError struct {
	Node string
	Pods []PodHold
	Err  error
	// TimedOut: the node was cordoned and its pods evicted until the
	// drain timeout ran out (errors.Is(err, scaler.ErrDrainTimedOut)).
	TimedOut bool
}

// Is makes a drain that timed out scaler.ErrDrainTimedOut.
func (e *DrainError) Is(target error) bool { return target == scaler.ErrDrainTimedOut && e.TimedOut }

func (e *DrainError) Error() string {
	var parts []string
	for _, p := range e.Pods {
		parts = append(parts, fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, p.Reason))
	}
	held := "no pod named"
	if len(parts) > 0 {
		held = "held by " + strings.Join(parts, ", ")
	}
	return fmt.Sprintf("drain of %s did not finish, node uncordoned and kept: %s: %v", e.Node, held, e.Err)
}

func (e *DrainError) Unwrap() error { return e.Err }

var evictErrRE = regexp.MustCompile(`error when evicting pods/"([^"]+)" -n "([^"]+)" \(will retry after [^)]*\): (.*)`)

// Drain cordons the node and evicts its pods through the Eviction API (so
// PodDisruptionBudgets hold), leaving DaemonSet and mirror pods, deleting
// emptyDir data only when policy.drain.delete_emptydir_data says so, and
// refusing pods annotated safe-to-evict=false or do-not-disrupt=true. When
// it does not finish within the drain timeout, a *DrainError names the pods
// that held it and why, and the node stays cordoned: the caller uncordons
// a node it keeps, and one it removes anyway (remove_undrained) gets no
// new pods meanwhile.
func (c *Client) Drain(ctx context.Context, name string) error {
	if err := c.Cordon(ctx, name, true); err != nil {
		return err
	}
	holds := &holdLog{reasons: map[string]string{}, log: c.log}
	grace := -1
	if g := c.opts.Drain.GracePeriod; g != nil {
		grace = int(g.D() / time.Second)
	}
	h := &drain.Helper{
		Ctx:                  ctx,
		Client:               c.cs,
		IgnoreAllDaemonSets:  true,
		DeleteEmptyDirData:   c.opts.Drain.DeleteEmptyDirData,
		GracePeriodSeconds:   grace,
		Timeout:              c.opts.Drain.Timeout.D(),
		EvictErrorRetryDelay: c.opts.EvictRetry,
		AdditionalFilters:    []drain.PodFilter{protectedFilter},
		Out:                  logWriter{c.log},
		ErrOut:               holds,
		OnPodDeletedOrEvicted: func(p *corev1.Pod, _ bool) {
			c.log.Info("pod evicted", zap.String("node", name), zap.String("pod", p.Namespace+"/"+p.Name))
		},
	}
	start := time.Now()
	err := drain.RunNodeDrain(h, name)
	if err == nil {
		return nil
	}
	// kubectl's helper says "global timeout reached" when its Timeout ran
	// out while evicting; an error before (a pod list, a filter refusing a
	// pod, a cancelled context) is no timeout.
	timeout := c.opts.Drain.Timeout.D()
	timedOut := timeout > 0 && ctx.Err() == nil && (strings.Contains(err.Error(), "global timeout reached") || time.Since(start) >= timeout)
	derr := &DrainError{Node: name, Err: err, TimedOut: timedOut}
	// Which pods are still there, and what each last heard.
	pods, lerr := c.cs.CoreV1().Pods("").List(context.WithoutCancel(ctx), metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
	if lerr == nil {
		for _, p := range pods.Items {
			if ds := metav1.GetControllerOf(&p); ds != nil && ds.Kind == "DaemonSet" {
				continue
			}
			if _, mirror := p.Annotations[mirrorAnnotation]; mirror {
				continue
			}
			reason := holds.reason(p.Namespace, p.Name)
			if reason == "" {
				if st := protectedFilter(p); !st.Delete {
					reason = st.Message
				} else if p.DeletionTimestamp != nil {
					reason = "still terminating"
				} else {
					reason = "not evicted: " + firstLine(err.Error())
				}
			}
			derr.Pods = append(derr.Pods, PodHold{Namespace: p.Namespace, Name: p.Name, Reason: reason})
		}
		sort.Slice(derr.Pods, func(i, j int) bool {
			return derr.Pods[i].Namespace+derr.Pods[i].Name < derr.Pods[j].Namespace+derr.Pods[j].Name
		})
	}
	return derr
}

// protectedFilter refuses (as an error, so the drain fails rather than
// skipping them) pods that must not be evicted.
func protectedFilter(p corev1.Pod) drain.PodDeleteStatus {
	if p.Annotations[scaler.AnnotationSafeToEvict] == "false" {
		return drain.MakePodDeleteStatusWithError(fmt.Sprintf("pod %s/%s is annotated %s=false", p.Namespace, p.Name, scaler.AnnotationSafeToEvict))
	}
	if p.Annotations[scaler.AnnotationDoNotDisrupt] == "true" {
		return drain.MakePodDeleteStatusWithError(fmt.Sprintf("pod %s/%s is annotated %s=true", p.Namespace, p.Name, scaler.AnnotationDoNotDisrupt))
	}
	return drain.MakePodDeleteStatusOkay()
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// holdLog reads the drain helper's error output: the last reason each
// pod's eviction was refused (a PodDisruptionBudget, say).
type holdLog struct {
	mu      sync.Mutex
	reasons map[string]string
	log     *zap.Logger
	buf     bytes.Buffer
}

func (h *holdLog) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Write(p)
	for {
		line, err := h.buf.ReadString('\n')
		if err != nil {
			h.buf.WriteString(line)
			break
		}
		line = strings.TrimSpace(line)
		if m := evictErrRE.FindStringSubmatch(line); m != nil {
			h.reasons[m[2]+"/"+m[1]] = m[3]
		}
		h.log.Info("drain", zap.String("message", line))
	}
	return len(p), nil
}

func (h *holdLog) reason(ns, name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reasons[ns+"/"+name]
}

// logWriter routes the drain helper's output to the log.
type logWriter struct{ log *zap.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if line != "" {
			w.log.Info("drain", zap.String("message", line))
		}
	}
	return len(p), nil
}

// DeleteNode deletes the Node want names, read afresh from the API server,
// only while it is still want's machine: its vmid label and SMBIOS UUID
// are want's (scaler.SameWorker). The delete carries the UID read as a
// precondition, so a Node re-created under that name meanwhile (another
// machine, or the same one registering again) is never deleted on the
// strength of the old one. A Node gone already is fine.
func (c *Client) DeleteNode(ctx context.Context, want scaler.Node) error {
	name := want.Name
	n, err := c.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("delete node %s: reading it: %w", name, err)
	}
	got := scaler.Node{Name: n.Name, SystemUUID: scaler.NormalUUID(n.Status.NodeInfo.SystemUUID)}
	got.VMID, _ = strconv.Atoi(n.Labels[scaler.LabelVMID])
	if !scaler.SameWorker(scaler.Machine{VMID: want.VMID, UUID: scaler.NormalUUID(want.SystemUUID), Name: name}, got) {
		return fmt.Errorf("delete node %s: not deleted: it is not the machine decided on (vmid label %q and SMBIOS UUID %q now, vmid %d and UUID %q expected)",
			name, n.Labels[scaler.LabelVMID], got.SystemUUID, want.VMID, want.SystemUUID)
	}
	uid := n.UID
	err = c.cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case apierrors.IsNotFound(err):
	case apierrors.IsConflict(err):
		return fmt.Errorf("delete node %s: not deleted: the Node was re-created since it was read: %w", name, err)
	case err != nil:
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	c.settle(ctx, name, func(n *corev1.Node) bool { return n == nil || n.UID != uid })
	return nil
}

// Annotate merges labels and annotations into a node (a nil value removes the key).
func (c *Client) Annotate(ctx context.Context, name string, labels, annotations map[string]*string) error {
	// A nil map must stay out of the patch: "labels": null would delete
	// every label of the Node (JSON merge patch semantics).
	meta := map[string]any{}
	if labels != nil {
		meta["labels"] = labels
	}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	patch := map[string]any{"metadata": meta}
	b, err := jsonMarshal(patch)
	if err != nil {
		return err
	}
	if _, err := c.cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("label node %s: %w", name, err)
	}
	return nil
}

// RecordRemovalStep records the removal step on the node, with the
// machine's SMBIOS UUID ("" clears both).
func (c *Client) RecordRemovalStep(ctx context.Context, name, step, uuid string) error {
	var v, of *string
	if step != "" {
		v, of = &step, &uuid
	}
	return c.Annotate(ctx, name, nil, map[string]*string{scaler.AnnotationRemoval: v, scaler.AnnotationRemovalOf: of})
}

var _ scaler.Cluster = (*Client)(nil)

// Event records a Kubernetes Event on a node (type Normal or Warning).
func (c *Client) Event(node, eventType, reason, message string) {
	ref := &corev1.ObjectReference{Kind: "Node", Name: node, UID: types.UID(node), APIVersion: "v1"}
	// kubectl describe node finds a Node's Events by its UID: the cache's,
	// else the API's (a Node that just registered may not be cached yet).
	if n, err := c.nodes.Get(node); err == nil {
		ref.UID = n.UID
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if n, err := c.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err == nil {
			ref.UID = n.UID
		}
		cancel()
	}
	c.recorder.Event(ref, eventType, reason, message)
}

// SetStandby taints a Node pve-autoscaler.io/standby=true:NoSchedule (on)
// or takes the taint away (off): a standby worker's Node keeps pods off
// while its VM is stopped in standby.
func (c *Client) SetStandby(ctx context.Context, name string, on bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		has := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == scaler.TaintStandby })
		switch {
		case on && has, !on && !has:
			return nil
		case on:
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: scaler.TaintStandby, Value: "true", Effect: corev1.TaintEffectNoSchedule})
		default:
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == scaler.TaintStandby })
		}
		// The whole list, guarded by the resourceVersion read (a conflict
		// is read again): a patch, so that RBAC needs no update on nodes.
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
			"spec":     map[string]any{"taints": n.Spec.Taints},
		})
		if err != nil {
			return err
		}
		_, err = c.cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("standby taint on %s: %w", name, err)
	}
	c.settle(ctx, name, func(n *corev1.Node) bool {
		return n == nil || slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == scaler.TaintStandby }) == on
	})
	return nil
}

// PodEvent records a Kubernetes Event on a pod (type Normal or Warning),
// found in the informer's cache so the event carries its UID and shows in
// `kubectl describe pod`; a pod gone meanwhile gets none.
func (c *Client) PodEvent(namespace, name, eventType, reason, message string) {
	if c.pods == nil {
		return
	}
	p, err := c.pods.Pods(namespace).Get(name)
	if err != nil {
		return
	}
	c.recorder.Event(p, eventType, reason, message)
}
