package main

import (
	"fmt"
	"io"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("validate", "validate [--config FILE]", stderr)
	path := fs.String("config", defaultConfigPath, "config file to check")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	c, code := loadConfig(*path, nil, config.ValidateOptions{CheckFiles: true}, stderr)
	if code != exitOK {
		return code
	}
	out, err := c.YAML()
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler validate: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "# effective configuration of %s (defaults filled in; secrets stay in their files)\n", *path)
	if why := c.PoolsExplained(); why != "" {
		fmt.Fprintf(stdout, "# %s\n", why)
	}
	fmt.Fprintf(stdout, "%s", out)
	return exitOK
}

// loadConfig loads and validates the file with flag overrides applied,
// printing warnings and problems to stderr. It returns exitOK or exitUsage.
func loadConfig(path string, override func(*config.Config), opts config.ValidateOptions, stderr io.Writer) (*config.Config, int) {
	c, warnings, err := config.Load(path, opts, override)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: config %s: %s\n", path, w.Error())
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, exitUsage
	}
	return c, exitOK
}
