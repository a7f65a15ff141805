package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/internal/simulate"
)

func simulateCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("simulate", "simulate --config FILE --trace FILE.csv [--pool NAME] [--compare recipe | --sweep] [--chart FILE.svg|FILE.html]", stderr)
	path := fs.String("config", defaultConfigPath, "config whose policy is replayed (its secret files need not exist)")
	tracePath := fs.String("trace", "", "load trace, CSV with the header "+simulate.TraceHeader+" (required)")
	poolName := fs.String("pool", "", "with pools: in the config, the one pool to replay (its VM size, min and max workers, standby), on its own columns of a trace the daemon recorded, else on the whole trace")
	compare := fs.String("compare", "", `"recipe": also replay the kubectl-top + terraform script, side by side`)
	sweep := fs.Bool("sweep", false, "replay 864 policy variants around the config (thresholds, windows, scale-up lookahead, scale-up cooldown, margin, standby size) and print the Pareto front of node-hours against minutes over the threshold and pending pod-minutes, with the config lines of each")
	chart := fs.String("chart", "", "write a chart: FILE.svg, or FILE.html (chart and table)")
	output := fs.String("output", "table", "table or json")
	def := simulate.DefaultModel()
	podCPU := fs.String("pod-cpu", "500m", "CPU request of one pending pod (and of the pods the demand is made of)")
	podMem := fs.String("pod-memory", "1Gi", "memory request of one pending pod")
	start := fs.Int("start-workers", 0, "workers Ready at the start (0: the first row's workers in a trace the daemon recorded, else policy.min_workers)")
	recipeApply := fs.Duration("recipe-apply", def.RecipeApply, "the recipe's time for one terraform apply")
	disk := fs.String("template-disk", "10Gi", "disk a full clone copies")
	rate := fs.String("clone-rate", "200Mi", "full-clone copy speed per second, shared by parallel clones")
	join := fs.Duration("join", def.Join, "apply-config to Node Ready (install, reboot, kubelet)")
	boot := fs.Duration("boot", def.Boot, "with policy.standby: a standby worker's start to Node Ready (an installed Talos booting, no install)")
	epoch := fs.String("start", def.Epoch.Format(time.RFC3339), "wall-clock time of the trace's 0 s (for schedules; a trace the daemon recorded names its own)")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "pve-autoscaler simulate: "+format+"\n", a...)
		return exitUsage
	}
	switch {
	case *tracePath == "":
		return fail("--trace: required (a CSV with the header %s; examples in internal/simulate/testdata)", simulate.TraceHeader)
	case *sweep && *compare != "":
		return fail("--sweep and --compare: choose one (the sweep compares policies with each other)")
	case *compare != "" && *compare != "recipe":
		return fail("--compare %q: expected \"recipe\"", *compare)
	case *output != "table" && *output != "json":
		return fail("--output %q: expected table or json", *output)
	}
	ext := strings.ToLower(filepath.Ext(*chart))
	if *chart != "" && ext != ".svg" && ext != ".html" {
		return fail("--chart %q: expected a file name ending in .svg or .html", *chart)
	}
	m := def
	var err error
	quantity := func(flag, v string, out *int64, milli bool) bool {
		q, perr := resource.ParseQuantity(v)
		if perr != nil || q.Sign() <= 0 {
			err = fmt.Errorf("%s %q: expected a positive quantity such as %s", flag, v, map[bool]string{true: "500m or 2", false: "512Mi or 2Gi"}[milli])
			return false
		}
		if milli {
			*out = q.MilliValue()
		} else {
			*out = q.Value()
		}
		return true
	}
	if !quantity("--pod-cpu", *podCPU, &m.Pod.MilliCPU, true) || !quantity("--pod-memory", *podMem, &m.Pod.Memory, false) ||
		!quantity("--template-disk", *disk, &m.TemplateDisk, false) || !quantity("--clone-rate", *rate, &m.FullCloneRate, false) {
		return fail("%v", err)
	}
	if m.Epoch, err = time.Parse(time.RFC3339, *epoch); err != nil {
		return fail("--start %q: expected an RFC 3339 time such as 2026-01-05T00:00:00Z", *epoch)
	}
	m.StartWorkers, m.RecipeApply, m.Join, m.Boot = *start, *recipeApply, *join, *boot
	if *join < 0 {
		return fail("--join: expected 0s or more")
	}
	if err := m.Check(); err != nil {
		return fail("%v", err)
	}
	c, code := loadConfig(*path, nil, config.ValidateOptions{}, stderr)
	if code != exitOK {
		return code
	}
	// The model is one pool: a config with pools is replayed one pool at
	// a time (docs/simulate.md says why).
	switch {
	case len(c.Pools) > 0 && *poolName == "":
		var names []string
		for _, p := range c.Pools {
			names = append(names, p.Name)
		}
		return fail("config %s has pools (%s): simulate replays one pool at a time: add --pool NAME", *path, strings.Join(names, ", "))
	case *poolName != "":
		one, err := c.OnePool(*poolName)
		if err != nil {
			return fail("--pool: %v", err)
		}
		c = one
	}
	if m.StartWorkers > c.Policy.MaxWorkers {
		return fail("--start-workers %d: expected at most policy.max_workers (%d)", m.StartWorkers, c.Policy.MaxWorkers)
	}
	policy, err := daemon.ScalerPolicy(c)
	if err != nil {
		return fail("config %s: %v", *path, err)
	}
	setup := simulate.SetupFrom(c, policy)
	f, err := os.Open(*tracePath)
	if err != nil {
		return fail("--trace: %v", err)
	}
	tr, err := simulate.ParseTrace(*tracePath, f)
	f.Close()
	if err != nil {
		return fail("%v", err)
	}
	switch {
	case *poolName != "" && len(tr.Pools) > 0:
		if tr, err = tr.ForPool(*poolName); err != nil {
			return fail("--pool: %v", err)
		}
	case len(tr.Pools) > 0 && len(c.Pools) == 0:
		fmt.Fprintf(stderr, "pve-autoscaler simulate: %s has the columns of pools %s: replaying its totals on the config's one pool\n", *tracePath, strings.Join(tr.Pools, ", "))
	}
	// A trace the daemon recorded says when it started and how many
	// workers ran: the replay starts from there unless told otherwise.
	if !tr.Start.IsZero() && !fs.Changed("start") {
		m.Epoch = tr.Start
	}
	if tr.Workers && m.StartWorkers == 0 {
		m.StartWorkers = min(max(tr.Samples[0].Workers, c.Policy.MinWorkers), c.Policy.MaxWorkers)
	}

	if *sweep {
		return runSweep(c, tr, m, *chart, ext, *output, stdout, stderr)
	}
	rep := simulate.Simulate(tr, setup, m, *compare == "recipe")
	if *chart != "" {
		var b bytes.Buffer
		th := simulate.ThresholdsOf(setup)
		if ext == ".svg" {
			err = rep.WriteSVG(&b, th)
		} else {
			err = rep.WriteHTML(&b, th)
		}
		if err == nil {
			err = os.WriteFile(*chart, b.Bytes(), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler simulate: --chart: %v\n", err)
			return exitFailure
		}
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteTable(stdout)
		if err == nil && *chart != "" {
			_, err = fmt.Fprintf(stdout, "chart: %s\n", *chart)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler simulate: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// runSweep is simulate --sweep: the grid around the config, its Pareto
// front as a table (or JSON), and the scatter chart if asked.
func runSweep(c *config.Config, tr simulate.Trace, m simulate.Model, chart, ext, output string, stdout, stderr io.Writer) int {
	vs, invalid, err := sweepVariants(c, sweepGrid())
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler simulate: %v\n", err)
		return exitUsage
	}
	rep := simulate.Sweep(tr, m, vs)
	rep.Invalid = invalid
	if chart != "" {
		var b bytes.Buffer
		if ext == ".svg" {
			err = rep.WriteSVG(&b)
		} else {
			err = rep.WriteHTML(&b)
		}
		if err == nil {
			err = os.WriteFile(chart, b.Bytes(), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler simulate: --chart: %v\n", err)
			return exitFailure
		}
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteTable(stdout)
		if err == nil && chart != "" {
			_, err = fmt.Fprintf(stdout, "chart: %s\n", chart)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler simulate: %v\n", err)
		return exitFailure
	}
	return exitOK
}
