// Package doctor checks the whole autoscaling stack before the daemon is
// enabled: the config, the Proxmox VE API and token, the Talos files, and
// the Kubernetes layers below node autoscaling (the Metrics API, HPAs, VPAs,
// PodDisruptionBudgets). Every check is a read; nothing is changed.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

// Status is a check's outcome.
type Status string

// Outcomes.
const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// The areas checks belong to, in the order the report prints them.
const (
	areaConfig  = "config"
	areaProxmox = "proxmox"
	areaTalos   = "talos"
	areaKube    = "kubernetes"
)

// Check is one finding: what was looked at, what was found, how to fix it.
type Check struct {
	Area    string `json:"area"`
	Name    string `json:"check"`
	Status  Status `json:"status"`
	Finding string `json:"finding"`
	Fix     string `json:"fix,omitempty"`
}

// Report is every check of one run, in order.
type Report struct {
	Config string  `json:"config"`
	Checks []Check `json:"checks"`
}

func (r *Report) add(area, name string, st Status, fix string, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Area: area, Name: name, Status: st, Finding: fmt.Sprintf(format, args...), Fix: fix})
}

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

// Count returns how many checks ended with st.
func (r Report) Count(st Status) int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == st {
			n++
		}
	}
	return n
}

// Find returns the checks of an area and name (tests, scripts).
func (r Report) Find(area, name string) []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Area == area && c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// WriteText prints the report: per area, one line of finding per check
// and, for WARN and FAIL, one line of fix.
func (r Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "pve-autoscaler doctor: %s\n", r.Config)
	area := ""
	for _, c := range r.Checks {
		if c.Area != area {
			area = c.Area
			fmt.Fprintf(w, "\n%s\n", strings.ToUpper(area))
		}
		fmt.Fprintf(w, "  %-4s  %-18s %s\n", c.Status, c.Name, c.Finding)
		if c.Fix != "" && c.Status != OK {
			fmt.Fprintf(w, "        fix: %s\n", c.Fix)
		}
	}
	checks := "checks"
	if len(r.Checks) == 1 {
		checks = "check"
	}
	_, err := fmt.Fprintf(w, "\n%d %s: %d OK, %d WARN, %d FAIL\n", len(r.Checks), checks, r.Count(OK), r.Count(Warn), r.Count(Fail))
	return err
}

// Options are doctor's inputs.
type Options struct {
	// Path is the config file.
	Path string
	// Override, if set, changes the loaded config (flags).
	Override func(*config.Config)
	// Timeout bounds each area's API calls (default 20s).
	Timeout time.Duration
	Log     *zap.Logger
	// TalosPort overrides talos.port (tests).
	TalosPort int
}

// Run checks everything. Config problems are one FAIL, and every check
// they do not touch still runs (a bad log level does not stop the Proxmox
// checks); a file that is not a config at all (empty, not YAML, too
// large) stops the run after it.
func Run(ctx context.Context, o Options) Report {
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	r := Report{Config: o.Path}
	c, touched := checkConfig(&r, o)
	if c == nil {
		return r
	}
	// checked reports whether area's checks may run; when config problems
	// touch it, it says so once instead.
	checked := func(area string) bool {
		why := touched.blocks(area)
		if why != "" {
			r.add(area, "not checked", Warn, "correct the config problems above, then run doctor again", "the config has problems at %s", why)
		}
		return why == ""
	}
	var px pveFacts
	if checked(areaProxmox) {
		pctx, cancel := context.WithTimeout(ctx, o.Timeout)
		px = checkProxmox(pctx, &r, c, o)
		cancel()
	}
	if checked(areaTalos) {
		checkTalos(&r, c, o)
	}
	var kx kubeFacts
	if checked(areaKube) {
		kctx, cancel := context.WithTimeout(ctx, o.Timeout)
		kx = checkKubernetes(kctx, &r, c, o)
		cancel()
	}
	if touched.blocks(areaConfig) == "" {
		checkCooldown(ctx, &r, c, px, kx)
	}
	ictx, cancel := context.WithTimeout(ctx, o.Timeout)
	checkIdentity(ictx, &r, px, kx)
	cancel()
	rank := map[string]int{areaConfig: 0, areaProxmox: 1, areaTalos: 2, areaKube: 3}
	sort.SliceStable(r.Checks, func(i, j int) bool { return rank[r.Checks[i].Area] < rank[r.Checks[j].Area] })
	return r
}

// touchedAreas maps an area to the config paths with problems that its
// checks read.
type touchedAreas map[string][]string

// blocks returns the problem paths that keep an area's checks from
// running, or "".
func (t touchedAreas) blocks(area string) string {
	return strings.Join(t[area], ", ")
}

// areasOf says which checks read a config path: the Proxmox checks read
// the cluster name (tags), proxmox.* and the standby and size of the
// policy; the Talos checks talos.*; the Kubernetes checks kubernetes.*
// and the leader election; the cooldown check (shown under config) the
// policy and the clone mode. Other paths (the log level, the listen
// address) touch no check.
func areasOf(path string) []string {
	switch top, _, _ := strings.Cut(path, "."); {
	case path == "":
		return []string{areaProxmox, areaTalos, areaKube, areaConfig}
	case top == "cluster":
		return []string{areaProxmox}
	case top == "proxmox":
		return []string{areaProxmox, areaConfig}
	case top == "talos":
		return []string{areaTalos}
	case top == "kubernetes", strings.HasPrefix(path, "daemon.leader_election"):
		return []string{areaKube}
	case strings.HasPrefix(path, "policy.standby"), strings.HasPrefix(path, "policy.max_workers"):
		return []string{areaProxmox, areaConfig}
	case top == "policy":
		return []string{areaConfig}
	}
	return nil
}

// checkConfig loads the config: its problems as one FAIL, each warning as
// a WARN. It returns the config (nil when the file is no config at all)
// and which areas the problems touch.
func checkConfig(r *Report, o Options) (*config.Config, touchedAreas) {
	c, warnings, err := config.Load(o.Path, config.ValidateOptions{CheckFiles: true}, o.Override)
	touched := touchedAreas{}
	var cerr *config.Error
	switch {
	case errors.As(err, &cerr):
		fix := "correct it in " + o.Path + " (config.example.yaml documents every field)"
		var list []string
		for _, p := range cerr.Problems {
			if strings.Contains(p.Message, "no such file") {
				fix = "create the missing files (README: Install on a Proxmox VE node) or correct their paths, and correct the rest in " + o.Path + " (config.example.yaml documents every field)"
			}
			list = append(list, p.Error())
			for _, a := range areasOf(p.Path) {
				touched[a] = append(touched[a], shortPath(p.Path))
			}
		}
		problems := "problems"
		if len(list) == 1 {
			problems = "problem"
		}
		r.add(areaConfig, "file", Fail, fix, "%d %s: %s", len(list), problems, strings.Join(list, "; "))
	case err != nil:
		r.add(areaConfig, "file", Fail, "pass the config with --config (default /etc/pve-autoscaler/config.yaml)", "%v", err)
	}
	for _, wn := range warnings {
		r.add(areaConfig, shortPath(wn.Path), Warn, warningFix(wn.Path), "%s", wn.Message)
	}
	if c == nil || err != nil {
		return c, touched
	}
	p := c.Policy
	r.add(areaConfig, "file", OK, "", "valid: cluster %s, %d to %d workers, checked every %s, scale up at CPU %g%% / memory %g%%, down at %g%% / %g%%",
		c.Cluster.Name, p.MinWorkers, p.MaxWorkers, p.Interval.D(), p.CPU.ScaleUpAt, p.Memory.ScaleUpAt, p.CPU.ScaleDownAt, p.Memory.ScaleDownAt)
	return c, touched
}

// ConfigFailed reports whether the config itself had problems (the
// command exits 2 then, as for any bad input).
func (r Report) ConfigFailed() bool {
	for _, c := range r.Find(areaConfig, "file") {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

func shortPath(p string) string {
	if p == "" {
		return "file"
	}
	return p
}

func warningFix(path string) string {
	switch {
	case strings.HasSuffix(path, ".cpu") || strings.HasSuffix(path, ".memory"):
		return "move scale_up_at and scale_down_at at least 30 points apart; `pve-autoscaler simulate --compare recipe` on a trace of your load shows the flaps either way"
	case strings.Contains(path, "insecure_skip_verify"):
		return "pin the certificate instead: set proxmox.tls.fingerprint (the proxmox checks below show the one PVE presents)"
	case path == "proxmox.mac_ip_pool":
		return "rename proxmox.mac_ip_pool to proxmox.dhcp_reservations"
	case strings.Contains(path, "dhcp_reservations"):
		return "add DHCP reservations until there are policy.max_workers of them"
	case strings.Contains(path, "vm.memory"):
		return "give workers at least 2GiB (proxmox.vm.memory)"
	}
	return "see config.example.yaml"
}
