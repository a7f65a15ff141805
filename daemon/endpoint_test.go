package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// The server bounds what one client may hold: timeouts and header size.
func TestServerTimeouts(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler())
	for name, got := range map[string][2]time.Duration{
		"ReadHeaderTimeout": {srv.ReadHeaderTimeout, 5 * time.Second},
		"ReadTimeout":       {srv.ReadTimeout, 10 * time.Second},
		"WriteTimeout":      {srv.WriteTimeout, 30 * time.Second},
		"IdleTimeout":       {srv.IdleTimeout, 60 * time.Second},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %v, want %v", name, got[0], got[1])
		}
	}
	if srv.MaxHeaderBytes != 16<<10 {
		t.Errorf("MaxHeaderBytes = %d, want 16 KiB", srv.MaxHeaderBytes)
	}
	// Serve uses it: a request with 64 KiB of headers is refused with 431
	// (net/http allows 4 KiB of slack over MaxHeaderBytes).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := Serve(ctx, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header int
		want   int
	}{{1 << 10, http.StatusOK}, {64 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\nConnection: close\r\n\r\n", strings.Repeat("a", tc.header))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		_ = conn.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%d bytes of header: %s, want %d", tc.header, res.Status, tc.want)
		}
	}
}

// With a status token, /status needs it; metrics and health stay open.
// Without one (loopback), /status answers anyone.
func TestStatusBearerToken(t *testing.T) {
	rec := scaler.NewReconciler(nil, nil, nil, scaler.Policy{}, scaler.ReconcileOptions{})
	get := func(t *testing.T, url, auth string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	t.Run("loopback without a token", func(t *testing.T) {
		ts := httptest.NewServer(NewServer(rec, NewMetrics(), time.Minute).Handler())
		defer ts.Close()
		if code := get(t, ts.URL+"/status", ""); code != http.StatusOK {
			t.Errorf("/status without token: %d", code)
		}
	})
	t.Run("with a token", func(t *testing.T) {
		srv := NewServer(rec, NewMetrics(), time.Minute)
		srv.RequireStatusToken("correct-horse")
		ts := httptest.NewServer(srv.Handler())
		defer ts.Close()
		for _, tc := range []struct {
			path, auth string
			want       int
		}{
			{"/status", "Bearer correct-horse", http.StatusOK},
			{"/status", "", http.StatusUnauthorized},
			{"/status", "Bearer wrong-horse", http.StatusUnauthorized},
			{"/status", "Bearer correct-hors", http.StatusUnauthorized},
			{"/status", "Bearer correct-horse-and-more", http.StatusUnauthorized},
			{"/status", "Basic correct-horse", http.StatusUnauthorized},
			{"/status", "correct-horse", http.StatusUnauthorized},
			{"/metrics", "", http.StatusOK},
			{"/healthz", "", http.StatusOK},
			{"/readyz", "", http.StatusServiceUnavailable}, // open: answers (no tick yet), never 401
		} {
			if code := get(t, ts.URL+tc.path, tc.auth); code != tc.want {
				t.Errorf("%s with %q: %d, want %d", tc.path, tc.auth, code, tc.want)
			}
		}
	})
}

func TestReadStatusToken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tok")
	if err := os.WriteFile(p, []byte("  abc123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := ReadStatusToken(p); err != nil || tok != "abc123" {
		t.Errorf("token %q, %v", tok, err)
	}
	if err := os.WriteFile(p, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStatusToken(p); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty token file: %v", err)
	}
	if _, err := ReadStatusToken(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "daemon.status_token_file") {
		t.Errorf("missing token file: %v", err)
	}
}
