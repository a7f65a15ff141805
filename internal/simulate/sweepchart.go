package simulate

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// WriteSVG draws the sweep as two scatters sharing the node-hours axis:
// minutes over the up threshold (left) and pending pod-minutes (right)
// against node-hours. The Pareto front is blue, the other variants grey,
// the user's config ringed red, the limit a dashed line.
func (r SweepReport) WriteSVG(w io.Writer) error {
	const (
		width, height       = 1000, 460
		top, bottom         = 60, 400
		panelW, gap, margin = 420, 80, 70
	)
	var b bytes.Buffer
	lo, hi := r.LimitNodeHours, r.LimitNodeHours
	maxOver, maxPending := 1.0, 1.0
	for _, p := range r.Points {
		lo, hi = min(lo, p.NodeHours), max(hi, p.NodeHours)
		maxOver, maxPending = max(maxOver, p.OverMinutes), max(maxPending, p.PendingPodMinutes)
	}
	if hi <= lo {
		hi = lo + 1
	}
	pad := (hi - lo) * 0.05
	lo, hi = lo-pad, hi+pad
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", margin, esc(fmt.Sprintf("pve-autoscaler simulate --sweep: %s, %d variants", r.Trace, len(r.Points))))
	fmt.Fprintf(&b, `<text x="%d" y="42" fill="#444">blue: Pareto front; grey: beaten on every figure by a blue one; red ring: your config; dashed: the limit's node-hours</text>`+"\n", margin)
	panel := func(x0 float64, label string, maxY float64, y func(SweepPoint) float64) {
		px := func(v float64) float64 { return x0 + (v-lo)/(hi-lo)*panelW }
		py := func(v float64) float64 { return bottom - v/maxY*(bottom-top) }
		fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="%d" height="%d" fill="none" stroke="#bbb"/>`+"\n", x0, top, panelW, bottom-top)
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle" fill="#444">node-hours</text>`+"\n", x0+panelW/2, bottom+34)
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" transform="rotate(-90 %.0f %d)" text-anchor="middle" fill="#444">%s</text>`+"\n", x0-44, (top+bottom)/2, x0-44, (top+bottom)/2, esc(label))
		for i := 0; i <= 4; i++ {
			v := lo + (hi-lo)*float64(i)/4
			fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle" fill="#666">%.0f</text>`+"\n", px(v), bottom+16, v)
			yv := maxY * float64(i) / 4
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" fill="#666">%.0f</text>`+"\n", x0-6, py(yv)+4, yv)
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4 3"/>`+"\n", px(r.LimitNodeHours), top, px(r.LimitNodeHours), bottom, limitColor)
		for _, pass := range []bool{false, true} { // the front drawn over the rest
			for _, p := range r.Points {
				if p.Pareto != pass {
					continue
				}
				color := "#bbb"
				if p.Pareto {
					color = colors[0]
				}
				title := "your config"
				if !p.Current {
					title = strings.Join(p.Lines, ", ")
				}
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s</title></circle>`+"\n", px(p.NodeHours), py(y(p)), color,
					esc(fmt.Sprintf("%s: %.1f node-hours, %.0f min over, %.0f pending pod-min", title, p.NodeHours, p.OverMinutes, p.PendingPodMinutes)))
			}
		}
		for _, p := range r.Points {
			if p.Current {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="8" fill="none" stroke="%s" stroke-width="2"/>`+"\n", px(p.NodeHours), py(y(p)), colors[1])
			}
		}
	}
	panel(margin, "minutes over the up threshold", maxOver, func(p SweepPoint) float64 { return p.OverMinutes })
	panel(margin+panelW+gap, "pending pod-minutes", maxPending, func(p SweepPoint) float64 { return p.PendingPodMinutes })
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// WriteHTML is the scatter and the table in one page.
func (r SweepReport) WriteHTML(w io.Writer) error {
	var svg, table bytes.Buffer
	if err := r.WriteSVG(&svg); err != nil {
		return err
	}
	if err := r.WriteTable(&table); err != nil {
		return err
	}
	return writePage(w, "pve-autoscaler simulate --sweep: "+r.Trace, svg.String(), table.String())
}
