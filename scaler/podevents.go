package scaler

import "time"

// PodEventEvery is how often a pending pod is told the same verdict again
// by default
// (the Cluster Autoscaler repeats its own no more often either).
const PodEventEvery = 10 * time.Minute

// saidVerdict is the last event a pending pod got.
type saidVerdict struct {
	reason, message string
	at              time.Time
}

// podEvents gives each pending pod its verdict as a Kubernetes event:
// TriggeredScaleUp or NotTriggerScaleUp with the reason, where users look
// (`kubectl describe pod`). The same verdict is said at most every
// ReconcileOptions.PodEventEvery; a changed one at once. Pods no longer in the plan are
// forgotten. Never in a dry run (the caller returns before).
func (r *Reconciler) podEvents(plan Plan, now time.Time) {
	r.mu.Lock()
	if r.said == nil {
		r.said = map[string]saidVerdict{}
	}
	type ev struct{ ns, name, typ, reason, msg string }
	var out []ev
	seen := make(map[string]bool, len(plan.Pods))
	for _, v := range plan.Pods {
		key := v.Namespace + "/" + v.Name
		seen[key] = true
		if v.Event == "" {
			continue
		}
		last, ok := r.said[key]
		if ok && last.reason == v.Event && last.message == v.Message && now.Sub(last.at) < r.o.PodEventEvery {
			continue
		}
		r.said[key] = saidVerdict{reason: v.Event, message: v.Message, at: now}
		typ := "Normal"
		if v.Event == EventNotTriggerScaleUp {
			typ = "Warning"
		}
		out = append(out, ev{v.Namespace, v.Name, typ, v.Event, v.Message})
	}
	for key := range r.said {
		if !seen[key] {
			delete(r.said, key)
		}
	}
	r.mu.Unlock()
	for _, e := range out {
		r.cluster.PodEvent(e.ns, e.name, e.typ, e.reason, e.msg)
	}
}
