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
	"slices"
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

// PoolSample is one pool's share of a row: what its workers use, the
// pending pods counted toward its new workers, its Ready workers.
type PoolSample struct {
	CPU     float64 // cores
	Memory  float64 // bytes
	Pending int
	Workers int
}

// poolColumns are the columns each pool adds to a trace, after "POOL:"
// (internal/tracefile writes them).
var poolColumns = []string{"cpu_cores", "memory_gib", "pending_pods", "workers"}

// MaxTracePoolCells bounds rows times pools: a year at a row a minute
// with four pools.
const MaxTracePoolCells = 1 << 21

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
	// Pools names the worker pools whose columns follow the workers
	// column, and PoolSamples holds each row's (the daemon recorded a
	// config with pools): PoolSamples[row][pool].
	Pools       []string
	PoolSamples [][]PoolSample
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
			h := strings.ReplaceAll(text, " ", "")
			switch {
			case h == TraceHeader:
			case h == TraceHeader+","+WorkersColumn:
				tr.Workers = true
			case strings.HasPrefix(h, TraceHeader+","+WorkersColumn+","):
				tr.Workers = true
				pools, err := parsePoolHeader(strings.TrimPrefix(h, TraceHeader+","+WorkersColumn+","))
				if err != nil {
					return tr, fmt.Errorf("%s:%d: header: %w", name, line, err)
				}
				tr.Pools = pools
			default:
				return tr, fmt.Errorf("%s:%d: header %q: expected %q (or with a %s column, and each pool's columns after it)", name, line, shortText(text), TraceHeader, WorkersColumn)
			}
			header = true
			continue
		}
		s, ps, err := parseRow(text, tr.Workers, tr.Pools)
		if err != nil {
			return tr, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if len(tr.Pools) > 0 && (len(tr.Samples)+1)*len(tr.Pools) > MaxTracePoolCells {
			return tr, fmt.Errorf("%s:%d: more than %d rows times pools: expected at most that many (a year at one row a minute with 4 pools)", name, line, MaxTracePoolCells)
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
		if len(tr.Pools) > 0 {
			tr.PoolSamples = append(tr.PoolSamples, ps)
		}
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

// parsePoolHeader reads the pools' columns of a header: for each pool, in
// order, POOL:cpu_cores,POOL:memory_gib,POOL:pending_pods,POOL:workers.
func parsePoolHeader(cols string) ([]string, error) {
	f := strings.Split(cols, ",")
	if len(f)%len(poolColumns) != 0 {
		return nil, fmt.Errorf("%d pool columns: expected %d per pool (%s, each after POOL:)", len(f), len(poolColumns), strings.Join(poolColumns, ","))
	}
	var pools []string
	for i := 0; i < len(f); i += len(poolColumns) {
		name, _, _ := strings.Cut(f[i], ":")
		if name == "" || len(name) > 63 || slices.Contains(pools, name) {
			return nil, fmt.Errorf("column %d %q: expected POOL:%s with a pool name not seen before", len(TraceHeader)+i+1, shortText(f[i]), poolColumns[0])
		}
		for j, c := range poolColumns {
			if f[i+j] != name+":"+c {
				return nil, fmt.Errorf("column %q: expected %q", shortText(f[i+j]), name+":"+c)
			}
		}
		pools = append(pools, name)
	}
	return pools, nil
}

func parseRow(text string, withWorkers bool, pools []string) (Sample, []PoolSample, error) {
	s, f, err := parseBase(text, withWorkers, pools)
	if err != nil {
		return Sample{}, nil, err
	}
	var ps []PoolSample
	for i, name := range pools {
		v := f[5+len(poolColumns)*i:]
		var vals [2]float64
		for j, col := range poolColumns[:2] {
			x, err := strconv.ParseFloat(strings.TrimSpace(v[j]), 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
				return Sample{}, nil, fmt.Errorf("%s:%s %q: expected a number, 0 or more", name, col, shortText(strings.TrimSpace(v[j])))
			}
			vals[j] = x
		}
		if vals[0] > s.CPU+0.001 || vals[1]*(1<<30) > s.Memory+(1<<20) {
			return Sample{}, nil, fmt.Errorf("%s:cpu_cores %g / %s:memory_gib %g: expected at most the row's cpu_cores / memory_gib", name, vals[0], name, vals[1])
		}
		var counts [2]int
		for j, col := range poolColumns[2:] {
			cv := strings.TrimSpace(v[2+j])
			n, err := strconv.Atoi(cv)
			if err != nil || n < 0 || n > 100000 {
				return Sample{}, nil, fmt.Errorf("%s:%s %q: expected a whole number from 0 to 100000", name, col, shortText(cv))
			}
			counts[j] = n
		}
		ps = append(ps, PoolSample{CPU: vals[0], Memory: vals[1] * (1 << 30), Pending: counts[0], Workers: counts[1]})
	}
	return s, ps, nil
}

// parseBase reads a row's first columns; it returns the split fields.
func parseBase(text string, withWorkers bool, pools []string) (Sample, []string, error) {
	f := strings.Split(text, ",")
	if want := map[bool]int{false: 4, true: 5}[withWorkers] + len(poolColumns)*len(pools); len(f) != want {
		h := TraceHeader
		if withWorkers {
			h += "," + WorkersColumn
		}
		if len(pools) > 0 {
			h += " and " + strconv.Itoa(len(poolColumns)) + " for each of the pools " + strings.Join(pools, ", ")
		}
		return Sample{}, nil, fmt.Errorf("%d columns: expected %d (%s)", len(f), want, h)
	}
	workers := 0
	if withWorkers {
		wv := strings.TrimSpace(f[4])
		w, err := strconv.Atoi(wv)
		if err != nil || w < 0 || w > 100000 {
			return Sample{}, nil, fmt.Errorf("workers %q: expected a whole number from 0 to 100000", wv)
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
		return Sample{}, nil, err
	}
	if t > maxTrace.Seconds() {
		return Sample{}, nil, fmt.Errorf("time_s %g: expected at most %g (a year)", t, maxTrace.Seconds())
	}
	cpu, err := num("cpu_cores", f[1])
	if err != nil {
		return Sample{}, nil, err
	}
	mem, err := num("memory_gib", f[2])
	if err != nil {
		return Sample{}, nil, err
	}
	pv := strings.TrimSpace(f[3])
	pending, err := strconv.Atoi(pv)
	if err != nil || pending < 0 || pending > 100000 {
		return Sample{}, nil, fmt.Errorf("pending_pods %q: expected a whole number from 0 to 100000", shortText(pv))
	}
	if cpu > 100000 || mem > 1<<20 {
		return Sample{}, nil, fmt.Errorf("cpu_cores %g / memory_gib %g: expected at most 100000 cores and 1048576 GiB", cpu, mem)
	}
	return Sample{
		At:      time.Duration(t * float64(time.Second)).Round(time.Millisecond),
		CPU:     cpu,
		Memory:  mem * (1 << 30),
		Pending: pending,
		Workers: workers,
	}, f, nil
}

// ForPool is the trace of one pool's columns, as a trace of its own: what
// `simulate --pool NAME` replays. An error names the pools the trace has.
func (t Trace) ForPool(name string) (Trace, error) {
	i := slices.Index(t.Pools, name)
	if i < 0 {
		return Trace{}, fmt.Errorf("%s has no columns of pool %s (its pools: %s)", t.Name, name, orNone(t.Pools))
	}
	out := Trace{Name: t.Name + " (pool " + name + ")", Workers: t.Workers, Start: t.Start, Samples: make([]Sample, len(t.Samples))}
	for j, s := range t.Samples {
		p := t.PoolSamples[j][i]
		out.Samples[j] = Sample{At: s.At, CPU: p.CPU, Memory: p.Memory, Pending: p.Pending, Workers: p.Workers}
	}
	return out, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
