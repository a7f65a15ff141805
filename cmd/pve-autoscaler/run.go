package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("starting", zap.String("version", version), zap.String("config", *path), zap.String("cluster", c.Cluster.Name),
		zap.Bool("dry_run", *dryRun), zap.Int("min_workers", c.Policy.MinWorkers), zap.Int("max_workers", c.Policy.MaxWorkers),
		zap.Duration("interval", c.Policy.Interval.D()))

	metrics := daemon.NewMetrics()
	d, err := daemon.Build(ctx, c, daemon.Options{DryRun: *dryRun, Log: log, Version: version, Observer: metrics})
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return exitFailure
	}
	srv := daemon.NewServer(d.Reconciler, metrics, c.Policy.Interval.D())
	if f := c.Daemon.StatusTokenFile; f != "" {
		tok, err := daemon.ReadStatusToken(f)
		if err != nil {
			log.Error("cannot start", zap.Error(err))
			return exitUsage
		}
		srv.RequireStatusToken(tok)
	}
	addr, err := daemon.Serve(ctx, c.Daemon.Listen, srv.Handler(), log)
	if err != nil {
		log.Error("cannot listen", zap.String("daemon.listen", c.Daemon.Listen), zap.Error(err))
		return exitFailure
	}
	if addr != "" {
		log.Info("serving /healthz /readyz /metrics /status", zap.String("address", addr))
	}
	if err := d.Run(ctx, srv); err != nil {
		log.Error("stopped", zap.Error(err))
		return exitFailure
	}
	log.Info("stopped: everything left is resumable")
	return exitOK
}

// newLogger builds the zap logger the config asks for, writing to w.
func newLogger(l config.Log, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(l.Level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: expected debug, info, warn or error", l.Level)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder // "1m0s", not 60
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
