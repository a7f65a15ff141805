package scaler

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestFitElsewhere: a worker goes only when each of its pods could run on
// another worker as the scheduler judges it (node selector, required node
// affinity, taints against tolerations, extended resources, the node
// affinity of its bound volumes), not by requests alone. Worker a is the
// candidate (idle, the down window run); b, which may not go itself, is
// the only other worker.
func TestFitElsewhere(t *testing.T) {
	gpu := "gpu.intel.com/i915"
	taint := func(key, value string, effect corev1.TaintEffect) []corev1.Taint {
		return []corev1.Taint{{Key: key, Value: value, Effect: effect}}
	}
	selectorOn := func(key, value string) *corev1.NodeSelector {
		return &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{value}}}}}}
	}
	for _, c := range []struct {
		name   string
		a, b   func(*Node) // the candidate and the other worker
		pod    func(*Pod)  // a's pod
		moves  bool        // a may go
		reason string
	}{
		{name: "no constraint: by requests", moves: true},
		{name: "node selector only a carries", pod: func(p *Pod) { p.NodeSelector = map[string]string{"disk": "ssd"} },
			a: func(n *Node) { n.Labels = map[string]string{"disk": "ssd"} }},
		{name: "node selector both carry", pod: func(p *Pod) { p.NodeSelector = map[string]string{"disk": "ssd"} },
			a: func(n *Node) { n.Labels = map[string]string{"disk": "ssd"} }, b: func(n *Node) { n.Labels = map[string]string{"disk": "ssd"} }, moves: true},
		{name: "required node affinity only a matches", pod: func(p *Pod) { p.NodeAffinity = selectorOn("zone", "left") },
			a: func(n *Node) { n.Labels = map[string]string{"zone": "left"} }, b: func(n *Node) { n.Labels = map[string]string{"zone": "right"} }},
		{name: "required node affinity b matches", pod: func(p *Pod) { p.NodeAffinity = selectorOn("zone", "left") },
			b: func(n *Node) { n.Labels = map[string]string{"zone": "left"} }, moves: true},
		{name: "b tainted, the pod tolerates nothing", b: func(n *Node) { n.Taints = taint("dedicated", "db", corev1.TaintEffectNoSchedule) }},
		{name: "b tainted NoExecute, the pod tolerates nothing", b: func(n *Node) { n.Taints = taint("dedicated", "db", corev1.TaintEffectNoExecute) }},
		{name: "b tainted PreferNoSchedule: no bar", b: func(n *Node) { n.Taints = taint("dedicated", "db", corev1.TaintEffectPreferNoSchedule) }, moves: true},
		{name: "b tainted, the pod tolerates it", b: func(n *Node) { n.Taints = taint("dedicated", "db", corev1.TaintEffectNoSchedule) },
			pod: func(p *Pod) {
				p.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
			}, moves: true},
		{name: "the pod tolerates only a's taint", a: func(n *Node) { n.Taints = taint("dedicated", "media", corev1.TaintEffectNoSchedule) },
			b: func(n *Node) { n.Taints = taint("dedicated", "db", corev1.TaintEffectNoSchedule) },
			pod: func(p *Pod) {
				p.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "media", Effect: corev1.TaintEffectNoSchedule}}
			}},
		{name: "a GPU pod on the only GPU worker", a: func(n *Node) { n.Extended = map[string]int64{gpu: 1} },
			pod: func(p *Pod) { p.Extended = map[string]int64{gpu: 1} }},
		{name: "a GPU pod, b's GPU taken by its own pod", a: func(n *Node) { n.Extended = map[string]int64{gpu: 1} },
			b: func(n *Node) {
				n.Extended = map[string]int64{gpu: 1}
				n.Pods[0].Extended = map[string]int64{gpu: 1}
			},
			pod: func(p *Pod) { p.Extended = map[string]int64{gpu: 1} }},
		{name: "a GPU pod, b has a GPU free", a: func(n *Node) { n.Extended = map[string]int64{gpu: 1} },
			b: func(n *Node) {
				n.Extended = map[string]int64{gpu: 2}
				n.Pods[0].Extended = map[string]int64{gpu: 1}
			},
			pod: func(p *Pod) { p.Extended = map[string]int64{gpu: 1} }, moves: true},
		{name: "its volume is bound to a", a: func(n *Node) { n.Labels = map[string]string{"kubernetes.io/hostname": "a"} },
			b: func(n *Node) { n.Labels = map[string]string{"kubernetes.io/hostname": "b"} },
			pod: func(p *Pod) {
				p.VolumeNodeAffinity = []VolumeAffinity{{Volume: "pv-a", Required: selectorOn("kubernetes.io/hostname", "a")}}
			}},
		{name: "a pod requesting nothing still needs a place", a: func(n *Node) { n.Labels = map[string]string{"disk": "ssd"} },
			pod: func(p *Pod) {
				p.Requests = Resources{}
				p.NodeSelector = map[string]string{"disk": "ssd"}
			}},
		{name: "a DaemonSet's pod stays with its node", a: func(n *Node) { n.Labels = map[string]string{"disk": "ssd"} },
			pod: func(p *Pod) {
				p.OwnerKind = OwnerDaemonSet
				p.NodeSelector = map[string]string{"disk": "ssd"}
			}, moves: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := worker("a", 10, 10)
			b := worker("b", 10, 10, annotated(AnnotationScaleDownDisabled, "true"))
			if c.a != nil {
				c.a(&a)
			}
			if c.b != nil {
				c.b(&b)
			}
			if c.pod != nil {
				c.pod(&a.Pods[0])
			}
			p := testPolicy()
			p.MinWorkers = 1
			plan := Decide(Snapshot{Nodes: []Node{a, b}}, p, History{LowSince: ago(time.Hour)}, t0)
			rm, ok := plan.Removal()
			if ok != c.moves || ok && rm.Node != "a" {
				t.Fatalf("removal %v %q, want a removal of a: %v\n%s", ok, rm.Node, c.moves, dump(plan))
			}
			if !c.moves && !plan.Held(CodePodsDoNotFit) {
				t.Errorf("no %s hold\n%s", CodePodsDoNotFit, dump(plan))
			}
		})
	}
}
