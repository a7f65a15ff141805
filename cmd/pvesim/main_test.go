package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startRun(t *testing.T, args ...string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, out) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "secret") {
		select {
		case err := <-done:
			t.Fatalf("run ended: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no start banner:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out.String(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

func get(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test of a self-signed simulator
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", auth)
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestDefaultWorld(t *testing.T) {
	banner, stop := startRun(t, "--listen", "127.0.0.1:0", "--speed", "100")
	defer stop()
	url := regexp.MustCompile(`at (https://\S+)`).FindStringSubmatch(banner)
	tok := regexp.MustCompile(`API token (\S+) secret (\S+)`).FindStringSubmatch(banner)
	if url == nil || tok == nil || tok[1] != "autoscaler@pve!scaler" || !regexp.MustCompile(`fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}`).MatchString(banner) {
		t.Fatalf("banner:\n%s", banner)
	}
	code, body := get(t, url[1]+"/cluster/resources", "PVEAPIToken="+tok[1]+"="+tok[2])
	if code != 200 || !strings.Contains(body, `"name":"talos-worker-template"`) || !strings.Contains(body, `"node":"pve3"`) || !strings.Contains(body, `"maxmem":68719476736`) {
		t.Errorf("%d %s", code, body)
	}
}

func TestWorldFile(t *testing.T) {
	dir := t.TempDir()
	world := filepath.Join(dir, "world.yaml")
	if err := os.WriteFile(world, []byte(`
hosts: [{name: lab1, cores: 8, memory: 32GiB}]
storages: [{name: nfs, shared: true, size: 1TiB}]
templates: [{vmid: 9100, name: talos-v1-13, host: lab1, storage: nfs, cores: 2, memory: 2GiB, disk: 10GiB, agent: true, template: true}]
tokens: [{id: "ci@pve!ci", secret: s3cret}]
latencies: {linked_clone: 2s, agent: 12s}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	banner, stop := startRun(t, "--listen", "127.0.0.1:0", "--world", world)
	defer stop()
	url := regexp.MustCompile(`at (https://\S+)`).FindStringSubmatch(banner)
	code, body := get(t, url[1]+"/cluster/resources?type=vm", "PVEAPIToken=ci@pve!ci=s3cret")
	if code != 200 || !strings.Contains(body, `"vmid":9100`) || !strings.Contains(body, `"maxmem":2147483648`) {
		t.Errorf("%d %s", code, body)
	}

	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("hosts: [{name: x, cores: 1, memroy: 1GiB}]\ntokens: []\n"), 0o600)
	err := run(context.Background(), []string{"--world", bad}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `hosts[0].memroy: unknown field (did you mean "memory"?)`) {
		t.Errorf("bad world: %v", err)
	}
	if err := run(context.Background(), []string{"--listen", "0.0.0.0:0"}, io.Discard); err == nil || !strings.Contains(err.Error(), "only loopback") {
		t.Errorf("non-loopback listen: %v", err)
	}
}

// --help prints the usage with its examples, once, and is not an error.
func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out); err != nil {
		t.Fatalf("--help: %v", err)
	}
	if strings.Count(out.String(), "Usage: pvesim") != 1 || !strings.Contains(out.String(), "Examples:\n  # the built-in world") || !strings.Contains(out.String(), "--world") {
		t.Errorf("--help printed %q", out.String())
	}
	if err := run(context.Background(), []string{"--bogus"}, &out); err == nil {
		t.Error("an unknown flag is not an error")
	}
}
