// Package kube is the scaler's adapter to the Kubernetes API: the snapshot
// the decision engine decides on (nodes, pods, PodDisruptionBudgets through
// shared informers, usage from metrics.k8s.io), waiting for a new node,
// cordon and PDB-safe drain (k8s.io/kubectl/pkg/drain), node removal,
// labels, Events, and Lease leader election.
package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

// Options configures the adapter.
type Options struct {
	// Kubeconfig is a file; empty means in-cluster configuration.
	Kubeconfig string
	Context    string
	Drain      config.Drain
	Log        *zap.Logger
	// EvictRetry is the pause between evictions a PDB refused (default 2s).
	EvictRetry time.Duration
	// MetricsMaxAge: node metrics older than this count as stale (default 5m).
	MetricsMaxAge time.Duration
	// Control is the ConfigMap of the operator's pause and boosts, read by
	// each Snapshot (empty Name: none is read).
	Control ControlRef
	// WorkerSelector is kubernetes.worker_selector: the Nodes the snapshot
	// counts as workers besides our own; empty: every Node.
	WorkerSelector string
}

// Client is the Kubernetes adapter.
type Client struct {
	cs       kubernetes.Interface
	metrics  metricsclient.Interface
	opts     Options
	log      *zap.Logger
	factory  informers.SharedInformerFactory
	nodes    corelisters.NodeLister
	pods     corelisters.PodLister
	pdbs     policylisters.PodDisruptionBudgetLister
	pvcs     corelisters.PersistentVolumeClaimLister
	pvs      corelisters.PersistentVolumeLister
	workers  labels.Selector // kubernetes.worker_selector
	events   record.EventBroadcaster
	recorder record.EventRecorder
	wake     chan struct{}
}

// RestConfig loads a kubeconfig file (and context), or the in-cluster
// configuration when path is empty.
func RestConfig(path, context string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: no kubernetes.kubeconfig set and not running in a cluster: %w", err)
		}
		return cfg, nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes.kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// New builds the adapter from a kubeconfig path or in-cluster config.
func New(opts Options) (*Client, error) {
	cfg, err := RestConfig(opts.Kubeconfig, opts.Context)
	if err != nil {
		return nil, err
	}
	return NewForConfig(cfg, opts)
}

// NewForConfig builds the adapter for a rest config. It makes no API call.
func NewForConfig(cfg *rest.Config, opts Options) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "pve-autoscaler"
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 20, 40
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	mc, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("metrics client: %w", err)
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.EvictRetry <= 0 {
		opts.EvictRetry = 2 * time.Second
	}
	if opts.MetricsMaxAge <= 0 {
		opts.MetricsMaxAge = 5 * time.Minute
	}
	if opts.Drain.Timeout <= 0 {
		opts.Drain.Timeout = config.Duration(5 * time.Minute)
	}
	workers, err := config.ParseWorkerSelector(opts.WorkerSelector)
	if err != nil {
		return nil, fmt.Errorf("kubernetes.worker_selector %w", err)
	}
	c := &Client{cs: cs, metrics: mc, opts: opts, log: opts.Log, workers: workers, wake: make(chan struct{}, 1)}
	c.events = record.NewBroadcaster()
	c.recorder = c.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "pve-autoscaler"})
	return c, nil
}

// Clientset is the underlying client (for leader election and tests).
func (c *Client) Clientset() kubernetes.Interface { return c.cs }

// PermissionError means the API server refused a request as forbidden: the
// credentials lack a permission the scaler needs.
type PermissionError struct {
	What string
	Err  error
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("kubernetes: cannot %s: %v (deploy/rbac.yaml grants what pve-autoscaler needs)", e.What, e.Err)
}

func (e *PermissionError) Unwrap() error { return e.Err }

// Start checks access, starts the shared informers (nodes, pods, PDBs,
// PersistentVolumeClaims and PersistentVolumes)
// and waits for their caches. It stops when ctx ends.
func (c *Client) Start(ctx context.Context) error {
	// Informers retry forbidden lists forever and never sync: ask once
	// directly, so missing RBAC is a clear error instead of a hang.
	one := metav1.ListOptions{Limit: 1}
	for what, list := range map[string]func() error{
		"list nodes":                func() error { _, err := c.cs.CoreV1().Nodes().List(ctx, one); return err },
		"list pods":                 func() error { _, err := c.cs.CoreV1().Pods("").List(ctx, one); return err },
		"list poddisruptionbudgets": func() error { _, err := c.cs.PolicyV1().PodDisruptionBudgets("").List(ctx, one); return err },
		"list persistentvolumeclaims": func() error {
			_, err := c.cs.CoreV1().PersistentVolumeClaims("").List(ctx, one)
			return err
		},
		"list persistentvolumes": func() error { _, err := c.cs.CoreV1().PersistentVolumes().List(ctx, one); return err },
	} {
		if err := list(); err != nil {
			if apierrors.IsForbidden(err) {
				return &PermissionError{What: what, Err: err}
			}
			return fmt.Errorf("kubernetes: cannot %s: %w", what, err)
		}
	}
	c.factory = informers.NewSharedInformerFactory(c.cs, 10*time.Minute)
	c.nodes = c.factory.Core().V1().Nodes().Lister()
	c.pods = c.factory.Core().V1().Pods().Lister()
	c.pdbs = c.factory.Policy().V1().PodDisruptionBudgets().Lister()
	// A pending pod's claims bound to PersistentVolumes with node affinity
	// (local volumes) run only where those match.
	c.pvcs = c.factory.Core().V1().PersistentVolumeClaims().Lister()
	c.pvs = c.factory.Core().V1().PersistentVolumes().Lister()
	if _, err := c.factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.podChanged(nil, obj) },
		UpdateFunc: c.podChanged,
	}); err != nil {
		return fmt.Errorf("kubernetes: pod informer: %w", err)
	}
	c.factory.Start(ctx.Done())
	synced := c.factory.WaitForCacheSync(ctx.Done())
	for typ, ok := range synced {
		if !ok {
			return fmt.Errorf("kubernetes: %v cache did not sync: %w", typ, errors.Join(ctx.Err(), errors.New("informer not synced")))
		}
	}
	c.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cs.CoreV1().Events("")})
	go func() { <-ctx.Done(); c.events.Shutdown() }()
	return nil
}

// Wake signals (coalesced) when a pod becomes unschedulable, so the daemon
// decides at once instead of at its next interval.
func (c *Client) Wake() <-chan struct{} { return c.wake }

func (c *Client) podChanged(old, obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName != "" {
		return
	}
	if _, now := unschedulable(p); !now {
		return
	}
	if op, ok := old.(*corev1.Pod); ok {
		if _, before := unschedulable(op); before {
			return
		}
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// synced reports whether Start has run.
func (c *Client) synced() error {
	if c.factory == nil {
		return errors.New("kubernetes adapter: Start was not called")
	}
	return nil
}
