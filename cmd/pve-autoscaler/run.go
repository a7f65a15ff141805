package main

import (
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("run", "run [--config FILE] [--dry-run] [--log-level LEVEL] [--log-format json|console]", stderr)
	path := fs.String("config", defaultConfigPath, "config file")
	dryRun := fs.Bool("dry-run", false, "log each tick's plan and change nothing on Proxmox, Talos or Kubernetes")
	level := fs.String("log-level", "", "override daemon.log.level: debug, info, warn or error")
	format := fs.String("log-format", "", "override daemon.log.format: json or console")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	c, code := loadConfig(*path, func(c *config.Config) {
		if *level != "" {
			c.Daemon.Log.Level = *level
		}
		if *format != "" {
			c.Daemon.Log.Format = *format
		}
	}, config.ValidateOptions{CheckFiles: true}, stderr)
	if code != exitOK {
		return code
	}
	log, err := newLogger(c.Daemon.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pve-autoscaler run: %v\n", err)
		return exitUsage
	}
	defer func() { _ = log.Sync() }()
	log.Info("configuration loaded", zap.String("file", *path), zap.String("cluster", c.Cluster.Name),
		zap.Bool("dry_run", *dryRun), zap.Int("min_workers", c.Policy.MinWorkers), zap.Int("max_workers", c.Policy.MaxWorkers))
	// The live loop needs the Proxmox, Talos and Kubernetes adapters; until
	// they exist, refuse plainly rather than pretend to run.
	log.Error("the daemon loop is not available in this build: the PVE, Talos and Kubernetes adapters are not built yet; use 'pve-autoscaler plan --snapshot FILE' to see decisions")
	return exitFailure
}

// newLogger builds the zap logger the config asks for, writing to w.
func newLogger(l config.Log, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(l.Level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: expected debug, info, warn or error", l.Level)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch l.Format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("log format %q: expected json or console", l.Format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}
