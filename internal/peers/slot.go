package peers

import (
	"fmt"
	"sync"
	"time"
)

// slotLabel marks each scenario run's Nodes, one value per side: the
// pods of a side select it, our daemon is given it as
// kubernetes.worker_selector, Karpenter's NodePool puts it on its Nodes.
// So runs and sides share one control plane without seeing each other's
// Nodes.
const slotLabel = "bench.pve-autoscaler.io/slot"

// slot is one run of one scenario on the shared control plane: its own
// namespaces, its own NodePool, its own daemon and simulated world.
type slot struct {
	scenario string
	run      int
}

func (s slot) id() string { return fmt.Sprintf("%s-%d", s.scenario, s.run) }

// ours is the slot label's value on our side's Nodes; theirs on Karpenter's.
func (s slot) ours() string   { return "ours-" + s.id() }
func (s slot) theirs() string { return "karpenter-" + s.id() }

// workerSelector is our daemon's kubernetes.worker_selector.
func (s slot) workerSelector() string { return slotLabel + "=" + s.ours() }

// nodePool is the name of the slot's Karpenter NodePool.
func (s slot) nodePool() string { return "bench-" + s.id() }

// namePrefix is our VMs' (and so Nodes') name prefix: unique per slot,
// since every slot's world numbers its VMs from the same range.
func (s slot) namePrefix() string { return "w-" + s.id() + "-" }

// patch is the Talos patch that labels our side's Nodes of the slot.
func (s slot) patch() string {
	return fmt.Sprintf("machine:\n  nodeLabels:\n    %s: %s\n", slotLabel, s.ours())
}

// requests is when each node was requested, by who asked: a NodePool's
// NodeClaims (Karpenter) or a slot's clones (us).
type requests struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (r *requests) add(who string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.at == nil {
		r.at = map[string][]time.Time{}
	}
	r.at[who] = append(r.at[who], t)
}

// of is who's requests so far, in the order they came.
func (r *requests) of(who string) func() []time.Time {
	return func() []time.Time {
		r.mu.Lock()
		defer r.mu.Unlock()
		return append([]time.Time(nil), r.at[who]...)
	}
}
