package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/doctor"
)

func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("doctor", "doctor [--config FILE] [--output text|json]", stderr)
	path := fs.String("config", defaultConfigPath, "config file")
	output := fs.String("output", "text", "text or json")
	kubeconfig := fs.String("kubeconfig", "", "check Kubernetes with this kubeconfig instead of kubernetes.kubeconfig (e.g. an admin's, to read every HPA, VPA and PDB)")
	timeout := fs.Duration("timeout", 20*time.Second, "longest wait for each of Proxmox and Kubernetes")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "pve-autoscaler doctor: --output %q: expected text or json\n", *output)
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "pve-autoscaler doctor: --timeout %s: expected more than 0s\n", *timeout)
		return exitUsage
	}
	var override func(*config.Config)
	if *kubeconfig != "" {
		override = func(c *config.Config) { c.Kubernetes.Kubeconfig = *kubeconfig; c.Kubernetes.Context = "" }
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := doctor.Run(ctx, doctor.Options{Path: *path, Override: override, Timeout: *timeout})
	var err error
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(struct {
			doctor.Report
			OK   int `json:"ok"`
			Warn int `json:"warn"`
			Fail int `json:"fail"`
		}{rep, rep.Count(doctor.OK), rep.Count(doctor.Warn), rep.Count(doctor.Fail)})
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler doctor: %v\n", err)
		return exitFailure
	}
	if rep.ConfigFailed() {
		return exitUsage
	}
	if rep.Failed() {
		return exitFailure
	}
	return exitOK
}
