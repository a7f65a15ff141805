// Package tracefile is the daemon's record of its own load: one row per
// decision, appended to a CSV file in the format `simulate --trace` reads,
// so a user can replay their own week against another policy.
//
// The file starts with a comment naming the wall-clock time of its 0 s
// ("# start 2026-01-05T00:00:00Z") and the header; each row is seconds
// since that start, the CPU cores and memory GiB the Ready, schedulable
// workers use, the pods pending, and the Ready workers. A restarted daemon
// goes on appending to the same file (a row cut short by a crash is
// dropped); past the size limit the file moves to NAME.1 (replacing the
// one before) and a new one starts. With worker pools, each row also has
// four columns per pool (POOL:cpu_cores, POOL:memory_gib,
// POOL:pending_pods, POOL:workers); a row whose pools differ from the
// file's header (the config changed) moves the file to NAME.1 too. Rows that would not come after the
// last one (a clock set back) are skipped: the file always parses.
package tracefile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header is the first line after the start comment (simulate's header
// with the optional workers column).
const Header = "time_s,cpu_cores,memory_gib,pending_pods,workers"

// DefaultMaxSize is the size past which the file is rotated.
const DefaultMaxSize = 16 << 20

const startPrefix = "# start "

// Row is one decision's load.
type Row struct {
	Time time.Time
	// CPUCores and MemoryGiB are what the Ready, schedulable workers use.
	CPUCores, MemoryGiB float64
	// Pending is the pods the scheduler could not place.
	Pending int
	// Workers is the Ready workers.
	Workers int
	// Pools is each worker pool's share, when the config has pools.
	Pools []PoolRow
}

// PoolRow is one pool's load: what its Ready, schedulable workers use,
// the pending pods counted toward its new workers, its Ready workers.
type PoolRow struct {
	Name                string
	CPUCores, MemoryGiB float64
	Pending, Workers    int
}

// PoolColumns are the columns each pool adds, after "POOL:".
var PoolColumns = []string{"cpu_cores", "memory_gib", "pending_pods", "workers"}

// HeaderFor is the header of a file whose rows have these pools.
func HeaderFor(pools []PoolRow) string {
	h := Header
	for _, p := range pools {
		for _, c := range PoolColumns {
			h += "," + p.Name + ":" + c
		}
	}
	return h
}

// Writer appends rows to one trace file. Safe for concurrent use.
type Writer struct {
	path string
	max  int64

	mu     sync.Mutex
	f      *os.File
	size   int64
	start  time.Time
	header string        // the file's header ("" before the first row)
	last   time.Duration // the last row's offset; -1 before the first
}

// Open opens path for appending (creating it and its directory), going on
// from the rows already there. maxSize <= 0 means DefaultMaxSize.
func Open(path string, maxSize int64) (*Writer, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	w := &Writer{path: path, max: maxSize, last: -1}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	if err := w.resume(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w (move it away, or set daemon.trace_file elsewhere)", path, err)
	}
	w.f = f
	return w, nil
}

// resume reads the start and the last row of an existing file, and drops
// a last row cut short.
func (w *Writer) resume(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	w.size = st.Size()
	if w.size == 0 {
		return nil // a new file: the first row writes the head
	}
	head := make([]byte, min(w.size, 4096))
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(head))
	if !sc.Scan() {
		return errors.New("not a trace this daemon wrote: expected a first line \"" + startPrefix + "TIME\"")
	}
	if w.start, w.header, err = readHead(sc); err != nil {
		return err
	}
	// The tail: the last complete row, and a torn one cut off.
	from := max(w.size-4096, 0)
	tail := make([]byte, w.size-from)
	if _, err := f.ReadAt(tail, from); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if end := bytes.LastIndexByte(tail, '\n'); end < len(tail)-1 {
		if end < 0 {
			return errors.New("a last line longer than 4 KiB")
		}
		w.size = from + int64(end) + 1
		if err := f.Truncate(w.size); err != nil {
			return err
		}
		tail = tail[:end+1]
	}
	lines := bytes.Split(bytes.TrimRight(tail, "\n"), []byte("\n"))
	last := string(lines[len(lines)-1])
	if last == w.header {
		return nil
	}
	secs, err := strconv.ParseFloat(strings.SplitN(last, ",", 2)[0], 64)
	if err != nil {
		return fmt.Errorf("last row %q: expected seconds first", last)
	}
	w.last = time.Duration(secs * float64(time.Second)).Round(time.Millisecond)
	return nil
}

// Record appends r, rotating first when the file is full. A row not after
// the last one is skipped.
func (w *Writer) Record(r Row) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return errors.New("trace file closed")
	}
	header := HeaderFor(r.Pools)
	if w.size >= w.max || (w.size > 0 && header != w.header) {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	var b []byte
	if w.size == 0 {
		w.start, w.last, w.header = r.Time, -1, header
		b = fmt.Appendf(b, "%s%s\n%s\n", startPrefix, r.Time.UTC().Format(time.RFC3339Nano), header)
	}
	at := r.Time.Sub(w.start).Round(time.Millisecond)
	if at <= w.last {
		return nil
	}
	b = fmt.Appendf(b, "%s,%s,%s,%d,%d", num(at.Seconds()), num(r.CPUCores), num(r.MemoryGiB), r.Pending, r.Workers)
	for _, p := range r.Pools {
		b = fmt.Appendf(b, ",%s,%s,%d,%d", num(p.CPUCores), num(p.MemoryGiB), p.Pending, p.Workers)
	}
	b = append(b, '\n')
	n, err := w.f.WriteAt(b, w.size)
	w.size += int64(n)
	if err != nil {
		return err
	}
	w.last = at
	return nil
}

// rotate moves the file to NAME.1 and starts a new one.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return err
	}
	w.f = nil
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		return err
	}
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	w.f, w.size = f, 0
	return nil
}

// Close closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// num renders a figure with at most three decimals and no trailing zeros.
func num(f float64) string {
	return strconv.FormatFloat(float64(int64(f*1000+0.5))/1000, 'f', -1, 64)
}

// ReadSince reads back the rows of path's previous file (NAME.1) and of
// path recorded at or after since, oldest first: the daemon's memory of
// its own load after a restart. Only each row's first columns are read
// (time, CPU, memory, pending pods, workers); a row that does not parse
// (cut short by a crash) is left out. A file that does not exist reads as
// none; one this daemon did not write is an error naming it.
func ReadSince(path string, since time.Time) ([]Row, error) {
	var rows []Row
	for _, p := range []string{path + ".1", path} {
		got, err := readFile(p, since)
		if err != nil {
			return nil, err
		}
		for _, r := range got {
			if len(rows) == 0 || r.Time.After(rows[len(rows)-1].Time) {
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

// maxFigure bounds every figure read back (seconds, cores, GiB, pods,
// workers): none this daemon writes comes near it, and below it the
// daemon's int64 millicores and bytes cannot wrap.
const maxFigure = 1e9

// readFile is ReadSince for one file. A row with a figure that is not a
// number, is negative or above maxFigure is left out, as one cut short:
// read back as load, a negative base or a wrapped figure would be a
// recurring rise of any size.
func readFile(path string, since time.Time) ([]Row, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return nil, sc.Err() // empty
	}
	start, _, err := readHead(sc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var rows []Row
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ",", 6)
		if len(f) < 5 {
			continue
		}
		var v [5]float64
		ok := true
		for i := range v {
			if v[i], err = strconv.ParseFloat(f[i], 64); err != nil || !(v[i] >= 0 && v[i] <= maxFigure) {
				ok = false // NaN fails both comparisons
			}
		}
		at := start.Add(time.Duration(v[0] * float64(time.Second)).Round(time.Millisecond))
		if !ok || at.Before(since) {
			continue
		}
		rows = append(rows, Row{Time: at, CPUCores: v[1], MemoryGiB: v[2], Pending: int(v[3]), Workers: int(v[4])})
	}
	return rows, sc.Err()
}

// readHead reads a trace's head, its first line already scanned: the
// start comment's time and the header line.
func readHead(sc *bufio.Scanner) (start time.Time, header string, err error) {
	if !strings.HasPrefix(sc.Text(), startPrefix) {
		return start, "", errors.New("not a trace this daemon wrote: expected a first line \"" + startPrefix + "TIME\"")
	}
	start, err = time.Parse(time.RFC3339Nano, strings.TrimPrefix(sc.Text(), startPrefix))
	if err != nil {
		return start, "", fmt.Errorf("first line %q: expected an RFC 3339 time", sc.Text())
	}
	if !sc.Scan() || (sc.Text() != Header && !strings.HasPrefix(sc.Text(), Header+",")) {
		return start, "", fmt.Errorf("second line: expected %q (with a pool's columns after it)", Header)
	}
	return start, sc.Text(), nil
}
