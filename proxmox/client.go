// Package proxmox is the scaler's adapter to the Proxmox VE API, built on
// github.com/luthermonson/go-proxmox: inventory of our VMs and the hosts'
// room, placement, the provisioning steps (allocate id, clone, configure,
// start, discover the IP) and removal (shutdown, stop, destroy), each safe
// to repeat, with ownership checked before every destructive call.
package proxmox

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	goprox "github.com/luthermonson/go-proxmox"
	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

// Tags on every VM the scaler creates; both must be present for it to
// touch a VM.
const TagOwner = "pve-autoscaler"

// ClusterTag is the tag naming the cluster a VM belongs to.
func ClusterTag(cluster string) string { return "cluster-" + cluster }

// Options configures the adapter.
type Options struct {
	Proxmox config.Proxmox
	Cluster string
	Log     *zap.Logger
	// TemplateCheck is how long a read template digest is trusted (default 5m).
	TemplateCheck time.Duration
	// PollInterval is the longest pause between task and agent polls
	// (default 500ms); polls start at 50ms and grow by half each time.
	PollInterval time.Duration
	// Version is written into the VMs' description (default "dev").
	Version string
	// RequestTimeout bounds one HTTP request (default 30s): a hung PVE
	// proxy must not hang the scaler.
	RequestTimeout time.Duration
	// Pools are the worker pools (config.WorkerPools); none: one pool
	// named default of proxmox.template and proxmox.vm.
	Pools []config.Pool
	// Now is the clock the VMs' recorded creation times are read on
	// (default time.Now); the reconciler measures max_provision_time on it.
	Now func() time.Time
	// Build, when set, is the digest of what a new worker of a pool is
	// made from besides the template and the VM size (the Talos worker
	// config and patches, the pool's labels and taints): recorded in each
	// clone's description and compared for drift (Machine.Drift).
	Build func(pool string) string
}

// Client is the Proxmox adapter.
type Client struct {
	api     *goprox.Client
	cfg     config.Proxmox
	cluster string
	log     *zap.Logger
	poll    time.Duration
	version string
	clones  chan struct{} // bounds clones running at once
	now     func() time.Time

	mu            sync.Mutex
	claimed       map[int]bool     // vmids being allocated by this process
	metas         map[int]Meta     // description metadata, by vmid
	macs          map[string]int   // DHCP reservations reserved, by upper-case MAC: the vmid
	untagged      map[int]string   // VMs this process cloned and has not tagged yet: the description sent
	seen          map[int]bool     // ids in our range of VMs this process has listed
	tplDigests    map[int]digestAt // each template's identity, and when it was read, by vmid
	templateCheck time.Duration
	pools         []config.Pool // the worker pools (config.WorkerPools)
	build         func(pool string) string
}

// New connects to PVE with the token read from its file and TLS verified
// as configured. It makes no API call.
func New(opts Options) (*Client, error) {
	p := opts.Proxmox
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	secret, err := os.ReadFile(p.TokenSecretFile)
	if err != nil {
		return nil, fmt.Errorf("proxmox.token_secret_file %s: %w", p.TokenSecretFile, unwrapPath(err))
	}
	tok := strings.TrimSpace(string(secret))
	if tok == "" || strings.ContainsAny(tok, " \n\t") {
		return nil, fmt.Errorf("proxmox.token_secret_file %s: expected the token secret alone on one line", p.TokenSecretFile)
	}
	tlsCfg, err := tlsConfig(p.TLS)
	if err != nil {
		return nil, err
	}
	if p.TLS.InsecureSkipVerify {
		log.Warn("TLS verification of the PVE API is off (proxmox.tls.insecure_skip_verify): anyone on the path can read the API token")
	}
	base, err := apiURL(p.URL)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{
		Transport: &statusTransport{base: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second}},
		Timeout: opts.RequestTimeout,
	}
	if hc.Timeout <= 0 {
		hc.Timeout = 30 * time.Second
	}
	poll := opts.PollInterval
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	return &Client{
		api:     goprox.NewClient(base, goprox.WithAPIToken(p.TokenID, tok), goprox.WithHTTPClient(hc)),
		cfg:     p,
		cluster: opts.Cluster,
		log:     log,
		poll:    poll,
		templateCheck: func() time.Duration {
			if opts.TemplateCheck > 0 {
				return opts.TemplateCheck
			}
			return 5 * time.Minute
		}(),
		version: version,
		clones:  make(chan struct{}, max(p.MaxParallel, 1)),
		now:     now,
		claimed: map[int]bool{}, metas: map[int]Meta{}, macs: map[string]int{}, untagged: map[int]string{}, seen: map[int]bool{},
		tplDigests: map[int]digestAt{},
		pools:      poolsOr(opts.Pools, p),
		build:      opts.Build,
	}, nil
}

// Now is the adapter's clock: creation times in descriptions are on it.
func (c *Client) Now() time.Time { return c.now() }

// apiURL makes sure the base URL ends in /api2/json, as go-proxmox needs.
func apiURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("proxmox.url %q: expected e.g. https://pve1.lan:8006/api2/json", raw)
	}
	u.Path = "/api2/json"
	return u.String(), nil
}

// tlsConfig verifies by the system roots, a CA file, or a pinned SHA-256
// certificate fingerprint.
func tlsConfig(t config.TLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case t.InsecureSkipVerify:
		cfg.InsecureSkipVerify = true //nolint:gosec // only when configured, with a warning
	case t.CAFile != "":
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("proxmox.tls.ca_file %s: %w", t.CAFile, unwrapPath(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("proxmox.tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	case t.Fingerprint != "":
		want, err := config.ParseFingerprint(t.Fingerprint)
		if err != nil {
			return nil, fmt.Errorf("proxmox.tls.fingerprint: %w", err)
		}
		// The pin replaces chain verification: PVE's default certificate is
		// self-signed, and the fingerprint is what its UI shows.
		cfg.InsecureSkipVerify = true //nolint:gosec // verified by the pin below
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("PVE sent no certificate")
			}
			got := sha256.Sum256(raw[0])
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("PVE certificate fingerprint %s does not match proxmox.tls.fingerprint", fingerprint(got[:]))
			}
			return nil
		}
	}
	return cfg, nil
}

func fingerprint(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

// statusTransport makes every error answer an error for go-proxmox. The
// library turns only 500 and 501 into errors (keeping the status line, where
// PVE puts its message) and reads 401/403 as a bare "not authorized"; a 595
// from a dead cluster node would pass as success with no data. Here every
// answer of 401 and up, except 400 (which go-proxmox reports with PVE's
// errors map), becomes a 500 whose status line keeps the original code and
// PVE's text: "595 Connection refused", "403 Permission check failed (...)".
type statusTransport struct{ base http.RoundTripper }

func (t *statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	if err != nil || res.StatusCode < 401 {
		return res, err
	}
	res.Status = strconv.Itoa(res.StatusCode) + " " + strings.TrimSpace(strings.TrimPrefix(res.Status, strconv.Itoa(res.StatusCode)))
	res.StatusCode = http.StatusInternalServerError
	return res, nil
}

// APIError is an error answer from PVE with its status code and text.
type APIError struct {
	Code    int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("PVE answered %d %s", e.Code, e.Message) }

// apiErr turns go-proxmox's errors back into an *APIError when they carry
// a status line.
func apiErr(err error) error {
	if err == nil {
		return nil
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return err
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "bad request: "); ok {
		return &APIError{Code: 400, Message: strings.TrimPrefix(rest, "400 ")}
	}
	if len(msg) > 4 && msg[3] == ' ' {
		if code, e := strconv.Atoi(msg[:3]); e == nil {
			return &APIError{Code: code, Message: msg[4:]}
		}
	}
	return err
}

// transient reports whether an error is worth retrying: lock timeouts,
// proxy and gateway errors, network errors. PVE's 500s that state a fact
// ("VM 101 is running", "does not exist") are not.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	msg := err.Error()
	if strings.Contains(msg, "got timeout") || strings.Contains(msg, "can't lock file") {
		return true
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case 502, 503, 504, 595, 596:
			return true
		}
		return false
	}
	var te *TaskError
	var tt *TaskTimeoutError
	var no *NotOursError
	if errors.As(err, &te) || errors.As(err, &tt) || errors.As(err, &no) || errors.Is(err, ErrIDTaken) || errors.Is(err, ErrGone) {
		return false
	}
	// Network errors, timeouts of a single request.
	return true
}

// backoff returns a poll's pause schedule: 50ms first, growing by half
// each time up to the poll interval, so a short task is seen done within
// a fraction of its length and a long one costs a request per interval.
func (c *Client) backoff() func() time.Duration {
	d := min(50*time.Millisecond, c.poll)
	return func() time.Duration {
		cur := d
		d = min(d*3/2, c.poll)
		return cur
	}
}

// retry runs f with exponential backoff while it fails transiently.
func (c *Client) retry(ctx context.Context, what string, f func() error) error {
	delay := c.poll
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || !transient(err) || attempt >= 6 {
			return err
		}
		c.log.Info("PVE call failed, retrying", zap.String("call", what), zap.Int("attempt", attempt), zap.Error(err))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// TaskError is a PVE task that ended with an error status.
type TaskError struct {
	UPID   string
	Type   string
	Status string
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("PVE task %s failed: %s", e.Type, e.Status)
}

// TaskTimeoutError is a task still running after task_timeout. It is not
// retried: the task may still finish and leave its result (a cloned VM)
// for destroy to find.
type TaskTimeoutError struct {
	UPID    string
	Type    string
	Timeout time.Duration
}

func (e *TaskTimeoutError) Error() string {
	return fmt.Sprintf("PVE task %s (%s) did not finish within %s", e.Type, e.UPID, e.Timeout)
}

type taskStatus struct {
	UPID       string `json:"upid"`
	Node       string `json:"node"`
	Type       string `json:"type"`
	Status     string `json:"status"`
	ExitStatus string `json:"exitstatus"`
}

// waitTask polls a task until it stops, bounded by task_timeout. "OK" and
// "WARNINGS: n" are success (go-proxmox's Task.Wait returns nil on failure
// and sleeps without watching the context, so it is not used).
func (c *Client) waitTask(ctx context.Context, upid string) error {
	parts := strings.Split(upid, ":")
	if len(parts) < 9 || parts[0] != "UPID" {
		return fmt.Errorf("PVE answered %q where a task id (UPID) was expected", upid)
	}
	node, typ := parts[1], parts[5]
	limit := c.cfg.TaskTimeout.D()
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < limit {
		limit = max(time.Until(dl), 0).Round(time.Millisecond) // the caller's deadline comes first
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.TaskTimeout.D())
	defer cancel()
	path := fmt.Sprintf("/nodes/%s/tasks/%s/status", node, url.PathEscape(upid))
	pause := c.backoff()
	for {
		var st taskStatus
		err := apiErr(c.api.Get(ctx, path, &st))
		switch {
		case err == nil && st.Status == "stopped":
			switch {
			case st.ExitStatus == "OK":
				return nil
			case strings.HasPrefix(st.ExitStatus, "WARNINGS"):
				c.log.Warn("PVE task ended with warnings", zap.String("type", typ), zap.String("upid", upid), zap.String("exitstatus", st.ExitStatus))
				return nil
			}
			return &TaskError{UPID: upid, Type: typ, Status: st.ExitStatus}
		case err != nil && !transient(err) && !strings.Contains(err.Error(), "no such task"):
			return fmt.Errorf("PVE task %s: %w", typ, err)
		}
		select {
		case <-ctx.Done():
			return &TaskTimeoutError{UPID: upid, Type: typ, Timeout: limit}
		case <-time.After(pause()):
		}
	}
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
