package kube

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestUnfitAgreesWithTheScheduler: the real kube-scheduler is the
// reference for scaler.Unfit. Ten pods, one constraint each, go pending
// (every one selects this test's new worker only); the adapter's snapshot
// judges them against a NewWorker (labels, a NoSchedule taint, one GPU of
// an extended resource); then a kwok Node built from that same NewWorker
// joins. The scheduler must place exactly the pods Unfit says fit, and
// refuse each of the others with the new Node counted (copies created
// after it joined, so no queueing hint can skip them).
func TestUnfitAgreesWithTheScheduler(t *testing.T) {
	env := kubetest.Require(t)
	c := adapter(t, env, config.Drain{})
	ctx := context.Background()
	ns := env.Namespace(t)
	cs := env.Client
	const gpu = "example.com/gpu"
	nw := scaler.NewWorker{
		Labels:   map[string]string{"test-group": ns, "zone": "a"},
		Taints:   []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}},
		Extended: map[string]int64{gpu: 1},
	}
	alloc := scaler.Resources{MilliCPU: 4000, Memory: 8 << 30}
	tolerate := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "batch", Effect: corev1.TaintEffectNoSchedule}}
	small := func(extra ...string) corev1.ResourceList {
		rl := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
		for i := 0; i+1 < len(extra); i += 2 {
			rl[corev1.ResourceName(extra[i])] = resource.MustParse(extra[i+1])
		}
		return rl
	}
	affinity := func(key string, op corev1.NodeSelectorOperator, values ...string) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}}}}}
	}

	// A local volume on another node, pre-bound to its claim.
	pvName := ns + "-local"
	class := "local-manual"
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pvName}, Spec: corev1.PersistentVolumeSpec{
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName:       class,
		PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/data"}},
		ClaimRef:               &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: "data"},
		NodeAffinity:           &corev1.VolumeNodeAffinity{Required: affinity(corev1.LabelHostname, corev1.NodeSelectorOpIn, "elsewhere").NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().PersistentVolumes().Delete(context.Background(), pvName, metav1.DeleteOptions{})
	})
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class, VolumeName: pvName,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	volume := []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}

	type podCase struct {
		name string
		spec corev1.PodSpec
	}
	cases := []podCase{
		{"plain", corev1.PodSpec{Tolerations: tolerate}},
		{"untolerated-taint", corev1.PodSpec{}},
		{"one-gpu", corev1.PodSpec{Tolerations: tolerate, Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: small(gpu, "1")}}}}},
		{"two-gpus", corev1.PodSpec{Tolerations: tolerate, Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: small(gpu, "2")}}}}},
		{"another-device", corev1.PodSpec{Tolerations: tolerate, Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: small("example.com/fpga", "1")}}}}},
		{"notin-affinity", corev1.PodSpec{Tolerations: tolerate, Affinity: affinity("zone", corev1.NodeSelectorOpNotIn, "a")}},
		{"too-large", corev1.PodSpec{Tolerations: tolerate, Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")}}}}}},
		{"selector", corev1.PodSpec{Tolerations: tolerate, NodeSelector: map[string]string{"gpu.example/kind": "igpu"}}},
		{"local-volume-elsewhere", corev1.PodSpec{Tolerations: tolerate, Volumes: volume}},
		{"hostname-pin", corev1.PodSpec{Tolerations: tolerate, Affinity: affinity(corev1.LabelHostname, corev1.NodeSelectorOpIn, ns+"-other")}},
	}
	create := func(name string, spec corev1.PodSpec) {
		t.Helper()
		spec = *spec.DeepCopy()
		if spec.NodeSelector == nil {
			spec.NodeSelector = map[string]string{}
		}
		spec.NodeSelector["test-group"] = ns // this test's new worker, no other Node
		if len(spec.Containers) == 0 {
			spec.Containers = []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: small()}}}
		}
		for i := range spec.Containers {
			spec.Containers[i].Name, spec.Containers[i].Image = "app", "registry.example/app:1"
			lim := corev1.ResourceList{}
			for k, v := range spec.Containers[i].Resources.Requests {
				if strings.Contains(string(k), "/") {
					lim[k] = v // extended resources: limits equal to requests
				}
			}
			spec.Containers[i].Resources.Limits = lim
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pc := range cases {
		create(pc.name, pc.spec)
	}

	pending := func() map[string]scaler.PendingPod {
		snap, _ := c.Snapshot(ctx, time.Now()) // metrics may be missing: the pods are all that matter here
		out := map[string]scaler.PendingPod{}
		for _, pp := range snap.PendingPods {
			if pp.Namespace == ns {
				out[pp.Name] = pp
			}
		}
		return out
	}
	var judged map[string]scaler.PendingPod
	waitFor(t, "ten pending pods in the snapshot", 30*time.Second, func() bool { judged = pending(); return len(judged) == len(cases) })
	nodeName := ns + "-new"
	template := nw.Node(nodeName, alloc)
	var fit, unfit []string
	for _, pc := range cases {
		pp := judged[pc.name]
		if why := scaler.Unfit(&pp, template); why != "" {
			unfit = append(unfit, pc.name)
			t.Logf("%s: %s", pc.name, why)
		} else {
			fit = append(fit, pc.name)
		}
	}
	t.Logf("Unfit says these fit: %v", fit)
	if len(fit) == 0 || len(unfit) == 0 {
		t.Fatalf("fit %v, unfit %v: the cases must include both", fit, unfit)
	}

	// The Node a new worker registers, as kwok runs it.
	node := template.DeepCopy()
	node.Annotations = map[string]string{kubetest.KwokAnnotation: "fake"}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Nodes().Delete(context.Background(), nodeName, metav1.DeleteOptions{}) })

	// Copies of the refused pods, made once the Node is there: the
	// scheduler tries each of them against every Node, the new one included.
	for _, name := range unfit {
		i := slices.IndexFunc(cases, func(pc podCase) bool { return pc.name == name })
		create(name+"-late", cases[i].spec)
	}
	bound := func() (map[string]string, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		out := map[string]string{}
		for _, p := range list.Items {
			if p.Spec.NodeName != "" {
				out[p.Name] = p.Spec.NodeName
				continue
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
					out[p.Name] = "refused: " + cond.Message
				}
			}
		}
		return out, nil
	}
	nodes := func() int {
		l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return -1
		}
		return len(l.Items)
	}
	var last map[string]string
	settled := func() bool {
		var err error
		if last, err = bound(); err != nil {
			return false
		}
		for _, name := range fit {
			if last[name] == "" || strings.HasPrefix(last[name], "refused") {
				return false
			}
		}
		n := nodes()
		for _, name := range unfit {
			msg, ok := strings.CutPrefix(last[name+"-late"], "refused: ")
			if !ok {
				return false
			}
			if considered, ok := considered(msg); !ok || considered < n {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !settled() {
		if time.Now().After(deadline) {
			t.Fatalf("the scheduler has not placed exactly what Unfit says fits (%v) and refused the rest with the new Node counted; pods now: %v", fit, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, name := range unfit {
		for _, n := range []string{name, name + "-late"} {
			if last[n] == nodeName {
				t.Errorf("%s: Unfit says it does not fit, but the scheduler placed it on the new worker", n)
			}
		}
	}
	for _, name := range fit {
		if last[name] != nodeName {
			t.Errorf("%s: Unfit says it fits, the scheduler put it on %q", name, last[name])
		}
	}
	for _, name := range unfit {
		t.Logf("%s refused: %s", name, strings.TrimPrefix(last[name+"-late"], "refused: "))
	}
}

// considered reads N from the scheduler's "0/N nodes are available: ...".
func considered(msg string) (int, bool) {
	rest, ok := strings.CutPrefix(msg, "0/")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, " ")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	return n, err == nil
}
