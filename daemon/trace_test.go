package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/simulate"
	"github.com/pve-autoscaler/pve-autoscaler/internal/tracefile"
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

// TestTraceRoundTrip: the daemon records its own trace while it runs in
// the simulated world (simulate's replay of the shipped movie night, each
// decision's plan handed to the recorder as the run loop does), with a
// restart half-way and one rotation; the two files read back by
// simulate's parser hold a row for every decision, and replayed through
// the same policy give the live run's figures within the round trip's
// stated error (docs/simulate.md: node-hours within 5%, minutes over and
// pending pod-minutes within 5 minutes, the same peak).
func TestTraceRoundTrip(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "internal", "simulate", "testdata", "movie-night.csv"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := simulate.ParseTrace("movie-night.csv", f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	p, err := ScalerPolicy(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := simulate.DefaultModel()
	s := simulate.SetupFrom(&cfg, p)
	var plans []scaler.Plan
	s.Decided = func(p scaler.Plan) { plans = append(plans, p) }
	live := simulate.Run(tr, s, m)

	// The size of the whole recording, to rotate once at two thirds.
	probePath := filepath.Join(t.TempDir(), "probe.csv")
	probe, err := tracefile.Open(probePath, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if err := probe.Record(TraceRow(p)); err != nil {
			t.Fatal(err)
		}
	}
	probe.Close()
	st, err := os.Stat(probePath)
	if err != nil {
		t.Fatal(err)
	}

	cfg.Daemon.TraceFile = filepath.Join(t.TempDir(), "trace.csv")
	half := len(plans) / 2
	for _, run := range [][]scaler.Plan{plans[:half], plans[half:]} { // a restart between the two
		d := &Daemon{Config: &cfg, log: zap.NewNop(), traceMax: st.Size() * 2 / 3}
		rec := d.openTrace()
		for _, p := range run {
			rec.record(p, nil)
		}
		rec.close()
	}
	if _, err := os.Stat(cfg.Daemon.TraceFile + ".2"); !os.IsNotExist(err) {
		t.Fatalf("rotated more than once: %v", err)
	}
	parse := func(path string) simulate.Trace {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tr, err := simulate.ParseTrace(path, f)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	old, cur := parse(cfg.Daemon.TraceFile+".1"), parse(cfg.Daemon.TraceFile)
	joined := simulate.Trace{Name: "recorded", Start: old.Start, Workers: true, Samples: old.Samples}
	for _, smp := range cur.Samples {
		smp.At += cur.Start.Sub(old.Start)
		joined.Samples = append(joined.Samples, smp)
	}
	withUtil := 0
	for _, p := range plans {
		if p.Utilization != nil {
			withUtil++
		}
	}
	if len(joined.Samples) != withUtil || !old.Start.Equal(m.Epoch) {
		t.Fatalf("%d rows read back for %d decisions with utilization; start %v, want %v", len(joined.Samples), withUtil, old.Start, m.Epoch)
	}
	for i, smp := range joined.Samples {
		if want := plans[i].Time.Sub(m.Epoch); smp.At != want || smp.Workers != plans[i].Workers.Ready || smp.Pending != plans[i].Pending {
			t.Fatalf("row %d: %+v, want at %v, %d workers, %d pending", i, smp, want, plans[i].Workers.Ready, plans[i].Pending)
		}
	}

	// Replayed as `simulate --trace` does: from its start, with its first
	// row's workers.
	rm := m
	rm.Epoch, rm.StartWorkers = joined.Start, joined.Samples[0].Workers
	replay := simulate.Run(joined, simulate.SetupFrom(&cfg, p), rm)
	t.Logf("live / replayed: node-hours %.2f / %.2f, minutes over %.1f / %.1f, pending pod-minutes %.1f / %.1f, peak %d / %d",
		live.NodeHours, replay.NodeHours, live.OverMinutes, replay.OverMinutes, live.PendingPodMinutes, replay.PendingPodMinutes, live.Peak, replay.Peak)
	if d := replay.NodeHours - live.NodeHours; d > 0.05*live.NodeHours || -d > 0.05*live.NodeHours {
		t.Errorf("node-hours %.2f replayed, %.2f live: more than 5%% apart", replay.NodeHours, live.NodeHours)
	}
	for _, c := range []struct {
		what        string
		live, again float64
	}{{"minutes over the up threshold", live.OverMinutes, replay.OverMinutes}, {"pending pod-minutes", live.PendingPodMinutes, replay.PendingPodMinutes}} {
		if d := c.again - c.live; d > 5 || d < -5 {
			t.Errorf("%s %.1f replayed, %.1f live: more than 5 apart", c.what, c.again, c.live)
		}
	}
	if replay.Peak != live.Peak {
		t.Errorf("peak %d workers replayed, %d live", replay.Peak, live.Peak)
	}
}

// traceLoad reads daemon.trace_file back as the load policy.recurring_load
// looks back on: the rows of the last two weeks and a bit, pending pods at
// simulate's default request; nothing when the policy or the file is off,
// or when the file is not one the daemon wrote.
func TestTraceLoad(t *testing.T) {
	d, now := traced(t, 2, 16*24*time.Hour, 24*time.Hour, 24*time.Hour-time.Minute)
	cfg := d.Config
	got := d.traceLoad(now)
	want := scaler.Resources{MilliCPU: 2500 + 2*500, Memory: 3<<30 + 2<<30}
	if len(got) != 2 || !got[0].At.Equal(now.Add(-24*time.Hour)) || got[0].Demand != want {
		t.Fatalf("load read back: %+v, want 2 samples from one day ago of %v", got, want)
	}
	off := *d
	off.Policy.Seasons = nil
	if got := off.traceLoad(now); got != nil {
		t.Errorf("recurring_load off: %+v", got)
	}
	if err := os.WriteFile(cfg.Daemon.TraceFile, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := d.traceLoad(now); got != nil {
		t.Errorf("a foreign file read back: %+v", got)
	}
}

// traceLoad leaves out rows after now (written while the clock was ahead,
// or a file from another host): the reconciler's LoadMemory drops every
// sample not after its newest, so one row from the future would keep it
// from recording any decision's load until the clock passes that row.
func TestTraceLoadFuture(t *testing.T) {
	d, now := traced(t, 0, 24*time.Hour, time.Minute, -time.Hour)
	policy := d.Policy
	got := d.traceLoad(now)
	if len(got) != 2 || got[len(got)-1].At.After(now) {
		t.Fatalf("load read back: %+v, want the 2 samples not after now", got)
	}
	m := scaler.NewLoadMemory(policy)
	for _, s := range got {
		m.Add(s)
	}
	m.Add(scaler.LoadSample{At: now, Demand: got[0].Demand})
	if m.Len() != 3 {
		t.Errorf("the memory holds %d samples after a decision at now, want 3", m.Len())
	}
}

// traced is a daemon of the default config whose trace file holds a row
// of 2.5 cores, 3 GiB and pending pods at each of agos before the
// instant it returns.
func traced(t *testing.T, pending int, agos ...time.Duration) (*Daemon, time.Time) {
	t.Helper()
	cfg := config.Default()
	cfg.Daemon.TraceFile = filepath.Join(t.TempDir(), "trace.csv")
	policy, err := ScalerPolicy(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 9, 10, 0, 0, 0, time.UTC)
	d := &Daemon{Config: &cfg, Policy: policy, log: zap.NewNop()}
	tr := d.openTrace()
	for _, ago := range agos {
		tr.record(scaler.Plan{Time: now.Add(-ago), Pending: pending, Workers: scaler.Workers{Ready: 3},
			Utilization: &scaler.Utilization{Used: scaler.Resources{MilliCPU: 2500, Memory: 3 << 30}}}, nil)
	}
	tr.close()
	return d, now
}
