// Package simulate replays a load trace through the real decision engine
// and, for comparison, through a model of the recipe it replaces (a script
// that reads `kubectl top nodes` and runs `terraform apply`), with modelled
// provisioning delays. Everything is computed: the same config and trace
// always give the same figures.
package simulate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Sample is one row of a load trace: from At on (until the next row) the
// cluster's workload asks for CPU cores and Memory bytes, and Pending more
// pods (of the simulation's pod size) want to run on top of it.
type Sample struct {
	At      time.Duration
	CPU     float64 // cores
	Memory  float64 // bytes
	Pending int
	// Workers is the Ready workers the daemon saw (the optional workers
	// column of a trace it recorded); 0 when the trace has no such column.
	Workers int
}

// TraceHeader is the first line every trace starts with; a trace the
// daemon records (daemon.trace_file) adds the column WorkersColumn.
const TraceHeader = "time_s,cpu_cores,memory_gib,pending_pods"

// WorkersColumn is the optional fifth column.
const WorkersColumn = "workers"

// startComment, before the header, names the wall-clock time of 0 s.
const startComment = "# start "

// Trace is a parsed load trace.
type Trace struct {
	Name    string
	Samples []Sample
	// Workers: the trace has the workers column.
	Workers bool
	// Start is the wall-clock time of 0 s when a "# start TIME" comment
	// before the header says so (the daemon's traces do); zero otherwise.
	Start time.Time
}

// Duration is the trace's length: the last row's time.
func (t Trace) Duration() time.Duration {
	if len(t.Samples) == 0 {
		return 0
	}
	return t.Samples[len(t.Samples)-1].At
}

// at returns the sample in force at d (rows hold until the next one).
func (t Trace) at(d time.Duration, from int) (Sample, int) {
	i := from
	for i+1 < len(t.Samples) && t.Samples[i+1].At <= d {
		i++
	}
	return t.Samples[i], i
}

// Limits of a trace: a row is a few dozen bytes, and a year at one row a
// minute is 525,600 rows.
const (
	MaxTraceLine = 1 << 20
	MaxTraceRows = 1 << 20
)

// ParseTrace reads a CSV trace. Errors name the file, the line and the
// column, and say what is expected. A UTF-8 byte order mark (spreadsheets
// write one) is skipped.
func ParseTrace(name string, r io.Reader) (Trace, error) {
	tr := Trace{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxTraceLine)
	line := 0
	header := false
	for sc.Scan() {
		line++
		raw := sc.Text()
		if line == 1 {
			raw = strings.TrimPrefix(raw, "\ufeff")
		}
		text := strings.TrimSpace(raw)
		if !header && strings.HasPrefix(text, startComment) {
			if at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(text, startComment)); err == nil {
				tr.Start = at
			}
		}
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if !header {
			switch h := strings.ReplaceAll(text, " ", ""); h {
			case TraceHeader:
			case TraceHeader + "," + WorkersColumn:
				tr.Workers = true
			default:
				return tr, fmt.Errorf("%s:%d: header %q: expected %q (or with a %s column)", name, line, shortText(text), TraceHeader, WorkersColumn)
			}
			header = true
			continue
		}
		s, err := parseRow(text, tr.Workers)
		if err != nil {
			return tr, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if n := len(tr.Samples); n > 0 && s.At <= tr.Samples[n-1].At {
			return tr, fmt.Errorf("%s:%d: time_s %g: expected a time after the previous row's %g", name, line, s.At.Seconds(), tr.Samples[n-1].At.Seconds())
		}
		if len(tr.Samples) == 0 && s.At != 0 {
			return tr, fmt.Errorf("%s:%d: time_s %g: expected the first row at 0", name, line, s.At.Seconds())
		}
		if len(tr.Samples) == MaxTraceRows {
			return tr, fmt.Errorf("%s:%d: more than %d rows: expected at most that many (a year at one row a minute is 525600)", name, line, MaxTraceRows)
		}
		tr.Samples = append(tr.Samples, s)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return tr, fmt.Errorf("%s:%d: the line is longer than %d bytes: expected a row of four numbers", name, line+1, MaxTraceLine)
		}
		return tr, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	if !header {
		return tr, fmt.Errorf("%s: empty: expected the header %q and at least two rows", name, TraceHeader)
	}
	if len(tr.Samples) < 2 {
		return tr, fmt.Errorf("%s: %d row(s): expected at least two (a start at 0 and an end)", name, len(tr.Samples))
	}
	return tr, nil
}

const maxTrace = 366 * 24 * time.Hour

// shortText cuts a value quoted in an error to a readable length.
func shortText(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

func parseRow(text string, withWorkers bool) (Sample, error) {
	f := strings.Split(text, ",")
	if want := map[bool]int{false: 4, true: 5}[withWorkers]; len(f) != want {
		h := TraceHeader
		if withWorkers {
			h += "," + WorkersColumn
		}
		return Sample{}, fmt.Errorf("%d columns: expected %d (%s)", len(f), want, h)
	}
	workers := 0
	if withWorkers {
		wv := strings.TrimSpace(f[4])
		w, err := strconv.Atoi(wv)
		if err != nil || w < 0 || w > 100000 {
			return Sample{}, fmt.Errorf("workers %q: expected a whole number from 0 to 100000", wv)
		}
		workers = w
	}
	num := func(col string, v string) (float64, error) {
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("%s %q: expected a number", col, shortText(strings.TrimSpace(v)))
		}
		if x < 0 {
			return 0, fmt.Errorf("%s %g: expected 0 or more", col, x)
		}
		return x, nil
	}
	t, err := num("time_s", f[0])
	if err != nil {
		return Sample{}, err
	}
	if t > maxTrace.Seconds() {
		return Sample{}, fmt.Errorf("time_s %g: expected at most %g (a year)", t, maxTrace.Seconds())
	}
	cpu, err := num("cpu_cores", f[1])
	if err != nil {
		return Sample{}, err
	}
	mem, err := num("memory_gib", f[2])
	if err != nil {
		return Sample{}, err
	}
	pv := strings.TrimSpace(f[3])
	pending, err := strconv.Atoi(pv)
	if err != nil || pending < 0 || pending > 100000 {
		return Sample{}, fmt.Errorf("pending_pods %q: expected a whole number from 0 to 100000", shortText(pv))
	}
	if cpu > 100000 || mem > 1<<20 {
		return Sample{}, fmt.Errorf("cpu_cores %g / memory_gib %g: expected at most 100000 cores and 1048576 GiB", cpu, mem)
	}
	return Sample{
		At:      time.Duration(t * float64(time.Second)).Round(time.Millisecond),
		CPU:     cpu,
		Memory:  mem * (1 << 30),
		Pending: pending,
		Workers: workers,
	}, nil
}
