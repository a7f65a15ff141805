package scaler

import (
	"fmt"
	"testing"
	"time"
)

// benchWorld is n workers with 30 pods each and the given pending pods.
// busy puts CPU at 85% (a scale-up); otherwise at 15% with most nodes
// blocked from removal, so the scale-down search walks far.
func benchWorld(n, pendingPods int, busy bool) (Snapshot, Policy) {
	p := testPolicy()
	p.MaxWorkers = n + 100
	p.MaxStep = 50
	s := Snapshot{Nodes: make([]Node, n)}
	pct := 15.0
	if busy {
		pct = 85
	}
	for i := range s.Nodes {
		nd := worker(fmt.Sprintf("w%05d", i), pct, pct)
		nd.Created = t0.Add(-time.Duration(i) * time.Minute)
		nd.Pods = make([]Pod, 30)
		per := Resources{MilliCPU: nd.Requests.MilliCPU / 30, Memory: nd.Requests.Memory / 30}
		for j := range nd.Pods {
			nd.Pods[j] = Pod{Namespace: "default", Name: fmt.Sprintf("w%05d-p%02d", i, j), OwnerKind: "ReplicaSet", Requests: per}
		}
		if !busy && i%50 != 0 {
			// 49 of 50 nodes hold a pod that must not be evicted.
			nd.Pods[29].Annotations = map[string]string{AnnotationSafeToEvict: "false"}
		}
		s.Nodes[i] = nd
	}
	s.PendingPods = pending(pendingPods, 700, gi, t0.Add(-time.Minute))
	return s, p
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{6, 500, 5000} {
		for _, sc := range []struct {
			name    string
			pending int
			busy    bool
		}{
			{"up+2000pending", 2000, true},
			{"down-search", 0, false},
		} {
			s, p := benchWorld(n, sc.pending, sc.busy)
			b.Run(fmt.Sprintf("nodes=%d/%s", n, sc.name), func(b *testing.B) {
				b.ReportAllocs()
				var plan Plan
				for b.Loop() {
					plan = Decide(s, p, History{}, t0)
				}
				if sc.busy && plan.Added() == 0 {
					b.Fatalf("expected a scale-up\n%s", dump(plan))
				}
				if !sc.busy {
					if _, ok := plan.Removal(); !ok {
						b.Fatalf("expected a removal\n%s", dump(plan))
					}
				}
			})
		}
	}
}
