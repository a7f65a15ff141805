package daemon

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/internal/readlimit"
	"github.com/pve-autoscaler/pve-autoscaler/kube"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// Metrics are the daemon's Prometheus metrics, in a registry of their own.
type Metrics struct {
	Registry      *prometheus.Registry
	nodes         *prometheus.GaugeVec
	events        *prometheus.CounterVec
	steps         *prometheus.HistogramVec
	errors        *prometheus.CounterVec
	utilization   *prometheus.GaugeVec
	lastDecision  prometheus.Gauge
	standby       *prometheus.GaugeVec
	standbyOldest prometheus.Gauge
	safetyHolds   prometheus.Counter
	stuck         prometheus.Gauge
	pools         *prometheus.GaugeVec
	paused        prometheus.Gauge
	pausedUntil   prometheus.Gauge
	boosts        *prometheus.GaugeVec
}

// NewMetrics registers the metrics.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.nodes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pve_autoscaler_workers", Help: "Workers by state: ready, not_ready, provisioning, removing, stuck (provisions that make no progress by themselves)."}, []string{"state"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pve_autoscaler_scale_events_total", Help: "Provisions (up) and removals (down) finished, by result."}, []string{"direction", "result"})
	m.steps = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pve_autoscaler_step_duration_seconds", Help: "Duration of each provisioning and removal step.",
		Buckets: []float64{0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600}}, []string{"operation", "step"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pve_autoscaler_errors_total", Help: "Errors by stage: tick, provision, remove."}, []string{"stage"})
	m.utilization = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pve_autoscaler_utilization_ratio", Help: "Cluster utilization of Ready, schedulable workers (0-1), by resource."}, []string{"resource"})
	m.lastDecision = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pve_autoscaler_last_decision_timestamp_seconds", Help: "When the last decision was made (Unix time)."})
	m.standby = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pve_autoscaler_standby_workers", Help: "Standby workers: size (configured), ready (startable), stale (to be replaced)."}, []string{"state"})
	m.standbyOldest = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pve_autoscaler_standby_oldest_age_seconds", Help: "Age of the oldest standby worker (0: none)."})
	m.safetyHolds = prometheus.NewCounter(prometheus.CounterOpts{Name: "pve_autoscaler_safety_holds_total", Help: "Decisions on which nothing destructive was done because the Proxmox and Kubernetes views disagreed (see /status safety_hold)."})
	m.stuck = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pve_autoscaler_stuck_vms", Help: "VMs of ours that make no progress by themselves: kept, backing off after a failure, or provisioning past max_provision_time (see /status stuck)."})
	m.pools = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pve_autoscaler_pool_workers", Help: "Workers of each worker pool by state: ready, not_ready, provisioning, min, max, pending (pods counted toward its new workers)."}, []string{"pool", "state"})
	m.paused = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pve_autoscaler_paused", Help: "1 while `pve-autoscaler pause` holds every scaling action (see /status plan.paused), else 0."})
	m.pausedUntil = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pve_autoscaler_paused_until_timestamp_seconds", Help: "When the pause ends on its own (Unix time; 0: not paused, or only `resume` ends it)."})
	m.boosts = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pve_autoscaler_boost_workers", Help: "The minimum each active boost (`pve-autoscaler boost`) raises, by pool (\"\": all pools together)."}, []string{"pool"})
	m.Registry.MustRegister(m.nodes, m.events, m.steps, m.errors, m.utilization, m.lastDecision, m.standby, m.standbyOldest, m.safetyHolds, m.stuck, m.pools, m.paused, m.pausedUntil, m.boosts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Step records a step's duration.
func (m *Metrics) Step(kind scaler.OperationKind, step string, took time.Duration) {
	m.steps.WithLabelValues(string(kind), step).Observe(took.Seconds())
}

// Done records an operation's outcome.
func (m *Metrics) Done(kind scaler.OperationKind, err error) {
	dir := "up"
	switch kind {
	case scaler.OpRemove:
		dir = "down"
	case scaler.OpRefill, scaler.OpRetire:
		dir = string(kind) // standby's upkeep
	}
	result := "success"
	if err != nil {
		result = "failure"
		m.errors.WithLabelValues(string(kind)).Inc()
	}
	m.events.WithLabelValues(dir, result).Inc()
}

// SafetyHold counts a decision taken under a safety hold.
func (m *Metrics) SafetyHold(string) { m.safetyHolds.Inc() }

// Tick records a tick's plan or error.
func (m *Metrics) Tick(p scaler.Plan, err error) {
	if err != nil {
		m.errors.WithLabelValues("tick").Inc()
		return
	}
	w := p.Workers
	m.nodes.WithLabelValues("ready").Set(float64(w.Ready))
	m.nodes.WithLabelValues("not_ready").Set(float64(w.NotReady))
	m.nodes.WithLabelValues("provisioning").Set(float64(w.Provisioning))
	m.nodes.WithLabelValues("removing").Set(float64(w.Removing))
	m.nodes.WithLabelValues("stuck").Set(float64(w.Stuck))
	if u := p.Utilization; u != nil {
		m.utilization.WithLabelValues("cpu").Set(u.CPU / 100)
		m.utilization.WithLabelValues("memory").Set(u.Memory / 100)
	}
	m.lastDecision.Set(float64(p.Time.Unix()))
	m.paused.Set(0)
	m.pausedUntil.Set(0)
	if p.Paused != nil {
		m.paused.Set(1)
		if !p.Paused.Until.IsZero() {
			m.pausedUntil.Set(float64(p.Paused.Until.Unix()))
		}
	}
	m.boosts.Reset()
	for _, b := range p.Boosts {
		m.boosts.WithLabelValues(b.Pool).Set(float64(b.Workers))
	}
	m.pools.Reset() // a pool gone from the config leaves no series behind
	for _, ps := range p.Pools {
		for state, v := range map[string]int{"ready": ps.Ready, "not_ready": ps.NotReady, "provisioning": ps.Provisioning, "min": ps.Min, "max": ps.Max, "pending": ps.Pending} {
			m.pools.WithLabelValues(ps.Name, state).Set(float64(v))
		}
	}
	var size, ready, stale int
	var oldest time.Duration
	if pl := p.Standby; pl != nil {
		size, ready = pl.Size, pl.Ready
		for _, mb := range pl.Members {
			if mb.Stale != "" {
				stale++
			}
			oldest = max(oldest, mb.Age)
		}
	}
	m.standby.WithLabelValues("size").Set(float64(size))
	m.standby.WithLabelValues("ready").Set(float64(ready))
	m.standby.WithLabelValues("stale").Set(float64(stale))
	m.standbyOldest.Set(oldest.Seconds())
}

// Server serves /healthz, /readyz, /metrics and /status.
type Server struct {
	rec      *scaler.Reconciler
	metrics  *Metrics
	interval time.Duration

	mu       sync.Mutex
	lastOK   time.Time
	leader   bool
	election bool

	// statusToken, when set, is the bearer token /status requires.
	statusToken []byte
}

// NewServer builds the HTTP handlers.
func NewServer(rec *scaler.Reconciler, m *Metrics, interval time.Duration) *Server {
	return &Server{rec: rec, metrics: m, interval: interval}
}

// RequireStatusToken makes /status answer only requests carrying
// "Authorization: Bearer TOKEN". /metrics, /healthz and /readyz stay open.
func (s *Server) RequireStatusToken(token string) { s.statusToken = []byte(token) }

// authorized compares the request's bearer token with the configured one
// in constant time.
func (s *Server) authorized(r *http.Request) bool {
	if len(s.statusToken) == 0 {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), s.statusToken) == 1
}

// MaxStatusToken is the largest status token file read (a token is a few
// dozen bytes).
const MaxStatusToken = 4 << 10

// ReadStatusToken reads daemon.status_token_file: the token is the file's
// content without surrounding white space, and it may not be empty.
func ReadStatusToken(path string) (string, error) {
	b, err := readlimit.ReadFile(path, MaxStatusToken)
	var big *readlimit.TooLargeError
	if errors.As(err, &big) {
		return "", fmt.Errorf("daemon.status_token_file: %s: %s: expected a token of at most %d bytes (e.g. openssl rand -hex 32 > %s)", path, big.Held(), MaxStatusToken, path)
	}
	if err != nil {
		return "", fmt.Errorf("daemon.status_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("daemon.status_token_file: %s is empty: expected a token (e.g. openssl rand -hex 32 > %s)", path, path)
	}
	return tok, nil
}

// Stuck sets the count of stuck VMs (scaler.Status.Stuck).
func (m *Metrics) Stuck(n int) { m.stuck.Set(float64(n)) }

// Ticked records a tick's outcome for /readyz and the metrics.
func (s *Server) Ticked(p scaler.Plan, err error) {
	s.metrics.Tick(p, err)
	if err == nil {
		s.metrics.Stuck(len(s.rec.Status().Stuck))
		s.mu.Lock()
		s.lastOK = time.Now()
		s.mu.Unlock()
	}
}

// SetLeader tells /status whether this daemon leads.
func (s *Server) SetLeader(on bool) { s.mu.Lock(); s.leader = on; s.mu.Unlock() }

// Handler is the daemon's HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		last, leader, election := s.lastOK, s.leader, s.election
		s.mu.Unlock()
		switch {
		case !leader && election:
			_, _ = w.Write([]byte("ok: standby, another daemon leads\n"))
		case last.IsZero() || time.Since(last) > 3*s.interval:
			http.Error(w, "not ready: no successful tick in the last "+(3*s.interval).String(), http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pve-autoscaler"`)
			http.Error(w, "unauthorized: /status needs Authorization: Bearer TOKEN (daemon.status_token_file)", http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		leader := s.leader
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Leader bool `json:"leader"`
			scaler.Status
		}{leader, s.rec.Status()})
	})
	return mux
}

// Serve listens on addr (empty: no HTTP) until ctx ends.
func Serve(ctx context.Context, addr string, h http.Handler, log *zap.Logger) (string, error) {
	if addr == "" {
		return "", nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := newHTTPServer(h)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server", zap.Error(err))
		}
	}()
	return lis.Addr().String(), nil
}

// newHTTPServer bounds what one client can hold: a slow or idle client
// cannot keep a connection (and its goroutine) forever, nor send megabytes
// of headers.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// Run ticks until ctx ends (leading first, when leader election is on),
// then stops gracefully.
func (d *Daemon) Run(ctx context.Context, srv *Server) error {
	interval := d.Config.Policy.Interval.D()
	var once sync.Once
	trace := d.openTrace()
	defer trace.close()
	tick := func(lctx context.Context) {
		// A dry run leads nothing: it takes no part in leader election.
		srv.SetLeader(!d.dryRun)
		d.Reconciler.Run(lctx, interval, func(p scaler.Plan, err error) {
			srv.Ticked(p, err)
			trace.record(p, err)
			// Start-up is over once the first decision is made: what only
			// package initialisation touched goes back to the kernel.
			once.Do(func() {
				go func() {
					if n := ReleaseStartupPages(); n > 0 {
						d.log.Info("released start-up pages of the executable", zap.String("size", fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))))
					}
				}()
			})
		})
	}
	le := d.Config.Daemon.LeaderElection
	if le.Enabled && d.dryRun {
		// Taking part would write the Lease, and could keep it from the
		// daemon that acts: a dry run changes nothing anywhere.
		d.log.Info("dry run: not taking part in leader election (it writes the Lease)", zap.String("lease", le.Namespace+"/"+le.LeaseName))
	}
	if !le.Enabled || d.dryRun {
		tick(ctx)
		return nil
	}
	srv.mu.Lock()
	srv.election = true
	srv.mu.Unlock()
	// Hostname plus a random suffix: two daemons never share an identity,
	// not even on one host.
	host, _ := os.Hostname()
	id := host + "_" + rand.Text()[:8]
	lo := kube.LeaderOptions{Namespace: le.Namespace, Name: le.LeaseName, Identity: id, Log: d.log,
		Lease: d.lease[0], Renew: d.lease[1], Retry: d.lease[2],
		// A Lease lost during the grace of a stop ends operations at once.
		OnLost: d.Reconciler.Abort}
	if err := kube.RunLeader(ctx, d.Kube.Clientset(), lo, tick); err != nil {
		return err
	}
	srv.SetLeader(false)
	if ctx.Err() == nil {
		// A reconciler that stopped cannot tick again: exit, and let the
		// service manager start a fresh daemon that competes for the lease.
		return errors.New("leadership lost: exiting so the service manager restarts a fresh daemon")
	}
	return nil
}
