package scaler

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// This file holds the reconciler's decisions about what it finds at the
// start of a tick, as pure functions over what was observed: which Node is
// which VM's, whether the observations can be trusted for anything
// destructive, what each machine's recorded step means and what to do
// about it. The reconciler (reconcile.go) gathers the facts and carries
// the verdicts out; the tables in resume_test.go hold a row per case.

// SameWorker reports whether Node n is VM m: the vmid label agrees and so
// does the SMBIOS UUID (the VM's smbios1, the kubelet's systemUUID).
// A name never decides. Only when neither side knows a UUID (an adapter
// or a snapshot file without one) do the vmid label and the name together
// stand in for it.
func SameWorker(m Machine, n Node) bool {
	if n.VMID == 0 || n.VMID != m.VMID {
		return false
	}
	if m.UUID != "" || n.SystemUUID != "" {
		return strings.EqualFold(m.UUID, n.SystemUUID)
	}
	return n.Name == m.Name
}

// NormalUUID is a SMBIOS UUID as compared across PVE (smbios1), Kubernetes
// (systemUUID) and Talos (SystemInformation): trimmed, lower case.
func NormalUUID(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NodeOf is the Node that is m's by identity, if one is among nodes.
func NodeOf(m Machine, nodes []Node) (Node, bool) {
	for _, n := range nodes {
		if SameWorker(m, n) {
			return n, true
		}
	}
	return Node{}, false
}

// OurCordon reports whether n is cordoned by us: unschedulable with our
// annotation (AnnotationCordoned), or with our standby taint (an earlier
// version parked without the annotation). A cordon a person set is not.
func OurCordon(n Node) bool {
	_, marked := n.Annotations[AnnotationCordoned]
	return n.Unschedulable && (marked || n.Standby)
}

// HoldsWorkload reports whether pods other than DaemonSet and mirror pods
// run on n: a node whose VM may be destroyed without a drain holds none.
func HoldsWorkload(n Node) bool {
	for _, p := range n.Pods {
		if p.OwnerKind != OwnerDaemonSet && p.OwnerKind != OwnerNode {
			return true
		}
	}
	return false
}

// Observation is what one tick saw, reduced to what the safety check
// needs: our VMs (with what the reconciler runs on them) and the Nodes.
type Observation struct {
	Machines []Machine
	Nodes    []Node
	// Busy are the VMs an operation of ours runs on, or has just finished
	// with: their Node or VM may be missing on purpose.
	Busy map[int]bool
	// Kept are vmids whose VM exists but is not ours any more (a person
	// removed our tags to keep the worker): their Nodes lack no VM.
	Kept map[int]bool
}

// Absences lists what is missing on one side in an observation: managed
// Nodes whose VM is not among ours (by identity), and joined workers whose
// VM has no Node. Busy VMs and their Nodes are left out.
func (o Observation) Absences() (nodesWithoutVM []Node, vmsWithoutNode []Machine) {
	for _, n := range o.Nodes {
		if !n.Managed || n.ControlPlane || n.VMID == 0 || o.Busy[n.VMID] || o.Kept[n.VMID] {
			continue
		}
		found := false
		for _, m := range o.Machines {
			if SameWorker(m, n) {
				found = true
				break
			}
		}
		if !found {
			nodesWithoutVM = append(nodesWithoutVM, n)
		}
	}
	for _, m := range o.Machines {
		if m.Step != StepJoined || m.ForStandby || o.Busy[m.VMID] {
			continue
		}
		if _, ok := NodeOf(m, o.Nodes); !ok {
			vmsWithoutNode = append(vmsWithoutNode, m)
		}
	}
	return nodesWithoutVM, vmsWithoutNode
}

// Disagreement says why the observation cannot be trusted for anything
// destructive, or "" when it can. The two systems disagree wholesale
// when none of our joined VMs has a Node of this cluster (a kubeconfig
// pointing elsewhere, a patch that renames every node), when none of two
// or more managed Nodes has a VM we can see (the token lost VM.Audit,
// proxmox.url names another PVE cluster, our tags were removed), or when
// more than one Node or VM would go because the other side lacks it. A
// single Node without its VM (the only worker's VM deleted by hand, which
// its description says is safe) is left to the direct reads that confirm
// an absence: they see a token without VM.Audit, a template that is not
// there and a VM that exists unlisted. While it does,
// nothing is destroyed, reset, drained, parked or deleted: provisioning
// goes on, and the reason is reported loudly.
func (o Observation) Disagreement() string {
	nodes, vms := o.Absences()
	joined, managed := 0, 0
	for _, m := range o.Machines {
		if m.Step == StepJoined && !m.ForStandby && !o.Busy[m.VMID] {
			joined++
		}
	}
	for _, n := range o.Nodes {
		if n.Managed && !n.ControlPlane && n.VMID != 0 && !o.Busy[n.VMID] && !o.Kept[n.VMID] {
			managed++
		}
	}
	switch {
	case joined > 0 && len(vms) == joined:
		return fmt.Sprintf("none of our %d joined VMs has a Node of this cluster with its vmid and SMBIOS UUID (the kubeconfig may point at another cluster, or the Nodes were renamed or re-registered): %s", joined, machineList(vms))
	case managed > 1 && len(nodes) == managed:
		return fmt.Sprintf("none of the %d Nodes labelled %s has a VM among ours (the token may have lost VM.Audit, proxmox.url may name another PVE cluster, or our tags were removed): %s", managed, LabelManaged, strings.TrimSuffix(nodeList(nodes), "; "))
	case len(nodes)+len(vms) > 1:
		return fmt.Sprintf("%d Nodes without a VM and %d VMs without a Node: more than one would go because the other side lacks it (%s%s)", len(nodes), len(vms), nodeList(nodes), machineList(vms))
	}
	return ""
}

func machineList(ms []Machine) string {
	return listOf("VMs ", ms, func(m Machine) string { return fmt.Sprintf("VM %d (%s)", m.VMID, m.Name) })
}

func nodeList(ns []Node) string {
	if l := listOf("Nodes ", ns, func(n Node) string { return fmt.Sprintf("%s (vmid %d)", n.Name, n.VMID) }); l != "" {
		return l + "; "
	}
	return ""
}

// listOf names items in sorted order after title ("" when there are none).
func listOf[T any](title string, items []T, name func(T) string) string {
	if len(items) == 0 {
		return ""
	}
	s := make([]string, len(items))
	for i, it := range items {
		s[i] = name(it)
	}
	sort.Strings(s)
	return title + strings.Join(s, ", ")
}

// CodeSafetyHold is the hold a plan carries while its destructive
// actions are withheld (Observation.Disagreement).
const CodeSafetyHold Code = "safety_hold"

// ConfirmAbsence is how a missing VM or Node becomes evidence: two direct
// reads that both say "gone", at least this far apart, with a sane list in
// between. One list that lacks something proves nothing. (The default of
// ReconcileOptions.ConfirmAbsence; tests of the whole stack shorten it.)
const ConfirmAbsence = time.Minute

// Absence tracks direct reads that found something gone, by key (a vmid).
// It is not safe for concurrent use; the reconciler holds its lock.
type Absence map[int]time.Time

// Seen records a direct read at now that found key gone and reports
// whether the absence is confirmed: an earlier read found it gone too, at
// least apart ago, and nothing has found it present since.
func (a Absence) Seen(key int, now time.Time, apart time.Duration) bool {
	first, ok := a[key]
	if !ok || now.Before(first) {
		a[key] = now
		return false
	}
	return a.Confirmed(key, now, apart)
}

// Confirmed reports whether reads at least apart have found key gone.
func (a Absence) Confirmed(key int, now time.Time, apart time.Duration) bool {
	first, ok := a[key]
	return ok && !now.Before(first) && now.Sub(first) >= apart
}

// Present forgets key: a read found it there.
func (a Absence) Present(key int) { delete(a, key) }

// Keep forgets every key but those in keys.
func (a Absence) Keep(keys map[int]bool) {
	for k := range a {
		if !keys[k] {
			delete(a, k)
		}
	}
}

// ResumeKind is what the reconciler does with a machine it finds at a tick.
type ResumeKind string

const (
	// ResumeNothing: leave it (in standby, running fine, locked by PVE,
	// ours already, or waiting for a confirmation).
	ResumeNothing ResumeKind = ""
	// ResumeProvision: go on provisioning from the recorded step.
	ResumeProvision ResumeKind = "provision"
	// ResumeAdopt: a provisioning past its deadline whose Node of its
	// identity is Ready: the worker is recorded joined, not destroyed.
	ResumeAdopt ResumeKind = "adopt"
	// ResumeRemove: go on with a removal from Resume.From.
	ResumeRemove ResumeKind = "remove"
	// ResumePark: go on parking into standby from Resume.From.
	ResumePark ResumeKind = "park"
	// ResumeWake: go on waking a standby worker.
	ResumeWake ResumeKind = "wake"
	// ResumeRetire: go on destroying a stale standby worker.
	ResumeRetire ResumeKind = "retire"
	// ResumeConfirm: something is missing (the Node of a joined worker, the
	// Node of a half-removed one): read it directly before anything else.
	ResumeConfirm ResumeKind = "confirm"
	// ResumeRemoveNodeless: a joined worker whose Node is confirmed gone
	// (ConfirmAbsence): removed through the removal guards, without drain
	// (there is no Node to drain).
	ResumeRemoveNodeless ResumeKind = "remove-nodeless"
	// ResumeKeep: past its deadline, its Node holds workload but is not
	// Ready: neither adopted nor destroyed; reported.
	ResumeKeep ResumeKind = "keep"
	// ResumeWithdraw: a removal or park decided on an earlier view that
	// this view does not support (its drain had not finished, its Node is
	// gone, or its drained Node is schedulable again or holds pods): the
	// worker is recorded joined, its Node uncordoned, untainted and
	// unmarked, and Decide decides again with every guard.
	ResumeWithdraw ResumeKind = "withdraw"
)

// Resume is a verdict about one machine.
type Resume struct {
	Kind ResumeKind
	// From is the removal step to go on from (ResumeRemove, ResumePark).
	From string
	// Why explains the verdict for the log and /status.
	Why string
}

// MachineFacts is what the reconciler knows about one machine at a tick.
type MachineFacts struct {
	Machine Machine
	// Node is the Node of the machine's identity, when one is seen.
	Node *Node
	// Busy: an operation of ours runs on it, or has just ended (the list
	// may show a step before its last).
	Busy bool
	// Creating: a creation of ours is in flight; a fresh clone may be it.
	Creating bool
	// Expired: its provisioning started more than max_provision_time ago.
	Expired bool
	// NodeGone: the absence of its Node is confirmed (ConfirmAbsence).
	NodeGone bool
	DryRun   bool
}

// DecideResume is what to do with one machine found at a tick. Every
// destructive verdict rests on the machine's Node seen by identity, or on
// its absence confirmed by direct reads; never on a name, never on one list.
func DecideResume(f MachineFacts) Resume {
	m, n := f.Machine, f.Node
	switch {
	case f.Busy:
		return Resume{Why: "an operation of ours runs on it or has just ended"}
	case m.Locked:
		return Resume{Why: "PVE holds a lock on it (a clone still copying)"}
	case m.Step == StepCloned && f.Creating:
		return Resume{Why: "a fresh clone while one of ours is being created: left to that creation"}
	case m.Step == StepStandby:
		return Resume{Why: "in standby"}
	case f.DryRun && (m.Step != StepJoined || m.ForStandby):
		return Resume{Why: "dry run"}
	}
	// A removal mark counts only for the machine it was written for: a
	// Node object taken over by a new machine under a reused name (the old
	// one's deletion failed) carries a mark that is not about it.
	removalStep := func() string {
		if n == nil || !strings.EqualFold(n.Annotations[AnnotationRemovalOf], m.UUID) {
			return ""
		}
		return n.Annotations[AnnotationRemoval]
	}
	// pastDrain: the removal's drain finished and its Node still shows it:
	// marked drained (or reset) for this machine, cordoned by us, and
	// holding nothing but DaemonSet and mirror pods. Only such a removal
	// goes on. A person's cordon says nothing about our drain.
	pastDrain := func(from string) bool {
		return (from == RemovalDrained || from == RemovalReset) && OurCordon(*n) && !HoldsWorkload(*n)
	}
	withdraw := func(why string) Resume {
		return Resume{Kind: ResumeWithdraw, Why: why + ": withdrawn (recorded joined, uncordoned, unmarked), decided again"}
	}
	switch m.Step {
	case StepRemoving:
		switch from := removalStep(); {
		case n != nil && pastDrain(from):
			return Resume{Kind: ResumeRemove, From: from, Why: "a removal left half-done past its drain"}
		case n != nil && from == RemovalMarked:
			return withdraw("a removal found before its drain finished")
		case n != nil && from == "":
			return withdraw("a removal whose Node carries no removal mark of this machine")
		case n != nil:
			return withdraw("a removal whose drained Node is schedulable again or holds pods")
		case f.NodeGone:
			// Its reset was not sent (resetting is recorded first): nothing
			// says the machine was drained or has left.
			return withdraw("a removal whose Node is gone before its reset")
		}
		return Resume{Kind: ResumeConfirm, Why: "a removal whose Node is not seen: confirming before anything is done"}
	case StepResetting:
		if n != nil && (!OurCordon(*n) || HoldsWorkload(*n)) {
			// A reset that took would leave the Node cordoned by us and
			// empty: a schedulable Node, a person's cordon, or pods say it
			// never arrived (or someone put the worker back to use).
			return Resume{Kind: ResumeKeep, Why: "a reset was sent, but its Node is not under our cordon or holds pods: left alone, never destroyed"}
		}
		return Resume{Kind: ResumeRemove, From: RemovalDrained, Why: "a reset was sent: sent again, and a machine that no longer answers counts as reset"}
	case StepReset:
		// Recorded also when the reset was skipped (talos.reset_unreachable:
		// skip): a Node back in use says the machine was never reset.
		if n != nil && (!OurCordon(*n) || HoldsWorkload(*n)) {
			return Resume{Kind: ResumeKeep, Why: "reset recorded, but its Node is not under our cordon or holds pods: left alone, never destroyed"}
		}
		return Resume{Kind: ResumeRemove, From: RemovalReset, Why: "reset: the VM is destroyed"}
	case StepParking:
		if n == nil && !f.NodeGone {
			return Resume{Kind: ResumeConfirm, Why: "a park whose Node is not seen: confirming before anything is stopped"}
		}
		switch {
		case n == nil && m.Stopped:
			return Resume{Kind: ResumePark, From: RemovalDrained, Why: "a park whose VM is stopped and whose Node is gone: finished"}
		case n == nil && !m.Running:
			return Resume{Kind: ResumeKeep, Why: "a park whose Node is gone and whose VM's state is unknown (host offline?): left alone"}
		case n == nil:
			return withdraw("a park whose Node is gone")
		}
		from := removalStep()
		if from == "" {
			// The mark is cleared by the parking step, once drained (a
			// failed drain records joined first).
			from = RemovalDrained
		}
		switch {
		case pastDrain(from) && m.Stopped:
			return Resume{Kind: ResumePark, From: RemovalDrained, Why: "a park past its drain whose VM is stopped: finished"}
		case pastDrain(from) && !m.Running:
			// Neither running nor known stopped: its host is offline.
			return Resume{Kind: ResumeKeep, Why: "a park past its drain whose VM's state is unknown (host offline?): left alone"}
		case pastDrain(from):
			return Resume{Kind: ResumePark, From: RemovalDrained, Why: "a park left half-done past its drain"}
		case from == RemovalMarked:
			return withdraw("a park found before its drain finished")
		}
		return withdraw("a park whose drained Node is schedulable again or holds pods")
	case StepWaking:
		return Resume{Kind: ResumeWake, Why: "a wake left half-done"}
	case StepRetiring:
		return Resume{Kind: ResumeRetire, Why: "a retirement left half-done"}
	case StepJoined:
		switch from := removalStep(); {
		case m.ForStandby && n != nil && (HoldsWorkload(*n) || !n.Standby && !OurCordon(*n)):
			// Someone untainted its Node or put pods on it: never powered
			// off undrained.
			return Resume{Kind: ResumeKeep, Why: "built for standby, but its Node is schedulable without our standby taint or holds pods: left alone, never parked undrained"}
		case m.ForStandby:
			return Resume{Kind: ResumePark, From: RemovalDrained, Why: "built for standby and joined"}
		case f.DryRun:
			return Resume{Why: "dry run"}
		case n != nil && from != "" && pastDrain(from):
			return Resume{Kind: ResumeRemove, From: from, Why: "a removal marked on its Node, past its drain"}
		case n != nil && from != "":
			// A crash between the mark and its record, or a mark a failed
			// drain could not clear: never drained again on that old decision.
			return withdraw("a removal marked on its Node before its drain finished")
		case n != nil:
			return Resume{Why: "a worker"}
		case f.NodeGone:
			return Resume{Kind: ResumeRemoveNodeless, Why: "a joined worker whose Node is confirmed gone"}
		default:
			return Resume{Kind: ResumeConfirm, Why: "a joined worker whose Node is not seen: confirming"}
		}
	}
	switch m.Step {
	case StepCloned, StepConfigured, StepStarted, StepApplying:
	default:
		// No step, or one this build does not know (a newer daemon's, a
		// hand edit): nothing tells what was done, so nothing is.
		return Resume{Kind: ResumeKeep, Why: fmt.Sprintf("recorded step %q is unknown: left alone", m.Step)}
	}
	// A provisioning step (cloned, configured, started, applying).
	if f.Expired && n != nil {
		if n.Ready {
			return Resume{Kind: ResumeAdopt, Why: "past max_provision_time, but its Node is Ready: adopted"}
		}
		if HoldsWorkload(*n) {
			return Resume{Kind: ResumeKeep, Why: "past max_provision_time with a Node that is not Ready but holds pods: kept, not destroyed"}
		}
	}
	return Resume{Kind: ResumeProvision, Why: "a provisioning left half-done"}
}

// Counting is what Classify needs besides the machines.
type Counting struct {
	// Nodes are the cluster's Nodes (a joined VM with one of its identity
	// is a worker, counted through its Node).
	Nodes []Node
	// Running are the VMs an operation of this process runs on (counted as
	// that operation elsewhere).
	Running map[int]bool
	// Stale are operations that ended while the list was read: counted as
	// what they were.
	Stale map[int]Operation
	// Fresh is the number of creations in flight, each of which a fresh
	// clone may be.
	Fresh int
	// NodeGone are joined VMs whose Node is confirmed gone, outside a
	// safety hold: no capacity (the engine replaces them), to be removed.
	NodeGone map[int]bool
	// Stuck are VMs the reconciler leaves alone for now (kept, backing off
	// after a failure), with why: their operations are marked Stuck.
	Stuck map[int]string
	// Now and MaxProvisionTime mark a provisioning VM (no operation of
	// this process on it) created more than MaxProvisionTime before Now as
	// Stuck: past its deadline it is cleaned up, kept or adopted, never
	// capacity on its way. Zero MaxProvisionTime: no such rule.
	Now              time.Time
	MaxProvisionTime time.Duration
}

// expired reports whether m's provisioning is past its deadline.
func (c Counting) expired(m Machine) bool {
	return c.MaxProvisionTime > 0 && !m.Created.IsZero() && c.Now.Sub(m.Created) > c.MaxProvisionTime
}

// Classify sorts the machines the reconciler does not run an operation on
// into what Decide counts: operations recorded on VMs (provisions, standby
// builds, removals, parks, retirements) and standby workers. A joined
// worker is left out when its Node (by identity) stands for it; when its
// Node is not seen it is counted as capacity on its way, so that a view
// that lacks Nodes never makes the engine add workers without bound,
// until its Node is confirmed gone. The daemon and a live `plan` count
// them the same way.
func Classify(machines []Machine, c Counting) ([]Operation, []StandbyWorker) {
	var ops []Operation
	var standby []StandbyWorker
	fresh := c.Fresh
	for _, m := range machines {
		if c.Running[m.VMID] {
			continue
		}
		if op, ok := c.Stale[m.VMID]; ok {
			ops = append(ops, op)
			continue
		}
		op := Operation{VMID: m.VMID, Node: m.Name, Host: m.Host, Step: m.Step, Pool: m.Pool}
		switch {
		case m.Step == StepJoined && !m.ForStandby:
			if _, ok := NodeOf(m, c.Nodes); ok || c.NodeGone[m.VMID] {
				continue
			}
			op.Kind, op.Started = OpProvision, m.Created
		case m.Step == StepStandby:
			standby = append(standby, StandbyWorker{VMID: m.VMID, Name: m.Name, Host: m.Host, Created: m.Created, Stale: m.Stale, Pool: m.Pool})
			continue
		case m.Step == StepRemoving || m.Step == StepResetting || m.Step == StepReset || m.Step == StepParking:
			op.Kind = OpRemove
		case m.Step == StepRetiring:
			op.Kind = OpRetire
		case m.ForStandby:
			op.Kind, op.Started = OpRefill, m.Created
		case m.Step == StepCloned && fresh > 0:
			fresh-- // counted as a creation already
			continue
		default:
			op.Kind, op.Started = OpProvision, m.Created
		}
		switch why, kept := c.Stuck[m.VMID]; {
		case kept:
			op.Stuck = why
		case m.Step != StepJoined && (op.Kind == OpProvision || op.Kind == OpRefill) && c.expired(m):
			// (A joined VM whose Node is not seen stays capacity on its
			// way: a view that lacks Nodes never adds workers without bound.)
			op.Stuck = "past max_provision_time " + fmtDur(c.MaxProvisionTime)
		}
		ops = append(ops, op)
	}
	return ops, standby
}
