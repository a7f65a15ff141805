// Command pve-autoscaler-demo runs the real daemon, as `pve-autoscaler run`
// runs it, against the simulated world (pvesim, fake Talos APIs, a real
// Kubernetes control plane with kwok) through a load ramp and back:
//
//	make demo DEMO_ARGS='--speed 20'
//
// It is a command of its own so that the release binary, pve-autoscaler,
// links none of the simulated world.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pve-autoscaler/pve-autoscaler/internal/demo"
)

// Exit codes, as pve-autoscaler's.
const (
	exitOK      = 0
	exitFailure = 1 // the scenario failed or could not be set up
	exitUsage   = 2 // bad flags
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `Usage: pve-autoscaler-demo [--speed N] [--scenario upgrade] [--daemon-log FILE]

Runs the real daemon against a simulated Proxmox VE, fake Talos APIs and a
real Kubernetes control plane with kwok (make kube-testbed builds it), through
a load ramp and back (a general and a gpu worker pool). The exit code says whether the scenario reached every
state it expects.

Examples:
  # the scenario with simulated time running 20 times faster
  make demo DEMO_ARGS='--speed 20'
  # the short upgrade act instead: the template changes, the workers are
  # replaced one at a time (policy.replace_drifted)
  make demo SCENARIO=upgrade DEMO_ARGS='--speed 20'
  # the same, keeping the daemon's own JSON log
  go run ./cmd/pve-autoscaler-demo --speed 20 --daemon-log /tmp/demo.log

Flags:
`

// Main runs the demo command line and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("pve-autoscaler-demo", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard) // usage and errors are printed below, once
	speed := fs.Float64("speed", 1, "simulated seconds per real second: latencies, windows and cooldowns all run this much faster")
	scenario := fs.String("scenario", "", "an optional act instead of the load ramp: upgrade (the template changes and the workers are replaced one at a time)")
	logFile := fs.String("daemon-log", "", "write the daemon's own log (JSON) to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, usageText+fs.FlagUsages())
			return exitOK
		}
		fmt.Fprintf(stderr, "pve-autoscaler-demo: %v\n\n%s%s", err, usageText, fs.FlagUsages())
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pve-autoscaler-demo: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if !slices.Contains(demo.Scenarios, *scenario) {
		fmt.Fprintf(stderr, "pve-autoscaler-demo: --scenario %q: expected %s (or none: the load ramp)\n", *scenario, demo.ScenarioUpgrade)
		return exitUsage
	}
	if *speed <= 0 || *speed > 100 {
		fmt.Fprintf(stderr, "pve-autoscaler-demo: --speed %g: expected more than 0 and at most 100\n", *speed)
		return exitUsage
	}
	log := zap.NewNop()
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler-demo: --daemon-log: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		enc := zap.NewProductionEncoderConfig()
		enc.EncodeTime = zapcore.ISO8601TimeEncoder
		enc.EncodeDuration = zapcore.StringDurationEncoder
		log = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(f), zapcore.InfoLevel))
	}
	fmt.Fprintln(stdout, "pve-autoscaler-demo: the real daemon against a simulated Proxmox VE, fake Talos APIs and a real Kubernetes control plane with kwok")
	if _, err := demo.Run(ctx, demo.Options{Speed: *speed, Out: stdout, Log: log, Scenario: *scenario}); err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler-demo: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "pve-autoscaler-demo: the scenario reached every state it expects")
	return exitOK
}
