package kube

import (
	"context"
	"fmt"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Access is one permission the daemon uses.
type Access struct {
	Group, Resource, Subresource, Verb string
	// Namespace is empty for cluster-wide access.
	Namespace string
	// Name limits the access to one object (RBAC's resourceNames).
	Name string
	// Why is the step that uses it.
	Why string
	// Everyone: every authenticated user has it by default
	// (system:basic-user); listed because the manifest names every call.
	Everyone bool
}

func (a Access) String() string {
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Group != "" {
		r += "." + a.Group
	}
	if a.Name != "" {
		r += " " + a.Name
	}
	if a.Namespace != "" {
		return fmt.Sprintf("%s %s in %s", a.Verb, r, a.Namespace)
	}
	return a.Verb + " " + r
}

// RequiredAccess lists what the daemon (and pause, resume and boost with
// its credentials) does with the Kubernetes API; deploy/rbac.yaml grants
// exactly this (a test keeps the two in step). leaseNamespace is empty
// when leader election is off; the Lease is read and renewed by its name,
// leaseName. The control ConfigMap is read, updated and deleted by its
// name; created under any (a create names no object RBAC can check).
func RequiredAccess(leaseNamespace, leaseName string, control ControlRef) []Access {
	var out []Access
	add := func(group, resource, sub, why string, verbs ...string) {
		for _, v := range verbs {
			out = append(out, Access{Group: group, Resource: resource, Subresource: sub, Verb: v, Why: why})
		}
	}
	add("", "nodes", "", "snapshot, join wait, cordon, labels, standby taint, removal", "get", "list", "watch", "patch", "delete")
	add("", "pods", "", "snapshot and drain", "get", "list", "watch")
	add("", "pods", "eviction", "drain through the Eviction API", "create")
	add("apps", "daemonsets", "", "drain leaves DaemonSet pods", "get")
	add("policy", "poddisruptionbudgets", "", "snapshot (removal candidates)", "list", "watch")
	add("", "persistentvolumeclaims", "", "snapshot (the volumes pending pods are bound to)", "list", "watch")
	add("", "persistentvolumes", "", "snapshot (the node affinity of pending pods' volumes)", "list", "watch")
	add("", "events", "", "events on nodes and pending pods", "create", "patch")
	add("metrics.k8s.io", "nodes", "", "usage from metrics-server", "list")
	if leaseNamespace != "" {
		for _, v := range []string{"get", "update"} {
			out = append(out, Access{Group: "coordination.k8s.io", Resource: "leases", Verb: v, Namespace: leaseNamespace, Name: leaseName, Why: "leader election"})
		}
		out = append(out, Access{Group: "coordination.k8s.io", Resource: "leases", Verb: "create", Namespace: leaseNamespace, Why: "leader election (the first start)"})
	}
	if control.Name != "" {
		for _, v := range []string{"get", "update", "delete"} {
			out = append(out, Access{Resource: "configmaps", Verb: v, Namespace: control.Namespace, Name: control.Name, Why: "pause and boosts (daemon.control)"})
		}
		out = append(out, Access{Resource: "configmaps", Verb: "create", Namespace: control.Namespace, Why: "pause and boost (the first one)"})
		out = append(out, Access{Group: "authentication.k8s.io", Resource: "selfsubjectreviews", Verb: "create", Why: "pause and boost record who set them", Everyone: true})
	}
	return out
}

// CanI asks the API server whether these credentials have a permission
// (SelfSubjectAccessReview).
func (c *Client) CanI(ctx context.Context, a Access) (bool, error) {
	r, err := c.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: a.Group, Resource: a.Resource, Subresource: a.Subresource, Verb: a.Verb, Namespace: a.Namespace, Name: a.Name,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return r.Status.Allowed, nil
}

// ServerVersion is the API server's version ("v1.37.2"): it proves the
// API reachable with these credentials.
func (c *Client) ServerVersion() (string, error) {
	v, err := c.cs.Discovery().ServerVersion()
	if err != nil {
		return "", err
	}
	return v.GitVersion, nil
}

// NodeMetrics reads node usage from metrics.k8s.io once, as a snapshot
// does (figures too old are an error), and counts the nodes (for doctor).
func (c *Client) NodeMetrics(ctx context.Context) (int, error) {
	usage, err := c.nodeUsage(ctx, time.Now())
	return len(usage), err
}
