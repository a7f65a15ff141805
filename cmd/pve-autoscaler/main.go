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
	// examples are shown by --help and in the man page: a comment line
	// ("# ...") before each command line.
	examples []string
}

func commands() []command {
	return []command{
		{"run", "run the autoscaler daemon", runCmd, []string{
			"# the daemon deciding but changing nothing, its log readable on a terminal",
			"pve-autoscaler run --config /etc/pve-autoscaler/config.yaml --dry-run --log-format console",
			"# what the systemd unit runs",
			"pve-autoscaler run --config /etc/pve-autoscaler/config.yaml",
		}},
		{"doctor", "check the config, Proxmox, Talos and Kubernetes before enabling the daemon", doctorCmd, []string{
			"# every check, before enabling the daemon",
			"pve-autoscaler doctor --config /etc/pve-autoscaler/config.yaml",
			"# with an admin's kubeconfig, to read every HPA, VPA and PDB; JSON for scripts",
			"pve-autoscaler doctor --config /etc/pve-autoscaler/config.yaml --kubeconfig ~/.kube/config --output json",
		}},
		{"plan", "show what the autoscaler would do now, and why", planCmd, []string{
			"# live: asks Proxmox VE and Kubernetes, changes nothing",
			"pve-autoscaler plan --config /etc/pve-autoscaler/config.yaml",
			"# a situation from a file, as JSON",
			"pve-autoscaler plan --config config.yaml --snapshot docs/snapshot.example.json --output json",
		}},
		{"simulate", "replay a load trace through the policy (and the recipe) without a cluster", simulateCmd, []string{
			"# a day of load through the policy of config.yaml",
			"pve-autoscaler simulate --config config.yaml --trace load.csv",
			"# the policies around yours that nothing beats, on the daemon's own week",
			"pve-autoscaler simulate --config config.yaml --trace /var/lib/pve-autoscaler/trace.csv --sweep --chart sweep.html",
		}},
		{"status", "show a running daemon's workers, operations and last plan", statusCmd, []string{
			"# the daemon on this host (daemon.listen from the config)",
			"pve-autoscaler status --config /etc/pve-autoscaler/config.yaml",
			"# a daemon at a given address (HOST:PORT or an http:// URL)",
			"pve-autoscaler status --address 127.0.0.1:9464",
			"# a daemon on another host (daemon.listen_public), with the token /status requires",
			"pve-autoscaler status --address pve2.lan:9464 --token-file /etc/pve-autoscaler/status-token",
		}},
		{"pause", "stop every scaling action until resume (or --for), from any machine", pauseCmd, []string{
			"# before manual work on the workers: nothing is created, removed, parked or woken",
			"pve-autoscaler pause --config /etc/pve-autoscaler/config.yaml --for 2h --reason \"replacing a disk on pve2\"",
		}},
		{"resume", "end a pause", resumeCmd, []string{
			"pve-autoscaler resume --config /etc/pve-autoscaler/config.yaml",
		}},
		{"boost", "raise the minimum number of workers for a while", boostCmd, []string{
			"# movie night: at least 4 workers until 23:30 (policy.timezone)",
			"pve-autoscaler boost --config /etc/pve-autoscaler/config.yaml --workers 4 --until 23:30",
			"# one pool, for three hours; then end it early",
			"pve-autoscaler boost --config /etc/pve-autoscaler/config.yaml --pool gpu --workers 2 --for 3h",
			"pve-autoscaler boost --config /etc/pve-autoscaler/config.yaml --pool gpu --clear",
		}},
		{"validate", "check a config file and print the effective configuration", validateCmd, []string{
			"# every problem at once (exit 2), or the configuration with its defaults (exit 0)",
			"pve-autoscaler validate --config /etc/pve-autoscaler/config.yaml",
		}},
		{"version", "print the version", versionCmd, []string{
			"pve-autoscaler version",
		}},
	}
}

// examplesOf returns a command's examples from the command table.
func examplesOf(name string) []string {
	for _, c := range commands() {
		if c.name == name {
			return c.examples
		}
	}
	return nil
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
		ex := ""
		if lines := examplesOf(name); len(lines) > 0 {
			ex = "\nExamples:\n  " + strings.Join(lines, "\n  ") + "\n"
		}
		fmt.Fprintf(fs.Output(), usagePrefix+"%s\n%s\nFlags:\n%s", synopsis, ex, fs.FlagUsages())
	}
	return fs
}

// parse parses args; done is true when the command must return code at once.
func parse(fs *pflag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	// pflag prints the usage itself on --help; it is printed once, below, on stdout.
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if err != nil {
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
