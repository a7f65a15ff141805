// Package talos applies the worker machine configuration to new VMs in
// Talos maintenance mode and resets nodes before their VMs are destroyed,
// through the Talos machinery client.
//
// The machine configuration and the talosconfig are secrets: this package
// never logs them, and its errors never quote them.
package talos

import (
	"bytes"
	"context"
	"crypto/tls"
	stdx509 "crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	tconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/types/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
)

// Labels put on every node the scaler creates (defined with the engine, which reads them).
const (
	LabelManaged = scaler.LabelManaged
	LabelVMID    = scaler.LabelVMID
	LabelHost    = scaler.LabelHost
)

// DefaultPort is the Talos API (apid) port.
const DefaultPort = 50000

// Options configures the adapter.
type Options struct {
	WorkerConfigFile string
	TalosconfigFile  string
	PatchFiles       []string
	// Port is the Talos API port on the nodes (default 50000).
	Port int
	// ApplyTimeout bounds the wait for a booting VM's maintenance API (default 10m).
	ApplyTimeout time.Duration
	// ResetTimeout bounds a reset (default 5m).
	ResetTimeout time.Duration
	// RetryInterval is the longest pause between connection attempts
	// (default 1s); attempts start 100ms apart and grow by half each time.
	RetryInterval time.Duration
	Log           *zap.Logger
	// Pools are the worker pools (config.WorkerPools): a node's pool gives
	// it its labels and taints, and the label pve-autoscaler.io/pool.
	Pools []config.Pool
}

// Node is the VM a configuration is built for and sent to.
type Node struct {
	// Name is the VM name; it becomes the hostname and so the Node name.
	Name string
	VMID int
	// Host is the PVE host the VM runs on.
	Host string
	// IP is the VM's address (from the guest agent or the DHCP reservations).
	IP string
	// UUID is the VM's SMBIOS UUID (PVE's smbios1 uuid): Apply and Reset
	// act only on a machine whose SystemInformation reports it.
	UUID string
	// Standby: built for standby; its kubelet registers the Node
	// tainted StandbyTaint, so no pod lands there before it is parked.
	Standby bool
	// Pool is the worker pool of its VM ("": the first pool).
	Pool string
}

// StandbyTaint is the taint a standby worker's kubelet registers with.
const StandbyTaint = scaler.TaintStandby + "=true:NoSchedule"

// Client is the Talos adapter.
type Client struct {
	opts        Options
	worker      tconfig.Provider
	hostnameDoc bool // the worker config has a HostnameConfig document
	patches     []patchFile
	talosconfig *clientconfig.Config
	log         *zap.Logger
	newWorker   scaler.NewWorker
}

type patchFile struct {
	name  string
	patch configpatcher.Patch
}

// UnreachableError means the node's Talos API did not answer in time. The
// reconciler decides from talos.reset_unreachable whether to go on.
type UnreachableError struct {
	Node string
	Op   string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("talos %s: node %s did not answer the Talos API: %v", e.Op, e.Node, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// TLSError means the node answered but its certificate did not verify
// against the talosconfig's CA: it may not be the machine we think it is.
// It is never treated as unreachable.
type TLSError struct {
	Node string
	Err  error
}

func (e *TLSError) Error() string {
	return fmt.Sprintf("talos: node %s: TLS verification failed (its certificate is not from the talosconfig's CA; is another machine at this address?): %v", e.Node, e.Err)
}

func (e *TLSError) Unwrap() error { return e.Err }

// RejectedError means Talos answered and refused the request; Message is Talos's own text.
type RejectedError struct {
	Node    string
	Op      string
	Message string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("talos %s: node %s refused: %s", e.Op, e.Node, e.Message)
}

// IdentityError means the machine answering at the node's address is not
// the VM we mean: its SMBIOS UUID (Talos' SystemInformation) differs from
// the VM's, or the VM's is unknown (Expected empty) or the machine reports
// none (Found empty). Nothing was sent: no config, no reset.
type IdentityError struct {
	Node     string
	IP       string
	Op       string
	Expected string
	Found    string
}

func (e *IdentityError) Error() string {
	switch {
	case e.Expected == "":
		return fmt.Sprintf("talos %s: refusing node %s at %s: its VM's SMBIOS UUID is unknown, so the machine there cannot be told apart from another", e.Op, e.Node, e.IP)
	case e.Found == "":
		return fmt.Sprintf("talos %s: refusing node %s at %s: expected SMBIOS UUID %s, the machine there reports no SystemInformation UUID", e.Op, e.Node, e.IP, e.Expected)
	}
	return fmt.Sprintf("talos %s: refusing node %s at %s: expected SMBIOS UUID %s, the machine there reports %s (another machine at this address?)", e.Op, e.Node, e.IP, e.Expected, e.Found)
}

// identity reads the machine's SMBIOS UUID from its SystemInformation
// resource (COSI, as `talosctl get systeminformation` does) and compares
// it with the node's. A *IdentityError when it differs or is missing;
// other errors are the read's (retryable or not, for the caller).
func (c *Client) identity(ctx context.Context, tc *client.Client, n Node, op string) error {
	want := scaler.NormalUUID(n.UUID)
	if want == "" {
		return &IdentityError{Node: n.Name, IP: n.IP, Op: op}
	}
	si, err := safe.StateGetByID[*hardware.SystemInformation](ctx, tc.COSI, hardware.SystemInformationID)
	if err != nil {
		if state.IsNotFoundError(err) {
			return &IdentityError{Node: n.Name, IP: n.IP, Op: op, Expected: want}
		}
		return err
	}
	if got := scaler.NormalUUID(si.TypedSpec().UUID); got != want {
		return &IdentityError{Node: n.Name, IP: n.IP, Op: op, Expected: want, Found: got}
	}
	return nil
}

// New loads and checks the worker config, the patches and the talosconfig.
// Each error names the file at fault.
func New(opts Options) (*Client, error) {
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.ApplyTimeout == 0 {
		opts.ApplyTimeout = 10 * time.Minute
	}
	if opts.ResetTimeout == 0 {
		opts.ResetTimeout = 5 * time.Minute
	}
	if opts.RetryInterval == 0 {
		opts.RetryInterval = time.Second
	}
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	c := &Client{opts: opts, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}

	data, err := os.ReadFile(opts.TalosconfigFile)
	if err != nil {
		return nil, fmt.Errorf("talosconfig %s: %w", opts.TalosconfigFile, unwrapPath(err))
	}
	tc, err := clientconfig.FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("talosconfig %s: not a talosconfig: %v", opts.TalosconfigFile, err)
	}
	ctxName := tc.Context
	if ctxName == "" || tc.Contexts[ctxName] == nil {
		return nil, fmt.Errorf("talosconfig %s: its current context %q is not defined", opts.TalosconfigFile, ctxName)
	}
	if cx := tc.Contexts[ctxName]; cx.CA == "" || cx.Crt == "" || cx.Key == "" {
		return nil, fmt.Errorf("talosconfig %s: context %q lacks the CA or the client certificate needed for mTLS", opts.TalosconfigFile, ctxName)
	}
	c.talosconfig = tc
	return c, nil
}

// NewWorker is what the Node of a worker we add carries for the
// scheduler: machine.nodeLabels and machine.nodeTaints of the worker
// config after every patch (rendered once at start), and our managed label.
func (c *Client) NewWorker() scaler.NewWorker { return c.newWorker }

// NewWorkerOf loads the worker config and patches of opts (not the
// talosconfig) and returns what a new worker's Node carries, as
// (*Client).NewWorker does: for `plan`, which connects to nothing Talos.
func NewWorkerOf(opts Options) (scaler.NewWorker, error) {
	c := &Client{opts: opts, log: zap.NewNop()}
	if err := c.load(); err != nil {
		return scaler.NewWorker{}, err
	}
	return c.newWorker, nil
}

// newWorkerOf reads the labels and taints out of a rendered config.
// Talos writes a taint as "key: value:Effect" (or "key: Effect").
func newWorkerOf(rendered []byte) (scaler.NewWorker, error) {
	cfg, err := configloader.NewFromBytes(rendered)
	if err != nil {
		return scaler.NewWorker{}, fmt.Errorf("talos: reading the rendered worker config back: %v", err)
	}
	w := scaler.NewWorker{Labels: map[string]string{}}
	for k, v := range cfg.Machine().NodeLabels() {
		switch k {
		case LabelVMID, LabelHost, scaler.LabelPool: // each worker's own
		default:
			w.Labels[k] = v
		}
	}
	taints := cfg.Machine().NodeTaints()
	for _, k := range slices.Sorted(maps.Keys(taints)) {
		v := taints[k]
		value, effect, ok := strings.Cut(v, ":")
		if !ok {
			value, effect = "", v
		}
		w.Taints = append(w.Taints, corev1.Taint{Key: k, Value: value, Effect: corev1.TaintEffect(effect)})
	}
	return w, nil
}

// load reads the worker config and the patches, and renders one config.
func (c *Client) load() error {
	opts := c.opts
	worker, err := LoadWorkerConfig(opts.WorkerConfigFile)
	if err != nil {
		return err
	}
	c.worker = worker
	for _, d := range worker.Documents() {
		if d.Kind() == network.HostnameKind {
			c.hostnameDoc = true
		}
	}

	for _, name := range opts.PatchFiles {
		data, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("talos patch file %s: %w", name, unwrapPath(err))
		}
		p, err := configpatcher.LoadPatch(data)
		if err != nil {
			return fmt.Errorf("talos patch file %s: not a strategic merge patch or JSON 6902 patch: %v", name, err)
		}
		c.patches = append(c.patches, patchFile{name: name, patch: p})
	}
	// Build one config now, so a patch that does not apply fails at start-up;
	// the labels and taints it gives are a new worker's.
	out, err := c.render(Node{Name: "pve-autoscaler-check", VMID: 100, Host: "check", IP: "127.0.0.1"}, nil)
	if err != nil {
		return err
	}
	if c.newWorker, err = newWorkerOf(out); err != nil {
		return err
	}
	// Each pool's labels and taints must apply too.
	for _, p := range c.opts.Pools {
		if _, err := c.render(Node{Name: "pve-autoscaler-check", VMID: 100, Host: "check", IP: "127.0.0.1"}, &p); err != nil {
			return fmt.Errorf("pool %s: %w", p.Name, err)
		}
	}
	return nil
}

// LoadWorkerConfig loads a machine config, checks that it is a worker
// config and that it validates as Talos would on a VM.
func LoadWorkerConfig(path string) (tconfig.Provider, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("talos worker config %s: %w", path, unwrapPath(err))
	}
	cfg, err := configloader.NewFromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("talos worker config %s: not a Talos machine config: %v", path, err)
	}
	if cfg.Machine() == nil {
		return nil, fmt.Errorf("talos worker config %s: has no machine section (v1alpha1 config)", path)
	}
	if t := cfg.Machine().Type(); t != machine.TypeWorker {
		return nil, fmt.Errorf("talos worker config %s: is a %s config; pve-autoscaler adds workers: use the worker.yaml of talosctl gen config", path, t)
	}
	if _, err := cfg.Validate(metalMode{}); err != nil {
		return nil, fmt.Errorf("talos worker config %s: fails Talos validation: %v", path, err)
	}
	return cfg, nil
}

// metalMode is the runtime mode a Proxmox VM runs Talos in.
type metalMode struct{}

func (metalMode) String() string        { return "metal" }
func (metalMode) RequiresInstall() bool { return true }
func (metalMode) InContainer() bool     { return false }

// Render builds the node's machine config: the worker config with the
// per-node patch (hostname, our labels), then the user's patches in order.
// The result is a secret.
func (c *Client) Render(n Node) ([]byte, error) {
	pool, err := c.pool(n.Pool)
	if err != nil {
		return nil, err
	}
	return c.render(n, pool)
}

// pool is the worker pool named name ("": the first; nil without pools).
func (c *Client) pool(name string) (*config.Pool, error) {
	for i := range c.opts.Pools {
		if name == "" || c.opts.Pools[i].Name == name {
			return &c.opts.Pools[i], nil
		}
	}
	if name == "" {
		return nil, nil
	}
	return nil, fmt.Errorf("talos: worker pool %q is not in the configuration", name)
}

// render is Render with the labels and taints of pool (nil: none).
func (c *Client) render(n Node, pool *config.Pool) ([]byte, error) {
	nodePatch := fmt.Sprintf(`machine:
  nodeLabels:
    %s: "true"
    %s: "%d"
    %s: %q
`, LabelManaged, LabelVMID, n.VMID, LabelHost, n.Host)
	if pool != nil {
		nodePatch += fmt.Sprintf("    %s: %q\n", scaler.LabelPool, pool.Name)
		for _, k := range slices.Sorted(maps.Keys(pool.Labels)) {
			nodePatch += fmt.Sprintf("    %q: %q\n", k, pool.Labels[k])
		}
		if len(pool.Taints) > 0 {
			nodePatch += "  nodeTaints:\n"
			for _, t := range pool.Taints {
				v := t.Effect
				if t.Value != "" {
					v = t.Value + ":" + t.Effect
				}
				nodePatch += fmt.Sprintf("    %q: %q\n", t.Key, v)
			}
		}
	}
	if n.Standby {
		nodePatch += fmt.Sprintf("  kubelet:\n    extraArgs:\n      register-with-taints: %q\n", StandbyTaint)
	}
	if c.hostnameDoc {
		// Recent configs carry a HostnameConfig document (auto: stable);
		// a hostname there needs auto off, or validation refuses it.
		nodePatch += fmt.Sprintf("---\napiVersion: v1alpha1\nkind: %s\nauto: off\nhostname: %s\n", network.HostnameKind, n.Name)
	} else {
		// Single-document configs (older contracts) keep the hostname in
		// v1alpha1, and stay single-document, so JSON 6902 patches still apply.
		nodePatch += fmt.Sprintf("  network:\n    hostname: %s\n", n.Name)
	}
	p, err := configpatcher.LoadPatch([]byte(nodePatch))
	if err != nil {
		return nil, fmt.Errorf("talos: per-node patch for %s: %v", n.Name, err)
	}
	out, err := configpatcher.Apply(configpatcher.WithConfig(c.worker), []configpatcher.Patch{p})
	if err != nil {
		return nil, fmt.Errorf("talos: per-node patch for %s: %v", n.Name, err)
	}
	for _, pf := range c.patches {
		cfg, err := out.Config()
		if err != nil {
			return nil, fmt.Errorf("talos patch file %s: %v", pf.name, err)
		}
		if out, err = configpatcher.Apply(configpatcher.WithConfig(cfg), []configpatcher.Patch{pf.patch}); err != nil {
			return nil, fmt.Errorf("talos patch file %s: does not apply to the worker config: %v", pf.name, err)
		}
	}
	cfg, err := out.Config()
	if err != nil {
		return nil, fmt.Errorf("talos: config for %s after patches: %v", n.Name, err)
	}
	if _, err := cfg.Validate(metalMode{}); err != nil {
		return nil, fmt.Errorf("talos: config for %s fails Talos validation after the patches: %v", n.Name, err)
	}
	return cfg.Bytes()
}

func (c *Client) endpoint(ip string) string {
	return net.JoinHostPort(ip, strconv.Itoa(c.opts.Port))
}

// Apply sends the node's config to its Talos maintenance API, as
// `talosctl apply-config --insecure` does: TLS without a client certificate
// and without verifying the server (a node in maintenance mode has no
// identity yet). It retries until the API answers or ApplyTimeout passes.
//
// The connection is not authenticated, so before the config (which holds
// the cluster's secrets) leaves, each attempt reads the machine's
// SystemInformation and goes on only when its SMBIOS UUID is n.UUID: a
// *IdentityError otherwise (n.UUID empty included), with nothing sent.
func (c *Client) Apply(ctx context.Context, n Node) error {
	if strings.TrimSpace(n.UUID) == "" {
		return &IdentityError{Node: n.Name, IP: n.IP, Op: "apply"}
	}
	data, err := c.Render(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ApplyTimeout)
	defer cancel()
	tc, err := client.New(ctx,
		client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), //nolint:gosec // maintenance mode has no certificate to verify
		client.WithEndpoints(c.endpoint(n.IP)), c.dialBackoff())
	if err != nil {
		return fmt.Errorf("talos apply: node %s: %v", n.Name, err)
	}
	defer func() { _ = tc.Close() }()

	start := time.Now()
	pause := c.pauses()
	for attempt := 1; ; attempt++ {
		err := c.identity(ctx, tc, n, "apply")
		var ie *IdentityError
		if errors.As(err, &ie) {
			c.log.Warn("talos apply refused: another machine at the address", zap.String("node", n.Name), zap.String("ip", n.IP),
				zap.String("expected_uuid", ie.Expected), zap.String("found_uuid", ie.Found))
			return err
		}
		if err == nil {
			_, err = tc.ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{
				Data: data,
				Mode: machineapi.ApplyConfigurationRequest_AUTO,
			})
		}
		if err == nil {
			c.log.Info("talos config applied", zap.String("node", n.Name), zap.String("ip", n.IP), zap.Int("attempts", attempt), zap.Duration("waited", time.Since(start)))
			return nil
		}
		if !retryable(err) {
			return &RejectedError{Node: n.Name, Op: "apply", Message: talosMessage(err)}
		}
		c.log.Debug("talos maintenance API not answering yet", zap.String("node", n.Name), zap.Int("attempt", attempt), zap.Error(err))
		select {
		case <-ctx.Done():
			return &UnreachableError{Node: n.Name, Op: "apply", Err: fmt.Errorf("no answer within %s (%d attempts): %v", c.opts.ApplyTimeout, attempt, talosMessage(err))}
		case <-time.After(pause()):
		}
	}
}

// pauses returns the retry schedule: 100ms first, growing by half each
// time up to RetryInterval, so a node that answers a moment after the
// first try is not kept waiting a whole interval.
func (c *Client) pauses() func() time.Duration {
	d := min(100*time.Millisecond, c.opts.RetryInterval)
	return func() time.Duration {
		cur := d
		d = min(d*3/2, c.opts.RetryInterval)
		return cur
	}
}

// dialBackoff keeps gRPC's own reconnect backoff (1s growing to 2 minutes
// by default) within RetryInterval: a node still booting must be retried
// by our schedule, not left in a long transient-failure backoff.
func (c *Client) dialBackoff() client.OptionFunc {
	return client.WithGRPCDialOptions(grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: c.opts.RetryInterval},
		MinConnectTimeout: 5 * time.Second,
	}))
}

// secureClient connects to one node with the talosconfig's mTLS credentials.
func (c *Client) secureClient(ctx context.Context, ip string) (*client.Client, context.Context, error) {
	tc, err := client.New(ctx, client.WithConfig(c.talosconfig), client.WithEndpoints(c.endpoint(ip)), c.dialBackoff())
	if err != nil {
		return nil, nil, err
	}
	return tc, client.WithNode(ctx, ip), nil
}

// Reset resets the node gracefully, as `talosctl reset` does by default:
// graceful, no reboot (the VM halts and is destroyed next), every disk wiped.
// An unreachable node gives an *UnreachableError; a certificate that does
// not verify, a *TLSError. Before each attempt it reads the machine's
// SystemInformation over the same mTLS connection: a machine whose SMBIOS
// UUID is not n.UUID (or n.UUID empty) gives an *IdentityError, and no
// reset is sent.
func (c *Client) Reset(ctx context.Context, n Node) error {
	if strings.TrimSpace(n.UUID) == "" {
		return &IdentityError{Node: n.Name, IP: n.IP, Op: "reset"}
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ResetTimeout)
	defer cancel()
	tc, nctx, err := c.secureClient(ctx, n.IP)
	if err != nil {
		return fmt.Errorf("talos reset: node %s: %v", n.Name, err)
	}
	defer func() { _ = tc.Close() }()
	pause := c.pauses()
	for attempt := 1; ; attempt++ {
		err = c.identity(nctx, tc, n, "reset")
		var ie *IdentityError
		if errors.As(err, &ie) {
			c.log.Warn("talos reset refused: another machine at the address", zap.String("node", n.Name), zap.String("ip", n.IP),
				zap.String("expected_uuid", ie.Expected), zap.String("found_uuid", ie.Found))
			return err
		}
		if err == nil {
			err = tc.ResetGeneric(nctx, &machineapi.ResetRequest{
				Graceful: true,
				Reboot:   false,
				Mode:     machineapi.ResetRequest_ALL,
			})
		}
		if err == nil {
			c.log.Info("talos reset requested", zap.String("node", n.Name), zap.String("ip", n.IP))
			return nil
		}
		if te := tlsFailure(n.Name, err); te != nil {
			return te
		}
		if !retryable(err) {
			return &RejectedError{Node: n.Name, Op: "reset", Message: talosMessage(err)}
		}
		select {
		case <-ctx.Done():
			return &UnreachableError{Node: n.Name, Op: "reset", Err: fmt.Errorf("no answer within %s (%d attempts): %v", c.opts.ResetTimeout, attempt, talosMessage(err))}
		case <-time.After(pause()):
		}
	}
}

// Version asks the node's Talos API (with mTLS) for its version: the probe
// that a node is up and is ours.
func (c *Client) Version(ctx context.Context, n Node) (string, error) {
	tc, nctx, err := c.secureClient(ctx, n.IP)
	if err != nil {
		return "", fmt.Errorf("talos version: node %s: %v", n.Name, err)
	}
	defer func() { _ = tc.Close() }()
	resp, err := tc.Version(nctx)
	if err != nil {
		if te := tlsFailure(n.Name, err); te != nil {
			return "", te
		}
		if retryable(err) {
			return "", &UnreachableError{Node: n.Name, Op: "version", Err: errors.New(talosMessage(err))}
		}
		return "", &RejectedError{Node: n.Name, Op: "version", Message: talosMessage(err)}
	}
	for _, m := range resp.GetMessages() {
		if v := m.GetVersion(); v != nil {
			return v.GetTag(), nil
		}
	}
	return "", fmt.Errorf("talos version: node %s answered without a version", n.Name)
}

// retryable reports whether err means "not answering (yet)" rather than a refusal.
func retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// tlsFailure recognises a certificate that did not verify.
func tlsFailure(node string, err error) error {
	if status.Code(err) != codes.Unavailable {
		return nil
	}
	msg := status.Convert(err).Message()
	for _, s := range []string{"x509:", "tls: ", "certificate"} {
		if strings.Contains(msg, s) {
			return &TLSError{Node: node, Err: errors.New(msg)}
		}
	}
	return nil
}

// talosMessage is the text Talos (or gRPC) gave, without the rpc error prefix.
func talosMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// OptionsFrom takes the adapter's files from the config's talos section.
func OptionsFrom(c config.Talos, log *zap.Logger) Options {
	return Options{
		WorkerConfigFile: c.WorkerConfigFile,
		TalosconfigFile:  c.TalosconfigFile,
		PatchFiles:       c.PatchFiles,
		Port:             c.Port,
		Log:              log,
	}
}

// CheckCA verifies that the talosconfig's CA is one the worker config's
// machines present (machine.ca, or one of machine.acceptedCAs): otherwise
// every reset would fail TLS verification against the nodes it creates.
func (c *Client) CheckCA() error {
	cx := c.talosconfig.Contexts[c.talosconfig.Context]
	caPEM, err := base64.StdEncoding.DecodeString(cx.CA)
	if err != nil {
		return fmt.Errorf("talosconfig %s: context %q: the CA is not base64: %v", c.opts.TalosconfigFile, c.talosconfig.Context, err)
	}
	want, err := firstCert(caPEM)
	if err != nil {
		return fmt.Errorf("talosconfig %s: context %q: the CA: %v", c.opts.TalosconfigFile, c.talosconfig.Context, err)
	}
	sec := c.worker.Machine().Security()
	var have [][]byte
	if ca := sec.IssuingCA(); ca != nil {
		have = append(have, ca.Crt)
	}
	for _, a := range sec.AcceptedCAs() {
		have = append(have, a.Crt)
	}
	for _, pemBytes := range have {
		if got, err := firstCert(pemBytes); err == nil && bytes.Equal(got.Raw, want.Raw) {
			return nil
		}
	}
	return fmt.Errorf("talosconfig %s: its CA (%s) is not the CA of the machines %s configures: resets would fail TLS verification; use the talosconfig generated with this worker config (talosctl gen config writes both)",
		c.opts.TalosconfigFile, want.Subject, c.opts.WorkerConfigFile)
}

func firstCert(pemBytes []byte) (*stdx509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return stdx509.ParseCertificate(block.Bytes)
}
