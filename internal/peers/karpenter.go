package peers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
)

// KarpenterVersion is the pinned sigs.k8s.io/karpenter module
// (hack/karpenter-kwok.sh builds it).
const KarpenterVersion = "v1.13.0"

// KarpenterDir is where hack/karpenter-kwok.sh puts the binary and CRDs:
// $KARPENTER_DIR or the versioned folder beside the Kubernetes test bed.
func KarpenterDir() string {
	if d := os.Getenv("KARPENTER_DIR"); d != "" {
		return d
	}
	return filepath.Join(filepath.Dir(kubetest.BinDir()), "karpenter-kwok-"+KarpenterVersion)
}

var (
	gvrCRD       = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	gvrNodePool  = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}
	gvrNodeClaim = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}
	gvrNodeClass = schema.GroupVersionResource{Group: "karpenter.kwok.sh", Version: "v1alpha1", Resource: "kwoknodeclasses"}
)

// Instance type: the only one the NodePool may use. kwok's provider takes
// a fixed kube-reserved (100m CPU, 10Mi) off an instance type's capacity;
// the capacity here is ours plus that, so its Nodes' allocatable is our
// worker's (4 cores, 8 GiB) and both sides pack the same room.
const (
	instanceType   = "pve-4c-8g"
	instanceCPU    = "4100m"
	instanceMemory = "8202Mi"
)

// karpenter is the running kwok provider.
type karpenter struct {
	cmd  *exec.Cmd
	done chan struct{}
	dyn  dynamic.Interface
	log  string
}

func instanceTypesJSON() []byte {
	req := func(k, v string) map[string]any {
		return map[string]any{"key": k, "operator": "In", "values": []string{v}}
	}
	types := []map[string]any{{
		"name":             instanceType,
		"architecture":     "amd64",
		"operatingSystems": []string{"linux"},
		"resources":        map[string]string{"cpu": instanceCPU, "memory": instanceMemory, "pods": "110"},
		"offerings": []map[string]any{{
			"Price": 0.1, "Available": true,
			"Requirements": []map[string]any{req("karpenter.sh/capacity-type", "on-demand"), req("topology.kubernetes.io/zone", "zone-a")},
		}},
	}}
	b, _ := json.Marshal(types)
	return b
}

// installCRDs creates the CRDs of the module's kwok chart and the
// KWOKNodeClass, and waits until they are established.
func installCRDs(ctx context.Context, dyn dynamic.Interface, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs in %s/crds: run hack/karpenter-kwok.sh", dir)
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		obj := map[string]any{}
		if err := yaml.Unmarshal(data, &obj); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		u := &unstructured.Unstructured{Object: obj}
		if _, err := dyn.Resource(gvrCRD).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: %w", f, err)
		}
		names = append(names, u.GetName())
	}
	for _, n := range names {
		if err := until(ctx, time.Minute, func() bool {
			u, err := dyn.Resource(gvrCRD).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true
				}
			}
			return false
		}); err != nil {
			return fmt.Errorf("CRD %s not established: %w", n, err)
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startKarpenter runs the kwok provider against the control plane with
// its defaults, except: leader election off (one replica, outside the
// cluster), its ports on loopback ports that are free, the instance types
// file, its log to a file.
func startKarpenter(ctx context.Context, env *kubetest.Env, dir, work string) (*karpenter, error) {
	dyn, err := dynamic.NewForConfig(env.Rest)
	if err != nil {
		return nil, err
	}
	if err := installCRDs(ctx, dyn, dir); err != nil {
		return nil, err
	}
	types := filepath.Join(work, "instance-types.json")
	if err := os.WriteFile(types, instanceTypesJSON(), 0o600); err != nil {
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	healthPort, err := freePort()
	if err != nil {
		return nil, err
	}
	k := &karpenter{dyn: dyn, done: make(chan struct{}), log: filepath.Join(work, "karpenter.log")}
	logf, err := os.Create(k.log)
	if err != nil {
		return nil, err
	}
	k.cmd = exec.Command(filepath.Join(dir, "karpenter-kwok"))
	k.cmd.Env = append(os.Environ(),
		"KUBECONFIG="+env.Kubeconfig,
		"DISABLE_LEADER_ELECTION=true",
		"SYSTEM_NAMESPACE=kube-system",
		"METRICS_PORT="+strconv.Itoa(metricsPort),
		"HEALTH_PROBE_PORT="+strconv.Itoa(healthPort),
		"INSTANCE_TYPES_FILE_PATH="+types,
		"LOG_LEVEL=debug",
	)
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start karpenter-kwok: %w", err)
	}
	go func() { _ = k.cmd.Wait(); _ = logf.Close(); close(k.done) }()
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort)
	if err := until(ctx, 2*time.Minute, func() bool {
		select {
		case <-k.done:
			return true
		default:
		}
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		k.stop()
		return nil, fmt.Errorf("karpenter-kwok not ready (log %s): %w", k.log, err)
	}
	select {
	case <-k.done:
		return nil, fmt.Errorf("karpenter-kwok exited during start-up (log %s)", k.log)
	default:
	}
	class := map[string]any{
		"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass",
		"metadata": map[string]any{"name": "bench"},
		"spec":     map[string]any{"nodeRegistrationDelay": fmt.Sprintf("%ds", int(registrationDelay().Seconds()))},
	}
	if _, err := dyn.Resource(gvrNodeClass).Create(ctx, &unstructured.Unstructured{Object: class}, metav1.CreateOptions{}); err != nil {
		k.stop()
		return nil, fmt.Errorf("KWOKNodeClass: %w", err)
	}
	return k, nil
}

func (k *karpenter) stop() {
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(10 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
}

// createNodePool is the slot's NodePool: the one instance type, the
// slot's label on its Nodes, everything else Karpenter's defaults (the
// CRD's: no limits, consolidation WhenEmptyOrUnderutilized after 0s, a
// budget of 10% of the nodes, expireAfter 720h).
func (k *karpenter) createNodePool(ctx context.Context, sl slot) error {
	np := map[string]any{
		"apiVersion": "karpenter.sh/v1", "kind": "NodePool",
		"metadata": map[string]any{"name": sl.nodePool()},
		"spec": map[string]any{"template": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{slotLabel: sl.theirs()}},
			"spec": map[string]any{
				"nodeClassRef": map[string]any{"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "bench"},
				"requirements": []any{map[string]any{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": []any{instanceType}}},
			},
		}},
	}
	_, err := k.dyn.Resource(gvrNodePool).Create(ctx, &unstructured.Unstructured{Object: np}, metav1.CreateOptions{})
	return err
}

// deleteNodePool removes the slot's NodePool and its NodeClaims and
// waits until its Nodes are gone.
func (k *karpenter) deleteNodePool(ctx context.Context, env *kubetest.Env, sl slot) error {
	err := k.dyn.Resource(gvrNodePool).Delete(ctx, sl.nodePool(), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	mine := metav1.ListOptions{LabelSelector: "karpenter.sh/nodepool=" + sl.nodePool()}
	_ = k.dyn.Resource(gvrNodeClaim).DeleteCollection(ctx, metav1.DeleteOptions{}, mine)
	return until(ctx, 5*time.Minute, func() bool {
		nodes, err := env.Client.CoreV1().Nodes().List(ctx, mine)
		claims, cerr := k.dyn.Resource(gvrNodeClaim).List(ctx, mine)
		_, perr := k.dyn.Resource(gvrNodePool).Get(ctx, sl.nodePool(), metav1.GetOptions{})
		return err == nil && cerr == nil && apierrors.IsNotFound(perr) && len(nodes.Items) == 0 && len(claims.Items) == 0
	})
}

// until polls cond until it holds, for harness set-up and tear-down only
// (the figures come from watches).
func until(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out after " + limit.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}
