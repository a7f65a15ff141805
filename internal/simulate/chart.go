package simulate

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"strings"
	"time"
)

// Chart geometry (SVG user units).
const (
	chartW  = 1000
	left    = 70
	right   = 970
	wTop    = 72  // workers panel
	wBottom = 230 //
	uTop    = 270 // utilization panel
	uBottom = 480 //
	pTop    = 520 // pending pods panel
	pBottom = 600 //
	chartH  = 640
)

var colors = []string{"#1f6fb4", "#d62728"}

// The limit's workers: grey, dotted.
const (
	limitColor = "#555"
	limitDash  = ` stroke-dasharray="2 3"`
)

// Thresholds drawn on the utilization panel.
type Thresholds struct {
	CPUUp, CPUDown, MemUp, MemDown float64
}

// WriteSVG draws the workers of every result, the first result's CPU and
// memory against the thresholds (the others' CPU dashed), pending pods,
// and the scale events.
func (r Report) WriteSVG(w io.Writer, th Thresholds) error {
	var b bytes.Buffer
	end := r.Duration
	if end <= 0 {
		end = time.Second
	}
	x := func(t time.Duration) float64 { return left + float64(t)/float64(end)*(right-left) }
	maxW := 1
	maxP := 1
	for _, res := range r.Results {
		for _, p := range res.Series {
			maxW = max(maxW, p.Workers)
			maxP = max(maxP, p.Pending)
		}
	}
	maxW++
	yw := func(n int) float64 { return wBottom - float64(n)/float64(maxW)*(wBottom-wTop) }
	yu := func(pct float64) float64 { return uBottom - min(pct, 100)/100*(uBottom-uTop) }
	yp := func(n int) float64 { return pBottom - float64(n)/float64(maxP)*(pBottom-pTop) }

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>`+"\n", left, esc("pve-autoscaler simulate: "+r.Trace))
	for i, res := range r.Results {
		color, flaps := colors[i%len(colors)], fmt.Sprintf(", %d flaps", res.Flaps)
		if res.Clairvoyant {
			color, flaps = limitColor, " (clairvoyant floor)"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", left, 40+i*14, color,
			esc(fmt.Sprintf("%s: %.1f node-hours, %.0f min over threshold, %.0f pending pod-min%s",
				res.Name, res.NodeHours, res.OverMinutes, res.PendingPodMinutes, flaps)))
	}

	// Panels, grid and labels.
	panel := func(top, bottom float64, label string) {
		fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="%d" height="%.0f" fill="none" stroke="#bbb"/>`+"\n", left, top, right-left, bottom-top)
		fmt.Fprintf(&b, `<text x="14" y="%.0f" transform="rotate(-90 14 %.0f)" text-anchor="middle" fill="#444">%s</text>`+"\n", (top+bottom)/2, (top+bottom)/2, esc(label))
	}
	panel(wTop, wBottom, "workers")
	panel(uTop, uBottom, "utilization %")
	panel(pTop, pBottom, "pending pods")
	for n := 0; n <= maxW; n++ {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end" fill="#666">%d</text>`+"\n", left, right, yw(n), yw(n), left-6, yw(n)+4, n)
	}
	for pct := 0; pct <= 100; pct += 20 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end" fill="#666">%d</text>`+"\n", left, right, yu(float64(pct)), yu(float64(pct)), left-6, yu(float64(pct))+4, pct)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#666">%d</text>`+"\n", left-6, yp(maxP)+4, maxP)
	tick := tickStep(end)
	for t := time.Duration(0); t <= end; t += tick {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#f3f3f3"/><text x="%.1f" y="%d" text-anchor="middle" fill="#666">%s</text>`+"\n",
			x(t), x(t), wTop, pBottom, x(t), pBottom+16, tickLabel(t, tick))
	}

	// Thresholds.
	thr := func(pct float64, color, label string) {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="6 4"/><text x="%d" y="%.1f" fill="%s">%s</text>`+"\n",
			left, right, yu(pct), yu(pct), color, right+3, yu(pct)+4, color, esc(label))
	}
	thr(th.CPUUp, "#e08a00", fmt.Sprintf("%.0f", th.CPUUp))
	thr(th.CPUDown, "#e08a00", fmt.Sprintf("%.0f", th.CPUDown))
	if th.MemUp != th.CPUUp || th.MemDown != th.CPUDown {
		thr(th.MemUp, "#8e44ad", fmt.Sprintf("%.0f", th.MemUp))
		thr(th.MemDown, "#8e44ad", fmt.Sprintf("%.0f", th.MemDown))
	}

	// Series.
	for i := len(r.Results) - 1; i >= 0; i-- {
		res := r.Results[i]
		if res.Clairvoyant {
			step(&b, res.Series, x, func(p Point) float64 { return yw(p.Workers) }, limitColor, 1.5, limitDash)
			continue
		}
		color := colors[i%len(colors)]
		dash := ""
		if i > 0 {
			dash = ` stroke-dasharray="7 4"`
		}
		step(&b, res.Series, x, func(p Point) float64 { return yw(p.Workers) }, color, 2.5, dash)
		if i == 0 {
			line(&b, res.Series, x, func(p Point) float64 { return yu(p.CPU) }, "#1f6fb4", 1.5, "")
			line(&b, res.Series, x, func(p Point) float64 { return yu(p.Memory) }, "#8e44ad", 1.5, "")
			step(&b, res.Series, x, func(p Point) float64 { return yp(p.Pending) }, "#1f6fb4", 1.5, "")
		} else {
			line(&b, res.Series, x, func(p Point) float64 { return yu(p.CPU) }, "#1f6fb4", 1, dash)
			line(&b, res.Series, x, func(p Point) float64 { return yu(p.Memory) }, "#8e44ad", 1, dash)
			step(&b, res.Series, x, func(p Point) float64 { return yp(p.Pending) }, color, 1, dash)
		}
		for _, e := range res.Events {
			cx, cy := x(e.At), yw(e.Workers)
			shape := fmt.Sprintf("%.1f,%.1f %.1f,%.1f %.1f,%.1f", cx, cy-9, cx-6, cy+1, cx+6, cy+1) // up
			fill := "#2ca02c"
			if e.Delta < 0 {
				shape = fmt.Sprintf("%.1f,%.1f %.1f,%.1f %.1f,%.1f", cx, cy+9, cx-6, cy-1, cx+6, cy-1)
				fill = "#ff7f0e"
			}
			stroke := ""
			if i > 0 {
				fill, stroke = "#fff", ` stroke="`+color+`"`
			}
			fmt.Fprintf(&b, `<polygon points="%s" fill="%s"%s><title>%s</title></polygon>`+"\n", shape, fill, stroke,
				esc(fmt.Sprintf("%s %s %+d -> %d: %s", res.Name, clock(e.At), e.Delta, e.Workers, e.Why)))
		}
	}

	// Legend.
	lx := float64(left)
	item := func(color, dash, label string) {
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%d" y2="%d" stroke="%s" stroke-width="2.5"%s/><text x="%.0f" y="%d">%s</text>`+"\n", lx, lx+22, chartH-10, chartH-10, color, dash, lx+27, chartH-6, esc(label))
		lx += 40 + float64(len(label))*7
	}
	scalers := 0
	for i, res := range r.Results {
		if res.Clairvoyant {
			item(limitColor, limitDash, res.Name+" workers")
			continue
		}
		scalers++
		dash := ""
		if i > 0 {
			dash = ` stroke-dasharray="7 4"`
		}
		item(colors[i%len(colors)], dash, res.Name+" workers")
	}
	item("#1f6fb4", "", "CPU %")
	item("#8e44ad", "", "memory %")
	item("#e08a00", ` stroke-dasharray="6 4"`, "thresholds")
	if scalers > 1 {
		item("#777", ` stroke-dasharray="7 4"`, "dashed: "+r.Results[1].Name)
	}
	fmt.Fprintf(&b, `<polygon points="%.0f,%d %.0f,%d %.0f,%d" fill="#2ca02c"/><text x="%.0f" y="%d">scale up / down</text>`+"\n", lx+5, chartH-15, lx, chartH-6, lx+10, chartH-6, lx+15, chartH-6)
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// WriteHTML is the SVG and the table in one page.
func (r Report) WriteHTML(w io.Writer, th Thresholds) error {
	var svg, table bytes.Buffer
	if err := r.WriteSVG(&svg, th); err != nil {
		return err
	}
	if err := r.WriteTable(&table); err != nil {
		return err
	}
	return writePage(w, "pve-autoscaler simulate: "+r.Trace, svg.String(), table.String())
}

// writePage is a chart and its table on one HTML page.
func writePage(w io.Writer, title, svg, table string) error {
	_, err := fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%s</title>
<style>body{font-family:sans-serif;margin:2em}pre{background:#f7f7f7;padding:1em;overflow-x:auto}</style></head>
<body>
%s<pre>%s</pre>
</body></html>
`, esc(title), svg, html.EscapeString(table))
	return err
}

func esc(s string) string { return html.EscapeString(s) }

func step(b *bytes.Buffer, pts []Point, x func(time.Duration) float64, y func(Point) float64, color string, width float64, dash string) {
	if len(pts) == 0 {
		return
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="%.1f"%s points="`, color, width, dash)
	prev := y(pts[0])
	fmt.Fprintf(b, "%.1f,%.1f", x(pts[0].At), prev)
	for _, p := range pts[1:] {
		cur := y(p)
		if cur != prev {
			fmt.Fprintf(b, " %.1f,%.1f %.1f,%.1f", x(p.At), prev, x(p.At), cur)
			prev = cur
		}
	}
	fmt.Fprintf(b, " %.1f,%.1f\"/>\n", x(pts[len(pts)-1].At), prev)
}

func line(b *bytes.Buffer, pts []Point, x func(time.Duration) float64, y func(Point) float64, color string, width float64, dash string) {
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="%.1f"%s points="`, color, width, dash)
	for i, p := range pts {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(b, "%.1f,%.1f", x(p.At), y(p))
	}
	b.WriteString("\"/>\n")
}

func tickStep(d time.Duration) time.Duration {
	for _, s := range []time.Duration{5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		if d/s <= 12 {
			return s
		}
	}
	return 7 * 24 * time.Hour
}

func tickLabel(t, step time.Duration) string {
	if step >= 24*time.Hour {
		return fmt.Sprintf("day %d", int(t/(24*time.Hour)))
	}
	c := clock(t)
	return strings.TrimSuffix(c, ":00")
}
