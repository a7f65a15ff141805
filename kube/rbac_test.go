package kube

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// saConfig is a rest config authenticating as a ServiceAccount.
func saConfig(t *testing.T, env *kubetest.Env, ns, name string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	if _, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		if _, err := env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: env.APIServer, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: env.CAPEM}}
}

// TestRBAC runs the adapter with exactly deploy/rbac.yaml's permissions:
// everything it does works; without the binding it fails clearly.
func TestRBAC(t *testing.T) {
	env := kubetest.Require(t)
	kubetest.ApplyRBAC(t, env, "../deploy/rbac.yaml")
	ctx := context.Background()
	testNodes(t, env, "rbac", "rbac-a")
	env.Metrics.SetNode("rbac-a", "1", "1Gi")

	c, err := NewForConfig(saConfig(t, env, "kube-system", "pve-autoscaler"), Options{Drain: config.Drain{Timeout: config.Duration(10 * time.Second)}, EvictRetry: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		t.Fatalf("start with deploy/rbac.yaml: %v", err)
	}
	snap, err := c.Snapshot(ctx, time.Now())
	if err != nil || nodeOf(snap, "rbac-a") == nil || nodeOf(snap, "rbac-a").Usage.MilliCPU != 1000 {
		t.Fatalf("snapshot with deploy/rbac.yaml: %v", err)
	}
	if err := c.WaitReady(ctx, "rbac-a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	v := "yes"
	if err := c.Annotate(ctx, "rbac-a", map[string]*string{"pve-autoscaler.io/test": &v}, map[string]*string{"pve-autoscaler.io/step": &v}); err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{true, false} {
		if err := c.SetStandby(ctx, "rbac-a", on); err != nil {
			t.Fatalf("standby taint %v with deploy/rbac.yaml: %v", on, err)
		}
		n, err := env.Client.CoreV1().Nodes().Get(ctx, "rbac-a", metav1.GetOptions{})
		if err != nil || slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == scaler.TaintStandby }) != on {
			t.Fatalf("standby taint %v: node %v, %v", on, n.Spec.Taints, err)
		}
	}
	if err := c.Drain(ctx, "rbac-a"); err != nil {
		t.Fatalf("drain with deploy/rbac.yaml: %v", err)
	}
	msg := "removing worker rbac-a: test " + time.Now().Format(time.RFC3339Nano)
	c.Event("rbac-a", corev1.EventTypeNormal, "ScaleDown", msg)
	waitFor(t, "the Event on the node", 10*time.Second, func() bool {
		evs, err := env.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=rbac-a,reason=ScaleDown"})
		for _, e := range evs.Items {
			if err == nil && e.Message == msg && e.Source.Component == "pve-autoscaler" && e.InvolvedObject.Kind == "Node" {
				return true
			}
		}
		return false
	})
	lctx, stop := context.WithTimeout(ctx, 10*time.Second)
	led := false
	_ = RunLeader(lctx, c.Clientset(), LeaderOptions{Namespace: "kube-system", Name: "pve-autoscaler", Identity: "rbac-test",
		Lease: 2 * time.Second, Renew: time.Second, Retry: 100 * time.Millisecond}, func(context.Context) { led = true; stop() })
	stop()
	if !led {
		t.Error("leader election failed with deploy/rbac.yaml")
	}
	if err := c.DeleteNode(ctx, scaler.Node{Name: "rbac-a", VMID: 56}); err != nil {
		t.Fatalf("delete node with deploy/rbac.yaml: %v", err)
	}
	if err := c.DeleteNode(ctx, scaler.Node{Name: "rbac-a", VMID: 56}); err != nil {
		t.Errorf("deleting a node already gone: %v", err)
	}

	// Without the binding: a clear error, not a hang.
	none, err := NewForConfig(saConfig(t, env, "kube-system", "no-permissions"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = none.Start(sctx)
	var pe *PermissionError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "deploy/rbac.yaml") {
		t.Fatalf("want a PermissionError naming deploy/rbac.yaml, got %v", err)
	}
}

// TestRequiredAccessMatchesRBAC: deploy/rbac.yaml grants every permission
// RequiredAccess lists (asked as the ServiceAccount through
// SelfSubjectAccessReview, as doctor asks), and a ServiceAccount without it
// is told no.
func TestRequiredAccessMatchesRBAC(t *testing.T) {
	env := kubetest.Require(t)
	kubetest.ApplyRBAC(t, env, "../deploy/rbac.yaml")
	ctx := context.Background()
	c, err := NewForConfig(saConfig(t, env, "kube-system", "pve-autoscaler"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	none, err := NewForConfig(saConfig(t, env, "kube-system", "no-permissions"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	need := RequiredAccess("kube-system", "pve-autoscaler", ControlRef{Namespace: "kube-system", Name: "pve-autoscaler-control"})
	if len(need) < 15 {
		t.Fatalf("only %d permissions listed", len(need))
	}
	for _, a := range need {
		if ok, err := c.CanI(ctx, a); err != nil || !ok {
			t.Errorf("deploy/rbac.yaml does not grant %s (%s): %v", a, a.Why, err)
		}
		if ok, err := none.CanI(ctx, a); err != nil || ok != a.Everyone {
			t.Errorf("a ServiceAccount without the binding may %s: %v, want %v (everyone's by default: %v)", a, ok, err, a.Everyone)
		}
	}
	// Only its own ConfigMap: not another's (coredns's, a secret-ish one).
	for _, verb := range []string{"get", "update", "delete"} {
		other := Access{Resource: "configmaps", Verb: verb, Namespace: "kube-system", Name: "coredns"}
		if ok, err := c.CanI(ctx, other); err != nil || ok {
			t.Errorf("deploy/rbac.yaml lets the daemon %s: %v", other, err)
		}
	}
	// Only its own Lease: not another leader's.
	for _, verb := range []string{"get", "update"} {
		other := Access{Group: "coordination.k8s.io", Resource: "leases", Verb: verb, Namespace: "kube-system", Name: "kube-controller-manager"}
		if ok, err := c.CanI(ctx, other); err != nil || ok {
			t.Errorf("deploy/rbac.yaml lets the daemon %s: %v", other, err)
		}
	}
	if v, err := c.ServerVersion(); err != nil || v == "" {
		t.Errorf("server version %q %v", v, err)
	}

	// And rbac.yaml grants nothing RequiredAccess does not list.
	listed := map[string]bool{}
	for _, a := range need {
		r := a.Resource
		if a.Subresource != "" {
			r += "/" + a.Subresource
		}
		listed[a.Group+" "+r+" "+a.Verb+" "+a.Name] = true
	}
	for _, r := range kubetest.RBACRules(t, "../deploy/rbac.yaml") {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						if !listed[g+" "+res+" "+v+" "+n] {
							t.Errorf("deploy/rbac.yaml grants %s %s.%s %s, which RequiredAccess does not list", v, res, g, n)
						}
					}
				}
			}
		}
	}
}

// An API server that does not answer is not a permissions problem: the
// error says what failed and does not send the reader to deploy/rbac.yaml.
func TestStartUnreachableIsNotAPermissionError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	c, err := NewForConfig(&rest.Config{Host: "http://" + addr}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Start(ctx)
	var pe *PermissionError
	if err == nil || errors.As(err, &pe) || strings.Contains(err.Error(), "rbac") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want the connection refused, not a permissions problem: %v", err)
	}
}
