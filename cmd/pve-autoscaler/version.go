package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("version", "version", stderr)
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	commit := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				commit = " commit " + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(stdout, "pve-autoscaler %s (%s %s/%s%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, commit)
	return exitOK
}
