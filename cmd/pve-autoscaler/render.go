package main

import (
	"fmt"
	"io"
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
	if u := p.Utilization; u != nil {
		fmt.Fprintf(w, "Utilization:  CPU %.1f%% (scale up at %g%%, down at %g%%)\n", u.CPU, pol.CPU.Up, pol.CPU.Down)
		fmt.Fprintf(w, "              memory %.1f%% (scale up at %g%%, down at %g%%)\n", u.Memory, pol.Memory.Up, pol.Memory.Down)
	} else {
		fmt.Fprintln(w, "Utilization:  unknown")
	}

	fmt.Fprintln(w, "\nActions:")
	if len(p.Actions) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, a := range p.Actions {
		switch a.Kind {
		case scaler.ActionAdd:
			fmt.Fprintf(w, "  + add %d worker%s\n", a.Count, plural(a.Count))
		case scaler.ActionRemove:
			where := ""
			if a.VMID != 0 {
				where = fmt.Sprintf(" (vmid %d", a.VMID)
				if a.Host != "" {
					where += " on " + a.Host
				}
				where += ")"
			}
			fmt.Fprintf(w, "  - remove %s%s: cordon, drain, reset, destroy\n", a.Node, where)
		}
		for _, r := range a.Reasons {
			fmt.Fprintf(w, "      %s: %s\n", r.Code, r.Message)
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

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
