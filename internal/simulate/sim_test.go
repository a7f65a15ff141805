package simulate

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/internal/testclock"
)

// testModel is DefaultModel with its epoch moved by whole weeks under
// testclock.Env: results must not depend on the date the trace starts.
func testModel() Model {
	m := DefaultModel()
	m.Epoch = testclock.At(m.Epoch)
	return m
}

func setup(t testing.TB, mod func(*config.Config)) Setup {
	t.Helper()
	c := config.Default()
	if mod != nil {
		mod(&c)
	}
	p, err := daemon.ScalerPolicy(&c)
	if err != nil {
		t.Fatal(err)
	}
	return SetupFrom(&c, p)
}

func trace(t testing.TB, rows ...string) Trace {
	t.Helper()
	tr, err := ParseTrace("t.csv", strings.NewReader(TraceHeader+"\n"+strings.Join(rows, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func shippedTrace(t testing.TB, name string) Trace {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := ParseTrace(name, f)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestParseTraceErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "t.csv: empty: expected the header"},
		{"header", "time,cpu\n0,1,1,0\n", `t.csv:1: header "time,cpu": expected "time_s,cpu_cores,memory_gib,pending_pods"`},
		{"columns", TraceHeader + "\n0,1,1\n", "t.csv:2: 3 columns: expected 4"},
		{"number", TraceHeader + "\n0,1,1,0\n60,lots,1,0\n", `t.csv:3: cpu_cores "lots": expected a number`},
		{"negative", TraceHeader + "\n0,1,-2,0\n", "t.csv:2: memory_gib -2: expected 0 or more"},
		{"pending", TraceHeader + "\n0,1,1,1.5\n", `t.csv:2: pending_pods "1.5": expected a whole number`},
		{"order", TraceHeader + "\n0,1,1,0\n60,1,1,0\n# c\n60,1,1,0\n", "t.csv:5: time_s 60: expected a time after the previous row's 60"},
		{"start", TraceHeader + "\n30,1,1,0\n60,1,1,0\n", "t.csv:2: time_s 30: expected the first row at 0"},
		{"one row", TraceHeader + "\n0,1,1,0\n", "t.csv: 1 row(s): expected at least two"},
		{"nan", TraceHeader + "\n0,NaN,1,0\n", `t.csv:2: cpu_cores "NaN": expected a number`},
		{"huge", TraceHeader + "\n0,1e9,1,0\n", "expected at most 100000 cores"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTrace("t.csv", strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestAccounting checks the figures against hand-computed ones on a trace
// no scaler can change (min = max = 2).
func TestAccounting(t *testing.T) {
	s := setup(t, func(c *config.Config) { c.Policy.MinWorkers, c.Policy.MaxWorkers = 2, 2 })
	m := testModel()
	per := s.Policy.Worker
	fitEach := int(min(per.MilliCPU/m.Pod.MilliCPU, per.Memory/m.Pod.Memory))
	const extra = 5
	// One hour with fitEach*2+extra pods wanting room and no base demand,
	// then one hour of nothing.
	tr := trace(t, fmt.Sprintf("0,0,0,%d", 2*fitEach+extra), "3600,0,0,0", "7200,0,0,0")
	for _, res := range []Result{Run(tr, s, m), RunRecipe(tr, s, m)} {
		if res.NodeHours != 4 {
			t.Errorf("%s: node-hours %v, want 2 workers x 2 h = 4", res.Name, res.NodeHours)
		}
		if want := float64(extra * 60); res.PendingPodMinutes < want-0.01 || res.PendingPodMinutes > want+0.01 {
			t.Errorf("%s: pending pod-minutes %v, want %d pods x 60 min", res.Name, res.PendingPodMinutes, extra)
		}
		if res.Episodes != 1 || res.WorstTTC != time.Hour {
			t.Errorf("%s: %d episodes, worst %s; want 1 of 1h (pods pending the whole first hour)", res.Name, res.Episodes, res.WorstTTC)
		}
		if len(res.Events) != 0 {
			t.Errorf("%s: events %v with min = max", res.Name, res.Events)
		}
	}
}

func TestModel(t *testing.T) {
	m := testModel()
	if got, want := m.Provision(false, 3), m.LinkedClone+m.Configure+m.Start+m.Maintenance+m.Join; got != want {
		t.Errorf("linked provision %s, want %s", got, want)
	}
	one := m.clone(true, 1)
	if want := time.Duration(m.TemplateDisk/m.FullCloneRate) * time.Second; one < want || one > want+time.Second {
		t.Errorf("full clone %s, want disk/rate %s", one, want)
	}
	if three := m.clone(true, 3); three < 3*one-3*time.Second || three > 3*one {
		t.Errorf("3 parallel full clones take %s each, want about 3x %s (bandwidth shared)", three, one)
	}
}

func TestFlapCounting(t *testing.T) {
	var r Result
	r.event(0, -1, 2, "")
	r.event(FlapWindow, +1, 3, "") // within: a flap
	r.event(FlapWindow+time.Minute, -1, 2, "")
	r.event(2*FlapWindow+2*time.Minute, +1, 3, "") // outside
	if r.Flaps != 1 || r.ScaleUps != 2 || r.ScaleDowns != 2 {
		t.Fatalf("flaps %d ups %d downs %d, want 1 2 2", r.Flaps, r.ScaleUps, r.ScaleDowns)
	}
}

// TestShippedTracesAgainstRecipe holds the product's claims on the three
// shipped traces with the default policy: no flaps, less time short of
// capacity, and memory and pending pods seen where the recipe is blind.
func TestShippedTracesAgainstRecipe(t *testing.T) {
	s := setup(t, nil)
	m := testModel()
	for name := range shipped {
		t.Run(name, func(t *testing.T) {
			rep := Simulate(shippedTrace(t, name), s, m, true)
			ours, recipe := rep.Results[0], rep.Results[1]
			if ours.Flaps != 0 {
				t.Errorf("engine flapped %d times: %v", ours.Flaps, ours.Events)
			}
			if ours.OverMinutes > recipe.OverMinutes || ours.PendingPodMinutes > recipe.PendingPodMinutes {
				t.Errorf("engine short of capacity longer than the recipe: over %.0f vs %.0f min, pending %.0f vs %.0f pod-min",
					ours.OverMinutes, recipe.OverMinutes, ours.PendingPodMinutes, recipe.PendingPodMinutes)
			}
			if ours.WorstTTC >= recipe.WorstTTC {
				t.Errorf("worst time to capacity %s, recipe %s", ours.WorstTTC, recipe.WorstTTC)
			}
			for _, e := range ours.Events {
				if e.Why == "" {
					t.Errorf("event at %s without a reason", clock(e.At))
				}
			}
		})
	}
	// The batch import is a memory surge with moderate CPU: the recipe never moves.
	rep := Simulate(shippedTrace(t, "batch-import.csv"), s, m, true)
	if rep.Results[1].ScaleUps != 0 || rep.Results[0].ScaleUps == 0 {
		t.Errorf("batch import: engine %d scale-ups, recipe %d; want some and none", rep.Results[0].ScaleUps, rep.Results[1].ScaleUps)
	}
}

// TestDeterministic: the same config and trace give byte-identical table,
// JSON and chart.
func TestDeterministic(t *testing.T) {
	s := setup(t, nil)
	tr := shippedTrace(t, "movie-night.csv")
	render := func() []byte {
		rep := Simulate(tr, s, testModel(), true)
		var b bytes.Buffer
		if err := rep.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		if err := json.NewEncoder(&b).Encode(rep); err != nil {
			t.Fatal(err)
		}
		if err := rep.WriteHTML(&b, ThresholdsOf(s)); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a, b := render(), render()
	if !bytes.Equal(a, b) {
		t.Fatal("two runs of the same config and trace differ")
	}
}

func TestChartIsSVG(t *testing.T) {
	s := setup(t, nil)
	rep := Simulate(shippedTrace(t, "batch-import.csv"), s, testModel(), true)
	var b bytes.Buffer
	if err := rep.WriteSVG(&b, ThresholdsOf(s)); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName  xml.Name
		Polygons []struct {
			Title string `xml:"title"`
		} `xml:"polygon"`
		Polylines []struct{} `xml:"polyline"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("chart is not well-formed XML: %v", err)
	}
	if doc.XMLName.Local != "svg" {
		t.Fatalf("root %q", doc.XMLName.Local)
	}
	events := len(rep.Results[0].Events) + len(rep.Results[1].Events)
	titled := 0
	for _, p := range doc.Polygons {
		if p.Title != "" {
			titled++
		}
	}
	if titled != events {
		t.Errorf("%d event markers, want %d", titled, events)
	}
	// workers x3 (ours, recipe, limit), ours: CPU, memory, pending; recipe: CPU, memory, pending.
	if len(doc.Polylines) != 9 {
		t.Errorf("%d series drawn, want 9", len(doc.Polylines))
	}
}
