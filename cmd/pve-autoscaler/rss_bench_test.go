package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
)

// BenchmarkIdleDaemon builds the real binary, runs `pve-autoscaler run`
// as its own process against the simulated world with the default policy
// (60 s checks, two workers), lets it bring up its minimum and then idle,
// and reports after PVE_AUTOSCALER_IDLE (default 10m):
//
//	rss-MB           the process's resident memory (goal < 40)
//	peak-rss-MB      its high-water mark
//	pve-calls/tick   PVE API requests per check while idle (goal <= 2)
//
// Run: make bench-idle (about 11 minutes).
func BenchmarkIdleDaemon(b *testing.B) {
	kubetest.Require(b) // skips before the build when the test bed is missing
	idle := 10 * time.Minute
	if v := os.Getenv("PVE_AUTOSCALER_IDLE"); v != "" {
		var err error
		if idle, err = time.ParseDuration(v); err != nil {
			b.Fatalf("PVE_AUTOSCALER_IDLE=%q: %v", v, err)
		}
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "pve-autoscaler")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build and the .deb
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	_, w := newWorld(b)
	cfg := w.Config()
	// A free port: validate refuses port 0 (with it the daemon exited at
	// once and this benchmark reported 0 MB).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg.Daemon.Listen = l.Addr().String()
	l.Close()
	path := writeConfigFile(b, dir, cfg)
	logs := &lockedBuf{}
	cmd := exec.Command(bin, "run", "--config", path, "--log-format", "json")
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill(); <-exited }()
	// idleFor waits d, failing if the daemon exits meanwhile.
	idleFor := func(d time.Duration) {
		select {
		case err := <-exited:
			exited <- err
			b.Fatalf("the daemon exited: %v\n%s", err, logs.String())
		case <-time.After(d):
		}
	}

	total := func() int {
		n := 0
		for _, c := range w.Sim.Requests() {
			n += c
		}
		return n
	}
	b.ResetTimer()
	// The first minute brings up the two workers; count the rest.
	idleFor(time.Minute + 5*time.Second)
	before, writes := total(), w.Sim.Writes()
	if before == 0 {
		b.Fatalf("no PVE request in the first minute\n%s", logs.String())
	}
	idleFor(idle - time.Minute)
	ticks := (idle - time.Minute) / cfg.Policy.Interval.D()
	b.StopTimer()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatalf("daemon gone: %v\n%s", err, logs.String())
	}
	rss, hwm := procKB(status, "VmRSS:"), procKB(status, "VmHWM:")
	if rss == 0 {
		b.Fatalf("no VmRSS in /proc/%d/status:\n%s", cmd.Process.Pid, status)
	}
	anon, file := procKB(status, "RssAnon:"), procKB(status, "RssFile:")
	b.Logf("private (anonymous) %.1f MB, the binary's pages %.1f MB", float64(anon)/1024, float64(file)/1024)
	if w.Sim.Writes() != writes {
		b.Errorf("the idle daemon wrote to PVE %d times", w.Sim.Writes()-writes)
	}
	b.Logf("after %s: RSS %.1f MB (peak %.1f MB); %d PVE requests in %d checks", idle, float64(rss)/1024, float64(hwm)/1024, total()-before, ticks)
	b.ReportMetric(float64(rss)/1024, "rss-MB")
	b.ReportMetric(float64(hwm)/1024, "peak-rss-MB")
	b.ReportMetric(float64(anon)/1024, "anon-MB")
	b.ReportMetric(float64(total()-before)/float64(ticks), "pve-calls/tick")
}

func procKB(status []byte, key string) int {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == key {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
