package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

func TestStatusURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9464":        "http://127.0.0.1:9464/status",
		"http://x":              "http://x/status",
		"http://pve1.lan:9464/": "http://pve1.lan:9464/status",
		"https://pve1.lan:9464": "https://pve1.lan:9464/status",
		"[::1]:9464":            "http://[::1]:9464/status",
	} {
		if got := statusURL(in); got != want {
			t.Errorf("statusURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Durations in the log carry their unit: "interval":"1m0s", not 60.
func TestLogDurationsHaveUnits(t *testing.T) {
	var b bytes.Buffer
	log, err := newLogger(config.Log{Level: "info", Format: "json"}, &b)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("starting", zap.Duration("interval", time.Minute))
	if !strings.Contains(b.String(), `"interval":"1m0s"`) {
		t.Errorf("log line %s", b.String())
	}
}
