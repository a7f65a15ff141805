package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestValidationRules breaks one rule at a time on a valid config and
// checks that the problem (or warning) names the field and says what is expected.
func TestValidationRules(t *testing.T) {
	missing := "/nonexistent/pve-autoscaler/file"
	cases := []struct {
		name    string
		mutate  func(*Config)
		path    string
		text    string
		warning bool
	}{
		{"cluster name required", func(c *Config) { c.Cluster.Name = "" }, "cluster.name", "required", false},
		{"cluster name tag-safe", func(c *Config) { c.Cluster.Name = "Home Lab" }, "cluster.name", "lowercase", false},
		{"proxmox url required", func(c *Config) { c.Proxmox.URL = "" }, "proxmox.url", "required", false},
		{"proxmox url https", func(c *Config) { c.Proxmox.URL = "http://pve1:8006/api2/json" }, "proxmox.url", "https://", false},
		{"proxmox url is a URL", func(c *Config) { c.Proxmox.URL = "pve1" }, "proxmox.url", "not a URL", false},
		{"proxmox url path", func(c *Config) { c.Proxmox.URL = "https://pve1:8006/api" }, "proxmox.url", "/api2/json", false},
		{"token id required", func(c *Config) { c.Proxmox.TokenID = "" }, "proxmox.token_id", "required", false},
		{"token id format", func(c *Config) { c.Proxmox.TokenID = "root@pam" }, "proxmox.token_id", "USER@REALM!TOKENID", false},
		{"token secret file required", func(c *Config) { c.Proxmox.TokenSecretFile = "" }, "proxmox.token_secret_file", "required", false},
		{"token secret file exists", func(c *Config) { c.Proxmox.TokenSecretFile = missing }, "proxmox.token_secret_file", "no such file", false},
		{"token secret not world-readable", func(c *Config) { _ = os.Chmod(c.Proxmox.TokenSecretFile, 0o644) }, "proxmox.token_secret_file", "mode 0644", false},
		{"token secret is a file", func(c *Config) { c.Proxmox.TokenSecretFile = filepath.Dir(c.Proxmox.TokenSecretFile) }, "proxmox.token_secret_file", "regular file", false},
		{"tls choices exclusive", func(c *Config) {
			c.Proxmox.TLS.CAFile = c.Talos.PatchFiles[0]
			c.Proxmox.TLS.Fingerprint = strings.Repeat("ab", 32)
		}, "proxmox.tls", "at most one", false},
		{"tls fingerprint format", func(c *Config) { c.Proxmox.TLS.Fingerprint = "AB:CD" }, "proxmox.tls.fingerprint", "SHA-256", false},
		{"tls ca file exists", func(c *Config) { c.Proxmox.TLS.CAFile = missing }, "proxmox.tls.ca_file", "no such file", false},
		{"tls insecure warns", func(c *Config) { c.Proxmox.TLS.InsecureSkipVerify = true }, "proxmox.tls.insecure_skip_verify", "not verified", true},
		{"template required", func(c *Config) { c.Proxmox.Template = VMRef{} }, "proxmox.template", "required", false},
		{"template vmid range", func(c *Config) { c.Proxmox.Template = VMRef{ID: 50} }, "proxmox.template", "100..999999999", false},
		{"clone mode", func(c *Config) { c.Proxmox.CloneMode = "thin" }, "proxmox.clone_mode", "linked or full", false},
		{"storage only for full clones", func(c *Config) { c.Proxmox.Storage = "local-lvm" }, "proxmox.storage", "clone_mode full", false},
		{"storage id", func(c *Config) { c.Proxmox.CloneMode = "full"; c.Proxmox.Storage = "local lvm" }, "proxmox.storage", "storage id", false},
		{"pool id", func(c *Config) { c.Proxmox.ResourcePool = "my pool" }, "proxmox.resource_pool", "pool id", false},
		{"host names", func(c *Config) { c.Proxmox.Hosts = []string{"pve1", "pve 2"} }, "proxmox.hosts[1]", "node name", false},
		{"host memory reserve", func(c *Config) { c.Proxmox.HostMemReserve = -1 }, "proxmox.host_memory_reserve", "expected 0 to 4TiB", false},
		{"vm cores", func(c *Config) { c.Proxmox.VM.Cores = 0 }, "proxmox.vm.cores", "1..512", false},
		{"vm memory minimum", func(c *Config) { c.Proxmox.VM.Memory = 512 << 20 }, "proxmox.vm.memory", "at least 1GiB", false},
		{"vm memory below Talos's ask", func(c *Config) { c.Proxmox.VM.Memory = 1536 << 20 }, "proxmox.vm.memory", "2GiB", true},
		{"vm memory whole MiB", func(c *Config) { c.Proxmox.VM.Memory = 4<<30 + 5 }, "proxmox.vm.memory", "whole MiB", false},
		{"name prefix", func(c *Config) { c.Proxmox.NamePrefix = "Talos_" }, "proxmox.name_prefix", "hostname", false},
		{"vmid range order", func(c *Config) { c.Proxmox.VMIDRange = VMIDs{Min: 6000, Max: 5000} }, "proxmox.vmid_range", "above max", false},
		{"vmid range bounds", func(c *Config) { c.Proxmox.VMIDRange = VMIDs{Min: 10, Max: 5000} }, "proxmox.vmid_range", "100..999999999", false},
		{"vmid range size", func(c *Config) { c.Proxmox.VMIDRange = VMIDs{Min: 5000, Max: 5002} }, "proxmox.vmid_range", "fewer than policy.max_workers", false},
		{"max parallel clones", func(c *Config) { c.Proxmox.MaxParallel = 0 }, "proxmox.max_parallel_clones", "1..32", false},
		{"ip cidr", func(c *Config) { c.Proxmox.IPCIDR = "192.168.10.0" }, "proxmox.ip_cidr", "IPv4 CIDR", false},
		{"reservation mac", func(c *Config) {
			c.Proxmox.DHCPReservations = []MACIP{{MAC: "zz", IP: "10.0.0.1"}}
			c.Policy.MaxWorkers = 1
		}, "proxmox.dhcp_reservations[0].mac", "MAC address", false},
		{"reservation ip", func(c *Config) {
			c.Proxmox.DHCPReservations = []MACIP{{MAC: "BC:24:11:00:00:01", IP: "10.0.0.1"}, {MAC: "BC:24:11:00:00:02", IP: "fe80::1"}}
			c.Policy.MaxWorkers = 2
		}, "proxmox.dhcp_reservations[1].ip", "IPv4", false},
		{"reservation duplicate", func(c *Config) {
			c.Proxmox.DHCPReservations = []MACIP{{MAC: "BC:24:11:00:00:01", IP: "10.0.0.1"}, {MAC: "bc:24:11:00:00:01", IP: "10.0.0.2"}}
			c.Policy.MaxWorkers = 2
		}, "proxmox.dhcp_reservations[1].mac", "twice", false},
		{"fewer reservations than max", func(c *Config) {
			c.Proxmox.DHCPReservations = []MACIP{{MAC: "BC:24:11:00:00:01", IP: "10.0.0.1"}}
		}, "proxmox.dhcp_reservations", "run out", true},
		{"task timeout", func(c *Config) { c.Proxmox.TaskTimeout = Duration(time.Second) }, "proxmox.task_timeout", "expected 10s to 24h", false},
		{"agent timeout", func(c *Config) { c.Proxmox.AgentTimeout = 0 }, "proxmox.agent_timeout", "expected 10s to 24h", false},
		{"shutdown timeout", func(c *Config) { c.Proxmox.ShutdownTimeout = 0 }, "proxmox.shutdown_timeout", "expected 1s to 1h", false},
		{"worker config required", func(c *Config) { c.Talos.WorkerConfigFile = "" }, "talos.worker_config_file", "required", false},
		{"worker config exists", func(c *Config) { c.Talos.WorkerConfigFile = missing }, "talos.worker_config_file", "no such file", false},
		{"worker config secret", func(c *Config) { _ = os.Chmod(c.Talos.WorkerConfigFile, 0o604) }, "talos.worker_config_file", "every user", false},
		{"talosconfig required", func(c *Config) { c.Talos.TalosconfigFile = "" }, "talos.talosconfig_file", "required", false},
		{"patch file exists", func(c *Config) { c.Talos.PatchFiles = append(c.Talos.PatchFiles, missing) }, "talos.patch_files[1]", "no such file", false},
		{"talos port", func(c *Config) { c.Talos.Port = 70000 }, "talos.port", "TCP port", false},
		{"reset unreachable", func(c *Config) { c.Talos.ResetUnreachable = "ignore" }, "talos.reset_unreachable", "skip or fail", false},
		{"kubeconfig exists", func(c *Config) { c.Kubernetes.Kubeconfig = missing }, "kubernetes.kubeconfig", "no such file", false},
		{"context needs kubeconfig", func(c *Config) { c.Kubernetes.Kubeconfig = ""; c.Kubernetes.Context = "admin" }, "kubernetes.context", "needs kubernetes.kubeconfig", false},
		{"worker selector", func(c *Config) { c.Kubernetes.WorkerSelector = "side in (a" }, "kubernetes.worker_selector", "expected a label selector", false},
		{"worker selector key", func(c *Config) { c.Kubernetes.WorkerSelector = "-bad-=x" }, "kubernetes.worker_selector", "expected a label selector", false},
		{"interval", func(c *Config) { c.Policy.Interval = 0 }, "policy.interval", "expected 1s to 1h", false},
		{"min workers", func(c *Config) { c.Policy.MinWorkers = -1 }, "policy.min_workers", "zero or more", false},
		{"max workers", func(c *Config) { c.Policy.MaxWorkers = 0; c.Policy.MinWorkers = 0 }, "policy.max_workers", "expected 1 to 1000", false},
		{"min above max", func(c *Config) { c.Policy.MinWorkers = 7 }, "policy.min_workers", "above max_workers 6", false},
		{"cpu up in range", func(c *Config) { c.Policy.CPU.ScaleUpAt = 120 }, "policy.cpu.scale_up_at", "(0,100]", false},
		{"cpu up positive", func(c *Config) { c.Policy.CPU.ScaleUpAt = 0 }, "policy.cpu.scale_up_at", "(0,100]", false},
		{"cpu down in range", func(c *Config) { c.Policy.CPU.ScaleDownAt = -5 }, "policy.cpu.scale_down_at", "(0,100]", false},
		{"cpu down below up", func(c *Config) { c.Policy.CPU.ScaleDownAt = 80 }, "policy.cpu.scale_down_at", "below scale_up_at (80)", false},
		{"memory down below up", func(c *Config) { c.Policy.Memory.ScaleDownAt = 90 }, "policy.memory.scale_down_at", "below scale_up_at (85)", false},
		{"cpu target between", func(c *Config) { c.Policy.CPU.Target = 90 }, "policy.cpu.target", "between scale_down_at (30) and scale_up_at (80)", false},
		{"close thresholds warn", func(c *Config) { c.Policy.CPU.ScaleUpAt, c.Policy.CPU.ScaleDownAt = 70, 50 }, "policy.cpu", "flap", true},
		{"negative window", func(c *Config) { c.Policy.ScaleDownAfter = Duration(-time.Second) }, "policy.scale_down_after", "expected 0s to 24h", false},
		{"negative cooldown", func(c *Config) { c.Policy.Cooldown.AfterFailure = Duration(-time.Second) }, "policy.cooldown.after_failure", "expected 0s to 24h", false},
		{"max nodes per step", func(c *Config) { c.Policy.MaxNodesPerStep = 0 }, "policy.max_nodes_per_step", "expected 1 to 100", false},
		// One period ago plus what the removal check reads ahead must be
		// before now: otherwise the rise of the last minutes counts twice.
		{"recurring load beyond the lookahead", func(c *Config) {
			c.Policy.ScaleUpLookahead, c.Policy.ScaleUpAfter = Duration(30*time.Minute), Duration(20*time.Minute)
			c.Policy.RecurringLoad = []Duration{Duration(day), Duration(time.Hour)}
		}, "policy.recurring_load[1]", "longer than scale_up_lookahead + scale_up_after + 15m (1h5m0s)", false},
		{"scale-down margin", func(c *Config) { c.Policy.ScaleDownMargin = 85 }, "policy.scale_down_margin", "below the lowest scale_up_at (80)", false},
		{"timezone", func(c *Config) { c.Policy.Timezone = "Mars/Olympus" }, "policy.timezone", "IANA", false},
		{"schedule window", func(c *Config) {
			c.Policy.Schedules = []ScheduleConfig{{Window: "Fri 18:00-23:59", MinWorkers: 3}, {Window: "Friday evening", MinWorkers: 3}}
		}, "policy.schedules[1].window", "DAYS HH:MM-HH:MM", false},
		{"schedule min workers", func(c *Config) { c.Policy.Schedules = []ScheduleConfig{{Window: "Fri 18:00-23:59", MinWorkers: 9}} }, "policy.schedules[0].min_workers", "1..max_workers (6)", false},
		{"drain timeout", func(c *Config) { c.Policy.Drain.Timeout = 0 }, "policy.drain.timeout", "more than zero", false},
		{"drain grace period", func(c *Config) { g := Duration(-time.Second); c.Policy.Drain.GracePeriod = &g }, "policy.drain.grace_period", "expected 0s to 24h", false},
		{"max provision time", func(c *Config) { c.Policy.MaxProvisionTime = Duration(30 * time.Second) }, "policy.max_provision_time", "expected 1m to 24h", false},
		{"standby size", func(c *Config) { c.Policy.Standby.Size = 7 }, "policy.standby.size", "expected 0 (off) to max_workers (6)", false},
		{"standby size negative", func(c *Config) { c.Policy.Standby.Size = -1 }, "policy.standby.size", "expected 0 (off)", false},
		{"standby max age", func(c *Config) { c.Policy.Standby.MaxAge = Duration(time.Minute) }, "policy.standby.max_age", "expected 1h to 8784h", false},
		{"recurring load too short", func(c *Config) { c.Policy.RecurringLoad = []Duration{Duration(time.Minute)} }, "policy.recurring_load[0]", "expected 1h to 8784h", false},
		{"recurring load twice", func(c *Config) {
			c.Policy.RecurringLoad = []Duration{Duration(24 * time.Hour), Duration(24 * time.Hour)}
		}, "policy.recurring_load[1]", "listed twice", false},
		{"recurring load, too many", func(c *Config) {
			c.Policy.RecurringLoad = []Duration{Duration(time.Hour), Duration(2 * time.Hour), Duration(3 * time.Hour), Duration(4 * time.Hour), Duration(5 * time.Hour)}
		}, "policy.recurring_load", "expected at most 4", false},
		{"max age too short", func(c *Config) { c.Policy.ReplaceDrifted = true; c.Policy.MaxAge = Duration(time.Minute) }, "policy.max_age", "expected 0 (off) or 1h to 8784h", false},
		{"max age without replace_drifted", func(c *Config) { c.Policy.MaxAge = Duration(720 * time.Hour) }, "policy.max_age", "policy.replace_drifted is off", false},
		{"standby host not allowed", func(c *Config) { c.Proxmox.Hosts = []string{"pve1"}; c.Policy.Standby.Hosts = []string{"pve2"} }, "policy.standby.hosts[0]", `"pve2": expected one of proxmox.hosts (pve1)`, false},
		{"listen address", func(c *Config) { c.Daemon.Listen = "9464" }, "daemon.listen", "HOST:PORT", false},
		{"lease namespace", func(c *Config) { c.Daemon.LeaderElection = LeaderElection{Enabled: true, LeaseName: "x"} }, "daemon.leader_election.namespace", "required", false},
		{"lease name", func(c *Config) { c.Daemon.LeaderElection = LeaderElection{Enabled: true, Namespace: "x"} }, "daemon.leader_election.lease_name", "required", false},
		{"control name empty", func(c *Config) { c.Daemon.Control.Name = "" }, "daemon.control.name", "expected a Kubernetes object name", false},
		{"control namespace upper", func(c *Config) { c.Daemon.Control.Namespace = "Kube_System" }, "daemon.control.namespace", "expected a Kubernetes object name", false},
		{"log level", func(c *Config) { c.Daemon.Log.Level = "trace" }, "daemon.log.level", "debug, info, warn or error", false},
		{"log format", func(c *Config) { c.Daemon.Log.Format = "text" }, "daemon.log.format", "console or json", false},
		// Who may change the files the config names (issue 20).
		{"patch file group-writable", func(c *Config) { _ = os.Chmod(c.Talos.PatchFiles[0], 0o664) }, "talos.patch_files[0]", "mode 0664 lets its group write it, and it controls every new node: expected write access for the owner only (chmod 0644 ", false},
		{"ca file writable by all", func(c *Config) {
			c.Proxmox.TLS.CAFile = c.Talos.PatchFiles[0]
			_ = os.Chmod(c.Talos.PatchFiles[0], 0o646)
		}, "proxmox.tls.ca_file", "lets every user write it, and it decides which certificate", false},
		{"secret writable by group and all", func(c *Config) { _ = os.Chmod(c.Kubernetes.Kubeconfig, 0o622) }, "kubernetes.kubeconfig", "lets its group and every user write it, and it holds a secret the daemon uses: expected write access for the owner only (chmod 0600 ", false},
		{"secret with access for others", func(c *Config) { _ = os.Chmod(c.Talos.TalosconfigFile, 0o641) }, "talos.talosconfig_file", "mode 0641 gives every user access to this secret: expected no access for others (chmod 0640 ", false},
		{"secret owned by another user", func(c *Config) { chownOrSkip(c.Talos.WorkerConfigFile) }, "talos.worker_config_file", "owned by uid 54321, who can change it, and it holds a secret the daemon uses: expected root, ", false},
		{"patch owned by another user", func(c *Config) { chownOrSkip(c.Talos.PatchFiles[0]) }, "talos.patch_files[0]", "(chown root:pve-autoscaler ", false},
		// Hostile input (issue 20): absurd values have upper bounds.
		{"url with a password", func(c *Config) { c.Proxmox.URL = "https://root:hunter2@pve1:8006/api2/json" }, "proxmox.url", "holds a user name or password", false},
		{"url with a password that is no URL", func(c *Config) { c.Proxmox.URL = "https://root:hunter2@pve1:bad port" }, "proxmox.url", "holds a user name or password", false},
		{"vm memory maximum", func(c *Config) { c.Proxmox.VM.Memory = 100000 << 40 }, "proxmox.vm.memory", "at most 4TiB", false},
		{"host reserve maximum", func(c *Config) { c.Proxmox.HostMemReserve = 5 << 40 }, "proxmox.host_memory_reserve", "expected 0 to 4TiB", false},
		{"max nodes per step maximum", func(c *Config) { c.Policy.MaxNodesPerStep = 1000000000000 }, "policy.max_nodes_per_step", "expected 1 to 100", false},
		{"max workers maximum", func(c *Config) { c.Policy.MaxWorkers = 5000; c.Proxmox.VMIDRange.Max = 99999 }, "policy.max_workers", "expected 1 to 1000", false},
		{"interval maximum", func(c *Config) { c.Policy.Interval = Duration(100000 * time.Hour) }, "policy.interval", "expected 1s to 1h", false},
		{"cooldown maximum", func(c *Config) { c.Policy.Cooldown.AfterScaleUp = Duration(25 * time.Hour) }, "policy.cooldown.after_scale_up", "expected 0s to 24h", false},
		{"task timeout maximum", func(c *Config) { c.Proxmox.TaskTimeout = Duration(48 * time.Hour) }, "proxmox.task_timeout", "expected 10s to 24h", false},
		{"template name with spaces", func(c *Config) { c.Proxmox.Template = VMRef{Name: "talos worker"} }, "proxmox.template", "no spaces", false},
		{"schedule without a name", func(c *Config) { c.Policy.Schedules = []ScheduleConfig{{Window: "Fri 18:00-23:59", MinWorkers: 3}} }, "policy.schedules[0].name", "required", false},
		{"schedules with one name", func(c *Config) {
			c.Policy.Schedules = []ScheduleConfig{{Name: "evening", Window: "Fri 18:00-23:59", MinWorkers: 3}, {Name: "evening", Window: "Sat 18:00-23:59", MinWorkers: 3}}
		}, "policy.schedules[1].name", "also the name of policy.schedules[0]", false},
		{"empty token file", func(c *Config) { _ = os.WriteFile(c.Proxmox.TokenSecretFile, []byte(" \n"), 0o600) }, "proxmox.token_secret_file", "is empty", false},
		{"listen port range", func(c *Config) { c.Daemon.Listen = "notahost:99999" }, "daemon.listen", `port "99999" is not 1..65535`, false},
		{"listen port zero", func(c *Config) { c.Daemon.Listen = "127.0.0.1:0" }, "daemon.listen", "1..65535", false},
		{"listen port name", func(c *Config) { c.Daemon.Listen = "127.0.0.1:http" }, "daemon.listen", "1..65535", false},
		{"listen host", func(c *Config) { c.Daemon.Listen = "not a host:9464" }, "daemon.listen", "neither an IP address nor a host name", false},
		{"trace file relative", func(c *Config) { c.Daemon.TraceFile = "trace.csv" }, "daemon.trace_file", "absolute file path", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "owned by another") && os.Geteuid() != 0 {
				t.Skip("only root can give a file to another user")
			}
			c := validConfig(t)
			tc.mutate(c)
			problems, warnings := c.Validate(ValidateOptions{CheckFiles: true})
			list, other := problems, warnings
			if tc.warning {
				list, other = warnings, problems
			}
			if len(other) != 0 {
				t.Errorf("unexpected %v", other)
			}
			found := false
			for _, p := range list {
				if p.Path == tc.path && strings.Contains(p.Message, tc.text) {
					found = true
				}
			}
			if !found {
				t.Errorf("want %s: ...%s..., got %v", tc.path, tc.text, list)
			}
		})
	}
}

func TestValidateReportsAllProblemsAtOnce(t *testing.T) {
	c := validConfig(t)
	c.Cluster.Name = ""
	c.Policy.MinWorkers = 9
	c.Daemon.Log.Format = "xml"
	problems, _ := c.Validate(ValidateOptions{CheckFiles: true})
	if len(problems) != 3 {
		t.Fatalf("want 3 problems, got %v", problems)
	}
}

func TestCheckFilesOff(t *testing.T) {
	c := validConfig(t)
	c.Proxmox.TokenSecretFile = "/nonexistent"
	if problems, _ := c.Validate(ValidateOptions{CheckFiles: false}); len(problems) != 0 {
		t.Fatalf("files checked anyway: %v", problems)
	}
}

func TestParseWindow(t *testing.T) {
	type want struct {
		days       string // Sun..Sat as 0/1
		start, end int
	}
	ok := map[string]want{
		"Fri 18:00-23:59":     {"0000010", 18 * 60, 23*60 + 59},
		"Mon-Fri 08:00-18:00": {"0111110", 8 * 60, 18 * 60},
		"sat,sun 10:00-22:00": {"1000001", 10 * 60, 22 * 60},
		"Fri-Mon 22:00-02:00": {"1100011", 22 * 60, 2 * 60},
		"* 00:00-24:00":       {"1111111", 0, 0},
		"Fri 18:00-24:00":     {"0000010", 18 * 60, 0},
	}
	for in, w := range ok {
		s, err := ParseWindow(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		days := ""
		for _, d := range s.Days {
			if d {
				days += "1"
			} else {
				days += "0"
			}
		}
		if days != w.days || s.Start != w.start || s.End != w.end {
			t.Errorf("%q = days %s %d-%d, want %s %d-%d", in, days, s.Start, s.End, w.days, w.start, w.end)
		}
	}
	for _, bad := range []string{"", "Fri", "Fri 18:00", "Fry 18:00-20:00", "Fri 25:00-26:00", "Fri 18:60-19:00", "Fri 18:00-18:00", "Fri 24:00-02:00", "Fri 6pm-9pm"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestYAMLRendersEffectiveConfig(t *testing.T) {
	c := validConfig(t)
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	// What is rendered parses back to the same config.
	p := filepath.Join(t.TempDir(), "round.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(p)
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, out)
	}
	if back.Proxmox.HostMemReserve != c.Proxmox.HostMemReserve || back.Policy.Interval != c.Policy.Interval || back.Proxmox.Template != c.Proxmox.Template {
		t.Errorf("round trip changed values:\n%s", out)
	}
	if strings.Contains(string(out), "content of pve-token") {
		t.Error("secret content in the rendered config")
	}
}

// chownOrSkip gives a file to a user that does not exist (uid 54321);
// only root may (the rows that use it are skipped otherwise).
func chownOrSkip(name string) {
	_ = os.Chown(name, 54321, -1)
}

// recurring_load: a day and a week unless said; [] turns it off.
func TestRecurringLoadDefault(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want []Duration
	}{
		{"policy: {min_workers: 2}\n", []Duration{Duration(24 * time.Hour), Duration(168 * time.Hour)}},
		{"policy: {recurring_load: []}\n", []Duration{}},
		{"policy: {recurring_load: [12h]}\n", []Duration{Duration(12 * time.Hour)}},
	} {
		cfg, err := ParseBytes("config.yaml", []byte(c.yaml))
		if err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		if !slices.Equal(cfg.Policy.RecurringLoad, c.want) {
			t.Errorf("%q: recurring_load %v, want %v", c.yaml, cfg.Policy.RecurringLoad, c.want)
		}
	}
}
