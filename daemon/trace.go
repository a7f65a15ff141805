package daemon

import (
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
