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

// pendingNeed judges every pending pod past its grace against each
// pool's new worker (Unfit), chooses for each pod one pool among those
// whose worker could run it (one with room below its max_workers first,
// then least waste, then priority, then as listed), and packs each pool's
// pods (first-fit decreasing by requests) onto its workers in flight and
// then onto new workers: each pool's countedNeed.
func (d *decision) pendingNeed() {
	var pods []*PendingPod
	var chosen []int // the pool of each of pods
	young := 0
	var noWorker []PodVerdict
	// Each pool's template Node (merged: the worker config's labels and
	// taints with the pool's) is built when a pod past its grace first
	// needs it: most decisions have none.
	fits := make([]*fitCache, len(d.pools))
	fit := func(k int) *fitCache {
		if fits[k] == nil {
			fits[k] = newFitCache(merged(d.p.NewWorker, d.pools[k].Pool).Node(NewWorkerName, d.pools[k].shape))
		}
		return fits[k]
	}
	// A pool with room: below its max_workers, or with workers in flight
	// (the pods it was chosen for when they were added stay with it).
	room := make([]bool, len(d.pools))
	for i := range d.pools {
		ps := &d.pools[i]
		room[i] = ps.current() < ps.MaxWorkers || ps.inFlight+ps.joining > 0
	}
	var whys, names []string
	for i := range d.s.PendingPods {
		pp := &d.s.PendingPods[i]
		isYoung := d.now.Sub(pp.Since) < d.p.PendingGrace
		if isYoung {
			young++
			d.recheck(pp.Since.Add(d.p.PendingGrace))
		}
		why := ""
		switch {
		case pp.OwnerKind == OwnerDaemonSet:
			why = "it is a DaemonSet's pod: a new worker runs its own copy, never this one"
		case pp.Priority < d.p.PriorityCutoff:
			why = fmt.Sprintf("its priority %d is below the cutoff %d (pending_pods.priority_cutoff: expendable)", pp.Priority, d.p.PriorityCutoff)
		}
		best := -1
		if why == "" {
			whys, names = whys[:0], names[:0]
			var bestWaste float64
			for k := range d.pools {
				if w := fit(k).unfit(pp); w != "" {
					whys, names = append(whys, w), append(names, d.pools[k].Name)
					continue
				}
				waste := poolWaste(pp.Requests, d.pools[k].shape)
				if best < 0 || room[k] && !room[best] ||
					room[k] == room[best] && (waste < bestWaste || waste == bestWaste && d.pools[k].Priority > d.pools[best].Priority) {
					best, bestWaste = k, waste
				}
			}
			if best < 0 {
				if d.multi() {
					why = joinPoolReasons(names, whys)
				} else {
					why = whys[0]
				}
			}
		}
		if why == "" && best == d.utilPool {
			d.pendingDemand = d.pendingDemand.Add(pp.Requests)
		}
		if isYoung {
			// Judged already, so that a pod no worker of ours could run
			// (another autoscaler's, kubernetes.worker_selector) holds no
			// scale-down in its grace either; its verdict waits for the
			// grace, as a pod we could run waits to count.
			if why != "" {
				d.youngNoWorker++
			}
			continue
		}
		if why != "" {
			noWorker = append(noWorker, PodVerdict{Namespace: pp.Namespace, Name: pp.Name, Event: EventNotTriggerScaleUp, Message: notTriggered + why})
			continue
		}
		pods = append(pods, pp)
		chosen = append(chosen, best)
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
		return
	}
	type key struct {
		dominant float64
		i        int
	}
	keys := make([]key, len(pods))
	for i := range pods {
		r, shape := pods[i].Requests, d.pools[chosen[i]].shape
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
	poolOfPod := make(map[*PendingPod]int, len(pods))
	for k, kk := range keys {
		sorted[k] = pods[kk.i]
		poolOfPod[pods[kk.i]] = chosen[kk.i]
	}
	pods = sorted
	awaitedBefore := len(d.plan.Awaiting)
	pods = d.awaitScheduler(pods)
	for _, a := range d.plan.Awaiting[awaitedBefore:] {
		d.plan.Pods = append(d.plan.Pods, PodVerdict{Namespace: a.Namespace, Name: a.Name,
			Message: fmt.Sprintf("fits on %s, which joined after it was marked unschedulable: counted there until %s", a.Node, a.Until.UTC().Format("15:04:05"))})
	}
	if len(pods) == 0 {
		return
	}
	for _, pp := range pods {
		ps := &d.pools[poolOfPod[pp]]
		ps.counted = append(ps.counted, pp)
	}
	for pi := range d.pools {
		ps := &d.pools[pi]
		if len(ps.counted) == 0 {
			continue
		}
		inFlight := ps.inFlight + ps.joining
		pk := newPacker(ps.shape, inFlight, len(ps.counted))
		for i := 0; i < len(ps.counted); {
			j := i + 1
			for j < len(ps.counted) && ps.counted[j].Requests == ps.counted[i].Requests {
				j++
			}
			pk.place(ps.counted[i].Requests, j-i)
			i = j
		}
		n := pk.used - inFlight
		ps.countedNeed = n
		if n <= 0 {
			d.hold(CodeInFlight, "%s%s pending, the %s in flight will hold them", d.poolPrefix(pi), count(len(ps.counted), "pod"), count(inFlight, "worker"))
			continue
		}
		ps.reasons = append(ps.reasons, reason(CodePendingPods, "%s%s unschedulable for %s or more: they need %s of %s (first-fit by requests, %d in flight counted)",
			d.poolPrefix(pi), count(len(ps.counted), "pod"), fmtDur(d.p.PendingGrace), count(n, "new worker"), ps.shape, inFlight))
	}
}

// podVerdicts gives each pod that counted toward new workers its verdict,
// once the scale-up is sized: TriggeredScaleUp when workers are added to
// its pool, NotTriggerScaleUp when a max_workers (or the cores and memory
// bound) stops them, none when the workers in flight hold it or another
// hold (a cooldown, the hosts' room) delays it.
func (d *decision) podVerdicts() {
	for pi := range d.pools {
		ps := &d.pools[pi]
		if len(ps.counted) == 0 {
			continue
		}
		d.plan.Pods = slices.Grow(d.plan.Pods, len(ps.counted))
		v := PodVerdict{Counted: true}
		in := ""
		if d.multi() {
			in = ps.Name + ": "
		}
		switch {
		case ps.countedNeed <= 0:
			v.Message = in + "counted on the workers in flight"
		case ps.add > 0:
			v.Event = EventTriggeredScaleUp
			if d.multi() {
				v.Message = fmt.Sprintf("pod triggered scale-up: pool %s: %s added (%d -> %d, max %d)", ps.Name, count(ps.add, "worker"), ps.current(), ps.current()+ps.add, ps.MaxWorkers)
			} else {
				v.Message = fmt.Sprintf("pod triggered scale-up: %s added (%d -> %d, max %d)", count(d.added, "worker"), d.plan.Workers.Current, d.plan.Workers.Current+d.added, d.p.MaxWorkers)
			}
		case d.wantsCapacity && ps.capped != "":
			v.Event = EventNotTriggerScaleUp
			v.Message = notTriggered + in + ps.capped
		default:
			v.Message = in + "counted toward new workers; none added now (see the plan's holds)"
		}
		for i := range ps.counted {
			pv := v
			pv.Namespace, pv.Name = ps.counted[i].Namespace, ps.counted[i].Name
			d.plan.Pods = append(d.plan.Pods, pv)
		}
	}
}
