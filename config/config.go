// Package config loads, defaults and validates pve-autoscaler's one YAML
// file. config.example.yaml at the repository root documents every field.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/pve-autoscaler/pve-autoscaler/internal/readlimit"
	"github.com/pve-autoscaler/pve-autoscaler/internal/strictjson"
)

// Config is the whole file.
type Config struct {
	Cluster    Cluster    `json:"cluster"`
	Proxmox    Proxmox    `json:"proxmox"`
	Talos      Talos      `json:"talos"`
	Kubernetes Kubernetes `json:"kubernetes"`
	Policy     Policy     `json:"policy"`
	Daemon     Daemon     `json:"daemon"`
	// Pools are the worker pools (config.example.yaml's pools:); empty:
	// the one pool named default of the single-pool fields (WorkerPools).
	Pools []Pool `json:"pools,omitempty"`

	renamed []renamed // keys the file gave under their old names
	// given are the single-pool keys the file sets (singlePoolFields).
	given map[string]bool
}

// Cluster identifies the Kubernetes cluster the scaler serves.
type Cluster struct {
	// Name goes into every VM's tags (cluster-<name>), so two clusters on one PVE never touch each other's VMs.
	Name string `json:"name"`
}

// Proxmox is how to reach PVE and how to build worker VMs.
type Proxmox struct {
	URL             string `json:"url"`
	TokenID         string `json:"token_id"`
	TokenSecretFile string `json:"token_secret_file"`
	TLS             TLS    `json:"tls"`
	Template        VMRef  `json:"template"`
	CloneMode       string `json:"clone_mode"`
	Storage         string `json:"storage"`
	// ResourcePool is the PVE resource pool new VMs join, the one a
	// pool-scoped token's grant covers (deploy/proxmox-role.md).
	ResourcePool string `json:"resource_pool"`
	// Pool is resource_pool's old name, still read (validate warns).
	Pool           string   `json:"pool,omitempty"`
	Hosts          []string `json:"hosts"`
	HostMemReserve ByteSize `json:"host_memory_reserve"`
	VM             VM       `json:"vm"`
	NamePrefix     string   `json:"name_prefix"`
	VMIDRange      VMIDs    `json:"vmid_range"`
	MaxParallel    int      `json:"max_parallel_clones"`
	// IPCIDR keeps only guest-agent addresses inside it (empty: the first IPv4 that is not loopback).
	IPCIDR string `json:"ip_cidr"`
	// DHCPReservations are for templates without the guest agent: the
	// clone's net0 takes the next free MAC, and the VM is reached at its IP.
	DHCPReservations []MACIP `json:"dhcp_reservations"`
	// OldMACIPPool is dhcp_reservations under its old name, mac_ip_pool:
	// still read (Parse moves it over, Validate warns), never written.
	OldMACIPPool    []MACIP  `json:"mac_ip_pool,omitempty"`
	TaskTimeout     Duration `json:"task_timeout"`
	AgentTimeout    Duration `json:"agent_timeout"`
	ShutdownTimeout Duration `json:"shutdown_timeout"`
}

// ResourcePoolName is the resource pool new VMs join: resource_pool, or
// its old name pool ("" for none).
func (p Proxmox) ResourcePoolName() string {
	if p.ResourcePool != "" {
		return p.ResourcePool
	}
	return p.Pool
}

// MACIP is one DHCP reservation: a MAC address and the IPv4 it is given.
type MACIP struct {
	MAC string `json:"mac"`
	IP  string `json:"ip"`
}

// TLS is how the PVE API's certificate is verified.
type TLS struct {
	CAFile             string `json:"ca_file"`
	Fingerprint        string `json:"fingerprint"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify"`
}

// VM is the size of a worker VM.
type VM struct {
	Cores  int      `json:"cores"`
	Memory ByteSize `json:"memory"`
}

// VMIDs is the range new VMs take their ids from.
type VMIDs struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// Talos is the machine configuration applied to new workers.
type Talos struct {
	WorkerConfigFile string   `json:"worker_config_file"`
	TalosconfigFile  string   `json:"talosconfig_file"`
	PatchFiles       []string `json:"patch_files"`
	ResetUnreachable string   `json:"reset_unreachable"`
	Port             int      `json:"port"`
}

// Kubernetes is how to reach the cluster's API.
type Kubernetes struct {
	// Kubeconfig is a file path; empty means in-cluster configuration.
	Kubeconfig string `json:"kubeconfig"`
	Context    string `json:"context"`
	// WorkerSelector is a label selector (kubectl's syntax) picking the
	// Nodes that are this cluster's workers for capacity, utilization and
	// the worker counts; empty: every Node. Control-plane Nodes never
	// count. It must select the Nodes of the workers we add.
	WorkerSelector string `json:"worker_selector"`
}

// Policy is when and how much to scale.
type Policy struct {
	Interval         Duration         `json:"interval"`
	MinWorkers       int              `json:"min_workers"`
	MaxWorkers       int              `json:"max_workers"`
	CPU              Thresholds       `json:"cpu"`
	Memory           Thresholds       `json:"memory"`
	ScaleUpAfter     Duration         `json:"scale_up_after"`
	ScaleUpLookahead Duration         `json:"scale_up_lookahead"`
	RecurringLoad    []Duration       `json:"recurring_load"`
	ScaleDownAfter   Duration         `json:"scale_down_after"`
	Cooldown         Cooldown         `json:"cooldown"`
	MaxNodesPerStep  int              `json:"max_nodes_per_step"`
	PendingPods      PendingPods      `json:"pending_pods"`
	ScaleDownMargin  float64          `json:"scale_down_margin"`
	Schedules        []ScheduleConfig `json:"schedules"`
	ScheduleLead     Duration         `json:"schedule_lead"`
	Timezone         string           `json:"timezone"`
	Drain            Drain            `json:"drain"`
	MaxProvisionTime Duration         `json:"max_provision_time"`
	Standby          Standby          `json:"standby"`
	// MaxCores and MaxMemory bound the cores and memory of all workers
	// together, across pools (0: no bound).
	MaxCores  int      `json:"max_cores"`
	MaxMemory ByteSize `json:"max_memory"`
	// ReplaceDrifted replaces drifted workers one at a time, a new one
	// first (default off: drifted workers are only listed).
	ReplaceDrifted bool `json:"replace_drifted"`
	// MaxAge (0: off) makes a worker older than it due for replacement
	// too (with replace_drifted).
	MaxAge Duration `json:"max_age"`
}

// Standby is the standby workers: stopped, installed and joined, that a
// scale-up starts instead of cloning.
type Standby struct {
	Size   int      `json:"size"`
	Hosts  []string `json:"hosts"`
	MaxAge Duration `json:"max_age"`
}

// Thresholds is one resource's scale-up and scale-down points, in percent.
type Thresholds struct {
	ScaleUpAt   float64 `json:"scale_up_at"`
	ScaleDownAt float64 `json:"scale_down_at"`
	Target      float64 `json:"target"`
}

// Cooldown is how long to wait after each kind of event.
type Cooldown struct {
	AfterScaleUp   Duration `json:"after_scale_up"`
	AfterScaleDown Duration `json:"after_scale_down"`
	AfterFailure   Duration `json:"after_failure"`
}

// PendingPods is the unschedulable-pod trigger.
type PendingPods struct {
	Enabled bool     `json:"enabled"`
	Grace   Duration `json:"grace"`
	// PriorityCutoff: pods of a lower priority add no worker (the Cluster
	// Autoscaler's expendable pods, default -10).
	PriorityCutoff int32 `json:"priority_cutoff"`
}

// ScheduleConfig raises the minimum during a weekly window.
type ScheduleConfig struct {
	Name       string `json:"name"`
	Window     string `json:"window"`
	MinWorkers int    `json:"min_workers"`
}

// Drain is how a node is emptied before removal.
type Drain struct {
	Timeout            Duration  `json:"timeout"`
	DeleteEmptyDirData bool      `json:"delete_emptydir_data"`
	GracePeriod        *Duration `json:"grace_period"`
	RemoveUndrained    bool      `json:"remove_undrained"`
}

// DefaultTraceFile is daemon.trace_file's default, in the systemd unit's
// StateDirectory.
const DefaultTraceFile = "/var/lib/pve-autoscaler/trace.csv"

// Daemon is the running process's own settings.
type Daemon struct {
	Listen string `json:"listen"`
	// ListenPublic allows a listen address that is not loopback; it needs
	// StatusTokenFile, whose token /status then requires.
	ListenPublic bool `json:"listen_public"`
	// StatusTokenFile holds the bearer token /status requires (empty: none, loopback only).
	StatusTokenFile string         `json:"status_token_file"`
	LeaderElection  LeaderElection `json:"leader_election"`
	Log             Log            `json:"log"`
	// TraceFile receives a row per decision in simulate's trace format
	// (internal/tracefile); empty: off.
	TraceFile string `json:"trace_file"`
	// Control names the ConfigMap of the operator's pause and boosts.
	Control Control `json:"control"`
}

// LeaderElection lets two daemons run with one active.
type LeaderElection struct {
	Enabled   bool   `json:"enabled"`
	Namespace string `json:"namespace"`
	LeaseName string `json:"lease_name"`
}

// Control is the ConfigMap `pve-autoscaler pause`, `resume` and `boost`
// write and the daemon reads at every decision.
type Control struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Log is the logger's level and format.
type Log struct {
	Level  string `json:"level"`
	Format string `json:"format"`
}

// Default returns the configuration with every default filled in; the
// fields with no sensible default (cluster name, URLs, files) stay empty.
func Default() Config {
	return Config{
		Proxmox: Proxmox{
			CloneMode:       "linked",
			HostMemReserve:  4 << 30,
			VM:              VM{Cores: 4, Memory: 8 << 30},
			NamePrefix:      "talos-worker-",
			VMIDRange:       VMIDs{Min: 5000, Max: 5999},
			MaxParallel:     2,
			TaskTimeout:     Duration(600e9),
			AgentTimeout:    Duration(300e9),
			ShutdownTimeout: Duration(60e9),
		},
		Talos: Talos{ResetUnreachable: "fail", Port: 50000},
		Policy: Policy{
			Interval:         Duration(60e9),
			MinWorkers:       2,
			MaxWorkers:       6,
			CPU:              Thresholds{ScaleUpAt: 80, ScaleDownAt: 30},
			Memory:           Thresholds{ScaleUpAt: 85, ScaleDownAt: 40},
			ScaleUpAfter:     Duration(60e9),
			ScaleUpLookahead: Duration(120e9),
			RecurringLoad:    []Duration{Duration(24 * 3600e9), Duration(7 * 24 * 3600e9)},
			ScaleDownAfter:   Duration(300e9),
			Cooldown:         Cooldown{AfterScaleUp: Duration(300e9), AfterScaleDown: Duration(300e9), AfterFailure: Duration(300e9)},
			MaxNodesPerStep:  3,
			PendingPods:      PendingPods{Enabled: true, Grace: Duration(30e9), PriorityCutoff: -10},
			ScaleDownMargin:  10,
			ScheduleLead:     Duration(600e9),
			Timezone:         "Local",
			Drain:            Drain{Timeout: Duration(300e9)},
			MaxProvisionTime: Duration(900e9),
			Standby:          Standby{Hosts: []string{}, MaxAge: Duration(7 * 24 * 3600e9)},
		},
		Daemon: Daemon{
			Listen:         "127.0.0.1:9464",
			TraceFile:      DefaultTraceFile,
			LeaderElection: LeaderElection{Namespace: "kube-system", LeaseName: "pve-autoscaler"},
			Control:        Control{Namespace: "kube-system", Name: "pve-autoscaler-control"},
			Log:            Log{Level: "info", Format: "console"},
		},
	}
}

// Problem is one thing wrong (or worth a warning) at one field path.
type Problem = strictjson.Error

// Error is a configuration that cannot be used: every problem in it.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s: %d problem", e.File, len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Parse reads and strictly decodes a config file over the defaults. It
// does not validate; see Validate. The returned error is an *Error listing
// every problem, each with its line and column where known, or a read
// error naming the file.
func Parse(path string) (*Config, error) {
	c, _, err := parseFile(path)
	return c, err
}

func parseFile(path string) (*Config, map[string]Pos, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, nil, err
	}
	return parse(path, data)
}

// readLimited reads at most MaxFileSize bytes: a larger file is refused
// without being read whole.
func readLimited(path string) ([]byte, error) {
	data, err := readlimit.ReadFile(path, MaxFileSize)
	var big *readlimit.TooLargeError
	var pe *fs.PathError
	switch {
	case errors.As(err, &big):
		return nil, &Error{File: path, Problems: []Problem{{Message: fmt.Sprintf("%s: a config file may hold at most 1 MiB (%d bytes)", big.Held(), MaxFileSize)}}}
	case errors.As(err, &pe):
		return nil, fmt.Errorf("config %s: %w", path, pe.Err) // the path once
	case err != nil:
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return data, nil
}

// ParseBytes is Parse for data already read; name is used in errors.
func ParseBytes(name string, data []byte) (*Config, error) {
	c, _, err := parse(name, data)
	return c, err
}

func parse(name string, data []byte) (*Config, map[string]Pos, error) {
	if len(data) > MaxFileSize {
		return nil, nil, &Error{File: name, Problems: []Problem{{Message: fmt.Sprintf("%d bytes: a config file may hold at most 1 MiB (%d bytes)", len(data), MaxFileSize)}}}
	}
	pos, problems := shape(data)
	if len(problems) > 0 {
		return nil, pos, &Error{File: name, Problems: problems}
	}
	c := Default()
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, pos, &Error{File: name, Problems: []Problem{yamlProblem(err)}}
	}
	errs := strictjson.Decode(js, &c)
	c.readOldNames()
	// The single-pool keys set beside pools:, with a value of their own
	// (the effective configuration validate prints has them at their
	// defaults, and reads back).
	def := Default()
	own := map[string]bool{
		"proxmox.template":    !c.Proxmox.Template.IsZero(),
		"proxmox.vm":          c.Proxmox.VM != def.Proxmox.VM,
		"policy.min_workers":  c.Policy.MinWorkers != def.Policy.MinWorkers,
		"policy.standby.size": c.Policy.Standby.Size != def.Policy.Standby.Size,
	}
	for _, f := range singlePoolFields {
		if _, ok := pos[f.path]; ok && len(c.Pools) > 0 && own[f.path] {
			if c.given == nil {
				c.given = map[string]bool{}
			}
			c.given[f.path] = true
		}
	}
	if len(errs) > 0 {
		locate(pos, errs)
		return &c, pos, &Error{File: name, Problems: errs}
	}
	return &c, pos, nil
}

// renamed is a key given under its old name: Validate warns, or fails
// when the new name is given too.
type renamed struct {
	old, new string
	both     bool
}

// readOldNames moves values given under a key's old name to the new one,
// remembering it for Validate (proxmox.mac_ip_pool: "pool" meant three
// things).
func (c *Config) readOldNames() {
	p := &c.Proxmox
	if p.OldMACIPPool != nil {
		r := renamed{old: "proxmox.mac_ip_pool", new: "proxmox.dhcp_reservations", both: len(p.DHCPReservations) > 0}
		if !r.both {
			p.DHCPReservations = p.OldMACIPPool
		}
		p.OldMACIPPool = nil
		c.renamed = append(c.renamed, r)
	}
}

// givenAs is the path under which the config file gave the key at path:
// its old name when it was read under that.
func (c *Config) givenAs(path string) string {
	for _, r := range c.renamed {
		if r.new == path && !r.both {
			return r.old
		}
	}
	return path
}

// Load parses, applies override (command-line flags; may be nil), then
// validates with opts. Warnings come back even when the config is usable;
// err is an *Error with every problem found (each with its line and
// column where the file has the field), or a read error. A config that
// decoded at all comes back with its problems, so a caller can still use
// the parts they do not touch (doctor); nil when the file itself is wrong
// (empty, not YAML, not a mapping, too large).
func Load(path string, opts ValidateOptions, override func(*Config)) (*Config, []Problem, error) {
	c, pos, err := parseFile(path)
	var cerr *Error
	if err != nil && !errors.As(err, &cerr) {
		return nil, nil, err
	}
	if c == nil {
		return nil, nil, err
	}
	if override != nil {
		override(c)
	}
	var decodeProblems []Problem
	if cerr != nil {
		decodeProblems = cerr.Problems
	}
	problems, warnings := c.Validate(opts)
	locate(pos, problems)
	locate(pos, warnings)
	all := MergeProblems(decodeProblems, problems)
	if len(all) > 0 {
		return c, warnings, &Error{File: path, Problems: all}
	}
	return c, warnings, nil
}

// MergeProblems joins decoding problems with validation problems, leaving
// out validation problems at or under a path that failed to decode (its
// value is the default, and a second message about it would mislead).
func MergeProblems(decoded, validated []Problem) []Problem {
	out := append([]Problem(nil), decoded...)
	for _, v := range validated {
		shadowed := false
		for _, d := range decoded {
			if v.Path == d.Path || strings.HasPrefix(v.Path, d.Path+".") || strings.HasPrefix(v.Path, d.Path+"[") {
				shadowed = true
				break
			}
		}
		if !shadowed {
			out = append(out, v)
		}
	}
	return out
}

// YAML renders the effective configuration. The config holds no secret
// itself (secrets are only ever referenced by file path), so nothing in it
// needs hiding; secret file contents are never read into it.
func (c *Config) YAML() ([]byte, error) {
	return yaml.Marshal(c)
}
