package kubetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// auditPolicy logs the metadata of every request a ServiceAccount makes,
// once its response is known (a watch: once it started), and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
`

// AuditRequest is one request of the audit log: who asked what, and the
// answer's status code.
type AuditRequest struct {
	ID        string
	User      string
	Verb      string // get, list, watch, create, update, patch, delete, ...
	Group     string // "" for the core group
	Resource  string
	Sub       string // a subresource (eviction, status), or ""
	Namespace string
	Name      string
	Code      int
	At        time.Time
}

// auditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type auditEvent struct {
	AuditID string `json:"auditID"`
	Stage   string `json:"stage"`
	Verb    string `json:"verb"`
	User    struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		APIGroup    string `json:"apiGroup"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestReceived metav1.MicroTime `json:"requestReceivedTimestamp"`
}

// AuditRequests returns the resource requests user made since the given
// time, one per request (a watch's later stages folded into its first).
func (e *Env) AuditRequests(user string, since time.Time) ([]AuditRequest, error) {
	f, err := os.Open(e.AuditLog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditRequest
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", e.AuditLog, line, err)
		}
		if ev.User.Username != user || ev.ObjectRef == nil || ev.RequestReceived.Time.Before(since) || seen[ev.AuditID] {
			continue
		}
		seen[ev.AuditID] = true
		r := AuditRequest{ID: ev.AuditID, User: user, Verb: ev.Verb, Group: ev.ObjectRef.APIGroup, Resource: ev.ObjectRef.Resource,
			Sub: ev.ObjectRef.Subresource, Namespace: ev.ObjectRef.Namespace, Name: ev.ObjectRef.Name, At: ev.RequestReceived.Time}
		if ev.ResponseStatus != nil {
			r.Code = ev.ResponseStatus.Code
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// ServiceAccountKubeconfig creates the ServiceAccount ns/name if it is
// missing and writes a kubeconfig with a token of it into the test's
// temporary folder. It returns the kubeconfig's path and the
// ServiceAccount's user name.
func ServiceAccountKubeconfig(t testing.TB, e *Env, ns, name string) (path, user string) {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if _, err := e.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr, err := e.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := WriteKubeconfig(path, e.APIServer, e.CAPEM, tr.Status.Token); err != nil {
		t.Fatal(err)
	}
	return path, "system:serviceaccount:" + ns + ":" + name
}
