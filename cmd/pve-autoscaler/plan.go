package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

func planCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("plan", "plan [--config FILE] --snapshot FILE.json [--output text|json] [--now TIME]", stderr)
	path := fs.String("config", defaultConfigPath, "config file")
	snapPath := fs.String("snapshot", "", "situation to decide on: a JSON file with time, nodes, pending_pods, operations, hosts, metrics and history (see docs/snapshot.md)")
	output := fs.String("output", "text", "output format: text or json")
	nowFlag := fs.String("now", "", "decide as of this RFC 3339 time instead of the snapshot's own time")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "pve-autoscaler plan: --output %q: expected text or json\n", *output)
		return exitUsage
	}
	var now time.Time
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler plan: --now %q: expected an RFC 3339 time such as 2026-11-27T18:00:00Z\n", *nowFlag)
			return exitUsage
		}
		now = t
	}
	if *snapPath == "" {
		fmt.Fprintln(stderr, "pve-autoscaler plan: --snapshot FILE is required: gathering a live snapshot from PVE and Kubernetes is not built yet")
		return exitUsage
	}
	// A replay needs only the policy: files the config names need not exist here.
	c, code := loadConfig(*path, nil, config.ValidateOptions{CheckFiles: false}, stderr)
	if code != exitOK {
		return code
	}
	policy, err := c.ScalerPolicy()
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler plan: config %s: %v\n", *path, err)
		return exitUsage
	}
	data, err := os.ReadFile(*snapPath)
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler plan: snapshot %v\n", err)
		return exitUsage
	}
	sit, err := scaler.ParseSituation(*snapPath, data)
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler plan: %v\n", err)
		return exitUsage
	}
	if now.IsZero() {
		now = sit.Time
	}
	plan := scaler.Decide(sit.Snapshot, policy, sit.History, now)
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(plan); err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler plan: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	renderPlan(stdout, plan, policy)
	return exitOK
}
