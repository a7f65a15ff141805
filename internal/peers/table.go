// Package peers measures pve-autoscaler side by side with Karpenter (its
// kwok cloud provider) on one real control plane: the same pods, the same
// node size and the same node start-up latency (`make bench-peers`,
// cmd/pve-autoscaler-peers). This file is the arithmetic and the table;
// the runs are in run.go.
package peers

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Sample is one figure's values, one per run.
type Sample []float64

// Mean is the average (NaN when empty).
func (s Sample) Mean() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	return sum / float64(len(s))
}

// Range is the smallest and the largest value.
func (s Sample) Range() (lo, hi float64) {
	if len(s) == 0 {
		return math.NaN(), math.NaN()
	}
	c := append(Sample(nil), s...)
	sort.Float64s(c)
	return c[0], c[len(c)-1]
}

// Better says which way a figure is good.
type Better int

// Lower is better (times, nodes, pending), Higher (utilization), or
// neither: the figure is context (nodes added).
const (
	Lower Better = iota
	Higher
	Neither
)

// Row is one figure of one scenario for both autoscalers.
type Row struct {
	Scenario string
	Figure   string
	Unit     string
	Better   Better
	Digits   int
	Ours     Sample
	Theirs   Sample
	// Cap, when set, is a value that means "did not happen within the
	// scenario's limit" (shown as ">cap").
	Cap float64
}

// Cell renders a sample: "mean (lo-hi)", one value as is, "n/a" empty.
func (r Row) Cell(s Sample) string {
	if len(s) == 0 {
		return "n/a"
	}
	f := func(v float64) string {
		if r.Cap > 0 && v >= r.Cap {
			return ">" + num(r.Cap, r.Digits)
		}
		return num(v, r.Digits)
	}
	if len(s) == 1 {
		return f(s[0])
	}
	lo, hi := s.Range()
	if lo == hi {
		return fmt.Sprintf("%s (all %d)", f(s.Mean()), len(s))
	}
	return fmt.Sprintf("%s (%s-%s)", f(s.Mean()), f(lo), f(hi))
}

func num(v float64, digits int) string {
	return fmt.Sprintf("%.*f", digits, v)
}

// Winner names the side whose mean is better, "equal" when the means
// agree to the row's digits, "-" when the figure has no better side or a
// side has no value.
func (r Row) Winner() string {
	if r.Better == Neither || len(r.Ours) == 0 || len(r.Theirs) == 0 {
		return "-"
	}
	a, b := r.Ours.Mean(), r.Theirs.Mean()
	if r.Cap > 0 && a >= r.Cap && b >= r.Cap {
		return "-" // neither within the limit: no order
	}
	if num(a, r.Digits) == num(b, r.Digits) {
		return "equal"
	}
	if (a < b) == (r.Better == Lower) {
		return "pve-autoscaler"
	}
	return "Karpenter"
}

// Table is the rows as a Markdown table.
func Table(rows []Row, runs int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | figure | pve-autoscaler | Karpenter | better |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fig := r.Figure
		if r.Unit != "" {
			fig += " (" + r.Unit + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Scenario, fig, r.Cell(r.Ours), r.Cell(r.Theirs), r.Winner())
	}
	fmt.Fprintf(&b, "\nEach cell: mean (smallest-largest) over %d run(s).\n", runs)
	return b.String()
}

// A measured table sits between these markers in docs/benchmarks.md, so
// the prose around it is kept when a run writes a new table; block names
// one run's table (runs of different scenarios write different blocks).
func BeginMark(block string) string {
	return "<!-- bench-peers " + block + ": begin (written by make bench-peers) -->"
}

// EndMark ends the block.
func EndMark(block string) string { return "<!-- bench-peers " + block + ": end -->" }

// ReplaceBlock puts body between the block's marks, or, when the document
// has no such block, appends it under the heading.
func ReplaceBlock(doc, heading, block, body string) string {
	begin, end := BeginMark(block), EndMark(block)
	body = strings.TrimRight(body, "\n") + "\n"
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n" + heading + "\n\n" + begin + "\n" + body + end + "\n"
	}
	return doc[:i+len(begin)] + "\n" + body + doc[j:]
}
