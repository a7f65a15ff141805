package peers

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// tracker follows one side's Nodes (by label) and one namespace's pods
// and PodDisruptionBudgets through informers, and integrates over time,
// at each event as it arrives: the registered Nodes (node-seconds) and
// the pods not yet Running (pending pod-seconds). A Node counts until it
// is gone from the API (a Node being drained still costs).
type tracker struct {
	mu   sync.Mutex
	last time.Time

	nodes    map[string]int64 // name: allocatable CPU (milli)
	initial  map[string]bool  // Nodes there before the tracker started
	adds     int
	removes  int
	nodeSec  float64
	lastNode time.Time // last add or remove

	pods       map[string]*podState // by uid
	pendingSec float64
	created    int

	violations int
	violated   map[string]bool

	stop context.CancelFunc
	now  func() time.Time
}

func emptyTracker(now func() time.Time) *tracker {
	return &tracker{nodes: map[string]int64{}, initial: map[string]bool{}, pods: map[string]*podState{}, violated: map[string]bool{},
		stop: func() {}, now: now, last: now()}
}

type podState struct {
	cpu       int64 // requested, milli
	running   bool
	runningAt time.Time
	createdAt time.Time // when the tracker saw it first
}

func newTracker(ctx context.Context, c kubernetes.Interface, nodeSelector, ns string) (*tracker, error) {
	ctx, cancel := context.WithCancel(ctx)
	t := emptyTracker(time.Now)
	t.stop = cancel
	// The Nodes there now are the starting point: not adds.
	list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodeSelector})
	if err != nil {
		cancel()
		return nil, err
	}
	for _, n := range list.Items {
		t.initial[n.Name] = true
	}
	nf := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = nodeSelector }))
	pf := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(ns))
	_, _ = nf.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.node(o, false) },
		UpdateFunc: func(_, o any) { t.node(o, false) },
		DeleteFunc: func(o any) { t.node(o, true) },
	})
	_, _ = pf.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.pod(o, false) },
		UpdateFunc: func(_, o any) { t.pod(o, false) },
		DeleteFunc: func(o any) { t.pod(o, true) },
	})
	_, _ = pf.Policy().V1().PodDisruptionBudgets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    t.pdb,
		UpdateFunc: func(_, o any) { t.pdb(o) },
	})
	nf.Start(ctx.Done())
	pf.Start(ctx.Done())
	nf.WaitForCacheSync(ctx.Done())
	pf.WaitForCacheSync(ctx.Done())
	return t, nil
}

// advance integrates up to now; t.mu is held.
func (t *tracker) advance(now time.Time) {
	dt := now.Sub(t.last).Seconds()
	if dt <= 0 {
		return
	}
	pending := 0
	for _, p := range t.pods {
		if !p.running {
			pending++
		}
	}
	t.nodeSec += float64(len(t.nodes)) * dt
	t.pendingSec += float64(pending) * dt
	t.last = now
}

func (t *tracker) node(o any, deleted bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o, deleted = d.Obj, true
	}
	n, ok := o.(*corev1.Node)
	if !ok {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(now)
	_, known := t.nodes[n.Name]
	switch {
	case deleted:
		if known {
			delete(t.nodes, n.Name)
			t.removes++
			t.lastNode = now
		}
	case !known:
		t.nodes[n.Name] = n.Status.Allocatable.Cpu().MilliValue()
		if !t.initial[n.Name] {
			t.adds++
			t.lastNode = now
		}
	default:
		t.nodes[n.Name] = n.Status.Allocatable.Cpu().MilliValue()
	}
}

func (t *tracker) pod(o any, deleted bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o, deleted = d.Obj, true
	}
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(now)
	uid := string(p.UID)
	if deleted || p.DeletionTimestamp != nil {
		delete(t.pods, uid)
		return
	}
	st := t.pods[uid]
	if st == nil {
		st = &podState{createdAt: now}
		for _, c := range p.Spec.Containers {
			st.cpu += c.Resources.Requests.Cpu().MilliValue()
		}
		t.pods[uid] = st
		t.created++
	}
	if p.Status.Phase == corev1.PodRunning && !st.running {
		st.running, st.runningAt = true, now
	}
}

// pdb counts each time a budget's healthy pods fall below what it
// guarantees (a violation: an eviction API never allows it; a deletion
// that bypasses it does).
func (t *tracker) pdb(o any) {
	b, ok := o.(*policyv1.PodDisruptionBudget)
	if !ok || b.Status.ObservedGeneration != b.Generation {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	bad := b.Status.CurrentHealthy < b.Status.DesiredHealthy
	if bad && !t.violated[b.Name] {
		t.violations++
	}
	t.violated[b.Name] = bad
}

// snapshot is what the tracker knows now.
type snapshot struct {
	at         time.Time
	nodes      int
	allocCPU   int64
	adds       int
	removes    int
	nodeSec    float64
	pendingSec float64
	pods       int
	running    int
	lastRun    time.Time // the latest a pod turned Running
	reqCPU     int64     // requested by the Running pods
	created    int
	violations int
	lastNode   time.Time
}

func (t *tracker) snap() snapshot {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(now)
	s := snapshot{at: now, nodes: len(t.nodes), adds: t.adds, removes: t.removes, nodeSec: t.nodeSec, pendingSec: t.pendingSec,
		pods: len(t.pods), created: t.created, violations: t.violations, lastNode: t.lastNode}
	for _, a := range t.nodes {
		s.allocCPU += a
	}
	for _, p := range t.pods {
		if p.running {
			s.running++
			s.reqCPU += p.cpu
			if p.runningAt.After(s.lastRun) {
				s.lastRun = p.runningAt
			}
		}
	}
	return s
}

func (t *tracker) close() { t.stop() }
