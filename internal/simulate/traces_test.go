package simulate

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the shipped traces in testdata")

// shipped are the traces in testdata, generated here so their shape is
// written down and reviewable.
var shipped = map[string]func() []byte{
	"movie-night.csv":  movieNight,
	"batch-import.csv": batchImport,
	"diurnal-week.csv": diurnalWeek,
}

func writeRows(b *bytes.Buffer, comment string, step, end int, row func(t int) (cpu, mem float64, pending int)) {
	fmt.Fprintf(b, "# %s\n%s\n", comment, TraceHeader)
	for t := 0; t <= end; t += step {
		cpu, mem, p := row(t)
		fmt.Fprintf(b, "%d,%.2f,%.2f,%d\n", t, cpu, mem, p)
	}
}

// wiggle is a deterministic +-1 noise.
func wiggle(t int, period float64) float64 { return math.Sin(float64(t) / period) }

// movieNight: 6 hours. A quiet evening (2.4 cores), then at 1 h friends
// start streaming: transcoder pods take the CPU to about 12 cores within
// ten minutes and 6 transcode pods go pending; it lasts two hours, then
// fades back to quiet by 4 h.
func movieNight() []byte {
	var b bytes.Buffer
	writeRows(&b, "movie night: quiet, a 2-hour transcoding spike at 1 h (CPU ~12 cores, 6 pending pods), quiet again", 60, 6*3600, func(t int) (float64, float64, int) {
		cpu, mem, p := 2.4+0.2*wiggle(t, 400), 6.0+0.3*wiggle(t, 900), 0
		switch {
		case t >= 3600 && t < 4200:
			f := float64(t-3600) / 600
			cpu += 9.6 * f
			mem += 3 * f
			p = int(6 * f)
		case t >= 4200 && t < 3*3600:
			cpu, mem, p = 12+0.6*wiggle(t, 300), 9+0.4*wiggle(t, 700), 6
		case t >= 3*3600 && t < 4*3600:
			f := 1 - float64(t-3*3600)/3600
			cpu, mem = 2.4+9.6*f, 6+3*f
		}
		return cpu, mem, p
	})
	return b.Bytes()
}

// batchImport: 4 hours. CPU stays moderate (3-5 cores) while an import's
// workers take memory from 8 GiB to 38 GiB over 15 minutes at 30 min, with
// 10 job pods pending for the first 20 minutes; it ends at 2 h 30 min.
func batchImport() []byte {
	var b bytes.Buffer
	writeRows(&b, "batch import: memory surge 8 -> 38 GiB at 30 min with 10 pending job pods, CPU moderate; over at 2 h 30 min", 60, 4*3600, func(t int) (float64, float64, int) {
		cpu, mem, p := 3+0.3*wiggle(t, 500), 8+0.4*wiggle(t, 1100), 0
		switch {
		case t >= 1800 && t < 2700:
			f := float64(t-1800) / 900
			mem += 30 * f
			cpu += 1.5 * f
			p = 10 - int(5*f)
		case t >= 2700 && t < 3000:
			mem, cpu, p = 38+0.5*wiggle(t, 200), 4.5, 5
		case t >= 3000 && t < 9000:
			mem, cpu = 38+0.5*wiggle(t, 200), 4.5+0.3*wiggle(t, 300)
		}
		return cpu, mem, p
	})
	return b.Bytes()
}

// diurnalWeek: 7 days from a Monday, 5-minute rows. Weekdays rise from 3
// cores at night to about 13 at 14:00 and fall again; weekends peak at
// about 7. Memory follows (10-22 GiB). Weekday mornings at 09:00 a CI
// burst leaves 4 pods pending for 10 minutes.
func diurnalWeek() []byte {
	var b bytes.Buffer
	writeRows(&b, "diurnal week from a Monday: weekday peaks ~13 cores at 14:00, weekend ~7, 09:00 CI bursts of 4 pending pods", 300, 7*24*3600, func(t int) (float64, float64, int) {
		day, sec := t/86400, t%86400
		hour := float64(sec) / 3600
		shape := math.Max(0, math.Sin((hour-6)/16*math.Pi)) // 06:00 .. 22:00, peak 14:00
		peak := 10.0
		if day >= 5 {
			peak = 4
		}
		cpu := 3 + peak*shape + 0.4*wiggle(t, 2000)
		mem := 10 + 1.2*peak*shape + 0.5*wiggle(t, 3000)
		p := 0
		if day < 5 && sec >= 9*3600 && sec < 9*3600+600 {
			p = 4
		}
		return cpu, mem, p
	})
	return b.Bytes()
}

// TestShippedTraces keeps testdata in step with the generators above, and
// checks each parses.
func TestShippedTraces(t *testing.T) {
	for name, gen := range shipped {
		path := filepath.Join("testdata", name)
		want := gen()
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./internal/simulate -run TestShippedTraces -update writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from its generator (rerun with -update)", path)
		}
		tr, err := ParseTrace(path, bytes.NewReader(got))
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.Samples) < 100 {
			t.Errorf("%s: %d samples", name, len(tr.Samples))
		}
	}
}
