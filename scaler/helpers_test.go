package scaler

import (
	"fmt"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/internal/testclock"
)

// t0 is a Friday noon (moved by whole weeks under testclock.Env).
var t0 = testclock.Date(2026, 11, 27, 12, 0)

const gi = int64(1) << 30

var shape = Resources{MilliCPU: 4000, Memory: 8 * gi}

// testPolicy is the documented defaults with the windows and cooldowns at
// zero, so each case turns on only what it tests.
func testPolicy() Policy {
	return Policy{
		MinWorkers: 2, MaxWorkers: 6,
		CPU:             Threshold{Up: 80, Down: 30},
		Memory:          Threshold{Up: 85, Down: 40},
		MaxStep:         3,
		PendingPods:     true,
		ScaleDownMargin: 10,
		Worker:          shape,
		VMMemory:        8 * gi,
		HostReserve:     4 * gi,
		Location:        time.UTC,
	}
}

type nodeOpt func(*Node)

// worker is a managed, Ready 4-core 8 GiB worker at the given CPU and memory
// utilization, with requests equal to usage spread over one ReplicaSet pod.
func worker(name string, cpuPct, memPct float64, opts ...nodeOpt) Node {
	u := Resources{MilliCPU: int64(cpuPct * 40), Memory: int64(memPct * float64(8*gi) / 100)}
	n := Node{
		Name: name, Managed: true, Ready: true, VMID: 5000, Host: "pve1",
		Created:     t0.Add(-time.Hour),
		Allocatable: shape, Usage: u, Requests: u,
		Pods: []Pod{{Namespace: "default", Name: name + "-app", OwnerKind: "ReplicaSet", Requests: u}},
	}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func unmanaged(n *Node)    { n.Managed = false }
func notReady(n *Node)     { n.Ready = false }
func cordoned(n *Node)     { n.Unschedulable = true }
func controlPlane(n *Node) { n.ControlPlane = true }
func created(t time.Time) nodeOpt {
	return func(n *Node) { n.Created = t }
}
func annotated(k, v string) nodeOpt {
	return func(n *Node) { n.Annotations = map[string]string{k: v} }
}
func withPod(p Pod) nodeOpt {
	return func(n *Node) { n.Pods = append(n.Pods, p) }
}

// workers returns n identical workers named w0..w(n-1).
func workers(n int, cpuPct, memPct float64, opts ...nodeOpt) []Node {
	out := make([]Node, n)
	for i := range out {
		out[i] = worker(fmt.Sprintf("w%d", i), cpuPct, memPct, opts...)
		out[i].VMID = 5000 + i
	}
	return out
}

func pending(n int, cpuMilli int64, memBytes int64, since time.Time) []PendingPod {
	out := make([]PendingPod, n)
	for i := range out {
		out[i] = PendingPod{Namespace: "default", Name: fmt.Sprintf("p%d", i), Requests: Resources{MilliCPU: cpuMilli, Memory: memBytes}, Since: since}
	}
	return out
}

func provisions(n int) []Operation {
	out := make([]Operation, n)
	for i := range out {
		out[i] = Operation{Kind: OpProvision, VMID: 5100 + i, Node: fmt.Sprintf("new%d", i), Step: "clone"}
	}
	return out
}

// stuck marks operations stuck (past their deadline, kept).
func stuck(ops []Operation) []Operation {
	for i := range ops {
		ops[i].Stuck = "past max_provision_time 15m"
	}
	return ops
}
