// Command pve-autoscaler keeps a Talos Linux Kubernetes cluster on Proxmox
// VE at the right number of worker VMs.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // something went wrong while working
	exitUsage   = 2 // bad input: flags, config or snapshot
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run the autoscaler daemon", runCmd},
		{"doctor", "check the config, Proxmox, Talos and Kubernetes before enabling the daemon", doctorCmd},
		{"plan", "show what the autoscaler would do now, and why", planCmd},
		{"simulate", "replay a load trace through the policy (and the recipe) without a cluster", simulateCmd},
		{"status", "show a running daemon's workers, operations and last plan", statusCmd},
		{"validate", "check a config file and print the effective configuration", validateCmd},
		{"version", "print the version", versionCmd},
	}
}

func main() { os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr)) }

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return exitOK
	case "--version":
		return versionCmd(nil, stdout, stderr)
	case "gen-man": // hidden: make deb's man pages (man.go)
		return genManCmd(args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "pve-autoscaler: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "pve-autoscaler keeps a Talos Kubernetes cluster on Proxmox VE at the right number of worker VMs.")
	fmt.Fprintln(w, "\nUsage:\n  pve-autoscaler COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'pve-autoscaler COMMAND --help' for a command's flags.")
}

// flagSet makes a command's flag set; parse handles --help and errors.
func flagSet(name, synopsis string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), usagePrefix+"%s\n\nFlags:\n%s", synopsis, fs.FlagUsages())
	}
	return fs
}

// parse parses args; done is true when the command must return code at once.
func parse(fs *pflag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			if c, ok := stdout.(*helpCapture); ok {
				c.fs = fs // gen-man: the man page reads the flags
			}
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK, true
		}
		fmt.Fprintf(fs.Output(), "pve-autoscaler %s: %v\n", fs.Name(), err)
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "pve-autoscaler %s: unexpected argument %q\n", fs.Name(), strings.Join(fs.Args(), " "))
		return exitUsage, true
	}
	return 0, false
}

const defaultConfigPath = "/etc/pve-autoscaler/config.yaml"
