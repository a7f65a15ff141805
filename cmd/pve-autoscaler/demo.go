package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/demo"
)

func demoCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("demo", "demo [--speed N] [--daemon-log FILE]", stderr)
	speed := fs.Float64("speed", 1, "simulated seconds per real second: latencies, windows and cooldowns all run this much faster")
	logFile := fs.String("daemon-log", "", "write the daemon's own log (JSON) to this file")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if *speed <= 0 || *speed > 100 {
		fmt.Fprintf(stderr, "pve-autoscaler demo: --speed %g: expected more than 0 and at most 100\n", *speed)
		return exitUsage
	}
	log := zap.NewNop()
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler demo: --daemon-log: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		if log, err = newLogger(config.Log{Level: "info", Format: "json"}, f); err != nil {
			return exitFailure
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintln(stdout, "pve-autoscaler demo: the real daemon against a simulated Proxmox VE, fake Talos APIs and a real Kubernetes control plane with kwok")
	if _, err := demo.Run(ctx, demo.Options{Speed: *speed, Out: stdout, Log: log}); err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler demo: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "demo: the scenario reached every state it expects")
	return exitOK
}
