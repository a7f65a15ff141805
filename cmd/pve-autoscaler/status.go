package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("status", "status [--config FILE | --address HOST:PORT|URL] [--token-file FILE]", stderr)
	path := fs.String("config", defaultConfigPath, "config file (for daemon.listen and daemon.status_token_file)")
	addr := fs.String("address", "", "the daemon's HTTP address, HOST:PORT or http://HOST:PORT (default: daemon.listen from the config)")
	tokenFile := fs.String("token-file", "", "file holding the bearer token /status requires (default: daemon.status_token_file from the config)")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if *addr == "" {
		c, code := loadConfig(*path, nil, config.ValidateOptions{}, stderr)
		if code != exitOK {
			return code
		}
		if *addr = c.Daemon.Listen; *addr == "" {
			fmt.Fprintf(stderr, "pve-autoscaler status: config %s: daemon.listen is empty, the daemon serves no /status\n", *path)
			return exitUsage
		}
		if *tokenFile == "" {
			*tokenFile = c.Daemon.StatusTokenFile
		}
	}
	req, err := http.NewRequest(http.MethodGet, statusURL(*addr), nil)
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler status: --address %q: %v\n", *addr, err)
		return exitUsage
	}
	if *tokenFile != "" {
		tok, err := daemon.ReadStatusToken(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler status: %v\n", err)
			return exitUsage
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	res, err := hc.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler status: %v (is the daemon running?)\n", err)
		return exitFailure
	}
	defer res.Body.Close()
	var st struct {
		Leader bool `json:"leader"`
		scaler.Status
	}
	if res.StatusCode == http.StatusUnauthorized {
		fmt.Fprintf(stderr, "pve-autoscaler status: %s answered %s: /status needs the token of daemon.status_token_file (--token-file)\n", *addr, res.Status)
		return exitFailure
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil || res.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "pve-autoscaler status: %s answered %s: %v\n", *addr, res.Status, err)
		return exitFailure
	}
	renderStatus(stdout, st.Status, st.Leader)
	return exitOK
}

// statusURL is the daemon's /status for an address given as HOST:PORT or
// as a URL (http://HOST:PORT, https://..., with or without a trailing slash).
func statusURL(addr string) string {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimRight(addr, "/") + "/status"
}

func renderStatus(w io.Writer, st scaler.Status, leader bool) {
	role := "leader"
	switch {
	case st.DryRun:
		role = "dry run (plans only, changes nothing, takes no part in leader election)"
	case !leader:
		role = "standby (another daemon leads)"
	}
	fmt.Fprintf(w, "pve-autoscaler: %s, last tick %s\n", role, st.Time.UTC().Format(time.RFC3339))
	if st.LastError != "" {
		fmt.Fprintf(w, "last error: %s (%d consecutive failures)\n", st.LastError, st.Failures)
	}
	if st.Plan != nil {
		writeControl(w, *st.Plan)
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "\nVMID\tNAME\tHOST\tRUNNING\tSTEP")
	for _, m := range st.Machines {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%s\n", m.VMID, m.Name, m.Host, m.Running, m.Step)
	}
	_ = tw.Flush()
	if st.SafetyHold != "" {
		fmt.Fprintf(w, "\nSafety hold (nothing destructive is done): %s\n", st.SafetyHold)
	}
	if len(st.Stuck) > 0 {
		fmt.Fprintf(w, "\nStuck: %d VM(s) make no progress by themselves (counted against max_workers, not as capacity):\n", len(st.Stuck))
		for _, s := range st.Stuck {
			fmt.Fprintf(w, "  VM %d (%s) at %s: %s\n", s.VMID, s.Name, s.Step, s.Reason)
		}
	}
	if len(st.Refused) > 0 {
		fmt.Fprintln(w, "\nRefused (left alone):")
		for _, r := range st.Refused {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
	if len(st.Operations) > 0 {
		fmt.Fprintln(w, "\nIn flight:")
		for _, op := range st.Operations {
			stuck := ""
			if op.Stuck != "" {
				stuck = " (stuck: " + op.Stuck + ")"
			}
			fmt.Fprintf(w, "  %s %s (vmid %d) at %s%s\n", op.Kind, op.Node, op.VMID, op.Step, stuck)
		}
	}
	if p := st.Plan; p != nil {
		fmt.Fprintf(w, "\nLast plan: %d workers, %d desired", p.Workers.Current, p.Workers.Desired)
		if u := p.Utilization; u != nil {
			fmt.Fprintf(w, ", CPU %.1f%%, memory %.1f%%", u.CPU, u.Memory)
		}
		fmt.Fprintln(w)
		writePools(w, p.Pools, "  pools: ", "         ")
		for _, a := range p.Actions {
			var why []string
			for _, r := range a.Reasons {
				why = append(why, r.Message)
			}
			fmt.Fprintf(w, "  %s %d %s: %s\n", a.Kind, a.Count, a.Node, strings.Join(why, "; "))
		}
		for _, h := range p.Holds {
			fmt.Fprintf(w, "  held: %s\n", h.Message)
		}
		if pl := p.Standby; pl != nil {
			writeStandby(w, pl, "\nStandby: ", "  ")
		}
	}
}
