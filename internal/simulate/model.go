package simulate

import (
	"fmt"
	"math"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// Model holds the modelled delays and the workload's pod size. Defaults
// (DefaultModel) are the middle of the ranges in docs/simulate.md, taken
// from how real Proxmox VE and Talos behave.
type Model struct {
	// LinkedClone is a linked clone's task time.
	LinkedClone time.Duration
	// FullCloneRate is a full clone's copy speed in bytes/s, shared by the
	// clones running at once; TemplateDisk is the disk it copies.
	FullCloneRate int64
	TemplateDisk  int64
	// Configure (resize, tag), Start (start task), Maintenance (start to the
	// Talos maintenance API answering), Join (apply-config to Node Ready:
	// install, reboot, kubelet registration).
	Configure, Start, Maintenance, Join time.Duration
	// Drain, Reset and Destroy: a removal's steps after the cordon.
	Drain, Reset, Destroy time.Duration
	// Standby (policy.standby): Boot is an installed worker's start to
	// Node Ready (no install: a wake is Start + Boot); Stop is the
	// shutdown task that parks a drained worker (a park is Drain + Stop).
	// Retiring a stopped standby worker is Destroy.
	Boot, Stop time.Duration

	// The recipe: check interval, thresholds (average CPU only), cooldown,
	// and one `terraform apply` per change.
	RecipeInterval time.Duration
	RecipeUp       float64
	RecipeDown     float64
	RecipeCooldown time.Duration
	RecipeApply    time.Duration

	// Pod is the size of one pending pod and of the pods the base demand is
	// made of (what the scheduler packs and the engine counts).
	Pod scaler.Resources
	// Epoch is the wall-clock time of the trace's 0 s (schedules and
	// windows are evaluated against it).
	Epoch time.Time
	// StartWorkers Ready at 0 s (0: the config's min_workers).
	StartWorkers int
	// Step is the accounting resolution.
	Step time.Duration
}

// DefaultModel returns the documented defaults.
func DefaultModel() Model {
	return Model{
		LinkedClone:    3 * time.Second,
		FullCloneRate:  200 << 20,
		TemplateDisk:   10 << 30,
		Configure:      time.Second,
		Start:          2 * time.Second,
		Maintenance:    20 * time.Second,
		Join:           90 * time.Second,
		Drain:          15 * time.Second,
		Reset:          10 * time.Second,
		Destroy:        5 * time.Second,
		Boot:           20 * time.Second,
		Stop:           10 * time.Second,
		RecipeInterval: 60 * time.Second,
		RecipeUp:       80,
		RecipeDown:     30,
		RecipeCooldown: 300 * time.Second,
		RecipeApply:    3 * time.Minute,
		Pod:            scaler.Resources{MilliCPU: 500, Memory: 1 << 30},
		Epoch:          time.Date(2026, time.January, 5, 0, 0, 0, 0, time.UTC), // a Monday
		Step:           time.Second,
	}
}

// Check reports the first unusable value, naming its flag.
func (m Model) Check() error {
	switch {
	case m.Pod.MilliCPU <= 0:
		return fmt.Errorf("--pod-cpu: expected more than 0")
	case m.Pod.Memory <= 0:
		return fmt.Errorf("--pod-memory: expected more than 0")
	case m.RecipeApply <= 0:
		return fmt.Errorf("--recipe-apply: expected more than 0s")
	case m.FullCloneRate <= 0:
		return fmt.Errorf("--clone-rate: expected more than 0")
	case m.StartWorkers < 0:
		return fmt.Errorf("--start-workers: expected 0 or more")
	case m.Boot < 0:
		return fmt.Errorf("--boot: expected 0s or more")
	case m.Step <= 0:
		return fmt.Errorf("step: expected more than 0")
	}
	return nil
}

// clone is one clone's time when k clones copy at once.
func (m Model) clone(full bool, k int) time.Duration {
	if !full {
		return m.LinkedClone
	}
	secs := float64(m.TemplateDisk) * float64(max(k, 1)) / float64(m.FullCloneRate)
	return time.Duration(math.Ceil(secs)) * time.Second
}

// Provision is the modelled time from the clone request to Node Ready for
// one worker whose clone copies alongside k-1 others.
func (m Model) Provision(full bool, k int) time.Duration {
	return m.clone(full, k) + m.Configure + m.Start + m.Maintenance + m.Join
}

// Removal is the modelled time from the cordon to the VM destroyed.
func (m Model) Removal() time.Duration { return m.Drain + m.Reset + m.Destroy }

// Wake is the modelled time from a standby worker's start request to its
// Node Ready: no clone, no install.
func (m Model) Wake() time.Duration { return m.Start + m.Boot }

// Park is the modelled time from the cordon to a drained worker stopped
// in standby.
func (m Model) Park() time.Duration { return m.Drain + m.Stop }

// Setup is what a run needs from the config.
type Setup struct {
	Policy      scaler.Policy
	Interval    time.Duration
	FullClone   bool
	MaxParallel int
	NamePrefix  string
	FirstVMID   int
	// Decided, when set, sees each decision of Run's replay as the daemon's
	// run loop would: its plan at its time (a decision the replay did not
	// need to make again too). The trace recorder's round trip test
	// records it as the daemon records its own.
	Decided func(scaler.Plan)
}

// SetupFrom reads a validated config and its policy in the decision
// engine's form (daemon.ScalerPolicy).
func SetupFrom(c *config.Config, p scaler.Policy) Setup {
	return Setup{
		Policy:      p,
		Interval:    c.Policy.Interval.D(),
		FullClone:   c.Proxmox.CloneMode == "full",
		MaxParallel: max(c.Proxmox.MaxParallel, 1),
		NamePrefix:  c.Proxmox.NamePrefix,
		FirstVMID:   c.Proxmox.VMIDRange.Min,
	}
}
