package tracefile

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/internal/simulate"
	"github.com/pve-autoscaler/pve-autoscaler/internal/testclock"
)

var t0 = testclock.Date(2026, 11, 27, 12, 0)

func row(sec int, workers int) Row {
	return Row{Time: t0.Add(time.Duration(sec) * time.Second), CPUCores: 2.5 + float64(sec)/1000, MemoryGiB: 6.125, Pending: sec % 3, Workers: workers}
}

func record(t *testing.T, w *Writer, rows ...Row) {
	t.Helper()
	for _, r := range rows {
		if err := w.Record(r); err != nil {
			t.Fatal(err)
		}
	}
}

func parse(t *testing.T, path string) simulate.Trace {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := simulate.ParseTrace(path, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("simulate cannot read it: %v\n%s", err, b)
	}
	return tr
}

// A restarted daemon goes on in the same file; rows not after the last
// (a clock set back, a second decision in the same millisecond) are
// skipped; a row cut short by a crash is dropped; simulate reads it all.
func TestRestartAndReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "trace.csv")
	w, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	record(t, w, row(0, 2), row(60, 2), row(120, 3))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of a row.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("180,2.6"); err != nil {
		t.Fatal(err)
	}
	f.Close()

	w, err = Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	record(t, w, row(120, 9), row(90, 9), row(240, 3), row(300, 4))
	w.Close()

	tr := parse(t, path)
	var got []string
	for _, s := range tr.Samples {
		got = append(got, (time.Duration(s.At)).String()+"/"+string(rune('0'+s.Workers)))
	}
	if want := "0s/2 1m0s/2 2m0s/3 4m0s/3 5m0s/4"; strings.Join(got, " ") != want {
		t.Errorf("rows %q, want %q", strings.Join(got, " "), want)
	}
	if !tr.Workers || !tr.Start.Equal(t0) {
		t.Errorf("workers column %v, start %v; want true, %v", tr.Workers, tr.Start, t0)
	}
	if s := tr.Samples[4]; s.CPU != 2.8 || s.Memory != 6.125*(1<<30) || s.Pending != 0 {
		t.Errorf("last row %+v", s)
	}
}

// Past the size limit the file moves to NAME.1 and a new one starts at
// 0 s with its own start; both parse, and no row is lost across the cut.
func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.csv")
	w, err := Open(path, 400)
	if err != nil {
		t.Fatal(err)
	}
	const rows = 40
	for i := range rows {
		record(t, w, row(60*i, 2))
	}
	w.Close()
	cur, old := parse(t, path), parse(t, path+".1")
	if cur.Samples[0].At != 0 || old.Samples[0].At != 0 {
		t.Errorf("rotated files do not start at 0 s")
	}
	last := old.Start.Add(old.Samples[len(old.Samples)-1].At)
	if !cur.Start.Equal(last.Add(time.Minute)) {
		t.Errorf("the new file starts at %v, want the row after %v", cur.Start, last)
	}
	if st, _ := os.Stat(path + ".1"); st.Size() > 400+100 {
		t.Errorf("rotated file %d bytes, limit 400", st.Size())
	}
	end := cur.Start.Add(cur.Samples[len(cur.Samples)-1].At)
	if !end.Equal(t0.Add(time.Duration(rows-1) * time.Minute)) {
		t.Errorf("last row at %v", end)
	}
}

// A file this daemon did not write is left alone, and the error says
// which and what to do.
func TestForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.csv")
	if err := os.WriteFile(path, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, 0)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "daemon.trace_file") {
		t.Fatalf("error %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "hello\n" {
		t.Errorf("foreign file changed: %q", b)
	}
}

// With worker pools each row carries every pool's four columns; simulate
// reads them and replays one pool's (ForPool); a row whose pools differ
// from the file's (the config changed) starts a new file.
func TestPoolColumns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.csv")
	w, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	pooled := func(sec int, gpuPending int) Row {
		r := row(sec, 3)
		r.Pools = []PoolRow{{Name: "general", CPUCores: 2, MemoryGiB: 5, Workers: 2}, {Name: "gpu", CPUCores: 0.5, MemoryGiB: 1.125, Pending: gpuPending, Workers: 1}}
		return r
	}
	record(t, w, pooled(0, 0), pooled(60, 1))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A restart with the same pools goes on in the same file.
	if w, err = Open(path, 0); err != nil {
		t.Fatal(err)
	}
	record(t, w, pooled(120, 0))
	tr := parse(t, path)
	if len(tr.Samples) != 3 || !slices.Equal(tr.Pools, []string{"general", "gpu"}) {
		t.Fatalf("read back %d rows, pools %v", len(tr.Samples), tr.Pools)
	}
	gpu, err := tr.ForPool("gpu")
	if err != nil {
		t.Fatal(err)
	}
	if s := gpu.Samples[1]; s.CPU != 0.5 || s.Memory != 1.125*(1<<30) || s.Pending != 1 || s.Workers != 1 || s.At != time.Minute {
		t.Errorf("gpu's second row %+v", s)
	}
	if _, err := tr.ForPool("big"); err == nil || !strings.Contains(err.Error(), "its pools: general, gpu") {
		t.Errorf("an unknown pool: %v", err)
	}
	// The config lost its pools: the file moves to .1 and a new one starts.
	record(t, w, row(180, 2), row(240, 2))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if old := parse(t, path+".1"); len(old.Samples) != 3 || len(old.Pools) != 2 {
		t.Errorf("the pooled file kept %d rows, pools %v", len(old.Samples), old.Pools)
	}
	if cur := parse(t, path); len(cur.Samples) != 2 || len(cur.Pools) != 0 {
		t.Errorf("the new file: %d rows, pools %v", len(cur.Samples), cur.Pools)
	}
}

// ReadSince reads back both files across a rotation and a restart, in
// order, from the instant asked, skipping a torn last row; a missing file
// is none, a foreign one an error naming it.
func TestReadSince(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.csv")
	if rows, err := ReadSince(path, t0); err != nil || len(rows) != 0 {
		t.Fatalf("no file: %v, %v", rows, err)
	}
	const n = 40
	for half := range 2 { // a restart half-way
		w, err := Open(path, 400)
		if err != nil {
			t.Fatal(err)
		}
		for i := half * n / 2; i < (half+1)*n/2; i++ {
			record(t, w, row(60*i, 2))
		}
		w.Close()
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatalf("no rotation: %v", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("9999,1.") // a crash mid-row
	f.Close()
	from := 5
	rows, err := ReadSince(path, t0.Add(time.Duration(from)*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// The rotated file holds the older rows, which rotation keeps only
	// one file of: rows from the first the .1 file holds, or from.
	old := parse(t, path+".1")
	first := max(from, int(old.Start.Sub(t0)/time.Minute))
	if len(rows) != n-first {
		t.Fatalf("%d rows read back, want %d (from row %d)", len(rows), n-first, first)
	}
	for k, r := range rows {
		if want := row(60*(first+k), 2); r.Time != want.Time || r.Pending != want.Pending || r.Workers != 2 || math.Abs(r.CPUCores-want.CPUCores) > 1e-9 {
			t.Fatalf("row %d: %+v, want %+v", k, r, want)
		}
	}
	if err := os.WriteFile(path, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSince(path, t0); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("foreign file: %v", err)
	}
}

// ReadSince leaves out a row whose figures this daemon never writes: NaN
// and infinities (strconv.ParseFloat takes them), negative figures, and
// ones too large for the daemon's int64 millicores and bytes: read back
// as load, a negative base or a wrapped figure is a rise of any size.
func TestReadSinceBogusFigures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.csv")
	body := "# start " + t0.Format(time.RFC3339Nano) + "\n" + Header + "\n" +
		"0,1,2,0,1\n" +
		"1,NaN,2,0,1\n2,1,+Inf,0,1\n3,1,2,Inf,1\n4,-1000,2,0,1\n5,1,-3,0,1\n6,1,2,-7,1\n" +
		"7,1e300,2,0,1\n8,1,1e19,0,1\n9,1,2,1e300,1\nNaN,1,2,0,1\n-Inf,1,2,0,1\n1e300,1,2,0,1\n" +
		"10,1,2,3,1\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	rows, err := ReadSince(path, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || !rows[0].Time.Equal(t0) || !rows[1].Time.Equal(t0.Add(10*time.Second)) || rows[1].Pending != 3 {
		t.Fatalf("read back %+v, want the rows at 0 s and 10 s only", rows)
	}
}
