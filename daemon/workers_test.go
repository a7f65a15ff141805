package daemon

import (
	"strings"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestWorkerSelectorMustSelectNewWorkers: a kubernetes.worker_selector
// that leaves out the Nodes of the workers we add (the worker config's
// labels, the pool's) is refused, naming the field and the pool.
func TestWorkerSelectorMustSelectNewWorkers(t *testing.T) {
	p := scaler.Policy{NewWorker: scaler.NewWorker{Labels: map[string]string{"bench/slot": "a"}},
		Pools: []scaler.Pool{{Name: "general"}, {Name: "gpu", NewWorker: scaler.NewWorker{Labels: map[string]string{"gpu": "yes"}}}}}
	for _, c := range []struct{ sel, want string }{
		{"", ""},
		{"bench/slot=a", ""},
		{"bench/slot!=b,pve-autoscaler.io/managed=true", ""},
		{"bench/slot=b", `kubernetes.worker_selector "bench/slot=b" does not select the Nodes of the workers pool general adds`},
		{"gpu=yes", "pool general adds"},
		{"!gpu", "pool gpu adds (labels bench/slot=a,gpu=yes,"},
		{"slot in (a", "kubernetes.worker_selector \"slot in (a\": expected a label selector"},
	} {
		err := selectsNewWorkers(c.sel, p)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.sel, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: %v, want %q", c.sel, err, c.want)
		}
	}
}
