package daemon

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// selectsNewWorkers refuses a kubernetes.worker_selector that leaves out
// the Nodes of the workers we add: they would never count as workers, so
// every scale-up would be followed by another.
func selectsNewWorkers(selector string, p scaler.Policy) error {
	sel, err := config.ParseWorkerSelector(selector)
	if err != nil {
		return fmt.Errorf("kubernetes.worker_selector %w", err)
	}
	pools := p.NewWorkerLabels()
	names := slices.Sorted(maps.Keys(pools))
	for _, name := range names {
		if lb := pools[name]; !sel.Matches(labels.Set(lb)) {
			keys := slices.Sorted(maps.Keys(lb))
			var shown []string
			for _, k := range keys {
				if k != corev1.LabelHostname {
					shown = append(shown, k+"="+lb[k])
				}
			}
			return fmt.Errorf("kubernetes.worker_selector %q does not select the Nodes of the workers pool %s adds (labels %s): "+
				"they would not count as workers; add a label to the worker config (machine.nodeLabels) or the pool, or widen the selector",
				selector, name, strings.Join(shown, ","))
		}
	}
	return nil
}
