package daemon

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// grants reads an RBAC manifest's rules as "verb group/resource" strings
// (the core group is ""), with the resource names a rule is limited to
// after a '#' ("get coordination.k8s.io/leases#pve-autoscaler").
func grants(t *testing.T, path string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, r := range kubetest.RBACRules(t, path) {
		names := []string{""}
		if len(r.ResourceNames) > 0 {
			names = nil
			for _, n := range r.ResourceNames {
				names = append(names, "#"+n)
			}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out[v+" "+g+"/"+res+n] = true
					}
				}
			}
		}
	}
	return out
}

// TestExactlyTheRBACOfDeploy runs the daemon as deploy/rbac.yaml's
// ServiceAccount through a whole cycle (leader election on a fresh Lease,
// a scale-up for pending pods, a pod no worker can run, a scale-down whose
// drain evicts a pod under a PodDisruptionBudget and leaves a DaemonSet's
// pod) and reads the apiserver's audit log: no request was refused, and
// every grant of the manifest was used. A grant nothing uses is a grant too
// many; a refusal is a grant missing.
func TestExactlyTheRBACOfDeploy(t *testing.T) {
	w := newWorld(t)
	env := w.Kube
	ctx := context.Background()
	kubetest.ApplyRBAC(t, env, "../deploy/rbac.yaml")
	// The Lease is made afresh, so that its create is seen.
	if err := env.Client.CoordinationV1().Leases("kube-system").Delete(ctx, "pve-autoscaler", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	kubeconfig, user := kubetest.ServiceAccountKubeconfig(t, env, "kube-system", "pve-autoscaler")
	begin := time.Now().Add(-time.Second)

	ns := env.Namespace(t)
	cs := env.Client
	cfg := testConfig(w, 1, 2)
	cfg.Kubernetes.Kubeconfig = kubeconfig
	cfg.Policy.Interval = config.Duration(500 * time.Millisecond)
	cfg.Daemon.LeaderElection = config.LeaderElection{Enabled: true, Namespace: "kube-system", LeaseName: "pve-autoscaler"}
	// The control ConfigMap of deploy/rbac.yaml's resourceNames, made afresh
	// so that its create is seen.
	cfg.Daemon.Control = config.Control{Namespace: "kube-system", Name: "pve-autoscaler-control"}
	if err := env.Client.CoreV1().ConfigMaps("kube-system").Delete(ctx, cfg.Daemon.Control.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	// Two pods of 60% of a worker's CPU each need two workers.
	big := corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(int64(cfg.Proxmox.VM.Cores)*600, resource.DecimalSI)}
	small := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}
	deployment := func(name, app string, replicas int32, req corev1.ResourceList) *appsv1.Deployment {
		labels := map[string]string{"app": app, "deployment": name}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{scaler.LabelManaged: "true"},
				Containers:   []corev1.Container{{Name: "c", Image: "registry.example/c:1", Resources: corev1.ResourceRequirements{Requests: req}}}}}}}
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment("big", "big", 2, big), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := intstr.FromInt32(1)
	if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guard", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guard"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dsLabels := map[string]string{"app": "agent"}
	if _, err := cs.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: dsLabels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dsLabels}, Spec: corev1.PodSpec{
			NodeSelector: map[string]string{scaler.LabelManaged: "true"},
			Containers:   []corev1.Container{{Name: "a", Image: "registry.example/a:1"}}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nowhere", Namespace: ns}, Spec: corev1.PodSpec{
		NodeSelector: map[string]string{"gpu.example/kind": "igpu"},
		Containers:   []corev1.Container{{Name: "c", Image: "registry.example/c:1"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d, err := Build(rctx, cfg, Options{TalosPort: w.TalosPort, Poll: 5 * time.Millisecond, ConfirmAbsence: 2 * time.Second, PodEventEvery: time.Second, Log: failureLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx, NewServer(d.Reconciler, NewMetrics(), time.Second)) }()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				st := d.Reconciler.Status()
				t.Fatalf("timed out waiting for %s; ops %+v, error %q", what, st.Operations, st.LastError)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait("two workers and the big pods running", func() bool {
		v, n := joined(t, w)
		return v == 2 && n == 2 && running(t, w, ns, "app=big") == 2
	})
	// A guard pod on each worker, under one PodDisruptionBudget: the drain
	// evicts one. Made once both workers are Ready, with a preferred
	// anti-affinity, the scheduler puts them apart; the evicted one's
	// replacement may go beside the other.
	guard := deployment("guard", "guard", 2, small)
	guard.Spec.Template.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guard"}}, TopologyKey: corev1.LabelHostname}}}}}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, guard, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("a guard pod on each worker", func() bool {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=guard"})
		on := map[string]bool{}
		for _, p := range pods.Items {
			if err == nil && p.Status.Phase == corev1.PodRunning {
				on[p.Spec.NodeName] = true
			}
		}
		return len(on) == 2
	})
	// The load goes: one worker is drained (the guard pod on it evicted,
	// the agent's left) and removed.
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "big", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("one worker and its Node left", func() bool {
		v, n := joined(t, w)
		return v == 1 && n == 1 && ours(w) == 1 && len(nodeNames(t, w)) == 1
	})
	// Told again a second later: the event recorder counts the repeat on
	// the first event, with a patch.
	wait("the pod nobody can run told so twice", func() bool {
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=nowhere,reason=NotTriggerScaleUp"})
		return err == nil && len(evs.Items) == 1 && evs.Items[0].Count >= 2
	})
	// pause, boost and resume with the daemon's credentials, as the CLI
	// does: the pause (a create, and who set it) is seen by the daemon
	// (get); a boost that has ended is recorded beside it (update); both
	// gone, the ConfigMap goes (delete).
	sa, err := kube.New(kube.Options{Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	ref := ControlRef(cfg)
	who := sa.Who(ctx)
	if !strings.HasPrefix(who, user+"@") {
		t.Errorf("pause set by %q, want %s@host", who, user)
	}
	if _, err := sa.UpdateControl(ctx, ref, func(c *scaler.Control) { c.Pause = &scaler.Pause{By: who, Since: time.Now()} }); err != nil {
		t.Fatal(err)
	}
	wait("the daemon paused", func() bool { p := d.Reconciler.Status().Plan; return p != nil && p.Paused != nil })
	if _, err := sa.UpdateControl(ctx, ref, func(c *scaler.Control) {
		kube.SetBoost(c, scaler.Boost{Workers: 2, By: who, Since: time.Now().Add(-2 * time.Hour), Until: time.Now().Add(-time.Hour)})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.UpdateControl(ctx, ref, func(c *scaler.Control) { *c = scaler.Control{} }); err != nil {
		t.Fatal(err)
	}
	wait("the daemon resumed", func() bool { p := d.Reconciler.Status().Plan; return p != nil && p.Paused == nil })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("daemon: %v", err)
	}

	reqs, err := env.AuditRequests(user, begin)
	if err != nil {
		t.Fatal(err)
	}
	granted := grants(t, "../deploy/rbac.yaml")
	used := map[string]int{}
	for _, r := range reqs {
		res := r.Resource
		if r.Sub != "" {
			res += "/" + r.Sub
		}
		key := r.Verb + " " + r.Group + "/" + res
		if r.Code == 403 {
			t.Errorf("refused: %s %s/%s (%s)", key, r.Namespace, r.Name, r.ID)
		}
		switch {
		case granted[key]:
			used[key]++
		case r.Name != "" && granted[key+"#"+r.Name]:
			used[key+"#"+r.Name]++
		default:
			// Refused above; a request with no grant that was not refused
			// would mean the manifest's reading here is wrong.
			if r.Code != 403 {
				t.Errorf("allowed without a grant in deploy/rbac.yaml: %s %s/%s", key, r.Namespace, r.Name)
			}
		}
	}
	var unused []string
	for g := range granted {
		if used[g] == 0 {
			unused = append(unused, g)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("granted by deploy/rbac.yaml and never used in a whole cycle: %s", strings.Join(unused, ", "))
	}
	var seen []string
	for k, n := range used {
		seen = append(seen, fmt.Sprintf("%s ×%d", k, n))
	}
	slices.Sort(seen)
	t.Logf("%d requests as %s: %s", len(reqs), user, strings.Join(seen, "; "))
}

// running counts the pods matching selector that run.
func running(t *testing.T, w *world.World, ns, selector string) int {
	t.Helper()
	pods, err := w.Kube.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			n++
		}
	}
	return n
}
