package simulate

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
)

// Variant is one policy of a sweep: the config lines that make it from the
// user's config (none for the config itself) and the setup they give.
type Variant struct {
	Lines []string
	Setup Setup
}

// SweepPoint is one variant's figures over the trace.
type SweepPoint struct {
	Lines             []string `json:"config"`
	Current           bool     `json:"current,omitempty"`
	Pareto            bool     `json:"pareto"`
	NodeHours         float64  `json:"node_hours"`
	OverMinutes       float64  `json:"minutes_over_threshold"`
	PendingPodMinutes float64  `json:"pending_pod_minutes"`
	Flaps             int      `json:"flaps"`
	ScaleEvents       int      `json:"scale_events"`
	// StandbySize marks a variant that keeps standby workers
	// (policy.standby.size); StandbyVMHours is what they cost stopped,
	// not in NodeHours.
	StandbySize    int     `json:"standby_size"`
	StandbyVMHours float64 `json:"standby_vm_hours"`
}

// SweepReport is a sweep over one trace: every variant, the Pareto front
// marked, and the clairvoyant limit of the user's config for scale.
type SweepReport struct {
	Trace string `json:"trace"`
	// Limit is the floor of node-hours for the user's config.
	LimitNodeHours float64      `json:"limit_node_hours"`
	Points         []SweepPoint `json:"points"`
	// Invalid is the grid's combinations the config validation refused
	// (not run).
	Invalid int `json:"invalid_variants"`
}

// Sweep replays the trace through each variant (the first is the user's
// config), in parallel on every CPU, and marks the Pareto front: the
// points no other point beats on node-hours, minutes over the up threshold
// and pending pod-minutes at once. Points come sorted by node-hours.
func Sweep(tr Trace, m Model, variants []Variant) SweepReport {
	pts := make([]SweepPoint, len(variants))
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(runtime.GOMAXPROCS(0), len(variants))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := Run(tr, variants[i].Setup, m)
				pts[i] = SweepPoint{Lines: variants[i].Lines, Current: i == 0, NodeHours: r.NodeHours, OverMinutes: r.OverMinutes,
					PendingPodMinutes: r.PendingPodMinutes, Flaps: r.Flaps, ScaleEvents: r.ScaleUps + r.ScaleDowns,
					StandbySize: variants[i].Setup.Policy.StandbySize, StandbyVMHours: r.StandbyVMHours}
			}
		}()
	}
	for i := range variants {
		work <- i
	}
	close(work)
	wg.Wait()
	rep := SweepReport{Trace: tr.Name, Points: pts}
	if len(variants) > 0 {
		rep.LimitNodeHours = RunLimit(tr, variants[0].Setup, m).NodeHours
	}
	markPareto(rep.Points)
	sort.SliceStable(rep.Points, func(i, j int) bool { return rep.Points[i].NodeHours < rep.Points[j].NodeHours })
	return rep
}

// dominates: a is no worse than b on every figure and better on one.
func dominates(a, b SweepPoint) bool {
	le := a.NodeHours <= b.NodeHours && a.OverMinutes <= b.OverMinutes && a.PendingPodMinutes <= b.PendingPodMinutes
	lt := a.NodeHours < b.NodeHours || a.OverMinutes < b.OverMinutes || a.PendingPodMinutes < b.PendingPodMinutes
	return le && lt
}

// markPareto marks the points no other point dominates. Points with the
// same figures are all on the front (or all off it).
func markPareto(pts []SweepPoint) {
	for i := range pts {
		pts[i].Pareto = true
		for j := range pts {
			if j != i && dominates(pts[j], pts[i]) {
				pts[i].Pareto = false
				break
			}
		}
	}
}

// WriteTable prints the Pareto front (and the user's config wherever it
// is), each with the config lines that give it. Variants with the same
// figures are one row: the one that changes the fewest settings, with the
// number of others.
func (r SweepReport) WriteTable(w io.Writer) error {
	type row struct {
		p    SweepPoint
		same int
	}
	var rows []row
	byFigures := map[[3]float64]int{}
	front := 0
	for _, p := range r.Points {
		if !p.Pareto && !p.Current {
			continue
		}
		if p.Pareto {
			front++
		}
		key := [3]float64{p.NodeHours, p.OverMinutes, p.PendingPodMinutes}
		i, ok := byFigures[key]
		switch {
		case !ok:
			byFigures[key] = len(rows)
			rows = append(rows, row{p: p})
		case p.Current || (!rows[i].p.Current && len(p.Lines) < len(rows[i].p.Lines)):
			rows[i].same++
			rows[i].p = p
		default:
			rows[i].same++
		}
	}
	fmt.Fprintf(w, "sweep of %s: %d variants (%d more refused by validation), %d on the Pareto front: no other variant beats them on node-hours, minutes over the up threshold and pending pod-minutes at once. Limit: %.1f node-hours.\n\n",
		r.Trace, len(r.Points), r.Invalid, front, r.LimitNodeHours)
	standby := slices.ContainsFunc(r.Points, func(p SweepPoint) bool { return p.StandbySize > 0 })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "\tnode-hours\tover (min)\tpending (pod-min)\tflaps\tevents\t"
	if standby {
		head += "standby (stopped VM-hours)\t"
	}
	fmt.Fprintln(tw, head+"config (the settings changed from yours)")
	for _, rw := range rows {
		p := rw.p
		mark := " "
		switch {
		case p.Current && p.Pareto:
			mark = "*"
		case p.Current:
			mark = "x"
		}
		lines := strings.Join(p.Lines, ", ")
		if p.Current {
			lines = "(your config)"
		}
		if rw.same > 0 {
			lines += fmt.Sprintf(" (and %d more with these figures)", rw.same)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t%d\t%d\t", mark, p.NodeHours, p.OverMinutes, p.PendingPodMinutes, p.Flaps, p.ScaleEvents)
		switch {
		case !standby:
		case p.StandbySize > 0:
			fmt.Fprintf(tw, "%d (%.1f)\t", p.StandbySize, p.StandbyVMHours)
		default:
			fmt.Fprint(tw, "-\t")
		}
		fmt.Fprintf(tw, "%s\n", lines)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "\n* your config, on the front; x your config, off it (another variant beats it on every figure)")
	return err
}
