package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const examplePath = "../config.example.yaml"

// validConfig returns a config with every required field set and the files
// it names created (secrets with mode 0600) in a temporary directory.
func validConfig(t *testing.T) *Config {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("content of "+name), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := Default()
	c.Cluster.Name = "homelab"
	c.Proxmox.URL = "https://pve1.lan:8006/api2/json"
	c.Proxmox.TokenID = "autoscaler@pve!scaler"
	c.Proxmox.TokenSecretFile = write("pve-token", 0o600)
	c.Proxmox.Template = VMRef{Name: "talos-worker-template"}
	c.Talos.WorkerConfigFile = write("worker.yaml", 0o600)
	c.Talos.TalosconfigFile = write("talosconfig", 0o640)
	c.Talos.PatchFiles = []string{write("patch.yaml", 0o644)}
	c.Kubernetes.Kubeconfig = write("kubeconfig", 0o600)
	return &c
}

func TestValidConfigHasNoProblems(t *testing.T) {
	c := validConfig(t)
	problems, warnings := c.Validate(ValidateOptions{CheckFiles: true})
	if len(problems) != 0 || len(warnings) != 0 {
		t.Fatalf("problems %v, warnings %v", problems, warnings)
	}
}

func TestExampleParsesToTheDefaults(t *testing.T) {
	c, err := Parse(examplePath)
	if err != nil {
		t.Fatalf("example does not parse: %v", err)
	}
	problems, _ := c.Validate(ValidateOptions{CheckFiles: false})
	if len(problems) != 0 {
		t.Fatalf("example has problems: %v", problems)
	}
	// Every field the example sets to a value must be its default, except the
	// required fields, which have none.
	want := Default()
	want.Cluster.Name = "homelab"
	want.Proxmox.URL = "https://pve1.example.lan:8006/api2/json"
	want.Proxmox.TokenID = "autoscaler@pve!scaler"
	want.Proxmox.TokenSecretFile = "/etc/pve-autoscaler/pve-token"
	want.Proxmox.Template = VMRef{Name: "talos-worker-template"}
	want.Talos.WorkerConfigFile = "/etc/pve-autoscaler/worker.yaml"
	want.Talos.TalosconfigFile = "/etc/pve-autoscaler/talosconfig"
	want.Kubernetes.Kubeconfig = "/etc/pve-autoscaler/kubeconfig"
	// Empty lists in the example decode as empty, not nil.
	want.Proxmox.Hosts, want.Talos.PatchFiles, want.Policy.Schedules = []string{}, []string{}, []ScheduleConfig{}
	want.Proxmox.DHCPReservations = []MACIP{}
	if !reflect.DeepEqual(*c, want) {
		got, _ := yaml.Marshal(c)
		exp, _ := yaml.Marshal(want)
		t.Errorf("example differs from the defaults:\n--- example\n%s\n--- defaults\n%s", got, exp)
	}
}

// TestExampleDocumentsEveryField walks the Config type: every field path
// must appear in config.example.yaml, set or in a comment.
func TestExampleDocumentsEveryField(t *testing.T) {
	text, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	var walk func(reflect.Type, string)
	walk = func(rt reflect.Type, prefix string) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			path := prefix + name
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft.PkgPath() == rt.PkgPath() && ft.Name() != "VMRef" {
				walk(ft, path+".")
				continue
			}
			paths = append(paths, path)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	if len(paths) < 50 {
		t.Fatalf("only %d fields found", len(paths))
	}
	for _, p := range paths {
		leaf := p[strings.LastIndex(p, ".")+1:]
		if !strings.Contains(string(text), leaf+":") {
			t.Errorf("config.example.yaml does not document %s", p)
		}
	}
}

func parseYAML(t *testing.T, y string) (*Config, error) {
	t.Helper()
	return ParseBytes("test.yaml", []byte(y))
}

func TestUnknownKeysNameTheirPath(t *testing.T) {
	_, err := parseYAML(t, "cluster: {name: a}\npolicy:\n  intervl: 60s\n  cpu: {scale_up: 80}\nproxmx: {}\n")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`policy.intervl (line 3:3): unknown field (did you mean "interval"?)`,
		`policy.cpu.scale_up (line 4:9): unknown field (did you mean "scale_up_at"?)`,
		`proxmx (line 5:1): unknown field (did you mean "proxmox"?)`,
		"3 problems",
		"test.yaml",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestTypeErrorsNameTheirPath(t *testing.T) {
	_, err := parseYAML(t, `
policy:
  min_workers: two
  interval: 60
  cpu: [80]
  pending_pods: {enabled: "yes"}
proxmox:
  vm: {memory: 8192}
  template: [9000]
`)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`policy.min_workers (line 3:3): expected a whole number, got the string "two"`,
		`policy.interval (line 4:3): expected a duration such as "60s" or "5m", got 60 (a bare number has no unit)`,
		`policy.cpu (line 5:3): expected a mapping of fields, got a list`,
		`policy.pending_pods.enabled (line 6:18): expected true or false, got the string "yes"`,
		`proxmox.vm.memory (line 8:8): expected a size such as "8GiB" or "512MiB", got 8192`,
		`proxmox.template (line 9:3): expected a vmid or a VM name`,
		"6 problems",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestBadYAMLNamesTheFile(t *testing.T) {
	for _, y := range []string{"cluster: [\n", "- a\n- b\n", ""} {
		_, err := ParseBytes("broken.yaml", []byte(y))
		if err == nil || !strings.Contains(err.Error(), "broken.yaml") {
			t.Errorf("%q: error %v does not name the file", y, err)
		}
	}
	_, err := Parse(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadReportsDecodeAndValidationProblemsTogether(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("policy:\n  min_workers: x\n  max_workers: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(p, ValidateOptions{}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"policy.min_workers (line 2:3): expected a whole number", "policy.max_workers (line 3:3): 0: expected 1 to 1000", "cluster.name: required", "proxmox.url: required"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	// min_workers failed to decode: no second, misleading message about it.
	if strings.Count(msg, "policy.min_workers") != 1 {
		t.Errorf("policy.min_workers reported more than once:\n%s", msg)
	}
}

func TestOverrideAppliesBeforeValidation(t *testing.T) {
	c := validConfig(t)
	out, _ := yaml.Marshal(c)
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(p, ValidateOptions{CheckFiles: true}, func(c *Config) { c.Daemon.Log.Level = "loud" })
	if err == nil || !strings.Contains(err.Error(), `daemon.log.level (line 15:5): "loud": expected debug, info, warn or error`) {
		t.Fatalf("override not validated: %v", err)
	}
	c2, _, err := Load(p, ValidateOptions{CheckFiles: true}, func(c *Config) { c.Daemon.Log.Format = "json" })
	if err != nil || c2.Daemon.Log.Format != "json" {
		t.Fatalf("override lost: %v %+v", err, c2.Daemon.Log)
	}
}

func TestValueTypes(t *testing.T) {
	for in, want := range map[string]ByteSize{"8GiB": 8 << 30, "8Gi": 8 << 30, "512MiB": 512 << 20, "1.5GiB": 3 << 29, "1024B": 1024, " 4 GiB ": 4 << 30} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"8", "8GB", "GiB", "-1GiB", "eight GiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
	if s := ByteSize(8 << 30).String(); s != "8GiB" {
		t.Errorf("String = %q", s)
	}
	var r VMRef
	for in, want := range map[string]VMRef{`9000`: {ID: 9000}, `"9000"`: {ID: 9000}, `"talos"`: {Name: "talos"}} {
		if err := r.UnmarshalJSON([]byte(in)); err != nil || r != want {
			t.Errorf("VMRef(%s) = %+v, %v", in, r, err)
		}
	}
	var d Duration
	if err := d.UnmarshalJSON([]byte(`"1h30m"`)); err != nil || d.D() != 90*time.Minute {
		t.Errorf("Duration = %v, %v", d, err)
	}
	if err := d.UnmarshalJSON([]byte(`"90 minutes"`)); err == nil {
		t.Error("bad duration accepted")
	}
}

func TestFingerprint(t *testing.T) {
	colon := strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	for _, ok := range []string{colon, strings.Repeat("ab", 32)} {
		if b, err := ParseFingerprint(ok); err != nil || len(b) != 32 {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"AB:CD", strings.Repeat("zz", 32), strings.Repeat("ab", 20)} {
		if _, err := ParseFingerprint(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestOldNames: a key under its old name is still read, with a warning
// naming the new one; both names at once is a problem.
func TestOldNames(t *testing.T) {
	base := validConfig(t)
	y, err := base.YAML()
	if err != nil {
		t.Fatal(err)
	}
	parse := func(proxmoxKeys string) *Config {
		t.Helper()
		text := strings.Replace(string(y), "proxmox:\n", "proxmox:\n"+proxmoxKeys, 1)
		if !strings.Contains(text, "  dhcp_reservations: null\n") {
			t.Fatalf("the effective config has no empty dhcp_reservations:\n%s", text)
		}
		text = strings.Replace(text, "  dhcp_reservations: null\n", "", 1)
		c, err := ParseBytes("old.yaml", []byte(text))
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		return c
	}
	reservation := "  - {mac: 'BC:24:11:00:00:01', ip: 10.0.0.1}\n"

	c := parse("  mac_ip_pool:\n" + reservation)
	if len(c.Proxmox.DHCPReservations) != 1 || c.Proxmox.DHCPReservations[0].IP != "10.0.0.1" {
		t.Errorf("mac_ip_pool not read into dhcp_reservations: %+v", c.Proxmox.DHCPReservations)
	}
	problems, warnings := c.Validate(ValidateOptions{})
	if len(problems) != 0 || !hasProblem(warnings, "proxmox.mac_ip_pool", "renamed proxmox.dhcp_reservations") {
		t.Errorf("old name: problems %v, warnings %v", problems, warnings)
	}
	if out, _ := c.YAML(); strings.Contains(string(out), "mac_ip_pool") || !strings.Contains(string(out), "dhcp_reservations:\n  - ip: 10.0.0.1") {
		t.Errorf("the effective config is written under the new name only:\n%s", out)
	}
	// A problem in an entry names the key as the file wrote it.
	c = parse("  mac_ip_pool:\n  - {mac: zz, ip: 10.0.0.1}\n")
	if problems, _ := c.Validate(ValidateOptions{}); !hasProblem(problems, "proxmox.mac_ip_pool[0].mac", "MAC address") {
		t.Errorf("entry under the old name: %v", problems)
	}

	c = parse("  mac_ip_pool:\n" + reservation + "  dhcp_reservations:\n" + reservation)
	if problems, _ := c.Validate(ValidateOptions{}); !hasProblem(problems, "proxmox.mac_ip_pool", "set too") {
		t.Errorf("both names: %v", problems)
	}

	c = parse("  dhcp_reservations:\n" + reservation)
	if problems, warnings := c.Validate(ValidateOptions{}); len(problems) != 0 || hasProblem(warnings, "proxmox.mac_ip_pool", "") {
		t.Errorf("new name: problems %v, warnings %v", problems, warnings)
	}
}

func hasProblem(ps []Problem, path, text string) bool {
	for _, p := range ps {
		if p.Path == path && strings.Contains(p.Message, text) {
			return true
		}
	}
	return false
}
