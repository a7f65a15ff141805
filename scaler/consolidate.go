package scaler

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Consolidation: which worker may go, and when.
//
// A worker is unneeded when it may be removed (blocker), its movable pods
// fit on the other Ready, schedulable workers as the scheduler would judge
// them (podsFit: requests, extended resources, node selector and
// affinity, taints, bound volumes), and CPU and
// memory of the cluster without it stay under scale_up_at minus
// scale_down_margin. One unneeded worker goes (one at a time, every guard
// of planScaleDown holding) when any of three clocks has run:
//
//   - idle: CPU and memory of the whole cluster have both been at or below
//     their scale_down_at for scale_down_after (the rule before
//     consolidation; scale_down_at is now the idle level);
//   - empty: the worker has run only DaemonSet and mirror pods for
//     scale_down_after (Karpenter's WhenEmpty);
//   - unneeded: the worker has been unneeded for UnneededFactor x
//     scale_down_after (Cluster Autoscaler's scale-down-unneeded-time).
//
// The clocks are kept in History per Node name, and start over whenever
// the condition lapses, the worker's pool wants capacity (carryClocks;
// with one pool, the cluster), or utilization is unknown.

// UnneededFactor times scale_down_after is how long a worker must have been
// unneeded before it goes while the cluster is not idle.
const UnneededFactor = 2

// CodeUnneeded is the reason of a removal by the unneeded or empty clock.
const (
	CodeUnneeded      Code = "unneeded"
	CodeEmpty         Code = "empty"
	CodeUnneededClock Code = "unneeded_window"
)

// candidate is one worker considered for removal.
type candidate struct {
	idx   int
	score float64
	empty bool
	// fit: its pods fit elsewhere; under: the projection without it is
	// under every Up - margin.
	fit, under         bool
	cpuAfter, memAfter float64
	pod                Pod // the first pod that fits nowhere, when !fit
}

func (c candidate) unneeded() bool { return c.fit && c.under }

// isEmpty reports whether n runs only DaemonSet and mirror pods.
func isEmpty(n *Node) bool {
	for i := range n.Pods {
		if k := n.Pods[i].OwnerKind; k != OwnerDaemonSet && k != OwnerNode {
			return false
		}
	}
	return true
}

// consider evaluates the removable workers, best first (empty ones, then
// the least utilized, then the newest), at most maxFitChecks of them, and
// moves the per-worker clocks in plan.Next. blocked lists up to three
// workers that may not go and why.
func (d *decision) consider() (cands []candidate, blocked []string) {
	cands = make([]candidate, 0, len(d.active))
	for _, i := range d.active {
		n := &d.s.Nodes[i]
		b := d.blocker(n)
		if b == "" {
			b = d.poolBlocker(n, d.overOnly)
		}
		if b == "" {
			b = d.replacementBlocker(n)
		}
		if b != "" {
			if len(blocked) < 3 {
				blocked = append(blocked, n.Name+": "+b)
			}
			continue
		}
		cands = append(cands, candidate{idx: i, score: d.score(n), empty: isEmpty(n)})
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if a.empty != b.empty {
			if a.empty {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.score, b.score); c != 0 {
			return c
		}
		na, nb := &d.s.Nodes[a.idx], &d.s.Nodes[b.idx]
		if c := nb.Created.Compare(na.Created); c != 0 {
			return c
		}
		return cmp.Compare(na.Name, nb.Name)
	})
	if len(cands) > maxFitChecks {
		cands = cands[:maxFitChecks]
	}

	if len(cands) == 0 {
		d.plan.Next.Unneeded, d.plan.Next.Empty = nil, nil
		return cands, blocked
	}
	free := make([]Resources, len(d.active))
	for k, i := range d.active {
		n := &d.s.Nodes[i]
		free[k] = n.Allocatable.Sub(n.Requests)
	}
	// pos is a candidate's place in d.active (and free): d.active is in
	// the order of s.Nodes.
	pos := func(i int) int {
		k, _ := slices.BinarySearch(d.active, i)
		return k
	}
	var unneeded, empty map[string]time.Time
	for k := range cands {
		c := &cands[k]
		n := &d.s.Nodes[c.idx]
		rest := d.alloc.Sub(n.Allocatable)
		// On a rising trend, the usage projected (trend.go), and a rise
		// that recurs (seasonal.go) over the flap window: a removal must
		// not be followed by the scale-up the rise brings.
		c.cpuAfter, c.memAfter = pct(d.projDown.MilliCPU, rest.MilliCPU), pct(d.projDown.Memory, rest.Memory)
		c.under = d.utilValid && rest.MilliCPU > 0 && rest.Memory > 0 &&
			c.cpuAfter < d.p.CPU.Up-d.p.ScaleDownMargin && c.memAfter < d.p.Memory.Up-d.p.ScaleDownMargin
		if rest.MilliCPU <= 0 && rest.Memory <= 0 && c.empty && len(d.workers) == 1 {
			// The last worker of all (min_workers 0 allows it; not merely
			// the last schedulable one), running only DaemonSet pods: no
			// load moves anywhere.
			c.under = d.utilValid
		}
		var fits bool
		c.pod, fits = d.podsFit(n, pos(c.idx), free)
		c.fit = fits
		if c.unneeded() {
			if unneeded == nil {
				unneeded = map[string]time.Time{}
			}
			unneeded[n.Name] = runningSince(d.h.Unneeded[n.Name], n, d.now)
		}
		if c.empty {
			if empty == nil {
				empty = map[string]time.Time{}
			}
			empty[n.Name] = runningSince(d.h.Empty[n.Name], n, d.now)
		}
	}
	d.plan.Next.Unneeded, d.plan.Next.Empty = unneeded, empty
	return cands, blocked
}

// carryClocks keeps, when scale-down is not planned because a pool wants
// capacity, the unneeded and empty clocks of the workers in the pools
// that want none: another pool's need neither starts them over nor runs
// them out (the removal itself still waits, one thing at a time). With
// one pool they start over, as the pool's need is the cluster's.
func (d *decision) carryClocks() {
	if !d.multi() {
		return
	}
	for _, i := range d.active {
		n := &d.s.Nodes[i]
		pi := d.poolOf(n.Managed, n.Pool)
		if pi < 0 || d.pools[pi].need > 0 {
			continue
		}
		for _, c := range []struct {
			from map[string]time.Time
			to   *map[string]time.Time
		}{{d.h.Unneeded, &d.plan.Next.Unneeded}, {d.h.Empty, &d.plan.Next.Empty}} {
			if t, ok := c.from[n.Name]; ok {
				if *c.to == nil {
					*c.to = map[string]time.Time{}
				}
				(*c.to)[n.Name] = t
			}
		}
	}
}

// runningSince keeps a running clock, or starts one now (a clock older than the
// Node belongs to an earlier Node of that name).
func runningSince(prev time.Time, n *Node, now time.Time) time.Time {
	if prev.IsZero() || prev.After(now) || prev.Before(n.Created) {
		return now
	}
	return prev
}

// consolidate picks the removal among cands once the guards have passed:
// the first unneeded worker whose idle, empty or unneeded clock has run.
// Otherwise it says what holds.
func (d *decision) consolidate(cands []candidate, blocked []string) {
	if len(cands) == 0 {
		msg := "scale-down held: no removable node"
		if len(blocked) > 0 {
			msg += " (" + strings.Join(blocked, "; ") + ")"
		}
		d.hold(CodeNoCandidate, "%s", msg)
		return
	}
	low := d.plan.Next.LowSince
	idle := !low.IsZero() && d.now.Sub(low) >= d.p.DownWindow
	var lastHold Reason
	var waiting *candidate
	for k := range cands {
		c := &cands[k]
		n := &d.s.Nodes[c.idx]
		switch {
		case !c.under:
			lastHold = reason(CodeProjection, "scale-down held: without %s, CPU would be %s%% and memory %s%%, not under %g%% / %g%% (scale-up threshold minus the %g-point margin); it would scale up again",
				n.Name, pctVs(c.cpuAfter, d.p.CPU.Up-d.p.ScaleDownMargin, true), pctVs(c.memAfter, d.p.Memory.Up-d.p.ScaleDownMargin, true), d.p.CPU.Up-d.p.ScaleDownMargin, d.p.Memory.Up-d.p.ScaleDownMargin, d.p.ScaleDownMargin)
			continue
		case !c.fit:
			lastHold = nowhere(c.pod, n)
			continue
		}
		var why Reason
		switch {
		case idle:
			why = reason(CodeUnderutilized, "CPU %s%% and memory %s%% at or below %g%% / %g%% for %s",
				pctVs(d.cpuPct, d.p.CPU.Down, false), pctVs(d.memPct, d.p.Memory.Down, false), d.p.CPU.Down, d.p.Memory.Down, fmtDur(d.now.Sub(low)))
		case c.empty && d.now.Sub(d.plan.Next.Empty[n.Name]) >= d.p.DownWindow:
			why = reason(CodeEmpty, "%s has run only DaemonSet and mirror pods for %s (scale_down_after %s)",
				n.Name, fmtDur(d.now.Sub(d.plan.Next.Empty[n.Name])), fmtDur(d.p.DownWindow))
		case d.now.Sub(d.plan.Next.Unneeded[n.Name]) >= UnneededFactor*d.p.DownWindow:
			why = reason(CodeUnneeded, "%s unneeded for %s (%d x scale_down_after): without it CPU %s%% and memory %s%% stay under %g%% / %g%%",
				n.Name, fmtDur(d.now.Sub(d.plan.Next.Unneeded[n.Name])), UnneededFactor, pctVs(c.cpuAfter, d.p.CPU.Up-d.p.ScaleDownMargin, true), pctVs(c.memAfter, d.p.Memory.Up-d.p.ScaleDownMargin, true),
				d.p.CPU.Up-d.p.ScaleDownMargin, d.p.Memory.Up-d.p.ScaleDownMargin)
		default:
			if waiting == nil {
				waiting = c
			}
			continue
		}
		d.remove(*c, []Reason{why, reason(CodeCandidateSelection, "%s is the best removable node (%s%.1f%% utilized); without it CPU %.1f%%, memory %.1f%%, and its pods fit elsewhere",
			n.Name, map[bool]string{true: "empty, ", false: ""}[c.empty], c.score, c.cpuAfter, c.memAfter)})
		return
	}
	if waiting != nil {
		n := &d.s.Nodes[waiting.idx]
		if low.IsZero() {
			d.hold(CodeNotLow, "scale-down held: CPU %s%% / memory %s%% not both at or below %g%% / %g%%", pctVs(d.cpuPct, d.p.CPU.Down, false), pctVs(d.memPct, d.p.Memory.Down, false), d.p.CPU.Down, d.p.Memory.Down)
		} else {
			d.hold(CodeDownWindow, "scale-down held: utilization low for %s of the %s window", fmtDur(d.now.Sub(low)), fmtDur(d.p.DownWindow))
		}
		since := d.plan.Next.Unneeded[n.Name]
		d.hold(CodeUnneededClock, "scale-down held: %s unneeded for %s of %s (%d x scale_down_after)", n.Name, fmtDur(d.now.Sub(since)), fmtDur(UnneededFactor*d.p.DownWindow), UnneededFactor)
		d.recheck(since.Add(UnneededFactor * d.p.DownWindow))
		if !low.IsZero() {
			d.recheck(low.Add(d.p.DownWindow))
		}
		return
	}
	if low.IsZero() {
		d.hold(CodeNotLow, "scale-down held: CPU %s%% / memory %s%% not both at or below %g%% / %g%%", pctVs(d.cpuPct, d.p.CPU.Down, false), pctVs(d.memPct, d.p.Memory.Down, false), d.p.CPU.Down, d.p.Memory.Down)
	}
	if lastHold.Code == "" {
		lastHold = reason(CodeNoCandidate, "scale-down held: none of the %d best candidates could go", maxFitChecks)
	}
	d.plan.Holds = append(d.plan.Holds, lastHold)
}

// removeAboveMax removes the best candidate whose pods fit elsewhere,
// whatever the projection: above max_workers the count comes first.
func (d *decision) removeAboveMax(cands []candidate, blocked []string, why Reason) {
	var lastHold Reason
	for _, c := range cands {
		n := &d.s.Nodes[c.idx]
		if !c.fit {
			lastHold = nowhere(c.pod, n)
			continue
		}
		d.remove(c, []Reason{why, reason(CodeCandidateSelection, "%s is the least utilized removable node (%.1f%%), and its pods fit elsewhere", n.Name, c.score)})
		return
	}
	if len(cands) == 0 {
		msg := "scale-down held: no removable node"
		if len(blocked) > 0 {
			msg += " (" + strings.Join(blocked, "; ") + ")"
		}
		lastHold = reason(CodeNoCandidate, "%s", msg)
	}
	d.plan.Holds = append(d.plan.Holds, lastHold)
}

func (d *decision) remove(c candidate, why []Reason) {
	n := &d.s.Nodes[c.idx]
	a := Action{Kind: ActionRemove, Node: n.Name, VMID: n.VMID, Host: n.Host, Reasons: why}
	d.parkRemoval(&a, d.poolOf(n.Managed, n.Pool))
	d.plan.Actions = append(d.plan.Actions, a)
	d.plan.Next.LastScaleDown = d.now
}

// movable reports whether a pod must find a place elsewhere before its
// worker goes: every pod but DaemonSet and mirror pods, unless it asks
// for nothing and is bound by nothing.
func movable(p *Pod) bool {
	if p.OwnerKind == OwnerDaemonSet || p.OwnerKind == OwnerNode {
		return false
	}
	return !p.Requests.IsZero() || len(p.Extended) > 0 || constrained(p)
}

// constrained reports whether a pod has constraints on where it runs
// beyond its CPU and memory requests and extended resources.
func constrained(p *Pod) bool {
	return len(p.NodeSelector) > 0 || p.NodeAffinity != nil || len(p.Tolerations) > 0 || len(p.VolumeNodeAffinity) > 0
}

// nowhere is the hold of a worker n whose pod p fits on no other worker.
func nowhere(p Pod, n *Node) Reason {
	how := "by its requests"
	if constrained(&p) || len(p.Extended) > 0 {
		how = "as the scheduler would judge it (requests, extended resources, node selector and affinity, taints, volumes)"
	}
	return reason(CodePodsDoNotFit, "scale-down held: pod %s/%s on %s (requests %s) fits on no other node %s", p.Namespace, p.Name, n.Name, p.Requests, how)
}

// podMove is a pod podsFit placed on the k-th active worker.
type podMove struct {
	k int
	p *Pod
}

// targets is what consolidation knows of the workers pods could move to
// (d.active, by position), made when first needed: each one's Node as
// the scheduling helpers read it, and its free extended resources.
type targets struct {
	nodes   []*corev1.Node
	extFree []map[string]int64
	repels  []int8 // 0: not looked at yet, 1: no taint that repels, 2: one
}

func (d *decision) target(k int) *Node { return &d.s.Nodes[d.active[k]] }

// targetRepels reports whether the k-th active worker has a taint that
// keeps a pod without tolerations off (NoSchedule, NoExecute).
func (d *decision) targetRepels(k int) bool {
	t := &d.targets
	if t.repels == nil {
		t.repels = make([]int8, len(d.active))
	}
	if t.repels[k] == 0 {
		t.repels[k] = 1
		if slices.ContainsFunc(d.target(k).Taints, func(x corev1.Taint) bool { return taintsThatRepel(&x) }) {
			t.repels[k] = 2
		}
	}
	return t.repels[k] == 2
}

// targetNode is the k-th active worker's Node for the scheduling helpers:
// its name, labels and taints.
func (d *decision) targetNode(k int) *corev1.Node {
	t := &d.targets
	if t.nodes == nil {
		t.nodes = make([]*corev1.Node, len(d.active))
	}
	if t.nodes[k] == nil {
		n := d.target(k)
		t.nodes[k] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels}, Spec: corev1.NodeSpec{Taints: n.Taints}}
	}
	return t.nodes[k]
}

// extFree is the k-th active worker's extended resources less its pods'
// requests of them.
func (d *decision) extFree(k int) map[string]int64 {
	t := &d.targets
	if t.extFree == nil {
		t.extFree = make([]map[string]int64, len(d.active))
	}
	if t.extFree[k] == nil {
		n := d.target(k)
		free := maps.Clone(n.Extended)
		if free == nil {
			free = map[string]int64{}
		}
		for i := range n.Pods {
			for name, v := range n.Pods[i].Extended {
				free[name] -= v
			}
		}
		t.extFree[k] = free
	}
	return t.extFree[k]
}

// runsOn reports whether pod p could run on the k-th active worker as far
// as the scheduler's filters go, requests of CPU and memory aside: its
// node selector and required node affinity, the Node's taints against
// its tolerations, the node affinity of its bound volumes (with
// Kubernetes' helpers, as Unfit judges a new worker), and its extended
// resources against the worker's free ones.
func (d *decision) runsOn(p *Pod, k int) bool {
	if !constrained(p) && len(p.Extended) == 0 && !d.targetRepels(k) {
		return true
	}
	pp := PendingPod{NodeSelector: p.NodeSelector, NodeAffinity: p.NodeAffinity, Tolerations: p.Tolerations, VolumeNodeAffinity: p.VolumeNodeAffinity}
	if unfitConstraints(&pp, d.targetNode(k)) != "" {
		return false
	}
	if len(p.Extended) > 0 {
		free := d.extFree(k)
		for name, v := range p.Extended {
			if v > 0 && free[name] < v {
				return false
			}
		}
	}
	return true
}

// podsFit first-fits the node's movable pods, largest first, onto the
// other active workers (free: their free CPU and memory, by position in
// d.active; self: the node's own position): a pod goes only where the
// scheduler would put it (runsOn) and its requests fit. It returns the
// first pod that fits nowhere. free and the extended resources taken are
// restored before returning.
func (d *decision) podsFit(n *Node, self int, free []Resources) (Pod, bool) {
	pods := d.scratchPods[:0]
	for i := range n.Pods {
		if p := &n.Pods[i]; movable(p) {
			pods = append(pods, p)
		}
	}
	d.scratchPods = pods
	slices.SortStableFunc(pods, func(a, b *Pod) int {
		return cmp.Or(cmp.Compare(b.Requests.MilliCPU, a.Requests.MilliCPU), cmp.Compare(b.Requests.Memory, a.Requests.Memory))
	})
	undo := d.scratchUndo[:0]
	defer func() {
		for _, c := range slices.Backward(undo) {
			free[c.k] = free[c.k].Add(c.p.Requests)
			if len(c.p.Extended) > 0 {
				ef := d.extFree(c.k)
				for name, v := range c.p.Extended {
					ef[name] += v
				}
			}
		}
		d.scratchUndo = undo[:0]
	}()
	for _, p := range pods {
		placed := false
		for k := range free {
			if k == self || !p.Requests.Fits(free[k]) || !d.runsOn(p, k) {
				continue
			}
			free[k] = free[k].Sub(p.Requests)
			if len(p.Extended) > 0 {
				ef := d.extFree(k)
				for name, v := range p.Extended {
					ef[name] -= v
				}
			}
			undo = append(undo, podMove{k, p})
			placed = true
			break
		}
		if !placed {
			return *p, false
		}
	}
	return Pod{}, true
}
