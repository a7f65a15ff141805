// Package kubetest runs a real Kubernetes control plane on loopback for a
// test package: etcd, kube-apiserver, kube-scheduler and
// kube-controller-manager, kwok's fake kubelets, and a fake metrics.k8s.io
// API whose usage figures the test sets. The binaries come from
// hack/kube-testbed.sh (make kube-testbed).
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
)

// Versions the test bed builds (hack/kube-testbed.sh).
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.7.0"
	KwokVersion = "v0.8.0"
)

// KwokAnnotation marks nodes kwok runs.
const KwokAnnotation = "kwok.x-k8s.io/node"

var binaries = []string{"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok", "kwok-stages.yaml"}

// BinDir is where the test bed's binaries are: $KUBE_TESTBED_DIR, or the
// versioned cache folder the script uses.
func BinDir() string {
	if d := os.Getenv("KUBE_TESTBED_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "pve-autoscaler", fmt.Sprintf("kube-%s-etcd-%s-kwok-%s", KubeVersion, EtcdVersion, KwokVersion))
}

// Missing names the binaries not built yet, or is empty.
func Missing() []string {
	var out []string
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(BinDir(), "."+b+".complete")); err != nil {
			out = append(out, b)
		}
	}
	return out
}

// Env is a running control plane.
type Env struct {
	Dir        string
	Kubeconfig string // system:masters
	Rest       *rest.Config
	Client     kubernetes.Interface
	Metrics    *Metrics
	CAPEM      []byte
	APIServer  string // https://127.0.0.1:PORT
	// AuditLog is the apiserver's audit log of ServiceAccounts' requests
	// (JSON lines; AuditRequests reads it).
	AuditLog string

	procs []*proc
	logs  *os.File
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// Options tunes the environment.
type Options struct {
	// NoMetrics leaves the metrics.k8s.io APIService out (the Metrics API missing).
	NoMetrics bool
}

var (
	shared    *Env
	sharedErr error
	once      sync.Once
)

// Main is for TestMain: it starts one control plane for the package (if
// the binaries exist), runs the tests and stops it in order.
func Main(m *testing.M, opts Options) int {
	if len(Missing()) == 0 {
		once.Do(func() {
			// Ports are found free, then bound by the processes a moment
			// later: the control plane of a test package running alongside
			// may take one in between. A failed start cleans up; try again.
			for range 3 {
				if shared, sharedErr = Start(opts); sharedErr == nil {
					break
				}
			}
		})
	}
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
}

// Require returns the package's environment, skipping the test when the
// binaries are missing (failing instead when CI=true, so CI never passes by
// skipping).
func Require(t testing.TB) *Env {
	t.Helper()
	if miss := Missing(); len(miss) > 0 {
		msg := fmt.Sprintf("Kubernetes test bed not built (missing %s in %s): run make kube-testbed", strings.Join(miss, ", "), BinDir())
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if sharedErr != nil {
		t.Fatalf("control plane: %v", sharedErr)
	}
	if shared == nil {
		t.Fatal("kubetest.Main was not called from TestMain")
	}
	return shared
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// AdminToken authenticates the harness as system:masters.
const AdminToken = "kubetest-admin-token"

// Start runs the whole control plane; Stop ends it.
func Start(opts Options) (*Env, error) {
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir}
	ok := false
	defer func() {
		if !ok {
			e.Stop()
		}
	}()
	if e.logs, err = os.Create(filepath.Join(dir, "control-plane.log")); err != nil {
		return nil, err
	}
	bin := BinDir()

	// PKI: a CA for serving and clients, a front-proxy CA for aggregation.
	root, err := newCA("kubetest-ca")
	if err != nil {
		return nil, err
	}
	e.CAPEM = root.pem
	front, err := newCA("kubetest-front-proxy-ca")
	if err != nil {
		return nil, err
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err == nil {
			err = os.WriteFile(p, data, 0o600)
		}
		return p
	}
	srvCrt, srvKey, ierr := root.issue("kube-apiserver", nil, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}, []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}, true)
	if ierr != nil {
		return nil, ierr
	}
	fpCrt, fpKey, ierr := front.issue("front-proxy-client", nil, nil, nil, false)
	if ierr != nil {
		return nil, ierr
	}
	caFile := write("ca.crt", root.pem)
	frontCA := write("front-proxy-ca.crt", front.pem)
	srvCrtF, srvKeyF := write("apiserver.crt", srvCrt), write("apiserver.key", srvKey)
	fpCrtF, fpKeyF := write("front-proxy-client.crt", fpCrt), write("front-proxy-client.key", fpKey)
	tokens := write("tokens.csv", []byte(AdminToken+",kubetest-admin,kubetest-admin,\"system:masters\"\n"))
	if err != nil {
		return nil, err
	}
	// The audit log records ServiceAccounts' requests only (the tests'
	// admin is left out): what a ServiceAccount did, and what it was refused.
	audit := write("audit-policy.yaml", []byte(auditPolicy))
	e.AuditLog = filepath.Join(dir, "audit.log")
	saPub, saKey, err := serviceAccountKeys(dir)
	if err != nil {
		return nil, err
	}

	etcdPort, _ := freePort()
	peerPort, _ := freePort()
	apiPort, _ := freePort()
	kwokPort, _ := freePort()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	if err := e.run("etcd", filepath.Join(bin, "etcd"), "--name=kubetest", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL, "--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL, "--initial-cluster=kubetest="+peerURL, "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return nil, err
	}
	e.APIServer = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := e.run("kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--endpoint-reconciler-type=none", "--tls-cert-file="+srvCrtF, "--tls-private-key-file="+srvKeyF, "--client-ca-file="+caFile,
		"--token-auth-file="+tokens, "--authorization-mode=RBAC", "--service-cluster-ip-range=10.96.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--disable-admission-plugins=ServiceAccount", "--requestheader-client-ca-file="+frontCA, "--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+fpCrtF, "--proxy-client-key-file="+fpKeyF, "--enable-priority-and-fairness=false", "--profiling=false",
		"--audit-policy-file="+audit, "--audit-log-path="+e.AuditLog, "--audit-log-format=json", "--audit-log-mode=blocking",
		"--v=0"); err != nil {
		return nil, err
	}
	e.Rest = &rest.Config{Host: e.APIServer, BearerToken: AdminToken, TLSClientConfig: rest.TLSClientConfig{CAData: root.pem}, QPS: 100, Burst: 200}
	if e.Client, err = kubernetes.NewForConfig(e.Rest); err != nil {
		return nil, err
	}
	if err := e.waitHealthy(60 * time.Second); err != nil {
		return nil, err
	}
	e.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := WriteKubeconfig(e.Kubeconfig, e.APIServer, root.pem, AdminToken); err != nil {
		return nil, err
	}
	if err := e.run("kube-controller-manager", filepath.Join(bin, "kube-controller-manager"), "--kubeconfig="+e.Kubeconfig,
		"--controllers=deployment-controller,replicaset-controller,daemonset-controller,disruption-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,node-lifecycle-controller,pod-garbage-collector-controller",
		"--secure-port=0", "--leader-elect=false", "--use-service-account-credentials=false", "--v=0"); err != nil {
		return nil, err
	}
	if err := e.run("kube-scheduler", filepath.Join(bin, "kube-scheduler"), "--kubeconfig="+e.Kubeconfig, "--secure-port=0", "--leader-elect=false", "--v=0"); err != nil {
		return nil, err
	}
	if err := e.run("kwok", filepath.Join(bin, "kwok"), "--kubeconfig="+e.Kubeconfig, "--config="+filepath.Join(bin, "kwok-stages.yaml"),
		"--manage-nodes-with-annotation-selector="+KwokAnnotation+"=fake", "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40",
		"--server-address=127.0.0.1:"+strconv.Itoa(kwokPort)); err != nil {
		return nil, err
	}
	if !opts.NoMetrics {
		if e.Metrics, err = startMetrics(); err != nil {
			return nil, err
		}
		if err := e.registerMetrics(); err != nil {
			return nil, err
		}
	}
	ok = true
	return e, nil
}

func (e *Env) run(name, path string, args ...string) error {
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	e.procs = append(e.procs, p)
	return nil
}

func (e *Env) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		body, err := e.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		last = err
		for _, p := range e.procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited during start-up (log: %s)", p.name, e.logs.Name())
			default:
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %s: %v (log: %s)", timeout, last, e.logs.Name())
}

// Stop ends the processes, the apiserver before etcd (in the other order
// the apiserver hangs in shutdown), SIGKILL after 10 s.
func (e *Env) Stop() {
	if e.Metrics != nil {
		e.Metrics.Close()
	}
	order := []string{"kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"}
	for _, name := range order {
		for _, p := range e.procs {
			if p.name != name {
				continue
			}
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	}
	if e.logs != nil {
		_ = e.logs.Close()
	}
	if os.Getenv("KUBETEST_KEEP") == "" {
		_ = os.RemoveAll(e.Dir)
	}
}

// WriteKubeconfig writes a kubeconfig for a bearer token.
func WriteKubeconfig(path, server string, caPEM []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "user"}
	cfg.CurrentContext = "kubetest"
	return clientcmd.WriteToFile(*cfg, path)
}

// registerMetrics points the APIService v1beta1.metrics.k8s.io at the fake
// metrics server through an ExternalName Service (Endpoints cannot hold
// loopback addresses).
func (e *Env) registerMetrics() error {
	ctx := context.Background()
	port := e.Metrics.Port()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubetest-metrics", Namespace: "kube-system"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Name: "https", Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}}},
	}
	if _, err := e.Client.CoreV1().Services("kube-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("metrics service: %w", err)
	}
	agg, err := aggregator.NewForConfig(e.Rest)
	if err != nil {
		return err
	}
	p := int32(port)
	as := &apiregv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: "v1beta1.metrics.k8s.io"},
		Spec: apiregv1.APIServiceSpec{
			Service: &apiregv1.ServiceReference{Namespace: "kube-system", Name: "kubetest-metrics", Port: &p},
			Group:   "metrics.k8s.io", Version: "v1beta1", InsecureSkipTLSVerify: true, GroupPriorityMinimum: 100, VersionPriority: 100,
		},
	}
	if _, err := agg.ApiregistrationV1().APIServices().Create(ctx, as, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("metrics APIService: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got, err := agg.ApiregistrationV1().APIServices().Get(ctx, as.Name, metav1.GetOptions{})
		if err == nil {
			for _, c := range got.Status.Conditions {
				if c.Type == apiregv1.Available && c.Status == apiregv1.ConditionTrue {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("metrics APIService did not become Available within 30s")
}

// NodeSpec describes a kwok node to create.
type NodeSpec struct {
	Name        string
	CPU         string // "4"
	Memory      string // "8Gi"
	Labels      map[string]string
	Annotations map[string]string
	Taints      []corev1.Taint
	// SystemUUID is the status.nodeInfo.systemUUID the kubelet would
	// report: the machine's SMBIOS UUID. kwok's node stage keeps it.
	SystemUUID string
	// Extended are the extended resources a device plugin would
	// advertise ("gpu.intel.com/i915": "1").
	Extended map[string]string
}

// CreateNode registers a node kwok runs (it becomes Ready within a second),
// labelled as a kubelet labels its Node (hostname, os, arch) besides
// n.Labels: the scheduler's topology rules (anti-affinity on
// kubernetes.io/hostname) need them.
func (e *Env) CreateNode(ctx context.Context, n NodeSpec) error {
	ann := map[string]string{KwokAnnotation: "fake"}
	for k, v := range n.Annotations {
		ann[k] = v
	}
	labels := map[string]string{corev1.LabelHostname: n.Name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"}
	for k, v := range n.Labels {
		labels[k] = v
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(n.CPU), corev1.ResourceMemory: resource.MustParse(n.Memory),
		corev1.ResourcePods: resource.MustParse("110"),
	}
	for k, v := range n.Extended {
		res[corev1.ResourceName(k)] = resource.MustParse(v)
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels, Annotations: ann},
		Spec:       corev1.NodeSpec{Taints: n.Taints},
		Status: corev1.NodeStatus{Capacity: res, Allocatable: res,
			NodeInfo: corev1.NodeSystemInfo{SystemUUID: n.SystemUUID}},
	}
	_, err := e.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	return err
}

// Namespace creates a namespace for one test and deletes it afterwards.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + "-" + strconv.FormatInt(time.Now().UnixNano()%100000, 10)
	ctx := context.Background()
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		// Pending pods left behind would make the next test's daemon scale
		// up: wait until none is left (the namespace controller deletes
		// unscheduled pods at once; bound the wait all the same).
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			pods, err := e.Client.CoreV1().Pods(name).List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName="})
			if err != nil || len(pods.Items) == 0 {
				return
			}
		}
	})
	return name
}

// RBACRules are the rules of every ClusterRole and Role in an RBAC
// manifest (deploy/rbac.yaml).
func RBACRules(t testing.TB, path string) []rbacv1.PolicyRule {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rules []rbacv1.PolicyRule
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			rules = append(rules, o.Rules...)
		case *rbacv1.Role:
			rules = append(rules, o.Rules...)
		}
	}
	return rules
}

// ApplyRBAC creates every object of an RBAC manifest (deploy/rbac.yaml:
// a ServiceAccount, ClusterRoles, Roles and their bindings); objects that
// exist already are left as they are.
func ApplyRBAC(t testing.TB, e *Env, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = e.Client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = e.Client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = e.Client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = e.Client.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = e.Client.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("%s: unexpected %T", path, obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}
