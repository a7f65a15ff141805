package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A listen address other hosts can reach needs both listen_public and a
// status token file; loopback needs neither.
func TestListenPublicNeedsAToken(t *testing.T) {
	token := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "status-token")
		if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name   string
		listen string
		public bool
		token  bool
		want   string // a problem at daemon.listen containing this; empty: none
	}{
		{"loopback v4", "127.0.0.1:9464", false, false, ""},
		{"loopback v6", "[::1]:9464", false, false, ""},
		{"localhost", "localhost:9464", false, false, ""},
		{"every interface", ":9464", false, false, "listen_public"},
		{"any v4", "0.0.0.0:9464", false, false, "listen_public"},
		{"lan address without the flag", "192.168.1.5:9464", false, true, "listen_public"},
		{"lan address without a token", "192.168.1.5:9464", true, false, "status_token_file"},
		{"a host name", "pve1.lan:9464", true, false, "status_token_file"},
		{"public with flag and token", "0.0.0.0:9464", true, true, ""},
		{"loopback with a token", "127.0.0.1:9464", false, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			c.Daemon.Listen, c.Daemon.ListenPublic = tc.listen, tc.public
			if tc.token {
				c.Daemon.StatusTokenFile = token(t)
			}
			problems, _ := c.Validate(ValidateOptions{CheckFiles: true})
			if tc.want == "" {
				if len(problems) != 0 {
					t.Errorf("problems %v", problems)
				}
				return
			}
			if len(problems) != 1 || problems[0].Path != "daemon.listen" || !strings.Contains(problems[0].Message, tc.want) {
				t.Errorf("want daemon.listen: ...%s..., got %v", tc.want, problems)
			}
		})
	}
	t.Run("token file is a secret", func(t *testing.T) {
		c := validConfig(t)
		c.Daemon.StatusTokenFile = token(t)
		_ = os.Chmod(c.Daemon.StatusTokenFile, 0o644)
		problems, _ := c.Validate(ValidateOptions{CheckFiles: true})
		if len(problems) != 1 || problems[0].Path != "daemon.status_token_file" {
			t.Errorf("problems %v", problems)
		}
	})
}
