package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// renderPlan prints a plan the way `terraform plan` prints one: the state,
// each action with its reasons, and everything that held something back.
func renderPlan(w io.Writer, p scaler.Plan, pol scaler.Policy) {
	fmt.Fprintf(w, "Plan at %s\n\n", p.Time.UTC().Format(time.RFC3339))
	wk := p.Workers
	fmt.Fprintf(w, "Workers:      %d now (%d ready, %d not ready, %d provisioning; %d being removed)\n", wk.Current, wk.Ready, wk.NotReady, wk.Provisioning, wk.Removing)
	fmt.Fprintf(w, "              %d desired (min %d, max %d)\n", wk.Desired, wk.Min, wk.Max)
	writePools(w, p.Pools, "Pools:        ", "              ")
	writeControl(w, p)
	for i, dw := range p.Drifted {
		label := "Drifted:      "
		if i > 0 {
			label = "              "
		}
		name := dw.Node
		if name == "" {
			name = "(no Node)"
		}
		fmt.Fprintf(w, "%s%s (vmid %d): %s\n", label, name, dw.VMID, dw.Why)
	}
	if u := p.Utilization; u != nil {
		fmt.Fprintf(w, "Utilization:  CPU %.1f%% (scale up at %g%%, down at %g%%)\n", u.CPU, pol.CPU.Up, pol.CPU.Down)
		fmt.Fprintf(w, "              memory %.1f%% (scale up at %g%%, down at %g%%)\n", u.Memory, pol.Memory.Up, pol.Memory.Down)
	} else {
		fmt.Fprintln(w, "Utilization:  unknown")
	}

	if pl := p.Standby; pl != nil {
		writeStandby(w, pl, "Standby:      ", "              ")
	}

	fmt.Fprintln(w, "\nActions:")
	if len(p.Actions) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, a := range p.Actions {
		switch a.Kind {
		case scaler.ActionAdd:
			fmt.Fprintf(w, "  + add %d worker%s", a.Count, plural(a.Count))
			if a.Pool != "" {
				fmt.Fprintf(w, " to pool %s", a.Pool)
			}
			if len(a.Wake) > 0 {
				fmt.Fprintf(w, ": start standby %s, clone %d", vmids(a.Wake), a.Count-len(a.Wake))
			}
			fmt.Fprintln(w)
		case scaler.ActionRefill:
			fmt.Fprintf(w, "  + build %d standby worker%s (clone, install, join, park)\n", a.Count, plural(a.Count))
		case scaler.ActionReplace:
			fmt.Fprintf(w, "  ~ replace %s (vmid %d): clone and join a new worker first, then cordon, drain, reset, destroy it\n", a.Node, a.VMID)
		case scaler.ActionRetire:
			fmt.Fprintf(w, "  - retire standby %s (vmid %d on %s): destroy VM and Node\n", a.Node, a.VMID, a.Host)
		case scaler.ActionRemove:
			where := ""
			if a.VMID != 0 {
				where = fmt.Sprintf(" (vmid %d", a.VMID)
				if a.Host != "" {
					where += " on " + a.Host
				}
				where += ")"
			}
			how := "cordon, drain, reset, destroy"
			if a.Park {
				how = "cordon, drain, taint, stop: parked in standby"
			}
			fmt.Fprintf(w, "  - remove %s%s: %s\n", a.Node, where, how)
		}
		for _, r := range a.Reasons {
			fmt.Fprintf(w, "      %s: %s\n", r.Code, r.Message)
		}
	}
	if len(p.Awaiting) > 0 {
		fmt.Fprintln(w, "\nAwaiting the scheduler (counted on a worker that joined after them, not toward new workers):")
		for _, a := range p.Awaiting {
			fmt.Fprintf(w, "  ~ %s/%s on %s until %s (%s)\n", a.Namespace, a.Name, a.Node, a.Until.UTC().Format(time.RFC3339), fmtLeft(a.Until.Sub(p.Time)))
		}
	}
	var noWorker []scaler.PodVerdict
	for _, v := range p.Pods {
		if v.NoWorker() {
			noWorker = append(noWorker, v)
		}
	}
	if len(noWorker) > 0 {
		fmt.Fprintln(w, "\nPending pods that add no worker (no new worker could run them):")
		for i, v := range noWorker {
			if i == 20 {
				fmt.Fprintf(w, "  ... and %d more (-o json lists them all)\n", len(noWorker)-i)
				break
			}
			fmt.Fprintf(w, "  x %s/%s: %s\n", v.Namespace, v.Name, strings.TrimPrefix(v.Message, "pod didn't trigger scale-up: "))
		}
	}
	if len(p.Holds) > 0 {
		fmt.Fprintln(w, "\nHeld back:")
		for _, r := range p.Holds {
			fmt.Fprintf(w, "  ! %s: %s\n", r.Code, r.Message)
		}
	}
	if len(p.Notes) > 0 {
		fmt.Fprintln(w, "\nNotes:")
		for _, r := range p.Notes {
			fmt.Fprintf(w, "  * %s: %s\n", r.Code, r.Message)
		}
	}
	removed := 0
	if _, ok := p.Removal(); ok {
		removed = 1
	}
	fmt.Fprintf(w, "\nPlan: %d to add, %d to remove.\n", p.Added(), removed)
}

// writePools prints one line per worker pool when there are several.
func writePools(w io.Writer, pools []scaler.PoolStatus, first, indent string) {
	if len(pools) < 2 {
		return
	}
	for i, ps := range pools {
		lead := indent
		if i == 0 {
			lead = first
		}
		fmt.Fprintf(w, "%s%s: %d now (%d ready, %d not ready, %d provisioning), min %d, max %d", lead, ps.Name, ps.Current, ps.Ready, ps.NotReady, ps.Provisioning, ps.Min, ps.Max)
		if ps.Added > 0 {
			fmt.Fprintf(w, ", adding %d", ps.Added)
		}
		if ps.Pending > 0 {
			fmt.Fprintf(w, ", %d pending pod%s counted", ps.Pending, plural(ps.Pending))
		}
		fmt.Fprintln(w)
	}
}

// writeStandby prints the standby workers: a summary line, then one per member.
func writeStandby(w io.Writer, pl *scaler.Standby, first, indent string) {
	fmt.Fprintf(w, "%s%d of %d ready to start\n", first, pl.Ready, pl.Size)
	for _, m := range pl.Members {
		state := "ready"
		if m.Stale != "" {
			state = "stale: " + m.Stale
		}
		fmt.Fprintf(w, "%s%s (vmid %d on %s), %s old, %s\n", indent, m.Name, m.VMID, m.Host, m.Age.Round(time.Minute), state)
	}
}

// fmtLeft renders the time left until a hold ends: "12s left", or "over".
func fmtLeft(d time.Duration) string {
	if d <= 0 {
		return "over"
	}
	return d.Round(time.Second).String() + " left"
}

func vmids(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// writeControl shows a pause and the active boosts (pve-autoscaler pause, boost).
func writeControl(w io.Writer, p scaler.Plan) {
	if pp := p.Paused; pp != nil {
		fmt.Fprintf(w, "PAUSED:       %s\n", strings.TrimPrefix(pp.String(), "paused "))
		if !pp.Until.IsZero() {
			fmt.Fprintf(w, "              ends on its own (%s)\n", fmtLeft(pp.Until.Sub(p.Time)))
		}
	}
	for i, b := range p.Boosts {
		label := "Boost:        "
		if i > 0 {
			label = "              "
		}
		fmt.Fprintf(w, "%s%s (%s)\n", label, strings.TrimPrefix(b.String(), "boost "), fmtLeft(b.Until.Sub(p.Time)))
	}
}
