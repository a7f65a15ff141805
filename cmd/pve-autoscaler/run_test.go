package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
)

func TestMain(m *testing.M) {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(kubetest.Main(m, kubetest.Options{}))
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestRunDryRunThenSIGTERM runs the real daemon, exactly as `run` does,
// against the simulated world in dry-run: it plans (two workers below the
// minimum) and changes nothing anywhere; its HTTP endpoints answer; SIGTERM
// stops it with exit 0.
func TestRunDryRunThenSIGTERM(t *testing.T) {
	env, w := newWorld(t)
	cfg := w.Config()
	cfg.Policy.Interval = config.Duration(time.Second)
	// A free port: validate refuses port 0.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Daemon.Listen = l.Addr().String()
	l.Close()
	// Leader election writes a Lease: a dry run takes no part in it.
	cfg.Daemon.LeaderElection = config.LeaderElection{Enabled: true, Namespace: "kube-system", LeaseName: "dry-run-" + strings.ToLower(rand.Text()[:8])}
	path := writeConfigFile(t, t.TempDir(), cfg)
	stderr := &lockedBuf{}
	done := make(chan int, 1)
	go func() {
		done <- Main([]string{"run", "--config", path, "--dry-run", "--log-format", "json"}, io.Discard, stderr)
	}()

	addrRE := regexp.MustCompile(`"msg":"serving /healthz /readyz /metrics /status","address":"([^"]+)"`)
	var addr string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil && strings.Contains(stderr.String(), `"msg":"decision"`) {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("run ended with %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tick:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The start line's interval carries its unit.
	if !regexp.MustCompile(`"msg":"starting".*"interval":"1s"`).MatchString(stderr.String()) {
		t.Errorf("start line without the interval and its unit:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"action":"add","count":2`) || !strings.Contains(stderr.String(), "below the minimum of 2") {
		t.Errorf("decision not logged with its reasons:\n%s", stderr.String())
	}
	if code, body := get(t, "http://"+addr+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz %d %q", code, body)
	}
	if code, _ := get(t, "http://"+addr+"/readyz"); code != 200 {
		t.Errorf("/readyz %d", code)
	}
	if code, body := get(t, "http://"+addr+"/metrics"); code != 200 || !strings.Contains(body, "pve_autoscaler_last_decision_timestamp_seconds") || !strings.Contains(body, `pve_autoscaler_workers{state="ready"} 0`) {
		t.Errorf("/metrics %d:\n%s", code, body)
	}
	if code, body := get(t, "http://"+addr+"/status"); code != 200 || !strings.Contains(body, `"dry_run": true`) || !strings.Contains(body, `"below_min"`) || !strings.Contains(body, `"leader": false`) {
		t.Errorf("/status %d:\n%s", code, body)
	}
	code, out, errOut := runMain("status", "--address", addr)
	if code != exitOK || !strings.Contains(out, "dry run (plans only, changes nothing, takes no part in leader election)") || !strings.Contains(out, "Last plan: 0 workers, 2 desired") {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d after SIGTERM:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop on SIGTERM")
	}
	if strings.Contains(stderr.String(), w.TokenSecret()) || strings.Contains(stderr.String(), "BEGIN") {
		t.Error("a secret reached the log")
	}
	if !strings.Contains(stderr.String(), "everything left is resumable") {
		t.Errorf("no clean stop:\n%s", stderr.String())
	}
	applies, resets := w.Counts()
	if n := w.Sim.Writes(); n != 0 || applies != 0 || resets != 0 {
		t.Errorf("dry-run changed things: %d PVE writes, %d Talos applies, %d resets", n, applies, resets)
	}
	le := cfg.Daemon.LeaderElection
	if _, err := env.Client.CoordinationV1().Leases(le.Namespace).Get(context.Background(), le.LeaseName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run wrote the Lease %s/%s (err %v)", le.Namespace, le.LeaseName, err)
	}
}

// TestPlanLive gathers a live snapshot from the simulated world.
func TestPlanLive(t *testing.T) {
	_, w := newWorld(t)
	path := writeConfigFile(t, t.TempDir(), w.Config())
	code, out, errOut := runMain("plan", "--config", path)
	if code != exitOK || !strings.Contains(out, "+ add 2 workers") || !strings.Contains(out, "below the minimum of 2") {
		t.Fatalf("live plan: exit %d\n%s%s", code, out, errOut)
	}
	if w.Sim.Writes() != 0 {
		t.Errorf("plan wrote to PVE")
	}
}

// TestPlanWithExactlyTheRBACOfDeploy: `plan` run as deploy/rbac.yaml's
// ServiceAccount plans as it does with the admin's kubeconfig, and the
// apiserver's audit log shows it was refused nothing.
func TestPlanWithExactlyTheRBACOfDeploy(t *testing.T) {
	env, w := newWorld(t)
	kubetest.ApplyRBAC(t, env, "../../deploy/rbac.yaml")
	kc, user := kubetest.ServiceAccountKubeconfig(t, env, "kube-system", "pve-autoscaler")
	c := w.Config()
	c.Kubernetes.Kubeconfig = kc
	c.Daemon.Control.Name = "pve-autoscaler-control" // deploy/rbac.yaml's resourceNames
	path := writeConfigFile(t, t.TempDir(), c)
	begin := time.Now().Add(-time.Second)
	code, out, errOut := runMain("plan", "--config", path)
	if code != exitOK || !strings.Contains(out, "+ add 2 workers") || !strings.Contains(out, "below the minimum of 2") {
		t.Fatalf("plan as the ServiceAccount: exit %d\n%s%s", code, out, errOut)
	}
	reqs, err := env.AuditRequests(user, begin)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) == 0 {
		t.Fatalf("no request as %s in the audit log", user)
	}
	for _, q := range reqs {
		if q.Code == 403 {
			t.Errorf("refused: %s %s/%s %s/%s", q.Verb, q.Group, q.Resource, q.Namespace, q.Name)
		}
	}
}
