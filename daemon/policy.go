package daemon

import (
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
	"github.com/pve-autoscaler/pve-autoscaler/talos"
)

// Talos kubelet defaults: system-reserved cpu 50m and memory 192Mi, plus a
// 100Mi hard eviction threshold. A new worker's allocatable is estimated
// as the VM's size less these until a managed node exists to learn it from.
const (
	kubeletReservedMilliCPU = 50
	kubeletReservedMemory   = (192 + 100) << 20
)

// ScalerPolicy converts a validated config's policy into the decision
// engine's form (config knows nothing of scaler; its consumers convert).
// Call it only on a config whose Validate found no problems.
func ScalerPolicy(c *config.Config) (scaler.Policy, error) {
	p := c.Policy
	loc, err := time.LoadLocation(p.Timezone)
	if err != nil {
		return scaler.Policy{}, fmt.Errorf("policy.timezone: %w", err)
	}
	sp := scaler.Policy{
		MinWorkers:           p.MinWorkers,
		MaxWorkers:           p.MaxWorkers,
		CPU:                  scaler.Threshold{Up: p.CPU.ScaleUpAt, Down: p.CPU.ScaleDownAt, Target: p.CPU.Target},
		Memory:               scaler.Threshold{Up: p.Memory.ScaleUpAt, Down: p.Memory.ScaleDownAt, Target: p.Memory.Target},
		UpWindow:             p.ScaleUpAfter.D(),
		Lookahead:            p.ScaleUpLookahead.D(),
		Seasons:              durations(p.RecurringLoad),
		DownWindow:           p.ScaleDownAfter.D(),
		CooldownAfterUp:      p.Cooldown.AfterScaleUp.D(),
		CooldownAfterDown:    p.Cooldown.AfterScaleDown.D(),
		CooldownAfterFailure: p.Cooldown.AfterFailure.D(),
		MaxStep:              p.MaxNodesPerStep,
		PendingPods:          p.PendingPods.Enabled,
		PendingGrace:         p.PendingPods.Grace.D(),
		PriorityCutoff:       p.PendingPods.PriorityCutoff,
		ScaleDownMargin:      p.ScaleDownMargin,
		AllowLocalStorage:    p.Drain.DeleteEmptyDirData,
		ScheduleLead:         p.ScheduleLead.D(),
		Location:             loc,
		Worker: scaler.Resources{
			MilliCPU: int64(c.Proxmox.VM.Cores)*1000 - kubeletReservedMilliCPU,
			Memory:   int64(c.Proxmox.VM.Memory) - kubeletReservedMemory,
		},
		VMMemory:      int64(c.Proxmox.VM.Memory),
		HostReserve:   int64(c.Proxmox.HostMemReserve),
		StandbySize:   p.Standby.Size,
		StandbyHosts:  p.Standby.Hosts,
		StandbyMaxAge: p.Standby.MaxAge.D(),
	}
	sp.VMCores = c.Proxmox.VM.Cores
	sp.MaxCores, sp.MaxMemory = p.MaxCores, int64(p.MaxMemory)
	sp.ReplaceDrifted, sp.MaxAge = p.ReplaceDrifted, p.MaxAge.D()
	if len(c.Pools) > 0 {
		for _, pl := range c.WorkerPools() {
			sp.Pools = append(sp.Pools, ScalerPool(pl))
		}
	}
	for i, s := range p.Schedules {
		w, err := config.ParseWindow(s.Window)
		if err != nil {
			return scaler.Policy{}, fmt.Errorf("policy.schedules[%d].window: %w", i, err)
		}
		name := s.Name
		if name == "" {
			name = s.Window
		}
		sp.Schedules = append(sp.Schedules, scaler.Schedule{Name: name, Days: w.Days, Start: w.Start, End: w.End, MinWorkers: s.MinWorkers})
	}
	return sp, nil
}

// ScalerPool converts a config pool into the engine's: its new worker's
// allocatable is the VM's size less the kubelet's reserve, its Node's
// labels, taints and extended resources the pool's.
func ScalerPool(pl config.Pool) scaler.Pool {
	sp := scaler.Pool{
		Name: pl.Name, MinWorkers: pl.MinWorkers, MaxWorkers: pl.MaxWorkers, Priority: pl.Priority,
		Worker: scaler.Resources{
			MilliCPU: int64(pl.VM.Cores)*1000 - kubeletReservedMilliCPU,
			Memory:   int64(pl.VM.Memory) - kubeletReservedMemory,
		},
		VMMemory: int64(pl.VM.Memory), VMCores: pl.VM.Cores, Hosts: pl.Hosts, StandbySize: pl.Standby,
	}
	if len(pl.Labels) > 0 {
		sp.NewWorker.Labels = maps.Clone(pl.Labels)
	}
	for _, t := range pl.Taints {
		sp.NewWorker.Taints = append(sp.NewWorker.Taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	for k, v := range pl.Capacity {
		if sp.NewWorker.Extended == nil {
			sp.NewWorker.Extended = map[string]int64{}
		}
		sp.NewWorker.Extended[k] = int64(v)
	}
	return sp
}

// NewWorker reads what a new worker's Node carries for the scheduler (the
// labels and taints of the Talos worker config and its patches) from the
// files the config names, for `plan --snapshot`; the daemon gets it from
// its Talos adapter.
func NewWorker(c *config.Config) (scaler.NewWorker, error) {
	return talos.NewWorkerOf(talos.OptionsFrom(c.Talos, nil))
}

// durations is ds as time.Durations (nil for none).
func durations(ds []config.Duration) []time.Duration {
	var out []time.Duration
	for _, d := range ds {
		out = append(out, d.D())
	}
	return out
}
