package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// The man pages are generated from the command table and from each
// command's own flag set, so they cannot drift from the binary: gen-man runs
// every command with --help and a helpCapture as its stdout; parse hands
// the parsed flag set to the capture instead of only printing its usage.
// gen-man is hidden (not in usage): make deb runs it at build time.

// helpCapture is the stdout of a command run by gen-man: it records the
// usage text and the command's flag set.
type helpCapture struct {
	bytes.Buffer
	fs *pflag.FlagSet
}

// usagePrefix starts a command's usage text (flagSet); gen-man reads the
// synopsis after it.
const usagePrefix = "Usage: pve-autoscaler "

func genManCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("gen-man", "gen-man [--version VERSION] [--date YYYY-MM-DD] DIR", stderr)
	ver := fs.String("version", version, "version shown in the pages' footer")
	date := fs.String("date", "", "date shown in the pages' footer (default: SOURCE_DATE_EPOCH, else today)")
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK
		}
		fmt.Fprintf(stderr, "pve-autoscaler gen-man: %v\n", err)
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "pve-autoscaler gen-man: expected one argument, the output directory")
		return exitUsage
	}
	if *date == "" {
		t := time.Now()
		if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			var sec int64
			if _, err := fmt.Sscan(s, &sec); err == nil {
				t = time.Unix(sec, 0)
			}
		}
		*date = t.UTC().Format("2006-01-02")
	}
	pages, err := manPages(*ver, *date)
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler gen-man: %v\n", err)
		return exitFailure
	}
	dir := fs.Arg(0)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler gen-man: %v\n", err)
		return exitFailure
	}
	for name, page := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(page), 0o644); err != nil {
			fmt.Fprintf(stderr, "pve-autoscaler gen-man: %v\n", err)
			return exitFailure
		}
	}
	return exitOK
}

// manPages returns the troff pages by file name: pve-autoscaler.8 and one
// pve-autoscaler-COMMAND.8 per command of the command table.
func manPages(ver, date string) (map[string]string, error) {
	pages := map[string]string{}
	var see []string
	for _, c := range commands() {
		see = append(see, "pve-autoscaler-"+c.name)
	}
	var top strings.Builder
	manHeader(&top, "pve-autoscaler", ver, date,
		"keep a Talos Kubernetes cluster on Proxmox VE at the right number of worker VMs")
	top.WriteString(".SH SYNOPSIS\n.B pve\\-autoscaler\n.I COMMAND\n.RI [ flags ]\n")
	top.WriteString(".SH DESCRIPTION\n" + manText("pve-autoscaler is one binary that talks to the Proxmox VE API (clone a worker from a Talos template, place, size, tag, start and later destroy it), the Talos API (apply the worker machine config; reset a node before its VM goes) and the Kubernetes API (usage from metrics.k8s.io, pending pods, join, cordon and PDB-safe drain). The daemon (run) adds workers when load or pending pods need them and removes idle ones, explaining every decision.") + "\n")
	top.WriteString(".SH COMMANDS\n")
	for _, c := range commands() {
		fmt.Fprintf(&top, ".TP\n.B %s\n%s; see\n.BR pve\\-autoscaler\\-%s (8).\n", manCode(c.name), manText(c.summary), manCode(c.name))
	}
	top.WriteString(".TP\n.BR \\-h ,\\ \\-\\-help\nprint the commands and exit.\n")
	top.WriteString(".PP\nRun\n.B pve\\-autoscaler\n.I COMMAND\n.B \\-\\-help\nfor a command's flags.\n")
	manFooter(&top, see)
	pages["pve-autoscaler.8"] = top.String()

	for _, c := range commands() {
		var capture helpCapture
		var errs bytes.Buffer
		if code := c.run([]string{"--help"}, &capture, &errs); code != exitOK || capture.fs == nil {
			return nil, fmt.Errorf("%s --help: exit %d, no flag set: %s", c.name, code, errs.String())
		}
		line, _, _ := strings.Cut(capture.String(), "\n")
		synopsis, ok := strings.CutPrefix(line, usagePrefix)
		if !ok {
			return nil, fmt.Errorf("%s --help: no %q line in %q", c.name, usagePrefix, line)
		}
		name := "pve-autoscaler-" + c.name
		var b strings.Builder
		manHeader(&b, name, ver, date, c.summary)
		fmt.Fprintf(&b, ".SH SYNOPSIS\n.B pve\\-autoscaler %s\n%s\n", manCode(c.name),
			manCode(strings.TrimSpace(strings.TrimPrefix(synopsis, c.name))))
		fmt.Fprintf(&b, ".SH DESCRIPTION\n%s.\n", manText(strings.ToUpper(c.summary[:1])+c.summary[1:]))
		b.WriteString(".SH OPTIONS\n")
		capture.fs.VisitAll(func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			varname, usage := pflag.UnquoteUsage(f)
			tag := "\\-\\-" + manCode(f.Name)
			if f.Shorthand != "" {
				tag = "\\-" + manCode(f.Shorthand) + ", " + tag
			}
			if varname != "" && f.Value.Type() != "bool" {
				fmt.Fprintf(&b, ".TP\n.BI \"%s \" %s", tag, manCode(varname))
			} else {
				fmt.Fprintf(&b, ".TP\n.B %s", tag)
			}
			b.WriteString("\n" + manText(usage))
			if !zeroDefault(f) {
				fmt.Fprintf(&b, " (default: %s)", manText(f.DefValue))
			}
			b.WriteString(".\n")
		})
		b.WriteString(".TP\n.BR \\-h ,\\ \\-\\-help\nprint this command's flags and exit.\n")
		if len(c.examples) > 0 {
			b.WriteString(".SH EXAMPLES\n")
			for _, line := range c.examples {
				if comment, ok := strings.CutPrefix(line, "# "); ok {
					fmt.Fprintf(&b, ".PP\n%s:\n", manText(strings.ToUpper(comment[:1])+comment[1:]))
				} else {
					fmt.Fprintf(&b, ".PP\n.RS\n.EX\n%s\n.EE\n.RE\n", manCode(line))
				}
			}
		}
		manFooter(&b, append([]string{"pve-autoscaler"}, without(see, name)...))
		pages[name+".8"] = b.String()
	}
	return pages, nil
}

func manHeader(b *strings.Builder, name, ver, date, summary string) {
	fmt.Fprintf(b, ".\\\" Generated by pve-autoscaler gen-man from its flag definitions. Do not edit.\n")
	fmt.Fprintf(b, ".TH %s 8 %q %q \"System Administration\"\n", manCode(strings.ToUpper(name)), date, "pve-autoscaler "+ver)
	fmt.Fprintf(b, ".SH NAME\n%s \\- %s\n", manCode(name), manText(summary))
}

func manFooter(b *strings.Builder, see []string) {
	b.WriteString(".SH EXIT STATUS\n")
	for _, e := range []struct {
		code int
		what string
	}{{exitOK, "success"}, {exitFailure, "a failure while working"}, {exitUsage, "bad input: flags, config or snapshot"}} {
		fmt.Fprintf(b, ".TP\n.B %d\n%s.\n", e.code, e.what)
	}
	b.WriteString(".SH FILES\n.TP\n.I " + manCode(defaultConfigPath) + "\n" +
		manText("the default configuration; it names its secrets (PVE token, talosconfig, worker machine config, kubeconfig) by path, readable by root and group pve-autoscaler only.") + "\n" +
		".TP\n.I /usr/share/doc/pve\\-autoscaler/\nthe Kubernetes RBAC and Proxmox VE role recipe.\n")
	b.WriteString(".SH SEE ALSO\n")
	for i, s := range see {
		sep := ","
		if i == len(see)-1 {
			sep = ""
		}
		fmt.Fprintf(b, ".BR %s (8)%s\n", manCode(s), sep)
	}
}

// manText escapes prose for troff: backslashes, and a line start that
// would read as a request.
func manText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// manCode escapes a command, flag or path: also its hyphens are minus
// signs, so that they can be copied and searched for.
func manCode(s string) string { return strings.ReplaceAll(manText(s), "-", `\-`) }

// zeroDefault reports whether a flag's default is its type's zero value,
// which the pages, like pflag's usage, do not show.
func zeroDefault(f *pflag.Flag) bool {
	switch f.DefValue {
	case "", "false", "0", "0s", "[]", "<nil>":
		return true
	}
	return false
}

func without(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
