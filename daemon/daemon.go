// Package daemon assembles the adapters (proxmox, talos, kube) and the
// reconciler, and runs the loop with its HTTP endpoints.
package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/rest"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/kube"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
	"github.com/pve-autoscaler/pve-autoscaler/talos"
)

// Options are what the command line (or a test) adds to the config.
type Options struct {
	DryRun  bool
	Log     *zap.Logger
	Version string
	// TalosPort overrides the Talos API port (the simulated world's).
	TalosPort int
	// Poll is the adapters' poll interval (default 500ms; tests: milliseconds).
	Poll time.Duration
	// TemplateCheck is how long the template's digest is trusted (default 5m).
	TemplateCheck time.Duration
	// Kube overrides the rest config (tests count its writes).
	Kube *rest.Config
	// AfterStep is passed to the reconciler (tests crash with it).
	AfterStep func(scaler.OperationKind, int, string)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Observer hears steps and outcomes (the daemon's metrics).
	Observer scaler.Observer
	// RequestTimeout bounds one PVE request (default 30s).
	RequestTimeout time.Duration
	// ConfirmAbsence is how far apart two direct reads must find a VM or
	// Node gone (default scaler.ConfirmAbsence; tests shorten it).
	ConfirmAbsence time.Duration
	// PodEventEvery is how often a pending pod is told the same verdict
	// again (default scaler.PodEventEvery; tests shorten it).
	PodEventEvery time.Duration
	// StopGrace bounds how long running steps may finish after a stop
	// (default 30s).
	StopGrace time.Duration
	// Lease, Renew and Retry are leader election's durations (defaults
	// 15s, 10s, 2s; tests shorten them).
	Lease, Renew, Retry time.Duration
	// TraceMaxSize rotates daemon.trace_file (default tracefile.DefaultMaxSize; tests shrink it).
	TraceMaxSize int64
}

// Daemon is the assembled scaler: adapters and reconciler.
type Daemon struct {
	Config     *config.Config
	PVE        *proxmox.Client
	Talos      *talos.Client
	Kube       *kube.Client
	Reconciler *scaler.Reconciler
	Policy     scaler.Policy
	log        *zap.Logger
	lease      [3]time.Duration // Options.Lease, Renew, Retry
	dryRun     bool
	traceMax   int64
}

// Build connects the adapters (starting the Kubernetes informers, which
// stop when ctx ends) and assembles the reconciler. It changes nothing.
func Build(ctx context.Context, cfg *config.Config, o Options) (*Daemon, error) {
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	policy, err := ScalerPolicy(cfg)
	if err != nil {
		return nil, err
	}
	pve, err := proxmox.New(proxmox.Options{Proxmox: cfg.Proxmox, Pools: cfg.WorkerPools(), Cluster: cfg.Cluster.Name, Log: log.Named("proxmox"), PollInterval: o.Poll, Version: o.Version, RequestTimeout: o.RequestTimeout, TemplateCheck: o.TemplateCheck, Now: o.Now,
		Build: BuildDigest(cfg)})
	if err != nil {
		return nil, err
	}
	topts := talos.OptionsFrom(cfg.Talos, log.Named("talos"))
	topts.Pools = cfg.WorkerPools()
	if o.TalosPort != 0 {
		topts.Port = o.TalosPort
	}
	if o.Poll > 0 {
		topts.RetryInterval = o.Poll * 10
	}
	tal, err := talos.New(topts)
	if err != nil {
		return nil, err
	}
	policy.NewWorker = tal.NewWorker()
	if err := selectsNewWorkers(cfg.Kubernetes.WorkerSelector, policy); err != nil {
		return nil, err
	}
	kopts := kube.Options{Kubeconfig: cfg.Kubernetes.Kubeconfig, Context: cfg.Kubernetes.Context, Drain: cfg.Policy.Drain, Log: log.Named("kube"),
		Control: ControlRef(cfg), WorkerSelector: cfg.Kubernetes.WorkerSelector}
	var kc *kube.Client
	if o.Kube != nil {
		kc, err = kube.NewForConfig(o.Kube, kopts)
	} else {
		kc, err = kube.New(kopts)
	}
	if err != nil {
		return nil, err
	}
	if err := kc.Start(ctx); err != nil {
		return nil, err
	}
	d := &Daemon{Config: cfg, PVE: pve, Talos: tal, Kube: kc, Policy: policy, log: log, lease: [3]time.Duration{o.Lease, o.Renew, o.Retry},
		dryRun: o.DryRun, traceMax: o.TraceMaxSize}
	d.Reconciler = scaler.NewReconciler(
		proxmox.NewWorkers(pve), talos.NodeOS{Client: tal, Identities: pve}, kc, policy,
		scaler.ReconcileOptions{
			MaxProvisionTime: cfg.Policy.MaxProvisionTime.D(),
			// After failures: cooldown.after_failure, doubling, up to six times it (5m to 30m by default).
			BackoffMin:           cfg.Policy.Cooldown.AfterFailure.D(),
			BackoffMax:           6 * cfg.Policy.Cooldown.AfterFailure.D(),
			SkipUnreachableReset: cfg.Talos.ResetUnreachable == "skip",
			RemoveUndrained:      cfg.Policy.Drain.RemoveUndrained,
			DryRun:               o.DryRun,
			Log:                  log.Named("reconciler"),
			AfterStep:            o.AfterStep,
			Now:                  o.Now,
			Observer:             o.Observer,
			Wake:                 kc.Wake(),
			ConfirmAbsence:       o.ConfirmAbsence,
			PodEventEvery:        o.PodEventEvery,
			StopGrace:            o.StopGrace,
		})
	// A restart remembers the load of the day and the week before.
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	d.Reconciler.RememberLoad(d.traceLoad(now()))
	return d, nil
}

// Snapshot gathers a live snapshot (for `plan`): Kubernetes plus PVE host
// room and the VMs in flight. Nothing is changed.
func (d *Daemon) Snapshot(ctx context.Context, now time.Time) (scaler.Snapshot, error) {
	snap, kerr := d.Kube.Snapshot(ctx, now)
	if kerr != nil && !snap.Metrics.Stale {
		return snap, kerr
	}
	machines, hosts, err := proxmox.NewWorkers(d.PVE).Machines(ctx)
	if err != nil {
		return snap, fmt.Errorf("proxmox: %w", err)
	}
	snap.Hosts = hosts
	// Counted as the daemon counts them (no operation runs in this process).
	snap.Operations, snap.Standby = scaler.Classify(machines, scaler.Counting{Nodes: snap.Nodes,
		Now: now, MaxProvisionTime: d.Config.Policy.MaxProvisionTime.D()})
	snap.Drifted = scaler.DriftedOf(machines, snap.Nodes)
	// The load Build read back from daemon.trace_file (not read again).
	snap.Past = d.Reconciler.RememberedPast(now)
	snap.Replacements = scaler.ReplacementsOf(machines, snap.Nodes)
	return snap, kerr
}

// ControlRef is the ConfigMap of pause and boosts the config names.
func ControlRef(cfg *config.Config) kube.ControlRef {
	return kube.ControlRef{Namespace: cfg.Daemon.Control.Namespace, Name: cfg.Daemon.Control.Name}
}

// BuildDigest returns, per worker pool, the digest of what its new worker
// is made from besides the template and the VM size: the Talos worker
// config and patch files as they are now, and the pool's labels and
// taints. Recorded on each clone, it tells a worker made from an older
// config (scaler.DriftedWorker). Files that cannot be read give no digest
// (nothing is then recorded or compared).
func BuildDigest(cfg *config.Config) func(pool string) string {
	h := sha256.New()
	for _, f := range append([]string{cfg.Talos.WorkerConfigFile}, cfg.Talos.PatchFiles...) {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil
		}
		fmt.Fprintf(h, "%d\n", len(b))
		h.Write(b)
	}
	base := h.Sum(nil)
	pools := cfg.WorkerPools()
	digests := map[string]string{}
	for _, pl := range pools {
		ph := sha256.New()
		ph.Write(base)
		extra, _ := json.Marshal(struct {
			Labels map[string]string `json:"labels"`
			Taints []config.Taint    `json:"taints"`
		}{pl.Labels, pl.Taints})
		ph.Write(extra)
		digests[pl.Name] = hex.EncodeToString(ph.Sum(nil))[:16]
	}
	return func(pool string) string {
		if d, ok := digests[pool]; ok {
			return d
		}
		if pool == "" && len(pools) > 0 {
			return digests[pools[0].Name] // a VM of the first pool carries no pool tag
		}
		return ""
	}
}
