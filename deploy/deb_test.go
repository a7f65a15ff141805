// Package deploy holds the systemd unit, RBAC, PVE role recipe and the
// Debian package definition; its test builds the package and reads it back.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDebPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dpkg-deb missing: apt-get install dpkg")
		}
		t.Skip("dpkg-deb missing")
	}
	if testing.Short() {
		t.Skip("builds the release binary")
	}
	dist := t.TempDir()
	cmd := exec.Command("make", "deb", "DIST="+dist, "DEB_VERSION=1.2.3")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	if len(debs) != 1 || filepath.Base(debs[0]) != "pve-autoscaler_1.2.3_amd64.deb" {
		t.Fatalf("packages %v", debs)
	}
	contents, err := exec.Command("dpkg-deb", "-c", debs[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v\n%s", err, contents)
	}
	for _, want := range []string{
		"-rwxr-xr-x root/root", "./usr/bin/pve-autoscaler",
		"./lib/systemd/system/pve-autoscaler.service",
		"-rw-r----- root/root", "./etc/pve-autoscaler/config.yaml",
		"./usr/share/doc/pve-autoscaler/rbac.yaml", "./usr/share/doc/pve-autoscaler/proxmox-role.md",
	} {
		if !strings.Contains(string(contents), want) {
			t.Errorf("package lacks %q:\n%s", want, contents)
		}
	}
	info, err := exec.Command("dpkg-deb", "-I", debs[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -I: %v\n%s", err, info)
	}
	for _, want := range []string{"Package: pve-autoscaler", "Version: 1.2.3", "Architecture: amd64", "Depends: adduser", "Section: admin", "postinst", "conffiles"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}
	for field, want := range map[string]string{"conffiles": "/etc/pve-autoscaler/config.yaml", "postinst": "adduser --system --ingroup pve-autoscaler"} {
		out, err := exec.Command("dpkg-deb", "-I", debs[0], field).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%s: %v\n%s", field, err, out)
		}
	}
	// The packaged binary runs.
	x := filepath.Join(t.TempDir(), "x")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(x, "usr/bin/pve-autoscaler"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "pve-autoscaler ") {
		t.Errorf("packaged binary: %v %s", err, out)
	}
	// The packaged config is the documented reference, and it validates as a config.
	out, _ = exec.Command(filepath.Join(x, "usr/bin/pve-autoscaler"), "validate", "--config", filepath.Join(x, "etc/pve-autoscaler/config.yaml")).CombinedOutput()
	if !strings.Contains(string(out), "proxmox.token_secret_file: /etc/pve-autoscaler/pve-token: no such file") {
		t.Errorf("packaged config: %s", out)
	}
}

func TestSystemdUnitHardening(t *testing.T) {
	unit, err := os.ReadFile("pve-autoscaler.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=pve-autoscaler", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"ExecStart=/usr/bin/pve-autoscaler run --config /etc/pve-autoscaler/config.yaml", "CapabilityBoundingSet=\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if path, err := exec.LookPath("systemd-analyze"); err == nil {
		out, err := exec.Command(path, "verify", "pve-autoscaler.service").CombinedOutput()
		if err != nil && !strings.Contains(string(out), "/usr/bin/pve-autoscaler") {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}
