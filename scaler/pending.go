package scaler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Event reasons a pending pod gets, as the Cluster Autoscaler names them.
const (
	EventTriggeredScaleUp  = "TriggeredScaleUp"
	EventNotTriggerScaleUp = "NotTriggerScaleUp"
)

// notTriggered starts a NotTriggerScaleUp message, as the Cluster Autoscaler's do.
const notTriggered = "pod didn't trigger scale-up: "

// PodVerdict is what a decision made of one pending pod past its grace.
type PodVerdict struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Counted: a new worker could run it, and it counted toward new workers.
	Counted bool `json:"counted"`
	// Event is the reason of the Kubernetes event the pod gets
	// (EventTriggeredScaleUp, EventNotTriggerScaleUp), "" for none (the
	// workers in flight or a newer worker will hold it).
	Event   string `json:"event,omitempty"`
	Message string `json:"message"`
}

// NoWorker reports whether the pod adds no worker whatever the cluster
// does: no new worker could run it, it is a DaemonSet's, or expendable.
func (v PodVerdict) NoWorker() bool { return !v.Counted && v.Event == EventNotTriggerScaleUp }

// pendingNeed judges every pending pod past its grace against a new
// worker (Unfit), and packs those a new worker could run (first-fit
// decreasing by requests) onto the workers in flight and then onto new
// workers.
func (d *decision) pendingNeed() (int, []Reason) {
	var pods []*PendingPod
	young := 0
	var noWorker []PodVerdict
	fits := newFitCache(d.p.NewWorker.Node(NewWorkerName, d.shape))
	for i := range d.s.PendingPods {
		pp := &d.s.PendingPods[i]
		if d.now.Sub(pp.Since) < d.p.PendingGrace {
			young++
			d.recheck(pp.Since.Add(d.p.PendingGrace))
			continue
		}
		why := ""
		switch {
		case pp.OwnerKind == OwnerDaemonSet:
			why = "it is a DaemonSet's pod: a new worker runs its own copy, never this one"
		case pp.Priority < d.p.PriorityCutoff:
			why = fmt.Sprintf("its priority %d is below the cutoff %d (pending_pods.priority_cutoff: expendable)", pp.Priority, d.p.PriorityCutoff)
		default:
			why = fits.unfit(pp)
		}
		if why != "" {
			noWorker = append(noWorker, PodVerdict{Namespace: pp.Namespace, Name: pp.Name, Event: EventNotTriggerScaleUp, Message: notTriggered + why})
			continue
		}
		pods = append(pods, pp)
	}
	d.noWorker = len(noWorker)
	if young > 0 {
		d.note(CodePendingGrace, "%s unschedulable for less than the %s grace", count(young, "pod"), fmtDur(d.p.PendingGrace))
	}
	if len(noWorker) > 0 {
		d.note(CodeNoWorkerFits, "%s add no worker, e.g. %s/%s: %s",
			count(len(noWorker), "pending pod"), noWorker[0].Namespace, noWorker[0].Name, strings.TrimPrefix(noWorker[0].Message, notTriggered))
	}
	d.plan.Pods = noWorker
	if len(pods) == 0 {
		return 0, nil
	}
	shape := d.shape
	type key struct {
		dominant float64
		i        int
	}
	keys := make([]key, len(pods))
	for i := range pods {
		r := pods[i].Requests
		keys[i] = key{max(ratio(r.MilliCPU, shape.MilliCPU), ratio(r.Memory, shape.Memory)), i}
	}
	// Largest first; identical requests side by side (the packer places
	// runs of them at once); then by name, for a stable order.
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(b.dominant, a.dominant); c != 0 {
			return c
		}
		ra, rb := pods[a.i].Requests, pods[b.i].Requests
		if c := cmp.Compare(rb.MilliCPU, ra.MilliCPU); c != 0 {
			return c
		}
		if c := cmp.Compare(rb.Memory, ra.Memory); c != 0 {
			return c
		}
		if c := cmp.Compare(pods[a.i].Namespace, pods[b.i].Namespace); c != 0 {
			return c
		}
		return cmp.Compare(pods[a.i].Name, pods[b.i].Name)
	})
	sorted := make([]*PendingPod, len(pods))
	for k, kk := range keys {
		sorted[k] = pods[kk.i]
	}
	pods = sorted
	awaitedBefore := len(d.plan.Awaiting)
	pods = d.awaitScheduler(pods)
	for _, a := range d.plan.Awaiting[awaitedBefore:] {
		d.plan.Pods = append(d.plan.Pods, PodVerdict{Namespace: a.Namespace, Name: a.Name,
			Message: fmt.Sprintf("fits on %s, which joined after it was marked unschedulable: counted there until %s", a.Node, a.Until.UTC().Format("15:04:05"))})
	}
	if len(pods) == 0 {
		return 0, nil
	}
	inFlight := d.inFlight + d.joining
	pk := newPacker(shape, inFlight, len(pods))
	for i := 0; i < len(pods); {
		j := i + 1
		for j < len(pods) && pods[j].Requests == pods[i].Requests {
			j++
		}
		pk.place(pods[i].Requests, j-i)
		i = j
	}
	d.counted = pods
	n := pk.used - inFlight
	d.countedNeed = n
	if n <= 0 {
		d.hold(CodeInFlight, "%s pending, the %s in flight will hold them", count(len(pods), "pod"), count(inFlight, "worker"))
		return 0, nil
	}
	return n, []Reason{reason(CodePendingPods, "%s unschedulable for %s or more: they need %s of %s (first-fit by requests, %d in flight counted)",
		count(len(pods), "pod"), fmtDur(d.p.PendingGrace), count(n, "new worker"), shape, inFlight)}
}

// podVerdicts gives each pod that counted toward new workers its verdict,
// once the scale-up is sized: TriggeredScaleUp when workers are added,
// NotTriggerScaleUp when max_workers stops them, none when the workers in
// flight hold it or another hold (a cooldown, the hosts' room) delays it.
func (d *decision) podVerdicts() {
	if len(d.counted) == 0 {
		return
	}
	d.plan.Pods = slices.Grow(d.plan.Pods, len(d.counted))
	v := PodVerdict{Counted: true}
	switch {
	case d.countedNeed <= 0:
		v.Message = "counted on the workers in flight"
	case d.added > 0:
		v.Event = EventTriggeredScaleUp
		v.Message = fmt.Sprintf("pod triggered scale-up: %s added (%d -> %d, max %d)", count(d.added, "worker"), d.plan.Workers.Current, d.plan.Workers.Current+d.added, d.p.MaxWorkers)
	case d.wantsCapacity && d.plan.Workers.Current >= d.p.MaxWorkers:
		v.Event = EventNotTriggerScaleUp
		v.Message = fmt.Sprintf("%smax_workers %d reached", notTriggered, d.p.MaxWorkers)
	default:
		v.Message = "counted toward new workers; none added now (see the plan's holds)"
	}
	for i := range d.counted {
		pv := v
		pv.Namespace, pv.Name = d.counted[i].Namespace, d.counted[i].Name
		d.plan.Pods = append(d.plan.Pods, pv)
	}
}
