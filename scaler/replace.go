package scaler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Rolling replacement of drifted workers (Policy.ReplaceDrifted).
//
// A drifted worker (Snapshot.Drifted), or with Policy.MaxAge one older
// than it, is replaced one at a time, new worker first:
//
//  1. ActionReplace: one new worker of its pool is cloned with a marker
//     naming the worker it replaces (Machine.Replaces, its SMBIOS UUID,
//     written in the clone request itself) and joins. This surge may take
//     the workers to max_workers + 1, never further, and needs room on the
//     hosts. It starts only when nothing else runs: no operation in
//     flight, nothing stuck, no scale-up or scale-down in this plan, no
//     cooldown after a failure, every managed worker Ready.
//  2. Once that new worker's Node is Ready, an ActionRemove of the old one
//     (CodeReplace), through the ordinary removal: drain (PodDisruption
//     Budgets), reset, destroy, with every guard of a scale-down: its
//     blockers, its pods fitting on the other workers, the Ready workers
//     without it at the minimum, one removal at a time.
//
// Both halves are read from what PVE and Kubernetes hold (the marker on
// the new VM, the old worker still joined), never from memory, so a
// daemon that restarts in between goes on without a second new worker
// (Snapshot.Replacements). Anything that holds the rollout is a hold with
// code CodeReplaceHeld saying why; a failed step backs off like any other
// failure (the cooldown after a failure) before the rollout goes on.

// Codes of the rolling replacement.
const (
	// CodeReplace: the reason of a replacement's new worker
	// (ActionReplace) and of the old worker's removal.
	CodeReplace Code = "replace"
	// CodeReplaceHeld: the rollout waits (and why).
	CodeReplaceHeld Code = "replace_held"
	// CodeReplacing: scale-down waits while a replacement is under way.
	CodeReplacing Code = "replacing"
)

// Replacement is a worker VM made to replace another (the marker on its
// VM): from its clone until the worker it replaces is gone.
type Replacement struct {
	// VMID and Node are the new worker's ("" until its Node registers).
	VMID int    `json:"vmid"`
	Node string `json:"node,omitempty"`
	Step string `json:"step,omitempty"`
	// Ready: its Node is Ready and schedulable.
	Ready bool `json:"ready"`
	// ReplacesVMID and ReplacesUUID name the worker it replaces; the UUID
	// (SMBIOS) is its identity, the vmid only a hint.
	ReplacesVMID int    `json:"replaces_vmid"`
	ReplacesUUID string `json:"replaces_uuid"`
	// OldListed: the VM it replaces is still listed (by vmid, and by
	// UUID when that is known), whatever its step or its Node: no other
	// replacement starts until it is gone.
	OldListed bool `json:"old_listed,omitempty"`
	// Pool is the new VM's worker pool and ReplacesPool the old VM's
	// (their tags; ReplacesPool only while the old VM is listed): a
	// replacement is of one pool.
	Pool         string `json:"pool,omitempty"`
	ReplacesPool string `json:"replaces_pool,omitempty"`
}

// ReplacementsOf lists the machines made to replace another worker, as
// long as they are being provisioned or serve (a removal of one of them
// ends its part in a replacement).
func ReplacementsOf(machines []Machine, nodes []Node) []Replacement {
	var out []Replacement
	for _, m := range machines {
		if m.Replaces == "" || m.ForStandby {
			continue
		}
		switch m.Step {
		case StepCloned, StepConfigured, StepStarted, StepApplying, StepJoined, "":
		default:
			continue
		}
		r := Replacement{VMID: m.VMID, Step: m.Step, ReplacesVMID: m.ReplacesVMID, ReplacesUUID: NormalUUID(m.Replaces), Pool: m.Pool}
		// Only a worker (joined, or on its way out) is a replacement's
		// old VM: a standby or a VM being built is nobody's to replace.
		if i := slices.IndexFunc(machines, func(o Machine) bool {
			return o.VMID == r.ReplacesVMID && (o.UUID == "" || NormalUUID(o.UUID) == r.ReplacesUUID) && !o.ForStandby &&
				(o.Step == StepJoined || o.Step == StepRemoving || o.Step == StepResetting || o.Step == StepReset)
		}); i >= 0 {
			r.OldListed, r.ReplacesPool = true, machines[i].Pool
		}
		if n, ok := NodeOf(m, nodes); ok {
			r.Node = n.Name
			r.Ready = n.Ready && !n.Unschedulable && m.Step == StepJoined
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Replacement) int { return cmp.Compare(a.VMID, b.VMID) })
	return out
}

// stale is one worker to replace: its Node's index in s.Nodes and why.
type stale struct {
	idx int
	why string
}

// toReplace lists the workers due for replacement, oldest Node first:
// the drifted ones, and with MaxAge those older than it (by their Node's
// registration). It asks for a decision when the next worker comes of age.
func (d *decision) toReplace() []stale {
	var out []stale
	for _, i := range d.workers {
		n := &d.s.Nodes[i]
		if !n.Managed || n.VMID == 0 {
			continue
		}
		var why []string
		for _, dw := range d.s.Drifted {
			if dw.VMID == n.VMID && dw.Node == n.Name {
				why = append(why, dw.Why)
			}
		}
		if d.p.MaxAge > 0 && !n.Created.IsZero() {
			if due := n.Created.Add(d.p.MaxAge); !d.now.Before(due) {
				why = append(why, fmt.Sprintf("older than policy.max_age %s (registered %s)", fmtDur(d.p.MaxAge), n.Created.UTC().Format(time.RFC3339)))
			} else if d.p.ReplaceDrifted {
				d.recheck(due)
			}
		}
		if len(why) > 0 {
			out = append(out, stale{idx: i, why: strings.Join(why, "; ")})
		}
	}
	slices.SortStableFunc(out, func(a, b stale) int {
		na, nb := &d.s.Nodes[a.idx], &d.s.Nodes[b.idx]
		return cmp.Or(na.Created.Compare(nb.Created), cmp.Compare(na.Name, nb.Name))
	})
	return out
}

// replacing finds the replacement under way: a Replacement whose old
// worker (by vmid and SMBIOS UUID) is one of our workers, whether or not
// its drift can be read this tick (the surge is never taken for a worker
// too many on one observation). The marker is in a VM description anyone
// with VM.Config may write: a marker naming its own VM, a worker of
// another pool, or a worker two VMs claim, makes no replacement (a hold
// says so).
func (d *decision) replacing(due []stale) (repl Replacement, old stale, found bool) {
	claims := map[string]int{}
	for _, r := range d.s.Replacements {
		claims[r.ReplacesUUID]++
	}
	for _, r := range d.s.Replacements {
		idx := -1
		for _, i := range d.workers {
			n := &d.s.Nodes[i]
			if n.Managed && n.VMID == r.ReplacesVMID && n.SystemUUID != "" && NormalUUID(n.SystemUUID) == r.ReplacesUUID {
				idx = i
			}
		}
		var bad string
		switch {
		case r.ReplacesUUID == "" || r.VMID == r.ReplacesVMID:
			bad = fmt.Sprintf("VM %d's replacement marker names itself", r.VMID)
		case claims[r.ReplacesUUID] > 1:
			bad = fmt.Sprintf("%d VMs claim to replace VM %d", claims[r.ReplacesUUID], r.ReplacesVMID)
		case r.OldListed && r.Pool != r.ReplacesPool:
			bad = fmt.Sprintf("VM %d (pool %q) claims to replace VM %d of pool %q", r.VMID, r.Pool, r.ReplacesVMID, r.ReplacesPool)
		}
		if bad != "" {
			d.replaceHold("%s: it is not taken for a replacement (its VM description was changed?)", bad)
			if r.OldListed && r.VMID != r.ReplacesVMID && d.replWait == "" {
				// Nor is its VM taken for a worker too many on this view.
				d.replWait = fmt.Sprintf("%s (a replacement marker not taken: fix or remove it)", bad)
			}
			continue
		}
		d.validRepl = append(d.validRepl, r)
		if idx < 0 {
			if r.OldListed {
				d.replWait = fmt.Sprintf("VM %d, which VM %d replaces, is listed but no Node of its identity is seen this tick", r.ReplacesVMID, r.VMID)
			}
			continue
		}
		if found {
			continue
		}
		st := stale{idx: idx}
		for _, s := range due {
			if s.idx == idx {
				st = s
			}
		}
		repl, old, found = r, st, true
	}
	return repl, old, found
}

// initReplace finds the replacement under way, before scale-down is
// planned: while one is, the surge is not a worker too many.
func (d *decision) initReplace() {
	if !d.p.ReplaceDrifted {
		return
	}
	d.due = d.toReplace()
	d.repl, d.replOld, d.underWay = d.replacing(d.due)
}

// planReplace plans the rolling replacement's next step, or says what
// holds it.
func (d *decision) planReplace() {
	if !d.p.ReplaceDrifted {
		return
	}
	switch {
	case d.underWay && d.replOld.why == "":
		// Under way by identity, but not due on this tick's evidence (its
		// drift not read, say): the new worker stays, the old one too.
		d.replaceHold("%s is being replaced (new worker VM %d), but it is not seen drifted or past max_age this tick: its removal waits for that evidence", d.staleName(d.replOld), d.repl.VMID)
	case d.underWay:
		d.finishReplace(d.repl, d.replOld)
	case d.replWait != "":
		d.replaceHold("%s", d.replWait)
	case len(d.due) > 0:
		d.startReplace()
	}
}

func (d *decision) replaceHold(format string, args ...any) {
	d.hold(CodeReplaceHeld, "replace held: "+format, args...)
}

// staleName names a due worker, for messages.
func (d *decision) staleName(st stale) string {
	n := &d.s.Nodes[st.idx]
	return fmt.Sprintf("%s (VM %d)", n.Name, n.VMID)
}

// startReplace plans the surge: one new worker of the first due worker's
// pool, when nothing else is going on and there is room for it.
func (d *decision) startReplace() {
	first := d.due[0]
	switch {
	case len(d.plan.Actions) > 0:
		d.replaceHold("%s is due (%s), but this plan already acts (one thing at a time)", d.staleName(first), first.why)
		return
	case len(d.s.Operations) > 0:
		d.replaceHold("%s is due (%s), but %s in flight (one thing at a time)", d.staleName(first), first.why, count(len(d.s.Operations), "operation"))
		return
	case slices.ContainsFunc(d.s.Replacements, func(r Replacement) bool { return r.OldListed }):
		i := slices.IndexFunc(d.s.Replacements, func(r Replacement) bool { return r.OldListed })
		r := d.s.Replacements[i]
		d.replaceHold("VM %d, which VM %d replaces, is still there (not a worker due now: its removal or its Node's return comes first); one replacement at a time", r.ReplacesVMID, r.VMID)
		return
	case d.wantsCapacity:
		d.replaceHold("%s is due (%s), but the cluster wants capacity first", d.staleName(first), first.why)
		return
	case d.h.ReplaceFailures >= MaxReplaceFailures:
		d.replaceHold("the last %d new workers made for replacements failed: the rollout stops until the daemon restarts (see the last error; fix the template or the worker config first; %s is due: %s)", d.h.ReplaceFailures, d.staleName(first), first.why)
		return
	case d.cooling(d.h.LastFailure, d.p.CooldownAfterFailure):
		d.replaceHold("paused after a failed operation, %s left (%s is due: %s)", d.left(d.h.LastFailure, d.p.CooldownAfterFailure), d.staleName(first), first.why)
		return
	}
	if unready, _ := d.unreadyManaged(); unready > 0 {
		d.replaceHold("%s of ours not Ready: nothing is replaced until all are", count(unready, "worker"))
		return
	}
	var blocked []string
	for _, st := range d.due {
		n := &d.s.Nodes[st.idx]
		b := d.blocker(n)
		switch {
		case b != "":
		case !n.Ready:
			b = "not Ready"
		case n.Unschedulable:
			b = "cordoned"
		case n.SystemUUID == "":
			b = "its SMBIOS UUID is unknown"
		}
		if b != "" {
			blocked = append(blocked, d.staleName(st)+": "+b)
			continue
		}
		pi := d.poolOf(n.Managed, n.Pool)
		if pi < 0 {
			blocked = append(blocked, d.staleName(st)+": in no pool of this config")
			continue
		}
		if i := slices.IndexFunc(d.s.Drifted, func(w DriftedWorker) bool { return w.VMID == n.VMID }); i >= 0 && d.multi() && d.s.Drifted[i].Pool != "" && d.poolOf(true, d.s.Drifted[i].Pool) != pi {
			// Room and limits are checked for the pool the new VM is made in.
			blocked = append(blocked, fmt.Sprintf("%s: its VM is in pool %s, its Node is labelled pool %s", d.staleName(st), d.s.Drifted[i].Pool, n.Pool))
			continue
		}
		ps := &d.pools[pi]
		current := d.plan.Workers.Current
		switch {
		case current > d.p.MaxWorkers:
			d.replaceHold("%d workers, above max_workers %d: no new worker even for a replacement", current, d.p.MaxWorkers)
			return
		case len(d.p.Pools) > 0 && ps.current() > ps.MaxWorkers:
			d.replaceHold("%s%d workers, above its max_workers %d", d.poolPrefix(pi), ps.current(), ps.MaxWorkers)
			return
		}
		if why := d.surgeResources(ps); why != "" {
			d.replaceHold("%s: %s", d.staleName(st), why)
			return
		}
		if d.s.Hosts == nil {
			d.replaceHold("PVE host room unknown: no new worker for %s until it is known", d.staleName(st))
			return
		}
		if room, _ := d.hostRoom(ps.VMMemory, ps.Hosts...); ps.VMMemory > 0 && room < 1 {
			d.replaceHold("%sthe PVE hosts have no room for one more worker of %s after the %s reserve (%s is due: %s)", d.poolPrefix(pi), fmtBytes(ps.VMMemory), fmtBytes(d.p.HostReserve), d.staleName(st), st.why)
			return
		}
		msg := fmt.Sprintf("worker %s drifted (%s): a new worker of its pool is made first (up to max_workers + 1), then it is drained and removed", n.Name, st.why)
		d.plan.Actions = append(d.plan.Actions, Action{Kind: ActionReplace, Node: n.Name, VMID: n.VMID, Host: n.Host, Pool: d.actionPool(pi),
			Reasons: []Reason{{Code: CodeReplace, Message: msg}}})
		return
	}
	d.replaceHold("no due worker may be replaced now (%s)", strings.Join(blocked, "; "))
}

// surgeResources says why one more VM of ps would pass policy.max_cores
// or max_memory ("" when it would not).
func (d *decision) surgeResources(ps *poolState) string {
	if d.p.MaxCores <= 0 && d.p.MaxMemory <= 0 {
		return ""
	}
	var cores, mem int64
	for _, p := range d.pools {
		cores += int64(p.current()) * int64(p.VMCores)
		mem += int64(p.current()) * p.VMMemory
	}
	cores += int64(ps.VMCores)
	mem += ps.VMMemory
	if d.p.MaxCores > 0 && cores > int64(d.p.MaxCores) || d.p.MaxMemory > 0 && mem > d.p.MaxMemory {
		return fmt.Sprintf("one more worker would pass policy.max_cores %d / max_memory %s", d.p.MaxCores, fmtBytes(d.p.MaxMemory))
	}
	return ""
}

// finishReplace removes the old worker once its replacement is Ready,
// with every guard of a scale-down.
func (d *decision) finishReplace(r Replacement, st stale) {
	n := &d.s.Nodes[st.idx]
	if !r.Ready {
		for _, op := range d.s.Operations {
			if op.VMID == r.VMID && op.Stuck != "" {
				d.replaceHold("the new worker VM %d for %s is stuck: %s", r.VMID, d.staleName(st), op.Stuck)
				return
			}
		}
		d.replaceHold("waiting for the new worker VM %d to be a Ready Node before %s is drained", r.VMID, d.staleName(st))
		return
	}
	if n := len(d.s.PendingPods) - d.noWorker - d.youngNoWorker; n > 0 {
		d.replaceHold("%s pending; %s waits", count(n, "pod"), d.staleName(st))
		return
	}
	if d.plan.Workers.Removing > 0 {
		d.replaceHold("a removal is in progress (one at a time); %s waits", d.staleName(st))
		return
	}
	if n := d.inFlight + d.joining + d.stuck; n > 0 {
		d.replaceHold("%s still provisioning; %s waits", count(n, "worker"), d.staleName(st))
		return
	}
	for _, c := range []struct {
		last  time.Time
		cool  time.Duration
		label string
	}{
		{d.h.LastFailure, d.p.CooldownAfterFailure, "paused after a failed operation"},
		{d.h.LastScaleUp, d.p.CooldownAfterUp, "cooldown after scale-up"},
		{d.h.LastScaleDown, d.p.CooldownAfterDown, "cooldown after scale-down"},
	} {
		if d.cooling(c.last, c.cool) {
			d.replaceHold("%s, %s left; %s waits", c.label, d.left(c.last, c.cool), d.staleName(st))
			return
		}
	}
	if unready, _ := d.unreadyManaged(); unready > 0 {
		d.replaceHold("%s of ours not Ready; %s waits", count(unready, "worker"), d.staleName(st))
		return
	}
	if b := d.blocker(n); b != "" {
		d.replaceHold("%s may not be removed now: %s", d.staleName(st), b)
		return
	}
	if n.Unschedulable {
		d.replaceHold("%s is cordoned by someone else: it is left alone", d.staleName(st))
		return
	}
	// The Ready, schedulable workers without it meet the minimum, the
	// cluster's and its pool's.
	ready, readyPool := 0, 0
	pi := d.poolOf(n.Managed, n.Pool)
	for _, i := range d.active {
		if i == st.idx {
			continue
		}
		ready++
		o := &d.s.Nodes[i]
		if pi >= 0 && d.poolOf(o.Managed, o.Pool) == pi {
			readyPool++
		}
	}
	if ready < d.minWorkers {
		d.replaceHold("without %s, %s Ready, below the minimum of %d", d.staleName(st), count(ready, "worker"), d.minWorkers)
		return
	}
	if pi >= 0 && d.multi() && readyPool < d.pools[pi].MinWorkers {
		d.replaceHold("without %s, %s%s Ready, below its minimum of %d", d.staleName(st), d.poolPrefix(pi), count(readyPool, "worker"), d.pools[pi].MinWorkers)
		return
	}
	// Its pods must fit on the other Ready, schedulable workers.
	free := make([]Resources, len(d.active))
	self := -1
	for k, i := range d.active {
		o := &d.s.Nodes[i]
		free[k] = o.Allocatable.Sub(o.Requests)
		if i == st.idx {
			self = k
		}
	}
	if self < 0 {
		d.replaceHold("%s is not a Ready, schedulable worker", d.staleName(st))
		return
	}
	if p, ok := d.podsFit(n, self, free); !ok {
		d.replaceHold("%s: pod %s/%s fits on no other worker", d.staleName(st), p.Namespace, p.Name)
		return
	}
	msg := fmt.Sprintf("worker %s drifted (%s); its replacement, VM %d (%s), is Ready: drained and removed", n.Name, st.why, r.VMID, r.Node)
	d.plan.Actions = append(d.plan.Actions, Action{Kind: ActionRemove, Node: n.Name, VMID: n.VMID, Host: n.Host, Reasons: []Reason{{Code: CodeReplace, Message: msg}}})
}

// replacementBlocker keeps a replacement's new worker from a scale-down
// while the VM it replaces is still there: the old one goes first
// (a restart may find the old one's removal withdrawn, its drift not yet
// read); "" when n is no such worker.
func (d *decision) replacementBlocker(n *Node) string {
	for _, r := range d.validRepl { // only with replace_drifted, only markers taken
		if r.OldListed && r.VMID == n.VMID && r.Node == n.Name {
			return fmt.Sprintf("it replaces VM %d, which is still there (that one goes first)", r.ReplacesVMID)
		}
	}
	return ""
}
