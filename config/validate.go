package config

import (
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// ValidateOptions says how far validation reaches.
type ValidateOptions struct {
	// CheckFiles checks that referenced files exist, and that secret files
	// are not readable by other users. `plan --snapshot` turns it off: only
	// the policy matters for a replay.
	CheckFiles bool
}

// MinThresholdGap is the distance between scale-up and scale-down
// thresholds under which a warning is given: close thresholds flap.
const MinThresholdGap = 30

var (
	tagRE    = regexp.MustCompile(`^[a-z0-9_][a-z0-9_\-+.]*$`)
	tokenRE  = regexp.MustCompile(`^[^@!\s]+@[^@!\s]+![A-Za-z][A-Za-z0-9._-]*$`)
	prefixRE = regexp.MustCompile(`^[a-z]([a-z0-9-]*)$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// vmNameRE is PVE's dns-name format for VM names.
	vmNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)
	hostRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
)

// Upper bounds on values, so an absurd number is refused instead of
// overflowing later; config.example.yaml states each beside its field.
const (
	MaxWorkers      = 1000
	MaxNodesPerStep = 100
	MaxVMMemory     = 4 << 40 // PVE's own limit is 4178944 MiB
	MaxHostReserve  = 4 << 40
	MaxScheduleName = 63
	day             = 24 * time.Hour
)

// Validate checks every field and returns all problems (the config cannot
// be used) and all warnings (it can, but probably should not be).
func (c *Config) Validate(opts ValidateOptions) (problems, warnings []Problem) {
	v := &validator{opts: opts}
	v.cluster(c)
	v.proxmox(c)
	v.talos(c)
	v.kubernetes(c)
	v.policy(c)
	v.pools(c)
	v.daemon(c)
	return v.problems, v.warnings
}

type validator struct {
	opts               ValidateOptions
	problems, warnings []Problem
}

func (v *validator) fail(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) warn(path, format string, args ...any) {
	v.warnings = append(v.warnings, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) cluster(c *Config) {
	n := c.Cluster.Name
	switch {
	case n == "":
		v.fail("cluster.name", "required: a short name for this cluster (it goes into VM tags as cluster-<name>)")
	case !tagRE.MatchString("cluster-"+n) || len(n) > 40:
		v.fail("cluster.name", "%q is not usable in a PVE tag: expected lowercase letters, digits, '_', '-', '+' or '.', at most 40 characters", n)
	}
}

func (v *validator) proxmox(c *Config) {
	p := c.Proxmox
	if p.URL == "" {
		v.fail("proxmox.url", "required: the PVE API URL, e.g. https://pve1.lan:8006/api2/json")
	} else if hasUserinfo(p.URL) {
		// The URL is not repeated: it may hold a password.
		v.fail("proxmox.url", "holds a user name or password (USER:PASSWORD@): remove it; the API token (token_id, token_secret_file) is how the scaler logs in, and a password here would be shown by every tool that prints the URL")
	} else if u, err := url.Parse(p.URL); err != nil || u.Host == "" {
		v.fail("proxmox.url", "%q is not a URL: expected e.g. https://pve1.lan:8006/api2/json", p.URL)
	} else if u.Scheme != "https" {
		v.fail("proxmox.url", "%q: expected an https:// URL (the token travels in every request)", p.URL)
	} else if u.Path != "" && u.Path != "/" && strings.TrimSuffix(u.Path, "/") != "/api2/json" {
		v.fail("proxmox.url", "%q: expected the path /api2/json (or none)", p.URL)
	}
	switch {
	case p.TokenID == "":
		v.fail("proxmox.token_id", "required: the API token id, e.g. autoscaler@pve!scaler")
	case !tokenRE.MatchString(p.TokenID):
		v.fail("proxmox.token_id", "%q: expected USER@REALM!TOKENID, e.g. autoscaler@pve!scaler", p.TokenID)
	}
	if p.TokenSecretFile == "" {
		v.fail("proxmox.token_secret_file", "required: a file holding the token secret (the secret is never written in this file)")
	} else if v.secretFile("proxmox.token_secret_file", p.TokenSecretFile) && emptyFile(p.TokenSecretFile) {
		v.fail("proxmox.token_secret_file", "%s is empty: expected the token secret (the UUID PVE shows once when the token is created)", p.TokenSecretFile)
	}

	if p.TLS.CAFile != "" {
		v.file("proxmox.tls.ca_file", p.TLS.CAFile, "decides which certificate the API token is sent to")
	}
	if p.TLS.Fingerprint != "" {
		if _, err := ParseFingerprint(p.TLS.Fingerprint); err != nil {
			v.fail("proxmox.tls.fingerprint", "%v", err)
		}
	}
	set := 0
	for _, b := range []bool{p.TLS.CAFile != "", p.TLS.Fingerprint != "", p.TLS.InsecureSkipVerify} {
		if b {
			set++
		}
	}
	if set > 1 {
		v.fail("proxmox.tls", "ca_file, fingerprint and insecure_skip_verify exclude each other: set at most one")
	}
	if p.TLS.InsecureSkipVerify {
		v.warn("proxmox.tls.insecure_skip_verify", "TLS certificates are not verified: anyone on the path can read the API token; prefer fingerprint")
	}

	if len(c.Pools) == 0 {
		v.template("proxmox.template", p.Template)
	}
	switch p.CloneMode {
	case "linked":
		if p.Storage != "" {
			v.fail("proxmox.storage", "%q: a target storage is only allowed with clone_mode full (PVE refuses it for linked clones)", p.Storage)
		}
	case "full":
	default:
		v.fail("proxmox.clone_mode", "%q: expected linked or full", p.CloneMode)
	}
	if p.Storage != "" && !nameRE.MatchString(p.Storage) {
		v.fail("proxmox.storage", "%q is not a PVE storage id", p.Storage)
	}
	switch {
	case p.Pool != "" && p.ResourcePool != "":
		v.fail("proxmox.pool", "%q: the old name of proxmox.resource_pool, which is set too (%q): keep resource_pool only", shorten(p.Pool, 80), shorten(p.ResourcePool, 80))
	case p.Pool != "":
		v.warn("proxmox.pool", "renamed proxmox.resource_pool: still read, but write resource_pool: %s", shorten(p.Pool, 80))
		if !nameRE.MatchString(p.Pool) {
			v.fail("proxmox.pool", "%q is not a PVE pool id", shorten(p.Pool, 80))
		}
	case p.ResourcePool != "" && !nameRE.MatchString(p.ResourcePool):
		v.fail("proxmox.resource_pool", "%q is not a PVE pool id", shorten(p.ResourcePool, 80))
	}
	for i, h := range p.Hosts {
		if !nameRE.MatchString(h) {
			v.fail(fmt.Sprintf("proxmox.hosts[%d]", i), "%q is not a PVE node name", h)
		}
	}
	if p.HostMemReserve < 0 || p.HostMemReserve > MaxHostReserve {
		v.fail("proxmox.host_memory_reserve", "%s: expected 0 to %s", p.HostMemReserve, ByteSize(MaxHostReserve))
	}
	v.vm("proxmox.vm", p.VM)
	if !prefixRE.MatchString(p.NamePrefix) || len(p.NamePrefix) > 50 {
		v.fail("proxmox.name_prefix", "%q: expected a hostname start: lowercase letters, digits and '-', starting with a letter, at most 50 characters", p.NamePrefix)
	}
	r := p.VMIDRange
	switch {
	case r.Min < 100 || r.Max > 999999999:
		v.fail("proxmox.vmid_range", "%d..%d: expected ids within 100..999999999", r.Min, r.Max)
	case r.Min > r.Max:
		v.fail("proxmox.vmid_range", "min %d is above max %d", r.Min, r.Max)
	case r.Max-r.Min+1 < c.Policy.MaxWorkers:
		v.fail("proxmox.vmid_range", "%d..%d holds %d ids, fewer than policy.max_workers %d", r.Min, r.Max, r.Max-r.Min+1, c.Policy.MaxWorkers)
	}
	if p.MaxParallel < 1 || p.MaxParallel > 32 {
		v.fail("proxmox.max_parallel_clones", "%d: expected 1..32", p.MaxParallel)
	}
	if p.IPCIDR != "" {
		if pfx, err := netip.ParsePrefix(p.IPCIDR); err != nil || !pfx.Addr().Is4() {
			v.fail("proxmox.ip_cidr", "%q: expected an IPv4 CIDR such as 192.168.10.0/24", p.IPCIDR)
		}
	}
	for _, r := range c.renamed {
		if r.both {
			v.fail(r.old, "the old name of %s, which is set too: keep %s only", r.new, r.new)
		} else {
			v.warn(r.old, "renamed %s: still read, rename the key", r.new)
		}
	}
	reservations := c.givenAs("proxmox.dhcp_reservations")
	seen := map[string]bool{}
	for i, e := range p.DHCPReservations {
		path := fmt.Sprintf("%s[%d]", reservations, i)
		if hw, err := net.ParseMAC(e.MAC); err != nil || len(hw) != 6 {
			v.fail(path+".mac", "%q: expected a MAC address such as BC:24:11:00:00:01", e.MAC)
		} else if seen[strings.ToUpper(e.MAC)] {
			v.fail(path+".mac", "%q appears twice", e.MAC)
		}
		seen[strings.ToUpper(e.MAC)] = true
		if a, err := netip.ParseAddr(e.IP); err != nil || !a.Is4() {
			v.fail(path+".ip", "%q: expected an IPv4 address", e.IP)
		}
	}
	if n := len(p.DHCPReservations); n > 0 && n < c.Policy.MaxWorkers {
		v.warn(reservations, "%d entries for up to %d workers (policy.max_workers): scale-ups stop when they run out", n, c.Policy.MaxWorkers)
	}
	for _, d := range []struct {
		path     string
		d        Duration
		min, max time.Duration
	}{
		{"proxmox.task_timeout", p.TaskTimeout, 10 * time.Second, day},
		{"proxmox.agent_timeout", p.AgentTimeout, 10 * time.Second, day},
		{"proxmox.shutdown_timeout", p.ShutdownTimeout, time.Second, time.Hour},
	} {
		if d.d.D() < d.min || d.d.D() > d.max {
			v.fail(d.path, "%s: expected %s to %s", d.d.D(), ShortDuration(d.min), ShortDuration(d.max))
		}
	}
}

func (v *validator) talos(c *Config) {
	t := c.Talos
	if t.WorkerConfigFile == "" {
		v.fail("talos.worker_config_file", "required: the worker machine config (talosctl gen config's worker.yaml)")
	} else {
		v.secretFile("talos.worker_config_file", t.WorkerConfigFile)
	}
	if t.TalosconfigFile == "" {
		v.fail("talos.talosconfig_file", "required: the talosconfig used to reset nodes on scale-down")
	} else {
		v.secretFile("talos.talosconfig_file", t.TalosconfigFile)
	}
	for i, f := range t.PatchFiles {
		v.file(fmt.Sprintf("talos.patch_files[%d]", i), f, "controls every new node")
	}
	if t.Port < 1 || t.Port > 65535 {
		v.fail("talos.port", "%d: expected a TCP port (1..65535)", t.Port)
	}
	if t.ResetUnreachable != "skip" && t.ResetUnreachable != "fail" {
		v.fail("talos.reset_unreachable", "%q: expected skip or fail", t.ResetUnreachable)
	}
}

func (v *validator) kubernetes(c *Config) {
	if c.Kubernetes.Kubeconfig != "" {
		v.secretFile("kubernetes.kubeconfig", c.Kubernetes.Kubeconfig)
	} else if c.Kubernetes.Context != "" {
		v.fail("kubernetes.context", "%q: a context needs kubernetes.kubeconfig (in-cluster configuration has none)", c.Kubernetes.Context)
	}
	if _, err := ParseWorkerSelector(c.Kubernetes.WorkerSelector); err != nil {
		v.fail("kubernetes.worker_selector", "%v", err)
	}
}

// ParseWorkerSelector reads kubernetes.worker_selector: a label selector
// in kubectl's syntax ("role=worker", "bench/side!=karpenter", "!gpu");
// empty selects every Node.
func ParseWorkerSelector(s string) (labels.Selector, error) {
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q: expected a label selector such as \"node-role.example/worker=true\" or \"example.com/side!=other\": %v", shorten(s, 80), err)
	}
	return sel, nil
}

func (v *validator) policy(c *Config) {
	p := c.Policy
	if p.Interval.D() < time.Second || p.Interval.D() > time.Hour {
		v.fail("policy.interval", "%s: expected 1s to 1h", p.Interval.D())
	}
	if p.MinWorkers < 0 {
		v.fail("policy.min_workers", "%d: expected zero or more", p.MinWorkers)
	}
	if p.MaxWorkers < 1 || p.MaxWorkers > MaxWorkers {
		v.fail("policy.max_workers", "%d: expected 1 to %d", p.MaxWorkers, MaxWorkers)
	}
	if p.MinWorkers > p.MaxWorkers {
		v.fail("policy.min_workers", "%d is above max_workers %d", p.MinWorkers, p.MaxWorkers)
	}
	v.thresholds("policy.cpu", p.CPU)
	v.thresholds("policy.memory", p.Memory)
	for _, d := range []struct {
		path string
		d    Duration
	}{
		{"policy.scale_up_after", p.ScaleUpAfter},
		{"policy.scale_up_lookahead", p.ScaleUpLookahead},
		{"policy.scale_down_after", p.ScaleDownAfter},
		{"policy.cooldown.after_scale_up", p.Cooldown.AfterScaleUp},
		{"policy.cooldown.after_scale_down", p.Cooldown.AfterScaleDown},
		{"policy.cooldown.after_failure", p.Cooldown.AfterFailure},
		{"policy.pending_pods.grace", p.PendingPods.Grace},
		{"policy.schedule_lead", p.ScheduleLead},
	} {
		if d.d < 0 || d.d.D() > day {
			v.fail(d.path, "%s: expected 0s to 24h", d.d.D())
		}
	}
	v.recurringLoad(p.RecurringLoad, p.ScaleUpLookahead.D()+p.ScaleUpAfter.D()+recurringFlap)
	if p.MaxNodesPerStep < 1 || p.MaxNodesPerStep > MaxNodesPerStep {
		v.fail("policy.max_nodes_per_step", "%d: expected 1 to %d", p.MaxNodesPerStep, MaxNodesPerStep)
	}
	minUp := min(p.CPU.ScaleUpAt, p.Memory.ScaleUpAt)
	if p.ScaleDownMargin < 0 || p.ScaleDownMargin >= minUp {
		v.fail("policy.scale_down_margin", "%g: expected 0 or more and below the lowest scale_up_at (%g)", p.ScaleDownMargin, minUp)
	}
	if _, err := time.LoadLocation(p.Timezone); err != nil {
		v.fail("policy.timezone", "%q: expected an IANA zone such as Europe/Berlin, UTC or Local", p.Timezone)
	}
	names := map[string]int{}
	for i, s := range p.Schedules {
		path := fmt.Sprintf("policy.schedules[%d]", i)
		switch first, dup := names[s.Name]; {
		case strings.TrimSpace(s.Name) == "":
			v.fail(path+".name", "required: a name for this schedule (logs, events and status show it)")
		case len(s.Name) > MaxScheduleName:
			v.fail(path+".name", "%d characters: expected at most %d", len(s.Name), MaxScheduleName)
		case dup:
			v.fail(path+".name", "%q is also the name of policy.schedules[%d]: expected each name once", s.Name, first)
		default:
			names[s.Name] = i
		}
		if _, err := ParseWindow(s.Window); err != nil {
			v.fail(path+".window", "%v", err)
		}
		if s.MinWorkers < 1 || s.MinWorkers > p.MaxWorkers {
			v.fail(path+".min_workers", "%d: expected 1..max_workers (%d)", s.MinWorkers, p.MaxWorkers)
		}
	}
	if p.Drain.Timeout.D() <= 0 || p.Drain.Timeout.D() > day {
		v.fail("policy.drain.timeout", "%s: expected more than zero, at most 24h", p.Drain.Timeout.D())
	}
	if p.Drain.GracePeriod != nil && (p.Drain.GracePeriod.D() < 0 || p.Drain.GracePeriod.D() > day) {
		v.fail("policy.drain.grace_period", "%s: expected 0s to 24h (leave it out to use each pod's own)", p.Drain.GracePeriod.D())
	}
	if p.MaxProvisionTime.D() < time.Minute || p.MaxProvisionTime.D() > day {
		v.fail("policy.max_provision_time", "%s: expected 1m to 24h (clone, boot, install and join take minutes)", p.MaxProvisionTime.D())
	}
	if p.MaxCores < 0 || p.MaxCores > MaxWorkers*512 {
		v.fail("policy.max_cores", "%d: expected 0 (no bound) to %d", p.MaxCores, MaxWorkers*512)
	}
	if p.MaxMemory < 0 {
		v.fail("policy.max_memory", "%s: expected 0 (no bound) or more", p.MaxMemory)
	}
	switch age := p.MaxAge.D(); {
	case age == 0:
	case age < time.Hour || age > 366*day:
		v.fail("policy.max_age", "%s: expected 0 (off) or 1h to 8784h (a worker older than this is replaced)", age)
	case !p.ReplaceDrifted:
		v.fail("policy.max_age", "%s, but policy.replace_drifted is off: nothing would replace an old worker (turn replace_drifted on, or leave max_age out)", age)
	}
	sb := p.Standby
	if sb.Size < 0 || sb.Size > p.MaxWorkers {
		v.fail("policy.standby.size", "%d: expected 0 (off) to max_workers (%d)", sb.Size, p.MaxWorkers)
	}
	if sb.MaxAge.D() < time.Hour || sb.MaxAge.D() > 366*day {
		v.fail("policy.standby.max_age", "%s: expected 1h to 8784h (a year; a standby worker older than this is replaced)", sb.MaxAge.D())
	}
	for i, h := range sb.Hosts {
		if h == "" {
			v.fail(fmt.Sprintf("policy.standby.hosts[%d]", i), "empty: expected a PVE node name")
		} else if len(c.Proxmox.Hosts) > 0 && !slices.Contains(c.Proxmox.Hosts, h) {
			v.fail(fmt.Sprintf("policy.standby.hosts[%d]", i), "%q: expected one of proxmox.hosts (%s)", h, strings.Join(c.Proxmox.Hosts, ", "))
		}
	}
}

func (v *validator) thresholds(path string, t Thresholds) {
	bad := false
	if t.ScaleUpAt <= 0 || t.ScaleUpAt > 100 {
		v.fail(path+".scale_up_at", "%g: expected a percentage in (0,100]", t.ScaleUpAt)
		bad = true
	}
	if t.ScaleDownAt <= 0 || t.ScaleDownAt > 100 {
		v.fail(path+".scale_down_at", "%g: expected a percentage in (0,100]", t.ScaleDownAt)
		bad = true
	}
	if bad {
		return
	}
	if t.ScaleDownAt >= t.ScaleUpAt {
		v.fail(path+".scale_down_at", "%g: expected below scale_up_at (%g)", t.ScaleDownAt, t.ScaleUpAt)
		return
	}
	if t.Target != 0 && (t.Target <= t.ScaleDownAt || t.Target >= t.ScaleUpAt) {
		v.fail(path+".target", "%g: expected between scale_down_at (%g) and scale_up_at (%g), or 0 for halfway", t.Target, t.ScaleDownAt, t.ScaleUpAt)
	}
	if gap := t.ScaleUpAt - t.ScaleDownAt; gap < MinThresholdGap {
		v.warn(path, "scale_up_at %g and scale_down_at %g are %g points apart: under %d points a cluster tends to flap (add, remove, add)", t.ScaleUpAt, t.ScaleDownAt, gap, MinThresholdGap)
	}
}

func (v *validator) daemon(c *Config) {
	d := c.Daemon
	if d.Listen != "" {
		if err := checkListen(d.Listen); err != nil {
			v.fail("daemon.listen", "%q: %v: expected HOST:PORT, e.g. 127.0.0.1:9464 (empty turns the HTTP endpoint off)", shorten(d.Listen, 80), err)
		} else if !IsLoopback(d.Listen) && (!d.ListenPublic || d.StatusTokenFile == "") {
			v.fail("daemon.listen", "%q is reachable from other hosts: /status shows every worker and plan, so a non-loopback address needs daemon.listen_public: true and daemon.status_token_file (the bearer token /status then requires); or listen on 127.0.0.1", shorten(d.Listen, 80))
		}
	}
	if d.StatusTokenFile != "" && v.secretFile("daemon.status_token_file", d.StatusTokenFile) && emptyFile(d.StatusTokenFile) {
		v.fail("daemon.status_token_file", "%s is empty: expected the token /status requires (e.g. openssl rand -hex 32 > %s)", d.StatusTokenFile, d.StatusTokenFile)
	}
	if d.LeaderElection.Enabled {
		if d.LeaderElection.Namespace == "" {
			v.fail("daemon.leader_election.namespace", "required when leader election is enabled")
		}
		if d.LeaderElection.LeaseName == "" {
			v.fail("daemon.leader_election.lease_name", "required when leader election is enabled")
		}
	}
	for _, f := range []struct{ path, v, example string }{
		{"daemon.control.namespace", d.Control.Namespace, "kube-system"},
		{"daemon.control.name", d.Control.Name, "pve-autoscaler-control"},
	} {
		if !dnsLabelish(f.v) {
			v.fail(f.path, "%q: expected a Kubernetes object name (lower-case letters, digits, '-' and '.', at most 253 characters), e.g. %s", shorten(f.v, 80), f.example)
		}
	}
	if d.TraceFile != "" && (!filepath.IsAbs(d.TraceFile) || strings.HasSuffix(d.TraceFile, "/")) {
		v.fail("daemon.trace_file", "%q: expected an absolute file path, e.g. %s (empty turns the trace off)", d.TraceFile, DefaultTraceFile)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, d.Log.Level) {
		v.fail("daemon.log.level", "%q: expected debug, info, warn or error", d.Log.Level)
	}
	if d.Log.Format != "console" && d.Log.Format != "json" {
		v.fail("daemon.log.format", "%q: expected console or json", d.Log.Format)
	}
}

// IsLoopback reports whether a HOST:PORT listen address only accepts
// connections from this host: a loopback IP or localhost. An empty host
// (":9464") listens on every interface.
func IsLoopback(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// emptyFile reports whether a file holds nothing but white space; it
// reads at most 4 KiB (a token secret is 36 bytes).
func emptyFile(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 4096)
	n, _ := io.ReadFull(f, b)
	return strings.TrimSpace(string(b[:n])) == ""
}

// ShortDuration writes a duration as config files do: 24h rather than
// 24h0m0s, 5m rather than 5m0s.
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// checkListen checks a listen address's syntax: HOST:PORT with a port in
// 1..65535 and a host that is an IP address, a host name or empty (every
// address). Whether the address is local is not judged here.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not HOST:PORT")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1..65535", shorten(port, 20))
	}
	if host == "" || len(host) <= 253 && hostRE.MatchString(host) {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("host %q is neither an IP address nor a host name", shorten(host, 60))
	}
	return nil
}

// hasUserinfo reports whether a URL carries USER[:PASSWORD]@ before its
// host, without parsing it as a URL (a bad URL's parse error would repeat it).
func hasUserinfo(raw string) bool {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		rest = raw
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return strings.Contains(rest, "@")
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// ParseFingerprint reads a SHA-256 certificate fingerprint written as 64
// hex digits, with or without ':' separators (as PVE and openssl print it).
func ParseFingerprint(s string) ([]byte, error) {
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%q: expected a SHA-256 fingerprint: 32 hex bytes, colons optional, as PVE shows it (AB:CD:EF:01 and so on)", s)
	}
	return b, nil
}

// dnsLabelish reports whether s is a valid Kubernetes object name (a DNS
// subdomain: lower-case alphanumerics, '-' and '.', starting and ending
// alphanumeric, at most 253 characters).
func dnsLabelish(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if !alnum && (r != '-' && r != '.' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// MaxRecurringLoad is the most periods policy.recurring_load takes.
const MaxRecurringLoad = 4

// recurringFlap is scaler.FlapWindow: how much further ahead than the
// up decision the removal check reads the load of one period ago.
const recurringFlap = 15 * time.Minute

// recurringLoad checks policy.recurring_load: at most MaxRecurringLoad
// periods, each 1h to 8784h (a leap year), none twice, and each longer
// than ahead (what the removal check reads after one period ago): a
// shorter one reads the load of the last minutes, already in the usage
// of now, and counts its rise twice.
func (v *validator) recurringLoad(periods []Duration, ahead time.Duration) {
	if len(periods) > MaxRecurringLoad {
		v.fail("policy.recurring_load", "%d periods: expected at most %d (a day and a week are the usual two)", len(periods), MaxRecurringLoad)
		return
	}
	for i, d := range periods {
		path := fmt.Sprintf("policy.recurring_load[%d]", i)
		switch {
		case d.D() < time.Hour || d.D() > 8784*time.Hour:
			v.fail(path, "%s: expected 1h to 8784h (24h: a day, 168h: a week)", d.D())
		case slices.Contains(periods[:i], d):
			v.fail(path, "%s: listed twice", d.D())
		case d.D() <= ahead:
			v.fail(path, "%s: expected longer than scale_up_lookahead + scale_up_after + 15m (%s)", d.D(), ahead)
		}
	}
}
