package simulate

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is one simulate run: the trace, the model and the results side by side.
type Report struct {
	Trace    string        `json:"trace"`
	Duration time.Duration `json:"duration_ns"`
	Samples  int           `json:"samples"`
	// Provision is the modelled clone-to-Ready time of one worker.
	Provision time.Duration `json:"provision_ns"`
	Results   []Result      `json:"results"`
}

// WriteTable prints the figures side by side, then each run's scale events.
func (r Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "trace %s: %s, %d rows; one worker modelled at %s from clone to Ready\n\n", r.Trace, human(r.Duration), r.Samples, human(r.Provision))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(Result) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for _, res := range r.Results {
			fmt.Fprintf(tw, "%s\t", f(res))
		}
		fmt.Fprintln(tw)
	}
	row("", func(res Result) string { return res.Name })
	row("node-hours", func(res Result) string { return fmt.Sprintf("%.1f", res.NodeHours) })
	row("minutes over the up threshold", func(res Result) string { return fmt.Sprintf("%.0f", res.OverMinutes) })
	row("pending pod-minutes", func(res Result) string { return fmt.Sprintf("%.0f", res.PendingPodMinutes) })
	row("scale events (up/down)", func(res Result) string {
		if res.Clairvoyant {
			return "-"
		}
		return fmt.Sprintf("%d (%d/%d)", res.ScaleUps+res.ScaleDowns, res.ScaleUps, res.ScaleDowns)
	})
	row("flaps (removal, then addition within 15m)", func(res Result) string {
		if res.Clairvoyant {
			return "-"
		}
		return fmt.Sprint(res.Flaps)
	})
	row("time to capacity, mean", func(res Result) string { return ttc(res, res.MeanTTC) })
	row("time to capacity, worst", func(res Result) string { return ttc(res, res.WorstTTC) })
	row("episodes of need", func(res Result) string { return fmt.Sprint(res.Episodes) })
	row("peak / final workers", func(res Result) string { return fmt.Sprintf("%d / %d", res.Peak, res.End) })
	if r.standby() {
		// Only with standby: the rows above stay those of a run without it.
		row("standby VM-hours (stopped: disk only)", func(res Result) string { return fmt.Sprintf("%.1f", res.StandbyVMHours) })
		row("standby wakes / parks / refills / retires", func(res Result) string {
			if res.Clairvoyant {
				return "-"
			}
			return fmt.Sprintf("%d / %d / %d / %d", res.Wakes, res.Parks, res.Refills, res.Retires)
		})
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		if res.Clairvoyant {
			fmt.Fprintf(w, "\n%s: the fewest workers under every scale_up_at with no pod pending, provisioned instantly (a floor, not a scaler)\n", res.Name)
			continue
		}
		fmt.Fprintf(w, "\n%s: %d scale events\n", res.Name, len(res.Events))
		for _, e := range res.Events {
			sign := "+"
			if e.Delta < 0 {
				sign = ""
			}
			fmt.Fprintf(w, "  %9s  %s%d -> %d  %s\n", clock(e.At), sign, e.Delta, e.Workers, e.Why)
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

// standby reports whether any run kept standby workers.
func (r Report) standby() bool {
	for _, res := range r.Results {
		if res.StandbyVMHours > 0 || res.Wakes+res.Parks+res.Refills+res.Retires > 0 {
			return true
		}
	}
	return false
}

func ttc(r Result, d time.Duration) string {
	if r.Episodes == 0 || r.Clairvoyant {
		return "-"
	}
	return human(d)
}

// human renders a duration as 1h02m, 3m05s or 42s.
func human(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// clock renders a trace offset as [Nd ]HH:MM:SS.
func clock(d time.Duration) string {
	days := int(d / (24 * time.Hour))
	d -= time.Duration(days) * 24 * time.Hour
	s := fmt.Sprintf("%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
	if days > 0 {
		s = fmt.Sprintf("%dd %s", days, s)
	}
	return strings.TrimSpace(s)
}
