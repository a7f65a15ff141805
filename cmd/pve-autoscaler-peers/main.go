// Command pve-autoscaler-peers measures pve-autoscaler side by side with
// Karpenter's kwok provider on one real control plane and writes the
// table into docs/benchmarks.md:
//
//	make bench-peers
//
// It is a command of its own, outside `make test`: it builds Karpenter
// (hack/karpenter-kwok.sh) and runs for well over an hour.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/pve-autoscaler/pve-autoscaler/internal/peers"
)

const heading = "## Side by side with Karpenter (issue 19)"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Main runs the command; its exit code: 0 done, 1 failed, 2 bad flags.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("pve-autoscaler-peers", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 3, "runs of each scenario")
	scen := fs.String("scenarios", strings.Join(peers.Scenarios, ","), "scenarios to run (burst includes the drain-down)")
	diurnal := fs.Duration("diurnal", time.Hour, "the diurnal week replayed in this long")
	drain := fs.Duration("drain-limit", 15*time.Minute, "longest wait for the minimum after the load drops")
	trace := fs.String("trace", "internal/simulate/testdata/diurnal-week.csv", "the diurnal-week trace")
	doc := fs.String("doc", "docs/benchmarks.md", "the document the table is written into (empty: none)")
	block := fs.String("block", "main", "the name of the table's block in the document (one per set of scenarios)")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler-peers: %v\n", err)
		return 2
	}
	if *runs < 1 || *diurnal <= 0 || *drain <= 0 {
		fmt.Fprintln(stderr, "pve-autoscaler-peers: --runs must be at least 1, --diurnal and --drain-limit positive")
		return 2
	}
	started := time.Now()
	write := func(rows []peers.Row, n int) {
		table := peers.Table(rows, n)
		fmt.Fprintf(stdout, "\n%s\n", table)
		if *doc == "" {
			return
		}
		data, err := os.ReadFile(*doc)
		if err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler-peers: %v\n", err)
			return
		}
		cmd := "make bench-peers"
		if len(args) > 0 {
			cmd += " PEERS_ARGS='" + strings.Join(args, " ") + "'"
		}
		body := fmt.Sprintf("```\n%s\n```\n\n%s\nScenarios: %s; Karpenter %s; written after %s.\n",
			cmd, table, *scen, peers.KarpenterVersion, time.Since(started).Round(time.Minute))
		if err := os.WriteFile(*doc, []byte(peers.ReplaceBlock(string(data), heading, *block, body)), 0o644); err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler-peers: %v\n", err)
		}
	}
	rows, err := peers.Run(ctx, peers.Options{Runs: *runs, Scenarios: strings.Split(*scen, ","), Diurnal: *diurnal, DrainLimit: *drain,
		Trace: *trace, Out: stdout, Progress: write})
	if err != nil {
		if len(rows) > 0 {
			fmt.Fprintf(stdout, "\nso far (not written):\n%s\n", peers.Table(rows, 0))
		}
		fmt.Fprintf(stderr, "pve-autoscaler-peers: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "done in %s\n", time.Since(started).Round(time.Second))
	return 0
}
