package daemon

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestGPUPoolAndGeneralPool: with a general pool and a GPU pool (one
// iGPU, on pve2 only), a Plex pod asking for the iGPU brings exactly one
// gpu-pool worker, on pve2, with hostpci0: mapping=igpu, its Node
// labelled and tainted as the pool says; CPU pods bring general
// workers, none with a device. Every pod ends up running.
func TestGPUPoolAndGeneralPool(t *testing.T) {
	env := kubetest.Require(t)
	w, err := world.New(env, world.Options{
		PVE: func(pw *pvesim.World) {
			pw.PCIMappings = []pvesim.PCIMappingSpec{{ID: "igpu", Map: []pvesim.PCIMapEntry{{Node: "pve2", Path: "0000:00:02.0", ID: "8086:46a6"}}}}
		},
		Devices: map[string]map[string]string{"igpu": {"gpu.intel.com/i915": "1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	cfg := testConfig(w, 0, 5)
	tpl := cfg.Proxmox.Template
	cfg.Pools = []config.Pool{
		{Name: "general", Template: tpl, VM: config.VM{Cores: 2, Memory: 4 << 30}, MinWorkers: 1, MaxWorkers: 4},
		{Name: "gpu", Template: tpl, VM: config.VM{Cores: 4, Memory: 8 << 30}, MaxWorkers: 1,
			PCI:      []config.PCI{{Mapping: "igpu"}},
			Labels:   map[string]string{"gpu.example/kind": "igpu"},
			Taints:   []config.Taint{{Key: "gpu.example/kind", Value: "igpu", Effect: "NoSchedule"}},
			Capacity: map[string]config.Units{"gpu.intel.com/i915": 1}},
	}
	d, _ := build(t, w, cfg, Options{})
	converge(t, d, "the general pool's minimum", 60*time.Second, func() bool { v, nodes := joined(t, w); return v == 1 && nodes == 1 })
	d.Reconciler.Wait()

	ctx := context.Background()
	ns := w.Kube.Namespace(t)
	cs := w.Kube.Client
	mk := func(name string, req corev1.ResourceList, tol []corev1.Toleration) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "pools"}}, Spec: corev1.PodSpec{
			Tolerations: tol,
			Containers:  []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: corev1.ResourceRequirements{Requests: req, Limits: req}}}}}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gpuReq := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi"), "gpu.intel.com/i915": resource.MustParse("1")}
	mk("plex", gpuReq, []corev1.Toleration{{Key: "gpu.example/kind", Operator: corev1.TolerationOpEqual, Value: "igpu", Effect: corev1.TaintEffectNoSchedule}})
	for _, name := range []string{"cpu-a", "cpu-b", "cpu-c"} {
		mk(name, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("1Gi")}, nil)
	}
	waitUnschedulable(t, w, ns, "app=pools", 3) // one CPU pod fits the general worker there

	running := func() int {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=pools"})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range list.Items {
			if p.Spec.NodeName != "" {
				n++
			}
		}
		return n
	}
	converge(t, d, "every pod placed", 90*time.Second, func() bool { return running() == 4 })
	d.Reconciler.Wait()

	var gpuVMs, generalVMs []pvesim.VM
	for _, v := range w.Sim.VMs() {
		switch {
		case slices.Contains(v.Tags, "pool-gpu"):
			gpuVMs = append(gpuVMs, v)
		case slices.Contains(v.Tags, "pool-general"):
			generalVMs = append(generalVMs, v)
		}
	}
	if len(gpuVMs) != 1 {
		t.Fatalf("%d gpu-pool VMs, want 1: %+v", len(gpuVMs), gpuVMs)
	}
	g := gpuVMs[0]
	if g.Host != "pve2" || g.HostPCI["hostpci0"] != "mapping=igpu" || g.Cores != 4 || g.Memory != 8192 {
		t.Errorf("gpu VM %+v", g)
	}
	if len(generalVMs) < 3 {
		t.Errorf("%d general VMs, want at least 3 (one kept, two for the CPU pods)", len(generalVMs))
	}
	for _, v := range generalVMs {
		if len(v.HostPCI) != 0 || v.Cores != 2 {
			t.Errorf("general VM %+v", v)
		}
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, g.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Labels[scaler.LabelPool] != "gpu" || node.Labels["gpu.example/kind"] != "igpu" ||
		!slices.ContainsFunc(node.Spec.Taints, func(x corev1.Taint) bool {
			return x.Key == "gpu.example/kind" && x.Effect == corev1.TaintEffectNoSchedule
		}) {
		t.Errorf("gpu Node labels %v, taints %v", node.Labels, node.Spec.Taints)
	}
	plex, err := cs.CoreV1().Pods(ns).Get(ctx, "plex", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if plex.Spec.NodeName != g.Name {
		t.Errorf("plex runs on %q, not the gpu worker %s", plex.Spec.NodeName, g.Name)
	}
	evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=plex,reason=" + scaler.EventTriggeredScaleUp})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 || !strings.Contains(evs.Items[0].Message, "pool gpu") {
		t.Errorf("plex's TriggeredScaleUp events: %+v", evs.Items)
	}
}
