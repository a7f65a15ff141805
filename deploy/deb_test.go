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
	// make deb runs lintian (lintian --fail-on error,warning) when it is
	// installed: an E: or W: not overridden in lintian-overrides fails it.
	_, lintianErr := exec.LookPath("lintian")
	if lintianErr != nil {
		if os.Getenv("CI") == "true" {
			t.Error("lintian missing: make deb-tools (apt-get install lintian)")
		} else {
			t.Log("lintian missing: the package is not checked (make deb-tools)")
		}
	}
	dist := t.TempDir()
	cmd := exec.Command("make", "deb", "DIST="+dist, "DEB_VERSION=1.2.3")
	cmd.Dir = ".."
	made, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, made)
	}
	if lintianErr == nil && !strings.Contains(string(made), "lintian "+dist+"/pve-autoscaler_1.2.3_amd64.deb") {
		t.Errorf("make deb did not run lintian:\n%s", made)
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
		"./usr/share/doc/pve-autoscaler/copyright", "./usr/share/doc/pve-autoscaler/changelog.gz",
		"./usr/share/man/man8/pve-autoscaler.8.gz", "./usr/share/lintian/overrides/pve-autoscaler",
	} {
		if !strings.Contains(string(contents), want) {
			t.Errorf("package lacks %q:\n%s", want, contents)
		}
	}
	info, err := exec.Command("dpkg-deb", "-I", debs[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -I: %v\n%s", err, info)
	}
	for _, want := range []string{"Package: pve-autoscaler", "Version: 1.2.3", "Architecture: amd64", "Depends: adduser", "Section: admin", "postinst", "prerm", "postrm", "conffiles"} {
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
	// Installed into a scratch root: unpacked, then the maintainer script
	// run against it.
	x := filepath.Join(t.TempDir(), "x")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	postinst(t, debs[0], x)
	maintainerScriptsUnderSystemd(t, debs[0])
	bin := filepath.Join(x, "usr/bin/pve-autoscaler")
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "pve-autoscaler ") {
		t.Errorf("packaged binary: %v %s", err, out)
	}
	// The packaged config is the documented reference, and it validates as a config.
	out, _ = exec.Command(bin, "validate", "--config", filepath.Join(x, "etc/pve-autoscaler/config.yaml")).CombinedOutput()
	if !strings.Contains(string(out), "proxmox.token_secret_file (line ") || !strings.Contains(string(out), "/etc/pve-autoscaler/pve-token: no such file") {
		t.Errorf("packaged config: %s", out)
	}
	// --help lists the commands; each has its man page, and man finds it.
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("pve-autoscaler --help: %v\n%s", err, help)
	}
	_, cmds, _ := strings.Cut(string(help), "Commands:\n")
	var names []string
	for _, line := range strings.Split(cmds, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "  ") && len(f) > 1 {
			names = append(names, f[0])
		}
	}
	if len(names) < 5 {
		t.Fatalf("pve-autoscaler --help lists commands %v:\n%s", names, help)
	}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(x, "usr/share/man/man8/pve-autoscaler-"+name+".8.gz")); err != nil {
			t.Errorf("command %s has no man page: %v", name, err)
		}
	}
	if _, err := exec.LookPath("man"); err == nil {
		page, err := exec.Command("man", "-M", filepath.Join(x, "usr/share/man"), "pve-autoscaler-plan").CombinedOutput()
		if err != nil || !strings.Contains(string(page), "--snapshot") {
			t.Errorf("man pve-autoscaler-plan: %v\n%s", err, page)
		}
	}
	// The unit verifies with its binary in place: the scratch root gets the
	// host's own units (targets) for the unit's dependencies.
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Error("systemd-analyze missing: make deb-tools (apt-get install systemd)")
		}
		t.Log("systemd-analyze missing: the unit is not verified")
		return
	}
	units := filepath.Join(x, "usr/lib/systemd/system")
	if out, err := exec.Command("sh", "-c", `mkdir -p "$1" && cp -a /lib/systemd/system/. "$1"/`, "sh", units).CombinedOutput(); err != nil {
		t.Fatalf("host units: %v\n%s", err, out)
	}
	if out, err := exec.Command("systemd-analyze", "verify", "--root="+x, "/lib/systemd/system/pve-autoscaler.service").CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// postinst runs the package's postinst against root (DPKG_ROOT) with the
// commands that change the host's users and ownership recorded instead.
func postinst(t *testing.T, deb, root string) {
	t.Helper()
	ctl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	stubs := t.TempDir()
	log := filepath.Join(stubs, "log")
	for _, name := range []string{"getent", "addgroup", "adduser", "chown", "systemctl"} {
		script := "#!/bin/sh\necho \"" + name + " $*\" >> " + log + "\n"
		if name == "getent" {
			script += "exit 2\n" // no such user or group yet
		}
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(ctl, "postinst"), "configure")
	cmd.Env = append(os.Environ(), "DPKG_ROOT="+root, "PATH="+stubs+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postinst configure: %v\n%s", err, out)
	}
	calls, _ := os.ReadFile(log)
	etc := filepath.Join(root, "etc/pve-autoscaler")
	for _, want := range []string{"addgroup --system pve-autoscaler", "adduser --system --ingroup pve-autoscaler",
		"chown root:pve-autoscaler " + etc + " " + etc + "/config.yaml"} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("postinst did not run %q:\n%s", want, calls)
		}
	}
	for path, mode := range map[string]os.FileMode{etc: 0o750, filepath.Join(etc, "config.yaml"): 0o640} {
		if st, err := os.Stat(path); err != nil {
			t.Error(err)
		} else if st.Mode().Perm() != mode {
			t.Errorf("postinst: %s: mode %04o, want %04o", path, st.Mode().Perm(), mode)
		}
	}
}

// maintainerScriptsUnderSystemd runs the package's maintainer scripts as
// dpkg does on a host running systemd: in a private mount namespace whose
// /run has /run/systemd/system (or, for the last case, not), with the tools
// that act on the host (systemctl, deb-systemd-invoke, the user tools,
// chown, chmod) recorded instead of run.
func maintainerScriptsUnderSystemd(t *testing.T, deb string) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Error("the maintainer scripts' systemd branch needs root and unshare (util-linux)")
		}
		t.Log("not root or no unshare: the maintainer scripts' systemd branch is not run")
		return
	}
	ctl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		script  string
		args    []string
		systemd bool
		want    []string // calls, in this order, and nothing else
		output  string   // on stdout, or "" for nothing
	}{
		{"postinst", []string{"configure", ""}, true, []string{"getent group pve-autoscaler", "getent passwd pve-autoscaler",
			"chown root:pve-autoscaler /etc/pve-autoscaler /etc/pve-autoscaler/config.yaml", "chmod 0750 /etc/pve-autoscaler", "chmod 0640 /etc/pve-autoscaler/config.yaml",
			"systemctl --system daemon-reload"}, "pve-autoscaler installed."},
		{"postinst", []string{"configure", "1.2.2"}, true, []string{"getent group pve-autoscaler", "getent passwd pve-autoscaler",
			"chown root:pve-autoscaler /etc/pve-autoscaler /etc/pve-autoscaler/config.yaml", "chmod 0750 /etc/pve-autoscaler", "chmod 0640 /etc/pve-autoscaler/config.yaml",
			"systemctl --system daemon-reload", "deb-systemd-invoke try-restart pve-autoscaler.service"}, ""},
		{"prerm", []string{"remove"}, true, []string{"deb-systemd-invoke stop pve-autoscaler.service"}, ""},
		{"prerm", []string{"upgrade", "1.2.4"}, true, nil, ""},
		{"postrm", []string{"remove"}, true, []string{"systemctl --system daemon-reload"}, ""},
		{"postrm", []string{"upgrade", "1.2.4"}, true, nil, ""},
		{"postrm", []string{"purge"}, true, []string{"systemctl --system daemon-reload",
			"getent passwd pve-autoscaler", "deluser --system --quiet pve-autoscaler", "getent group pve-autoscaler", "delgroup --system --quiet pve-autoscaler"}, ""},
		{"prerm", []string{"remove"}, false, nil, ""},
		{"postrm", []string{"purge"}, false, []string{
			"getent passwd pve-autoscaler", "deluser --system --quiet pve-autoscaler", "getent group pve-autoscaler", "delgroup --system --quiet pve-autoscaler"}, ""},
	} {
		name := tc.script + " " + strings.Join(tc.args, " ")
		stubs := t.TempDir()
		log := filepath.Join(stubs, "log")
		for _, tool := range []string{"getent", "addgroup", "adduser", "deluser", "delgroup", "chown", "chmod", "systemctl", "deb-systemd-invoke"} {
			script := "#!/bin/sh\necho \"" + tool + " $*\" >> " + log + "\n" // getent: the user and group exist
			if err := os.WriteFile(filepath.Join(stubs, tool), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		mkdir := ""
		if tc.systemd {
			mkdir = " && mkdir -p /run/systemd/system"
		}
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c",
			`mount -t tmpfs tmpfs /run` + mkdir + ` && exec "$@"`, "sh", filepath.Join(ctl, tc.script)}, tc.args...)...)
		cmd.Env = append(os.Environ(), "DPKG_ROOT=", "PATH="+stubs+":"+os.Getenv("PATH"))
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: %v\n%s%s", name, err, stdout.String(), stderr.String())
			continue
		}
		calls, _ := os.ReadFile(log)
		if got, want := strings.TrimSpace(string(calls)), strings.Join(tc.want, "\n"); got != want {
			t.Errorf("%s (systemd %v) ran:\n%s\nwant:\n%s", name, tc.systemd, got, want)
		}
		if !strings.Contains(stdout.String(), tc.output) || (tc.output == "" && stdout.Len() > 0) {
			t.Errorf("%s printed %q, want %q", name, stdout.String(), tc.output)
		}
	}
}

func TestSystemdUnitHardening(t *testing.T) {
	unit, err := os.ReadFile("pve-autoscaler.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=pve-autoscaler", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"ExecStart=/usr/bin/pve-autoscaler run --config /etc/pve-autoscaler/config.yaml", "CapabilityBoundingSet=\n",
		"ProtectProc=invisible\n", "ProcSubset=pid\n", "LimitCORE=0\n", "StateDirectory=pve-autoscaler\n"} {
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
