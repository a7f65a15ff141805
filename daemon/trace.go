package daemon

import (
	"time"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/internal/tracefile"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// traceRecorder appends each decision's load to daemon.trace_file.
type traceRecorder struct {
	w       *tracefile.Writer
	log     *zap.Logger
	lastErr string
}

// openTrace opens daemon.trace_file; nil when it is off, in a dry run (which
// writes nothing), or when the file cannot be used (said in the log: the
// daemon scales without its trace).
func (d *Daemon) openTrace() *traceRecorder {
	path := d.Config.Daemon.TraceFile
	if path == "" || d.dryRun {
		return nil
	}
	w, err := tracefile.Open(path, d.traceMax)
	if err != nil {
		d.log.Warn("daemon.trace_file: not recording the load", zap.Error(err))
		return nil
	}
	return &traceRecorder{w: w, log: d.log}
}

// record appends the plan's row: nothing for a failed tick or one without
// utilization (stale metrics, no Ready worker).
func (t *traceRecorder) record(p scaler.Plan, err error) {
	if t == nil || err != nil || p.Utilization == nil {
		return
	}
	werr := t.w.Record(TraceRow(p))
	switch {
	case werr != nil && werr.Error() != t.lastErr:
		t.log.Warn("daemon.trace_file: a row not written", zap.Error(werr))
		t.lastErr = werr.Error()
	case werr == nil && t.lastErr != "":
		t.log.Info("daemon.trace_file: rows written again")
		t.lastErr = ""
	}
}

func (t *traceRecorder) close() {
	if t != nil {
		_ = t.w.Close()
	}
}

// TraceRow is the trace row of a plan with utilization; with more than one
// worker pool, each pool's share too.
func TraceRow(p scaler.Plan) tracefile.Row {
	r := tracefile.Row{
		Time:      p.Time,
		CPUCores:  float64(p.Utilization.Used.MilliCPU) / 1000,
		MemoryGiB: float64(p.Utilization.Used.Memory) / (1 << 30),
		Pending:   p.Pending,
		Workers:   p.Workers.Ready,
	}
	if len(p.Pools) > 1 {
		for _, ps := range p.Pools {
			r.Pools = append(r.Pools, tracefile.PoolRow{Name: ps.Name, CPUCores: float64(ps.Used.MilliCPU) / 1000,
				MemoryGiB: float64(ps.Used.Memory) / (1 << 30), Pending: ps.Pending, Workers: ps.Ready})
		}
	}
	return r
}

// Pending pods in a trace row count at these requests when the row is
// read back as load (simulate's --pod-cpu and --pod-memory defaults: the
// same rows replayed give the same demand).
const (
	tracePodMilliCPU = 500
	tracePodMemory   = 1 << 30
)

// traceLoad is the load daemon.trace_file (and the file before it) holds
// of what policy.recurring_load looks back on from now, up to now: nil
// when either is off or the file cannot be read (said in the log). Only
// read: a dry run and `plan` read it too.
func (d *Daemon) traceLoad(now time.Time) []scaler.LoadSample {
	keep := scaler.SeasonsKeep(d.Policy)
	path := d.Config.Daemon.TraceFile
	if keep == 0 || path == "" {
		return nil
	}
	rows, err := tracefile.ReadSince(path, now.Add(-keep))
	if err != nil {
		d.log.Warn("daemon.trace_file: the load it holds is not read back; policy.recurring_load starts from nothing", zap.Error(err))
		return nil
	}
	out := make([]scaler.LoadSample, 0, len(rows))
	for _, r := range rows {
		if r.Time.After(now) {
			// Written while the clock was ahead, or another host's: in the
			// reconciler's memory it would drop every decision's load
			// until the clock passes it.
			break
		}
		out = append(out, scaler.LoadSample{At: r.Time, Demand: scaler.Resources{
			MilliCPU: int64(r.CPUCores*1000) + int64(r.Pending)*tracePodMilliCPU,
			Memory:   int64(r.MemoryGiB*(1<<30)) + int64(r.Pending)*tracePodMemory,
		}})
	}
	return out
}
