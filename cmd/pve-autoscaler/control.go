package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/kube"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// maxControlFor bounds --for and --until: a pause or boost forgotten for
// more than a month is a mistake.
const maxControlFor = 31 * 24 * time.Hour

// controlClient connects to the cluster with the config's kubeconfig (or
// --kubeconfig) for pause, resume and boost.
func controlClient(c *config.Config, kubeconfig string) (*kube.Client, error) {
	if kubeconfig == "" {
		kubeconfig = c.Kubernetes.Kubeconfig
	}
	return kube.New(kube.Options{Kubeconfig: kubeconfig, Context: c.Kubernetes.Context})
}

// updateControl writes the control ConfigMap through kubeconfig (default:
// the config's): change gets who writes (the kubeconfig's user and this
// host). An error is printed naming the command; the exit code is returned.
func updateControl(cmd string, c *config.Config, kubeconfig string, stderr io.Writer, change func(by string, ctl *scaler.Control)) int {
	kc, err := controlClient(c, kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler %s: %v\n", cmd, err)
		return exitFailure
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	by := kc.Who(ctx)
	if _, err := kc.UpdateControl(ctx, daemon.ControlRef(c), func(ctl *scaler.Control) { change(by, ctl) }); err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler %s: %v\n", cmd, err)
		return exitFailure
	}
	return exitOK
}

func pauseCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("pause", "pause [--config FILE] [--for DURATION] [--reason TEXT] [--kubeconfig FILE]", stderr)
	path := fs.String("config", defaultConfigPath, "config file (kubernetes.kubeconfig and daemon.control)")
	dur := fs.Duration("for", 0, "end the pause on its own after this long, e.g. 2h (default: only resume ends it)")
	why := fs.String("reason", "", "why, shown by plan, status and doctor")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig to write the pause with (default: kubernetes.kubeconfig)")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if *dur < 0 || *dur > maxControlFor {
		fmt.Fprintf(stderr, "pve-autoscaler pause: --for %s: expected 1s to %s (or none: until resume)\n", *dur, maxControlFor)
		return exitUsage
	}
	c, code := loadConfig(*path, nil, config.ValidateOptions{}, stderr)
	if code != exitOK {
		return code
	}
	now := time.Now()
	p := scaler.Pause{Reason: *why, Since: now.UTC().Truncate(time.Second)}
	if *dur > 0 {
		p.Until = now.Add(*dur).UTC().Truncate(time.Second)
	}
	ref := daemon.ControlRef(c)
	if code := updateControl("pause", c, *kubeconfig, stderr, func(by string, ctl *scaler.Control) { p.By = by; ctl.Pause = &p }); code != exitOK {
		return code
	}
	fmt.Fprintf(stdout, "%s (ConfigMap %s/%s)\nThe daemon stops at its next decision: nothing is created, removed, parked or woken; running operations stop at their next step.\n", capitalize(p.String()), ref.Namespace, ref.Name)
	return exitOK
}

func resumeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("resume", "resume [--config FILE] [--kubeconfig FILE]", stderr)
	path := fs.String("config", defaultConfigPath, "config file (kubernetes.kubeconfig and daemon.control)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig to write with (default: kubernetes.kubeconfig)")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	c, code := loadConfig(*path, nil, config.ValidateOptions{}, stderr)
	if code != exitOK {
		return code
	}
	var was *scaler.Pause
	if code := updateControl("resume", c, *kubeconfig, stderr, func(_ string, ctl *scaler.Control) { was, ctl.Pause = ctl.Pause, nil }); code != exitOK {
		return code
	}
	switch {
	case was == nil:
		fmt.Fprintln(stdout, "Not paused: nothing to resume.")
	case !was.ActiveAt(time.Now()):
		fmt.Fprintf(stdout, "The pause had ended on its own (%s); its record is removed.\n", was)
	default:
		fmt.Fprintf(stdout, "Resumed (was %s). The daemon takes up what it stopped at its next decision.\n", was)
	}
	return exitOK
}

func boostCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("boost", "boost --workers N [--pool NAME] (--for DURATION | --until HH:MM) [--reason TEXT] | boost --clear [--pool NAME]", stderr)
	path := fs.String("config", defaultConfigPath, "config file (kubernetes.kubeconfig, daemon.control, the pools and policy.timezone)")
	workers := fs.Int("workers", 0, "the minimum number of workers while the boost lasts (of the pool, with --pool)")
	pool := fs.String("pool", "", "the worker pool to raise (default: all pools together, like a schedule)")
	dur := fs.Duration("for", 0, "how long the boost lasts, e.g. 3h")
	until := fs.String("until", "", "when the boost ends: HH:MM in policy.timezone (the next such time), or an RFC 3339 time")
	why := fs.String("reason", "", "why, shown by plan, status and doctor")
	clearIt := fs.Bool("clear", false, "end the boost (of --pool) now")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig to write with (default: kubernetes.kubeconfig)")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	c, code := loadConfig(*path, nil, config.ValidateOptions{}, stderr)
	if code != exitOK {
		return code
	}
	pools := c.WorkerPools()
	var names []string
	for _, pl := range pools {
		names = append(names, pl.Name)
	}
	maxW := c.Policy.MaxWorkers
	if *pool != "" {
		i := slices.IndexFunc(pools, func(pl config.Pool) bool { return pl.Name == *pool })
		if i < 0 || len(c.Pools) == 0 {
			fmt.Fprintf(stderr, "pve-autoscaler boost: --pool %q: expected one of the config's pools (%s)\n", *pool, strings.Join(names, ", "))
			return exitUsage
		}
		maxW = pools[i].MaxWorkers
	}
	now := time.Now()
	var b scaler.Boost
	if !*clearIt {
		end, err := boostEnd(now, *dur, *until, c.Policy.Timezone)
		if err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler boost: %v\n", err)
			return exitUsage
		}
		if *workers < 1 || *workers > maxW {
			fmt.Fprintf(stderr, "pve-autoscaler boost: --workers %d: expected 1 to max_workers (%d)\n", *workers, maxW)
			return exitUsage
		}
		b = scaler.Boost{Pool: *pool, Workers: *workers, Reason: *why, Since: now.UTC().Truncate(time.Second), Until: end.UTC().Truncate(time.Second)}
	}
	cleared := false
	code = updateControl("boost", c, *kubeconfig, stderr, func(by string, ctl *scaler.Control) {
		b.By = by
		// Boosts that have ended are dropped on every write.
		ctl.Boosts = slices.DeleteFunc(ctl.Boosts, func(o scaler.Boost) bool {
			if *clearIt && o.Pool == *pool && now.Before(o.Until) {
				cleared = true
				return true
			}
			return !now.Before(o.Until)
		})
		if !*clearIt {
			kube.SetBoost(ctl, b)
		}
	})
	if code != exitOK {
		return code
	}
	switch {
	case *clearIt && cleared:
		fmt.Fprintln(stdout, "Boost cleared: the normal rules bring the workers back down.")
	case *clearIt:
		fmt.Fprintln(stdout, "No boost to clear.")
	default:
		fmt.Fprintf(stdout, "%s.\nplan shows it as the reason for the scale-up; when it ends, the normal scale-down rules apply.\n", capitalize(b.String()))
	}
	return exitOK
}

// boostEnd is when a boost set at now ends: after d, or at until (HH:MM
// in the policy's time zone, the next such time; or RFC 3339).
func boostEnd(now time.Time, d time.Duration, until, tz string) (time.Time, error) {
	switch {
	case d != 0 && until != "":
		return time.Time{}, fmt.Errorf("--for and --until: give one")
	case d == 0 && until == "":
		return time.Time{}, fmt.Errorf("a boost ends on its own: give --for DURATION (e.g. 3h) or --until HH:MM")
	case d != 0:
		if d < 0 || d > maxControlFor {
			return time.Time{}, fmt.Errorf("--for %s: expected 1s to %s", d, maxControlFor)
		}
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, until); err == nil {
		if !t.After(now) || t.Sub(now) > maxControlFor {
			return time.Time{}, fmt.Errorf("--until %s: expected a time within %s from now", until, maxControlFor)
		}
		return t, nil
	}
	hm, err := time.Parse("15:04", until)
	if err != nil {
		return time.Time{}, fmt.Errorf("--until %q: expected HH:MM (e.g. 23:30) or an RFC 3339 time", until)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return time.Time{}, fmt.Errorf("policy.timezone: %w", err)
	}
	local := now.In(loc)
	end := time.Date(local.Year(), local.Month(), local.Day(), hm.Hour(), hm.Minute(), 0, 0, loc)
	if !end.After(now) {
		end = end.AddDate(0, 0, 1)
	}
	return end, nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
