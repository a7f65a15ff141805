package daemon

import (
	"context"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestPodsNoWorkerCanRunCreateNoVM: pods the real scheduler leaves
// pending that no worker we add could run (a node selector no worker
// carries, a GPU request with no GPU workers, a DaemonSet's pod that fits
// no worker, a local volume bound to another node) create no VM, and each
// gets a NotTriggerScaleUp event saying why.
func TestPodsNoWorkerCanRunCreateNoVM(t *testing.T) {
	w := newWorld(t)
	startWith(t, w, 1) // the DaemonSet's pod needs a node to be made for
	ctx := context.Background()
	ns := w.Kube.Namespace(t)
	cs := w.Kube.Client
	small := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	gpu := corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}
	labels := map[string]string{"nofit": "yes"}
	pod := func(name string, spec corev1.PodSpec) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}, Spec: spec}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	container := func(req, lim corev1.ResourceList) []corev1.Container {
		return []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}
	}
	pod("selector", corev1.PodSpec{NodeSelector: map[string]string{"gpu.example/kind": "igpu"}, Containers: container(small, nil)})
	pod("gpu", corev1.PodSpec{Containers: container(gpu, gpu)})

	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "hog", Namespace: ns}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			Containers: container(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")}, nil)}}}}
	if _, err := cs.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A local volume on a node that is not there, pre-bound to its claim.
	pvName := ns + "-local"
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pvName}, Spec: corev1.PersistentVolumeSpec{
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName:       "local-manual",
		PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/data"}},
		ClaimRef:               &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: "data"},
		NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"elsewhere"}}}}}}},
	}}
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().PersistentVolumes().Delete(context.Background(), pvName, metav1.DeleteOptions{})
	})
	class := "local-manual"
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: ns}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class, VolumeName: pvName,
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod("local", corev1.PodSpec{Containers: container(small, nil), Volumes: []corev1.Volume{{Name: "data",
		VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}})

	waitUnschedulable(t, w, ns, "nofit=yes", 4)
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "nofit=yes"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Name)
	}

	vms := ours(w)
	d, _ := build(t, w, testConfig(w, 1, 3), Options{})
	for decision := 1; decision <= 3; decision++ {
		plan, err := d.Reconciler.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Added() > 0 {
			t.Fatalf("decision %d adds %d workers for pods no worker can run: %+v", decision, plan.Added(), plan.Actions)
		}
		for _, name := range names {
			i := slices.IndexFunc(plan.Pods, func(v scaler.PodVerdict) bool { return v.Namespace == ns && v.Name == name })
			if i < 0 || !plan.Pods[i].NoWorker() {
				t.Fatalf("decision %d: pod %s has no NotTriggerScaleUp verdict: %+v", decision, name, plan.Pods)
			}
			if decision == 1 {
				t.Logf("%s: %s", name, plan.Pods[i].Message)
			}
		}
	}
	d.Reconciler.Wait()
	if got := ours(w); got != vms {
		t.Errorf("%d VMs of ours, was %d: a VM was created for pods no worker can run", got, vms)
	}
	// Each pod is told why, once (the same verdict is repeated at most every 10 minutes).
	deadline := time.Now().Add(15 * time.Second)
	for _, name := range names {
		for {
			evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name + ",reason=" + scaler.EventNotTriggerScaleUp})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs.Items) == 1 && evs.Items[0].Count <= 1 {
				break
			}
			if len(evs.Items) > 1 || time.Now().After(deadline) {
				t.Fatalf("pod %s: %d NotTriggerScaleUp events, want one: %+v", name, len(evs.Items), evs.Items)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
