package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// The recorder writes a row per decision with utilization, keeps writing
// after a restart, and a dry run writes nothing.
func TestTraceRecorder(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Daemon.TraceFile = filepath.Join(dir, "trace.csv")
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	plan := func(sec int, util bool) scaler.Plan {
		p := scaler.Plan{Time: at.Add(time.Duration(sec) * time.Second), Pending: 2, Workers: scaler.Workers{Ready: 3}}
		if util {
			p.Utilization = &scaler.Utilization{Used: scaler.Resources{MilliCPU: 2500, Memory: 3 << 29}}
		}
		return p
	}
	for _, run := range []struct {
		dry  bool
		secs []int
	}{{true, []int{0, 60}}, {false, []int{0, 60}}, {false, []int{120, 180}}} {
		d := &Daemon{Config: &cfg, log: zap.NewNop(), dryRun: run.dry}
		tr := d.openTrace()
		if run.dry {
			if tr != nil {
				t.Fatal("a dry run opens the trace file")
			}
			if _, err := os.Stat(cfg.Daemon.TraceFile); !os.IsNotExist(err) {
				t.Fatalf("dry run: %v", err)
			}
		}
		for _, s := range run.secs {
			tr.record(plan(s, true), nil)
			tr.record(plan(s+30, false), nil) // stale metrics: no row
		}
		tr.close()
	}
	b, err := os.ReadFile(cfg.Daemon.TraceFile)
	if err != nil {
		t.Fatal(err)
	}
	want := "# start 2026-03-02T10:00:00Z\ntime_s,cpu_cores,memory_gib,pending_pods,workers\n0,2.5,1.5,2,3\n60,2.5,1.5,2,3\n120,2.5,1.5,2,3\n180,2.5,1.5,2,3\n"
	if string(b) != want {
		t.Errorf("trace:\n%s\nwant:\n%s", b, want)
	}
}
