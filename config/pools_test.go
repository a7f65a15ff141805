package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// poolsYAML is the example: a general pool and a GPU pool.
const poolsYAML = `
cluster: {name: homelab}
proxmox:
  url: https://pve1.lan:8006/api2/json
  token_id: autoscaler@pve!scaler
  token_secret_file: /x
  hosts: [pve1, pve2]
talos: {worker_config_file: /x, talosconfig_file: /x}
policy: {max_workers: 8}
pools:
  - name: general
    template: talos-worker-template
    vm: {cores: 4, memory: 8GiB}
    min_workers: 2
    max_workers: 6
  - name: gpu
    template: 9001
    vm: {cores: 8, memory: 16GiB}
    hosts: [pve2]
    pci: [{mapping: igpu}]
    labels: {gpu.example/kind: igpu}
    taints: [{key: gpu.example/kind, value: igpu, effect: NoSchedule}]
    capacity: {gpu.intel.com/i915: "1"}
    min_workers: 0
    max_workers: 1
    priority: 10
    standby: 1
`

func TestPoolsParse(t *testing.T) {
	c, err := parseYAML(t, poolsYAML)
	if err != nil {
		t.Fatal(err)
	}
	problems, _ := c.Validate(ValidateOptions{})
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	pools := c.WorkerPools()
	if len(pools) != 2 {
		t.Fatalf("pools %+v", pools)
	}
	want := Pool{
		Name: "gpu", Template: VMRef{ID: 9001}, VM: VM{Cores: 8, Memory: 16 << 30}, Hosts: []string{"pve2"},
		MaxWorkers: 1, Labels: map[string]string{"gpu.example/kind": "igpu"},
		Taints:   []Taint{{Key: "gpu.example/kind", Value: "igpu", Effect: "NoSchedule"}},
		Capacity: map[string]Units{"gpu.intel.com/i915": 1}, PCI: []PCI{{Mapping: "igpu"}}, Priority: 10, Standby: 1,
	}
	if !reflect.DeepEqual(pools[1], want) {
		t.Errorf("gpu pool\n got %+v\nwant %+v", pools[1], want)
	}
	if c.PoolsExplained() != "" {
		t.Errorf("a config with pools: explained as %q", c.PoolsExplained())
	}
}

// TestSinglePoolIsDefault: the old config is one pool named default, and
// validate says so.
func TestSinglePoolIsDefault(t *testing.T) {
	c := validConfig(t)
	c.Policy.MinWorkers, c.Policy.MaxWorkers, c.Policy.Standby.Size = 1, 5, 2
	got := c.WorkerPools()
	want := []Pool{{Name: "default", Template: VMRef{Name: "talos-worker-template"}, VM: VM{Cores: 4, Memory: 8 << 30}, MinWorkers: 1, MaxWorkers: 5, Standby: 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	why := c.PoolsExplained()
	for _, s := range []string{"one pool named default", "template talos-worker-template (proxmox.template)", "vm 4 cores 8GiB (proxmox.vm)", "min_workers 1 and max_workers 5"} {
		if !strings.Contains(why, s) {
			t.Errorf("explanation lacks %q: %s", s, why)
		}
	}
}

// TestPoolsWithSinglePoolFields: the old fields set beside pools: are an
// error naming each of them.
func TestPoolsWithSinglePoolFields(t *testing.T) {
	y := strings.Replace(poolsYAML, "policy: {max_workers: 8}", "policy: {max_workers: 8, min_workers: 1, standby: {size: 1}}", 1)
	// The effective configuration validate prints reads back: the
	// single-pool keys at their defaults are no conflict.
	c, err := parseYAML(t, poolsYAML)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := parseYAML(t, string(out))
	if err != nil {
		t.Fatal(err)
	}
	if problems, _ := back.Validate(ValidateOptions{}); len(problems) > 0 {
		t.Errorf("the effective configuration of a pools config has problems: %v\n%s", problems, out)
	}
	y = strings.Replace(y, "  hosts: [pve1, pve2]\n", "  hosts: [pve1, pve2]\n  template: 9000\n  vm: {cores: 2}\n", 1)
	c, err = parseYAML(t, y)
	if err != nil {
		t.Fatal(err)
	}
	problems, _ := c.Validate(ValidateOptions{})
	got := map[string]string{}
	for _, p := range problems {
		got[p.Path] = p.Message
	}
	for _, path := range []string{"proxmox.template", "proxmox.vm", "policy.min_workers", "policy.standby.size"} {
		if !strings.Contains(got[path], "set together with pools") {
			t.Errorf("%s: got %q", path, got[path])
		}
	}
	if len(problems) != 4 {
		t.Errorf("problems %v", problems)
	}
}

func TestPoolValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Pool)
		path   string
		text   string
	}{
		{"name required", func(p *Pool) { p.Name = "" }, "pools[1].name", "required"},
		{"name tag-safe", func(p *Pool) { p.Name = "GPU pool" }, "pools[1].name", "lowercase"},
		{"name once", func(p *Pool) { p.Name = "general" }, "pools[1].name", "also the name of pools[0]"},
		{"template required", func(p *Pool) { p.Template = VMRef{} }, "pools[1].template", "required"},
		{"template name", func(p *Pool) { p.Template = VMRef{Name: "a b"} }, "pools[1].template", "not a PVE VM name"},
		{"cores", func(p *Pool) { p.VM.Cores = 600 }, "pools[1].vm.cores", "1..512"},
		{"memory", func(p *Pool) { p.VM.Memory = 512 << 20 }, "pools[1].vm.memory", "at least 1GiB"},
		{"host in proxmox.hosts", func(p *Pool) { p.Hosts = []string{"pve9"} }, "pools[1].hosts[0]", "one of proxmox.hosts"},
		{"max required", func(p *Pool) { p.MaxWorkers = 0 }, "pools[1].max_workers", "expected 1 to"},
		{"min above max", func(p *Pool) { p.MinWorkers = 2 }, "pools[1].min_workers", "max_workers (1)"},
		{"standby above max", func(p *Pool) { p.Standby = 3 }, "pools[1].standby", "max_workers (1)"},
		{"priority", func(p *Pool) { p.Priority = 5000 }, "pools[1].priority", "-1000 to 1000"},
		{"label key", func(p *Pool) { p.Labels = map[string]string{"bad key": "x"} }, "pools[1].labels.bad key", "label key"},
		{"label value", func(p *Pool) { p.Labels = map[string]string{"a.example/b": "no spaces"} }, "pools[1].labels.a.example/b", "label value"},
		{"label ours", func(p *Pool) { p.Labels = map[string]string{"pve-autoscaler.io/pool": "x"} }, "pools[1].labels.pve-autoscaler.io/pool", "scaler's own"},
		{"label NodeRestriction", func(p *Pool) { p.Labels = map[string]string{"node-role.kubernetes.io/gpu": ""} }, "pools[1].labels.node-role.kubernetes.io/gpu", "NodeRestriction"},
		{"taint effect", func(p *Pool) { p.Taints[0].Effect = "NoWay" }, "pools[1].taints[0].effect", "NoSchedule, PreferNoSchedule or NoExecute"},
		{"taint key", func(p *Pool) { p.Taints[0].Key = "" }, "pools[1].taints[0].key", "taint key"},
		{"taint ours", func(p *Pool) { p.Taints[0].Key = "pve-autoscaler.io/standby" }, "pools[1].taints[0].key", "scaler's own"},
		{"capacity name", func(p *Pool) { p.Capacity = map[string]Units{"gpu": 1} }, "pools[1].capacity.gpu", "domain"},
		{"capacity count", func(p *Pool) { p.Capacity = map[string]Units{"nvidia.com/gpu": 0} }, "pools[1].capacity.nvidia.com/gpu", "expected 1 to"},
		{"pci mapping required", func(p *Pool) { p.PCI = append(p.PCI, PCI{}) }, "pools[1].pci[1].mapping", "required"},
		{"pci mapping id", func(p *Pool) { p.PCI[0].Mapping = "i gpu" }, "pools[1].pci[0].mapping", "not a PVE mapping id"},
		{"pci mapping once", func(p *Pool) { p.PCI = append(p.PCI, PCI{Mapping: "igpu"}) }, "pools[1].pci[1].mapping", "also pools[1].pci[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseYAML(t, poolsYAML)
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(&c.Pools[1])
			problems, warnings := c.Validate(ValidateOptions{})
			for _, p := range append(problems, warnings...) {
				if p.Path == tc.path && strings.Contains(p.Message, tc.text) {
					return
				}
			}
			t.Errorf("no problem at %s saying %q: problems %v", tc.path, tc.text, problems)
		})
	}
}

func TestPoolsBoundedByMaxWorkers(t *testing.T) {
	c, err := parseYAML(t, poolsYAML)
	if err != nil {
		t.Fatal(err)
	}
	c.Policy.MaxWorkers = 1 // below the general pool's min_workers 2
	problems, _ := c.Validate(ValidateOptions{})
	found := false
	for _, p := range problems {
		found = found || p.Path == "pools" && strings.Contains(p.Message, "above policy.max_workers 1")
	}
	if !found {
		t.Errorf("problems %v", problems)
	}
}

func TestPoolErrorsHaveLines(t *testing.T) {
	y := strings.Replace(poolsYAML, "pci: [{mapping: igpu}]", "pci: [{mapping: igpu}, {mapping: \"bad id\"}]", 1)
	dir := t.TempDir()
	path := dir + "/c.yaml"
	writeFile(t, path, y)
	_, _, err := Load(path, ValidateOptions{}, nil)
	if err == nil || !strings.Contains(err.Error(), "pools[1].pci[1].mapping (line 20:") {
		t.Errorf("error %v", err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
