package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/internal/readlimit"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

func planCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("plan", "plan [--config FILE] [--snapshot FILE.json] [--output text|json] [--now TIME]", stderr)
	path := fs.String("config", defaultConfigPath, "config file")
	snapPath := fs.String("snapshot", "", "decide on this situation (a JSON file, see docs/snapshot.md) instead of the live one from PVE and Kubernetes")
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
	// A replay needs only the policy: files the config names need not exist here.
	c, code := loadConfig(*path, nil, config.ValidateOptions{CheckFiles: *snapPath == ""}, stderr)
	if code != exitOK {
		return code
	}
	policy, err := daemon.ScalerPolicy(c)
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler plan: config %s: %v\n", *path, err)
		return exitUsage
	}
	var sit scaler.Situation
	if *snapPath == "" {
		if sit, policy.NewWorker, err = liveSituation(c); err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler plan: %v\n", err)
			return exitFailure
		}
	} else {
		// A new worker's labels and taints, when the Talos files are here.
		if _, err := os.Stat(c.Talos.WorkerConfigFile); err == nil {
			if policy.NewWorker, err = daemon.NewWorker(c); err != nil {
				fmt.Fprintf(stderr, "pve-autoscaler plan: a new worker's labels and taints are unknown (pods with a node selector, affinity or toleration are judged against none): %v\n", err)
			}
		}
		data, err := readlimit.ReadFile(*snapPath, scaler.MaxSnapshotSize)
		var big *readlimit.TooLargeError
		if errors.As(err, &big) {
			fmt.Fprintf(stderr, "pve-autoscaler plan: snapshot %s: %s: a snapshot may hold at most %d MiB\n", *snapPath, big.Held(), scaler.MaxSnapshotSize>>20)
			return exitUsage
		} else if err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler plan: snapshot %v\n", err)
			return exitUsage
		}
		if sit, err = scaler.ParseSituation(*snapPath, data); err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler plan: %v\n", err)
			return exitUsage
		}
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

// liveSituation gathers the situation from PVE and Kubernetes, changing
// nothing. The history is empty: sustained windows and cooldowns are not
// known to a one-off plan (a running daemon's /status has them).
func liveSituation(c *config.Config) (scaler.Situation, scaler.NewWorker, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := daemon.Build(ctx, c, daemon.Options{DryRun: true, Version: version})
	if err != nil {
		return scaler.Situation{}, scaler.NewWorker{}, err
	}
	now := time.Now()
	snap, err := d.Snapshot(ctx, now)
	if err != nil && !snap.Metrics.Stale {
		return scaler.Situation{}, scaler.NewWorker{}, err
	}
	return scaler.Situation{Time: now, Snapshot: snap}, d.Policy.NewWorker, nil
}
