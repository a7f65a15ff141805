package scaler

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// DefaultPool is the name of the one pool of a policy without Pools (a
// single-pool config).
const DefaultPool = "default"

// LabelPool on a Node names the worker pool its VM was made in; the VM
// carries the tag pool-<name> (PoolTag).
const LabelPool = "pve-autoscaler.io/pool"

// Pool is one worker pool as the engine sees it: how many of its workers
// to keep, and what its new worker looks like.
type Pool struct {
	Name                   string
	MinWorkers, MaxWorkers int
	// Priority breaks ties between pools that fit a pod equally: higher first.
	Priority int
	// NewWorker is what the pool adds to Policy.NewWorker (the worker
	// config's labels and taints): its labels, taints and capacity.
	NewWorker NewWorker
	// Worker is the allocatable a new worker of the pool is expected to
	// have until one of its workers is Ready to learn it from.
	Worker Resources
	// VMMemory and VMCores are the size of its VMs.
	VMMemory int64
	VMCores  int
	// Hosts its VMs may run on (empty: any).
	Hosts []string
	// StandbySize is how many of its workers standby keeps (0: off).
	StandbySize int
}

// WorkerPools is the policy's pools: Pools, or the one pool named
// DefaultPool of MinWorkers, MaxWorkers, Worker, VMMemory, VMCores and
// StandbySize.
func (p Policy) WorkerPools() []Pool {
	if len(p.Pools) > 0 {
		return p.Pools
	}
	return []Pool{{Name: DefaultPool, MinWorkers: p.MinWorkers, MaxWorkers: p.MaxWorkers, Worker: p.Worker,
		VMMemory: p.VMMemory, VMCores: p.VMCores, StandbySize: p.StandbySize}}
}

// NewWorkerLabels is the labels of a new worker's Node in each pool, by
// pool name: the worker config's, the pool's, LabelPool, and those every
// Node of ours carries (what the pending pods are judged against).
func (p Policy) NewWorkerLabels() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, pl := range p.WorkerPools() {
		out[pl.Name] = merged(p.NewWorker, pl).Node(NewWorkerName, pl.Worker).Labels
	}
	return out
}

// merged is the NewWorker of a pool: base (the worker config's labels and
// taints) with the pool's labels, taints and capacity, and LabelPool.
func merged(base NewWorker, pool Pool) NewWorker {
	w := NewWorker{Labels: maps.Clone(base.Labels), Taints: slices.Clone(base.Taints), Extended: maps.Clone(base.Extended)}
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	maps.Copy(w.Labels, pool.NewWorker.Labels)
	w.Labels[LabelPool] = pool.Name
	for _, t := range pool.NewWorker.Taints {
		w.Taints = slices.DeleteFunc(w.Taints, func(o corev1.Taint) bool { return o.Key == t.Key && o.Effect == t.Effect })
		w.Taints = append(w.Taints, t)
	}
	if len(pool.NewWorker.Extended) > 0 && w.Extended == nil {
		w.Extended = map[string]int64{}
	}
	maps.Copy(w.Extended, pool.NewWorker.Extended)
	return w
}

// poolState is one pool's working state in a decision.
type poolState struct {
	Pool
	workers  int // its workers not being removed (Ready or not)
	notReady int
	inFlight int       // provisions not yet visible as a Node
	joining  int       // provisions whose Node is not Ready yet
	stuck    int       // stuck provisions without a Node: against its max_workers, no capacity
	used     Resources // what its Ready, schedulable workers use
	shape    Resources
	newest   *Node
	boosted  bool // a boost raised its MinWorkers

	need    int      // workers its scale-up clauses want
	add     int      // workers added to it
	reasons []Reason // why it wants them
	capped  string   // why the add stopped short of need (a max reached), for verdicts
	// Pending pods counted toward its new workers, and the workers they
	// need beyond its in-flight ones.
	counted     []*PendingPod
	countedNeed int
	wake        []int
}

func (ps *poolState) current() int { return ps.workers + ps.inFlight + ps.stuck }

// repels reports whether the pool's Node (base's taints with the pool's,
// as merged makes it) has a taint that keeps an ordinary pod off
// (NoSchedule, NoExecute). A pool's taint replaces a base taint of its
// key and effect, so the effects are the union of both lists': merged is
// not built for it.
func (ps *poolState) repels(base NewWorker) bool {
	r := func(t corev1.Taint) bool { return taintsThatRepel(&t) }
	return slices.ContainsFunc(base.Taints, r) || slices.ContainsFunc(ps.NewWorker.Taints, r)
}

// initPools sets up the pools' working state: which pool each worker and
// operation belongs to, and each pool's worker shape.
func (d *decision) initPools() {
	pools := d.p.WorkerPools()
	d.pools = make([]poolState, len(pools))
	if len(pools) > 1 {
		d.poolIdx = make(map[string]int, len(pools)) // one pool is index 0 (poolOf)
	}
	for i, pl := range pools {
		d.pools[i] = poolState{Pool: pl, shape: pl.Worker}
		if d.poolIdx != nil {
			d.poolIdx[pl.Name] = i
		}
	}
	d.utilPool = 0
	for i := range d.pools {
		if !d.pools[i].repels(d.p.NewWorker) {
			d.utilPool = i
			break
		}
	}
}

// PoolOfName is the pool a worker labelled or tagged with name belongs to:
// name itself; for a worker made before pools (no name), or in a
// single-pool config (DefaultPool) that pools: no longer names, the first
// pool listed, so that a move to pools: keeps the workers there are (the
// Proxmox adapter reads an untagged VM the same way).
func (p Policy) PoolOfName(name string) string {
	pools := p.WorkerPools()
	if name != "" && name != DefaultPool {
		return name
	}
	for _, pl := range pools {
		if pl.Name == DefaultPool {
			return DefaultPool
		}
	}
	return pools[0].Name
}

// poolOf is the index of the pool a worker belongs to, or -1: in a
// single-pool policy every worker is the pool's (as min_workers counted
// every worker before pools); with pools, a managed worker's pool is
// the one it is labelled or tagged with (PoolOfName), and other workers
// belong to none.
func (d *decision) poolOf(managed bool, name string) int {
	if len(d.pools) == 1 {
		return 0
	}
	if !managed {
		return -1
	}
	if i, ok := d.poolIdx[d.p.PoolOfName(name)]; ok {
		return i
	}
	return -1
}

// multi reports whether the policy has more than one pool: messages then
// name the pool.
func (d *decision) multi() bool { return len(d.pools) > 1 }

// poolPrefix is "pool NAME: " with several pools, "" with one.
func (d *decision) poolPrefix(i int) string {
	if !d.multi() || i < 0 {
		return ""
	}
	return "pool " + d.pools[i].Name + ": "
}

// actionPool is the pool an action names: "" in a single-pool policy.
func (d *decision) actionPool(i int) string {
	if !d.multi() || i < 0 {
		return ""
	}
	return d.pools[i].Name
}

// byPriority is the pools' indexes, highest priority first (ties: as
// listed): the order in which a limited room is shared out.
func (d *decision) byPriority() []int {
	idx := make([]int, len(d.pools))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(d.pools[b].Priority, d.pools[a].Priority) })
	return idx
}

// poolWaste is the share of a pool's new worker a pod leaves unused: the
// free fraction of its CPU plus that of its memory.
func poolWaste(r, shape Resources) float64 {
	return (1 - ratio(r.MilliCPU, shape.MilliCPU)) + (1 - ratio(r.Memory, shape.Memory))
}

// PoolStatus is one pool's workers as the plan saw them.
type PoolStatus struct {
	Name         string `json:"name"`
	Ready        int    `json:"ready"`
	NotReady     int    `json:"not_ready"`
	Provisioning int    `json:"provisioning"`
	Current      int    `json:"current"`
	Min          int    `json:"min"`
	Max          int    `json:"max"`
	Added        int    `json:"added,omitempty"`
	// Pending is the pending pods counted toward its new workers.
	Pending int `json:"pending,omitempty"`
	// Used is what its Ready, schedulable workers use (metrics.k8s.io);
	// zero without utilization.
	Used Resources `json:"used,omitzero"`
}

// poolStatuses fills Plan.Pools.
func (d *decision) poolStatuses() {
	d.plan.Pools = make([]PoolStatus, len(d.pools))
	for i := range d.pools {
		ps := &d.pools[i]
		d.plan.Pools[i] = PoolStatus{Name: ps.Name, Ready: ps.workers - ps.notReady, NotReady: ps.notReady, Provisioning: ps.inFlight,
			Current: ps.current(), Min: ps.MinWorkers, Max: ps.MaxWorkers, Added: ps.add, Pending: len(ps.counted)}
		if d.plan.Utilization != nil {
			d.plan.Pools[i].Used = ps.used
		}
	}
}

// joinPoolReasons renders per-pool reasons "gpu: ...; general: ...".
func joinPoolReasons(names, whys []string) string {
	parts := make([]string, len(names))
	for i := range names {
		parts[i] = names[i] + ": " + whys[i]
	}
	return strings.Join(parts, "; ")
}
