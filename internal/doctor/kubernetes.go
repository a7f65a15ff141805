package doctor

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/kube"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// VPAResource is the VerticalPodAutoscaler API (a CRD).
var VPAResource = schema.GroupVersionResource{Group: "autoscaling.k8s.io", Version: "v1", Resource: "verticalpodautoscalers"}

// kubeFacts is what the Kubernetes checks learnt, for the checks after them.
type kubeFacts struct {
	nodes []corev1.Node
}

const metricsFix = "install metrics-server (kubectl apply -f https://github.com/kubernetes-sigs/metrics-server/releases/latest/download/components.yaml); on Talos add --kubelet-insecure-tls to its args, or enable kubelet serving-certificate rotation and approve the kubelets' CSRs"

func checkKubernetes(ctx context.Context, r *Report, c *config.Config, o Options) kubeFacts {
	var f kubeFacts
	k := c.Kubernetes
	rc, err := kube.RestConfig(k.Kubeconfig, k.Context)
	if err != nil {
		r.add(areaKube, "api", Fail, "set kubernetes.kubeconfig to a kubeconfig for the cluster (README: Install on a Proxmox VE node, step 3)", "%v", err)
		return f
	}
	rc.Timeout = 15 * time.Second
	kc, err := kube.NewForConfig(rc, kube.Options{Log: o.Log.Named("kube")})
	if err != nil {
		r.add(areaKube, "api", Fail, "correct kubernetes.kubeconfig", "%v", err)
		return f
	}
	version, err := kc.ServerVersion()
	if err != nil {
		r.add(areaKube, "api", Fail, "check the kubeconfig's server address and credentials (kubectl --kubeconfig "+k.Kubeconfig+" version)", "%s: %v", rc.Host, err)
		return f
	}
	r.add(areaKube, "api", OK, "", "Kubernetes %s answers at %s", version, rc.Host)

	// RBAC: what the daemon does, asked as these credentials.
	lease, leaseName := "", ""
	if le := c.Daemon.LeaderElection; le.Enabled {
		lease, leaseName = le.Namespace, le.LeaseName
	}
	var missing []string
	for _, a := range kube.RequiredAccess(lease, leaseName, controlRef(c)) {
		ok, err := kc.CanI(ctx, a)
		if err != nil {
			r.add(areaKube, "rbac", Fail, "the credentials must be allowed to create selfsubjectaccessreviews (every authenticated user is, by default)", "cannot ask the API server: %v", err)
			missing = nil
			break
		}
		if !ok {
			missing = append(missing, a.String())
		}
	}
	switch {
	case len(missing) > 0:
		r.add(areaKube, "rbac", Fail, "kubectl apply -f deploy/rbac.yaml, and give the daemon a kubeconfig for its ServiceAccount (README: Install on a Proxmox VE node, step 3)",
			"the credentials may not: %s", strings.Join(missing, ", "))
	case len(r.Find(areaKube, "rbac")) == 0:
		r.add(areaKube, "rbac", OK, "", "the credentials may do everything the daemon does (%d permissions, deploy/rbac.yaml)", len(kube.RequiredAccess(lease, leaseName, controlRef(c))))
	}

	checkControl(ctx, r, kc, controlRef(c), time.Now())

	n, err := kc.NodeMetrics(ctx)
	switch {
	case err != nil:
		r.add(areaKube, "metrics api", Fail, metricsFix, "metrics.k8s.io unavailable: %v; without it only pending pods and the minimum drive scaling", err)
	case n == 0:
		r.add(areaKube, "metrics api", Warn, "check metrics-server's logs (kubectl -n kube-system logs deploy/metrics-server): on Talos it needs --kubelet-insecure-tls or approved serving certificates", "metrics.k8s.io answers but reports no node")
	default:
		r.add(areaKube, "metrics api", OK, "", "metrics.k8s.io reports usage for %d nodes", n)
	}

	cs := kc.Clientset()
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		r.add(areaKube, "vpa", Fail, "", "%v", err)
		return f
	}
	w := workloads{ctx: ctx, cs: cs, r: r}
	hpas, hok := w.hpas()
	vpas, vok := w.vpas(dyn)
	if hok {
		w.hpaRequests(hpas)
	}
	if hok && vok {
		w.hpaVPA(hpas, vpas)
		w.vpaSingleReplica(hpas, vpas)
	}
	w.pdbs()
	f.nodes = w.workers(c.Kubernetes.WorkerSelector)
	return f
}

// workloads runs the checks of the layers below node autoscaling.
type workloads struct {
	ctx context.Context
	cs  kubernetes.Interface
	r   *Report
}

// listFailed reports a list the credentials may not make: doctor then says
// what it could not check, with the fix.
func (w workloads) listFailed(name, what string, err error) {
	if apierrors.IsForbidden(err) {
		w.r.add(areaKube, name, Warn, "run doctor with a kubeconfig that may read the whole cluster (--kubeconfig), the daemon's own does not need to", "not checked: these credentials may not list %s", what)
		return
	}
	w.r.add(areaKube, name, Warn, "", "not checked: listing %s: %v", what, err)
}

func (w workloads) hpas() ([]autoscalingv2.HorizontalPodAutoscaler, bool) {
	list, err := w.cs.AutoscalingV2().HorizontalPodAutoscalers("").List(w.ctx, metav1.ListOptions{})
	if err != nil {
		w.listFailed("hpa", "horizontalpodautoscalers", err)
		return nil, false
	}
	return list.Items, true
}

// vpa is the part of a VerticalPodAutoscaler the checks read.
type vpa struct {
	ns, name   string
	kind, ref  string // target
	mode       string
	controlled []string
}

func (w workloads) vpas(dyn dynamic.Interface) ([]vpa, bool) {
	list, err := dyn.Resource(VPAResource).Namespace("").List(w.ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		w.r.add(areaKube, "vpa", OK, "", "the VerticalPodAutoscaler API is not installed: nothing can fight the HPAs")
		return nil, true
	}
	if err != nil {
		w.listFailed("vpa", "verticalpodautoscalers", err)
		return nil, false
	}
	var out []vpa
	for _, u := range list.Items {
		v := vpa{ns: u.GetNamespace(), name: u.GetName(), mode: "Auto"}
		v.kind, _, _ = unstructured.NestedString(u.Object, "spec", "targetRef", "kind")
		v.ref, _, _ = unstructured.NestedString(u.Object, "spec", "targetRef", "name")
		if m, ok, _ := unstructured.NestedString(u.Object, "spec", "updatePolicy", "updateMode"); ok && m != "" {
			v.mode = m
		}
		controlled := map[string]bool{}
		policies, _, _ := unstructured.NestedSlice(u.Object, "spec", "resourcePolicy", "containerPolicies")
		all := true
		for _, p := range policies {
			pm, ok := p.(map[string]any)
			if !ok {
				continue
			}
			if mode, _ := pm["mode"].(string); mode == "Off" {
				continue
			}
			res, ok := pm["controlledResources"].([]any)
			if !ok {
				all = true
				continue
			}
			all = false
			for _, x := range res {
				if s, ok := x.(string); ok {
					controlled[s] = true
				}
			}
		}
		if all || len(policies) == 0 {
			controlled["cpu"], controlled["memory"] = true, true
		}
		for k := range controlled {
			v.controlled = append(v.controlled, k)
		}
		sort.Strings(v.controlled)
		out = append(out, v)
	}
	w.r.add(areaKube, "vpa", OK, "", "%d VerticalPodAutoscalers", len(out))
	return out, true
}

// acting reports whether a VPA mode changes pods' requests.
func acting(mode string) bool {
	return mode == "Auto" || mode == "Recreate" || mode == "Initial" || mode == "InPlaceOrRecreate"
}

// evicting reports whether a VPA mode resizes running pods.
func evicting(mode string) bool {
	return mode == "Auto" || mode == "Recreate" || mode == "InPlaceOrRecreate"
}

// resourceMetrics returns the cpu/memory resources an HPA scales on, with
// whether the target is a utilization (which needs requests) and, for
// container metrics, the container.
type resourceMetric struct {
	resource    string
	utilization bool
	container   string
}

func resourceMetrics(h autoscalingv2.HorizontalPodAutoscaler) []resourceMetric {
	var out []resourceMetric
	for _, m := range h.Spec.Metrics {
		switch {
		case m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil:
			out = append(out, resourceMetric{string(m.Resource.Name), m.Resource.Target.Type == autoscalingv2.UtilizationMetricType, ""})
		case m.Type == autoscalingv2.ContainerResourceMetricSourceType && m.ContainerResource != nil:
			out = append(out, resourceMetric{string(m.ContainerResource.Name), m.ContainerResource.Target.Type == autoscalingv2.UtilizationMetricType, m.ContainerResource.Container})
		}
	}
	return out
}

// podSpec reads a scale target's pod template and replicas.
func (w workloads) podSpec(ns, kind, name string) (*corev1.PodSpec, int32, error) {
	apps := w.cs.AppsV1()
	switch kind {
	case "Deployment":
		d, err := apps.Deployments(ns).Get(w.ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, 0, err
		}
		return &d.Spec.Template.Spec, ptrOr(d.Spec.Replicas, 1), nil
	case "StatefulSet":
		s, err := apps.StatefulSets(ns).Get(w.ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, 0, err
		}
		return &s.Spec.Template.Spec, ptrOr(s.Spec.Replicas, 1), nil
	case "ReplicaSet":
		s, err := apps.ReplicaSets(ns).Get(w.ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, 0, err
		}
		return &s.Spec.Template.Spec, ptrOr(s.Spec.Replicas, 1), nil
	}
	return nil, 0, fmt.Errorf("kind %s not checked", kind)
}

func ptrOr(p *int32, d int32) int32 {
	if p == nil {
		return d
	}
	return *p
}

// hpaRequests: an HPA on CPU or memory utilization needs every container
// it measures to request that resource, else it shows <unknown>/70%.
func (w workloads) hpaRequests(hpas []autoscalingv2.HorizontalPodAutoscaler) {
	bad := 0
	for _, h := range hpas {
		ref := h.Spec.ScaleTargetRef
		spec, _, err := w.podSpec(h.Namespace, ref.Kind, ref.Name)
		if err != nil {
			continue
		}
		for _, m := range resourceMetrics(h) {
			if !m.utilization {
				continue
			}
			var lacking []string
			for _, ct := range spec.Containers {
				if m.container != "" && ct.Name != m.container {
					continue
				}
				if _, ok := ct.Resources.Requests[corev1.ResourceName(m.resource)]; !ok {
					lacking = append(lacking, ct.Name)
				}
			}
			if len(lacking) == 0 {
				continue
			}
			bad++
			w.r.add(areaKube, "hpa requests", Warn,
				fmt.Sprintf("set resources.requests.%s on %s (kubectl -n %s set resources %s/%s -c %s --requests=%s=...)", m.resource, strings.Join(lacking, ", "), h.Namespace, strings.ToLower(ref.Kind), ref.Name, lacking[0], m.resource),
				"HPA %s/%s scales %s %s on %s utilization, but container(s) %s request no %s: it shows <unknown> and never scales",
				h.Namespace, h.Name, ref.Kind, ref.Name, m.resource, strings.Join(lacking, ", "), m.resource)
		}
	}
	if bad == 0 {
		w.r.add(areaKube, "hpa requests", OK, "", "%d HPAs; each one on CPU or memory utilization measures containers that request it", len(hpas))
	}
}

// hpaVPA: an HPA and a VPA acting on the same resource of one workload fight.
func (w workloads) hpaVPA(hpas []autoscalingv2.HorizontalPodAutoscaler, vpas []vpa) {
	bad := 0
	for _, h := range hpas {
		ref := h.Spec.ScaleTargetRef
		for _, v := range vpas {
			if v.ns != h.Namespace || v.kind != ref.Kind || v.ref != ref.Name || !acting(v.mode) {
				continue
			}
			var both []string
			for _, m := range resourceMetrics(h) {
				if slices.Contains(v.controlled, m.resource) && !slices.Contains(both, m.resource) {
					both = append(both, m.resource)
				}
			}
			if len(both) == 0 {
				continue
			}
			bad++
			w.r.add(areaKube, "hpa and vpa", Warn,
				"let the HPA scale on another metric (custom or external), or limit the VPA's controlledResources to what the HPA does not use, or set its updateMode to Off",
				"HPA %s/%s and VPA %s/%s (%s) both act on %s of %s %s: they fight (the VPA raises requests, the HPA then sees lower utilization and removes replicas)",
				h.Namespace, h.Name, v.ns, v.name, v.mode, strings.Join(both, " and "), ref.Kind, ref.Name)
		}
	}
	if bad == 0 {
		w.r.add(areaKube, "hpa and vpa", OK, "", "no workload has an HPA and a VPA acting on the same resource")
	}
}

// vpaSingleReplica: a VPA that resizes by eviction takes a one-replica
// workload down each time.
func (w workloads) vpaSingleReplica(hpas []autoscalingv2.HorizontalPodAutoscaler, vpas []vpa) {
	bad := 0
	for _, v := range vpas {
		if !evicting(v.mode) {
			continue
		}
		_, replicas, err := w.podSpec(v.ns, v.kind, v.ref)
		if err != nil || replicas != 1 {
			continue
		}
		scaled := slices.ContainsFunc(hpas, func(h autoscalingv2.HorizontalPodAutoscaler) bool {
			return h.Namespace == v.ns && h.Spec.ScaleTargetRef.Kind == v.kind && h.Spec.ScaleTargetRef.Name == v.ref && ptrOr(h.Spec.MinReplicas, 1) > 1
		})
		if scaled {
			continue
		}
		bad++
		w.r.add(areaKube, "vpa single replica", Warn, "run at least 2 replicas (with a PodDisruptionBudget), or set the VPA's updateMode to Initial",
			"VPA %s/%s in %s mode on %s %s with 1 replica: every resize evicts the only pod (downtime)", v.ns, v.name, v.mode, v.kind, v.ref)
	}
	if bad == 0 {
		w.r.add(areaKube, "vpa single replica", OK, "", "no VPA resizes a workload that runs a single replica")
	}
}

// pdbs: a PodDisruptionBudget that allows no disruption blocks every drain
// of a node its pods run on.
func (w workloads) pdbs() {
	list, err := w.cs.PolicyV1().PodDisruptionBudgets("").List(w.ctx, metav1.ListOptions{})
	if err != nil {
		w.listFailed("pdb", "poddisruptionbudgets", err)
		return
	}
	bad := 0
	for _, p := range list.Items {
		zero := false
		if mu := p.Spec.MaxUnavailable; mu != nil {
			zero = mu.String() == "0" || mu.String() == "0%"
		}
		if ma := p.Spec.MinAvailable; ma != nil && ma.String() == "100%" {
			zero = true
		}
		stuck := p.Status.ExpectedPods > 0 && p.Status.DisruptionsAllowed == 0 && p.Status.CurrentHealthy >= p.Status.ExpectedPods
		if !zero && !stuck {
			continue
		}
		bad++
		why := "its spec allows no disruption"
		if !zero {
			why = fmt.Sprintf("with %d healthy of %d pods it allows no disruption", p.Status.CurrentHealthy, p.Status.ExpectedPods)
		}
		w.r.add(areaKube, "pdb", Warn, "allow at least one disruption (maxUnavailable: 1, or minAvailable below the replica count, with a replica to spare)",
			"PodDisruptionBudget %s/%s: %s; no worker running its pods can be drained, so none can be removed", p.Namespace, p.Name, why)
	}
	if bad == 0 {
		w.r.add(areaKube, "pdb", OK, "", "%d PodDisruptionBudgets, each allowing a disruption", len(list.Items))
	}
}

// workers reports the workers pve-autoscaler did not create: counted
// towards min and max, never removed.
func (w workloads) workers(selector string) []corev1.Node {
	list, err := w.cs.CoreV1().Nodes().List(w.ctx, metav1.ListOptions{})
	if err != nil {
		w.listFailed("workers", "nodes", err)
		return nil
	}
	sel, err := config.ParseWorkerSelector(selector)
	if err != nil {
		w.r.add(areaKube, "workers", Fail, "correct kubernetes.worker_selector", "kubernetes.worker_selector %v", err)
		return list.Items
	}
	var foreign []string
	managed, outside := 0, 0
	for _, n := range list.Items {
		if _, cp := n.Labels[kube.LabelControlPlane]; cp {
			continue
		}
		if n.Labels[scaler.LabelManaged] == "true" {
			managed++
			continue
		}
		if !sel.Matches(labels.Set(n.Labels)) {
			outside++
			continue
		}
		foreign = append(foreign, n.Name)
	}
	msg := fmt.Sprintf("%d workers created by pve-autoscaler", managed)
	if len(foreign) > 0 {
		shown := foreign
		if len(shown) > 5 {
			shown = append(shown[:5:5], "...")
		}
		msg += fmt.Sprintf("; %d it did not create (%s): counted towards min and max, never removed", len(foreign), strings.Join(shown, ", "))
	}
	if outside > 0 {
		msg += fmt.Sprintf("; %d outside kubernetes.worker_selector %q, not counted", outside, selector)
	}
	w.r.add(areaKube, "workers", OK, "", "%s", msg)
	return list.Items
}

// controlRef is the ConfigMap of pause and boosts the config names.
func controlRef(c *config.Config) kube.ControlRef {
	return kube.ControlRef{Namespace: c.Daemon.Control.Namespace, Name: c.Daemon.Control.Name}
}

// checkControl shows a pause (a warning: the daemon does nothing while it
// holds) and the boosts raising the minimum now.
func checkControl(ctx context.Context, r *Report, kc *kube.Client, ref kube.ControlRef, now time.Time) {
	ctl, err := kc.ReadControl(ctx, ref)
	if err != nil {
		r.add(areaKube, "pause", Fail, "kubectl apply -f deploy/rbac.yaml (the daemon reads daemon.control at every decision and decides nothing while it cannot)", "%v", err)
		return
	}
	if p := ctl.PausedAt(now); p != nil {
		r.add(areaKube, "pause", Warn, "pve-autoscaler resume --config FILE, when the manual work is done", "the autoscaler is %s", p)
	} else {
		r.add(areaKube, "pause", OK, "", "not paused (ConfigMap %s/%s)", ref.Namespace, ref.Name)
	}
	for _, b := range ctl.BoostsAt(now) {
		r.add(areaKube, "boost", OK, "", "%s", b)
	}
}
