package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultPool is the name of the one pool an old, single-pool config
// (proxmox.template, proxmox.vm, policy.min_workers and max_workers, no
// pools:) describes.
const DefaultPool = "default"

// Pool is one worker pool: workers of one size, cloned from one template,
// whose Nodes carry the pool's labels and taints and advertise its
// capacity, with the PCI devices of its mappings passed through.
type Pool struct {
	Name     string `json:"name"`
	Template VMRef  `json:"template"`
	VM       VM     `json:"vm"`
	// Hosts the pool's VMs may run on (empty: any of proxmox.hosts).
	Hosts      []string `json:"hosts"`
	MinWorkers int      `json:"min_workers"`
	MaxWorkers int      `json:"max_workers"`
	// Labels and Taints the pool's Nodes get (Talos machine.nodeLabels
	// and machine.nodeTaints in the per-node patch).
	Labels map[string]string `json:"labels"`
	Taints []Taint           `json:"taints"`
	// Capacity is the extended resources the pool's Nodes advertise (a
	// device plugin's gpu.intel.com/i915: 1), for the scheduling simulation.
	Capacity map[string]Units `json:"capacity"`
	// PCI is the PVE resource mappings passed through (hostpciN: mapping=ID).
	PCI []PCI `json:"pci"`
	// Priority breaks ties between pools that fit a pod equally well: higher first.
	Priority int `json:"priority"`
	// Standby is how many of the pool's workers to keep in standby.
	Standby int `json:"standby"`
}

// Taint is a Kubernetes taint a pool's Nodes carry.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Effect string `json:"effect"`
}

// PCI is one PCI device passed through, by PVE resource mapping
// (Datacenter > Resource Mappings): the only way an API token may pass a
// device through since PVE 8.
type PCI struct {
	Mapping string `json:"mapping"`
}

// Units is a whole count of an extended resource, written as a number or
// a string ("1").
type Units int64

// UnmarshalJSON reads 1 or "1".
func (u *Units) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if uq, err := strconv.Unquote(s); err == nil {
		s = strings.TrimSpace(uq)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("expected a whole number of devices such as 1 or \"1\", got %s (extended resources come in whole units)", b)
	}
	*u = Units(n)
	return nil
}

// MarshalJSON writes the count as a string, as Kubernetes quantities are.
func (u Units) MarshalJSON() ([]byte, error) { return json.Marshal(strconv.FormatInt(int64(u), 10)) }

// Limits of a pool's fields, stated in config.example.yaml.
const (
	MaxPools       = 16
	MaxPoolName    = 40
	MaxPCI         = 16
	MaxPoolLabels  = 64
	MaxPoolTaints  = 32
	MaxPoolCapKeys = 16
	MaxPriority    = 1000
)

var (
	poolNameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	mappingIDRE  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)
	taintEffects = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
)

// singlePoolFields are the keys of the old single-pool config that pools:
// replaces: set together with pools:, they are an error.
var singlePoolFields = []struct{ path, instead string }{
	{"proxmox.template", "each pool's template"},
	{"proxmox.vm", "each pool's vm"},
	{"policy.min_workers", "each pool's min_workers"},
	{"policy.standby.size", "each pool's standby"},
}

// WorkerPools is the pools workers are made in: pools:, or, for a config
// without it, the one pool named default its single-pool fields describe.
func (c *Config) WorkerPools() []Pool {
	if len(c.Pools) > 0 {
		out := slices.Clone(c.Pools)
		for i := range out {
			if out[i].VM.Cores == 0 {
				out[i].VM.Cores = c.Proxmox.VM.Cores
			}
			if out[i].VM.Memory == 0 {
				out[i].VM.Memory = c.Proxmox.VM.Memory
			}
		}
		return out
	}
	return []Pool{{
		Name:       DefaultPool,
		Template:   c.Proxmox.Template,
		VM:         c.Proxmox.VM,
		MinWorkers: c.Policy.MinWorkers,
		MaxWorkers: c.Policy.MaxWorkers,
		Standby:    c.Policy.Standby.Size,
	}}
}

// PoolsExplained says, for a config without pools:, which one pool its
// fields make ("" when it has pools:); validate prints it.
func (c *Config) PoolsExplained() string {
	if len(c.Pools) > 0 {
		return ""
	}
	p := c.WorkerPools()[0]
	return fmt.Sprintf("no pools: one pool named %s: template %s (proxmox.template), vm %d cores %s (proxmox.vm), min_workers %d and max_workers %d (policy.min_workers, policy.max_workers), standby %d (policy.standby.size)",
		p.Name, p.Template, p.VM.Cores, p.VM.Memory, p.MinWorkers, p.MaxWorkers, p.Standby)
}

func (v *validator) pools(c *Config) {
	if len(c.Pools) == 0 {
		return
	}
	for _, f := range singlePoolFields {
		if c.given[f.path] {
			v.fail(f.path, "set together with pools: with pools, %s replaces it; remove %s (or remove pools: to keep the single pool named %s)", f.instead, f.path, DefaultPool)
		}
	}
	if len(c.Pools) > MaxPools {
		v.fail("pools", "%d pools: at most %d", len(c.Pools), MaxPools)
		return
	}
	names := map[string]int{}
	sumMin := 0
	for i, p := range c.WorkerPools() {
		path := fmt.Sprintf("pools[%d]", i)
		switch first, dup := names[p.Name]; {
		case p.Name == "":
			v.fail(path+".name", "required: a short name (VMs are tagged pool-<name>, Nodes labelled pve-autoscaler.io/pool=<name>)")
		case len(p.Name) > MaxPoolName || !poolNameRE.MatchString(p.Name):
			v.fail(path+".name", "%q: expected lowercase letters, digits and '-', starting and ending with a letter or digit, at most %d characters (it goes into a PVE tag and a label value)", shorten(p.Name, 80), MaxPoolName)
		case dup:
			v.fail(path+".name", "%q is also the name of pools[%d]: expected each name once", p.Name, first)
		default:
			names[p.Name] = i
		}
		v.template(path+".template", p.Template)
		v.vm(path+".vm", p.VM)
		for j, h := range p.Hosts {
			hp := fmt.Sprintf("%s.hosts[%d]", path, j)
			switch {
			case !nameRE.MatchString(h):
				v.fail(hp, "%q is not a PVE node name", shorten(h, 80))
			case len(c.Proxmox.Hosts) > 0 && !slices.Contains(c.Proxmox.Hosts, h):
				v.fail(hp, "%q: expected one of proxmox.hosts (%s)", h, strings.Join(c.Proxmox.Hosts, ", "))
			}
		}
		if p.MaxWorkers < 1 || p.MaxWorkers > MaxWorkers {
			v.fail(path+".max_workers", "%d: expected 1 to %d", p.MaxWorkers, MaxWorkers)
		}
		if p.MinWorkers < 0 || p.MinWorkers > p.MaxWorkers {
			v.fail(path+".min_workers", "%d: expected 0 to the pool's max_workers (%d)", p.MinWorkers, p.MaxWorkers)
		}
		sumMin += max(p.MinWorkers, 0)
		if p.Standby < 0 || p.Standby > p.MaxWorkers {
			v.fail(path+".standby", "%d: expected 0 (off) to the pool's max_workers (%d)", p.Standby, p.MaxWorkers)
		}
		if p.Priority < -MaxPriority || p.Priority > MaxPriority {
			v.fail(path+".priority", "%d: expected %d to %d", p.Priority, -MaxPriority, MaxPriority)
		}
		v.poolLabels(path, p)
		v.poolCapacity(path, p)
		v.poolPCI(path, p)
	}
	if sumMin > c.Policy.MaxWorkers {
		v.fail("pools", "the pools' min_workers add up to %d, above policy.max_workers %d (which bounds all pools together)", sumMin, c.Policy.MaxWorkers)
	}
}

func (v *validator) poolLabels(path string, p Pool) {
	if len(p.Labels) > MaxPoolLabels {
		v.fail(path+".labels", "%d labels: at most %d", len(p.Labels), MaxPoolLabels)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		lp := path + ".labels." + k
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			v.fail(lp, "%q is not a Kubernetes label key: %s", shorten(k, 80), errs[0])
			continue
		}
		if why := reservedKey(k); why != "" {
			v.fail(lp, "%q: %s", k, why)
			continue
		}
		if errs := validation.IsValidLabelValue(p.Labels[k]); len(errs) > 0 {
			v.fail(lp, "%q is not a Kubernetes label value: %s", shorten(p.Labels[k], 80), errs[0])
		}
	}
	if len(p.Taints) > MaxPoolTaints {
		v.fail(path+".taints", "%d taints: at most %d", len(p.Taints), MaxPoolTaints)
		return
	}
	for j, t := range p.Taints {
		tp := fmt.Sprintf("%s.taints[%d]", path, j)
		if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
			v.fail(tp+".key", "%q is not a Kubernetes taint key: %s", shorten(t.Key, 80), errs[0])
		} else if strings.HasPrefix(t.Key, "pve-autoscaler.io/") {
			v.fail(tp+".key", "%q: the pve-autoscaler.io/ taints are the scaler's own (standby)", t.Key)
		}
		if errs := validation.IsValidLabelValue(t.Value); len(errs) > 0 {
			v.fail(tp+".value", "%q is not a taint value: %s", shorten(t.Value, 80), errs[0])
		}
		if !slices.Contains(taintEffects, t.Effect) {
			v.fail(tp+".effect", "%q: expected NoSchedule, PreferNoSchedule or NoExecute", shorten(t.Effect, 40))
		}
	}
}

// reservedKey says why a Node label key is not a pool's to set, or "".
// The kubelet sets the well-known labels itself, the scaler its own, and
// the NodeRestriction admission plugin refuses a node's labels under
// kubernetes.io and k8s.io other than node.kubernetes.io and
// kubelet.kubernetes.io.
func reservedKey(k string) string {
	prefix, _, ok := strings.Cut(k, "/")
	if !ok {
		return ""
	}
	switch {
	case prefix == "pve-autoscaler.io":
		return "the pve-autoscaler.io/ labels are the scaler's own (pve-autoscaler.io/pool names the pool)"
	case prefix == "node.kubernetes.io" || prefix == "kubelet.kubernetes.io":
		return ""
	case prefix == "kubernetes.io" || prefix == "k8s.io" || strings.HasSuffix(prefix, ".kubernetes.io") || strings.HasSuffix(prefix, ".k8s.io"):
		return "a node may not label itself under kubernetes.io or k8s.io (the NodeRestriction admission plugin refuses it) except node.kubernetes.io/ and kubelet.kubernetes.io/"
	}
	return ""
}

func (v *validator) poolCapacity(path string, p Pool) {
	if len(p.Capacity) > MaxPoolCapKeys {
		v.fail(path+".capacity", "%d resources: at most %d", len(p.Capacity), MaxPoolCapKeys)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(p.Capacity)) {
		cp := path + ".capacity." + k
		prefix, _, ok := strings.Cut(k, "/")
		switch {
		case !ok || len(validation.IsQualifiedName(k)) > 0:
			v.fail(cp, "%q: expected an extended resource name with a domain, such as gpu.intel.com/i915 or nvidia.com/gpu", shorten(k, 80))
		case prefix == "kubernetes.io" || strings.HasSuffix(prefix, ".kubernetes.io"):
			v.fail(cp, "%q: the kubernetes.io resources are not extended resources", k)
		case p.Capacity[k] < 1 || p.Capacity[k] > 1<<20:
			v.fail(cp, "%d: expected 1 to %d", p.Capacity[k], 1<<20)
		}
	}
}

func (v *validator) poolPCI(path string, p Pool) {
	if len(p.PCI) > MaxPCI {
		v.fail(path+".pci", "%d devices: at most %d (hostpci0 to hostpci15)", len(p.PCI), MaxPCI)
		return
	}
	seen := map[string]int{}
	for j, d := range p.PCI {
		mp := fmt.Sprintf("%s.pci[%d].mapping", path, j)
		switch first, dup := seen[d.Mapping]; {
		case d.Mapping == "":
			v.fail(mp, "required: the id of a PVE PCI resource mapping (Datacenter > Resource Mappings)")
		case len(d.Mapping) > 128 || !mappingIDRE.MatchString(d.Mapping):
			v.fail(mp, "%q is not a PVE mapping id: expected a letter, then letters, digits, '-' and '_'", shorten(d.Mapping, 80))
		case dup:
			v.fail(mp, "%q is also %s.pci[%d]: one mapping passes its device through once", d.Mapping, path, first)
		default:
			seen[d.Mapping] = j
		}
	}
}

// template checks a template reference at path.
func (v *validator) template(path string, t VMRef) {
	switch {
	case t.IsZero():
		v.fail(path, "required: the Talos template's vmid (e.g. 9000) or name")
	case t.ID != 0 && (t.ID < 100 || t.ID > 999999999):
		v.fail(path, "vmid %d out of range: expected 100..999999999", t.ID)
	case t.ID == 0 && (!vmNameRE.MatchString(t.Name) || len(t.Name) > 63):
		v.fail(path, "%q is not a PVE VM name: expected letters, digits, '-' and '.' (no spaces), at most 63 characters, or a vmid", shorten(t.Name, 80))
	}
}

// vm checks a VM size at path.
func (v *validator) vm(path string, m VM) {
	if m.Cores < 1 || m.Cores > 512 {
		v.fail(path+".cores", "%d: expected 1..512", m.Cores)
	}
	switch {
	case m.Memory > MaxVMMemory:
		v.fail(path+".memory", "%s: expected at most %s (PVE's limit for one VM)", m.Memory, ByteSize(MaxVMMemory))
	case m.Memory < 1<<30:
		v.fail(path+".memory", "%s: expected at least 1GiB (Talos workers need 2GiB)", m.Memory)
	case m.Memory < 2<<30:
		v.warn(path+".memory", "%s is below the 2GiB Talos asks for on a worker", m.Memory)
	}
	if m.Memory%(1<<20) != 0 {
		v.fail(path+".memory", "%s: expected whole MiB (PVE sizes memory in MiB)", m.Memory)
	}
}

// OnePool is the single-pool config of pool name, as simulate replays it:
// the pool's template, VM size, min_workers, standby and max_workers (at
// most policy.max_workers), the rest of c unchanged. A config without
// pools: has only the pool named default.
func (c *Config) OnePool(name string) (*Config, error) {
	var names []string
	for _, p := range c.WorkerPools() {
		names = append(names, p.Name)
		if p.Name != name {
			continue
		}
		out := *c
		out.Pools = nil
		out.Proxmox.Template, out.Proxmox.VM = p.Template, p.VM
		out.Policy.MinWorkers, out.Policy.MaxWorkers = p.MinWorkers, min(p.MaxWorkers, c.Policy.MaxWorkers)
		out.Policy.Standby.Size = p.Standby
		return &out, nil
	}
	return nil, fmt.Errorf("no pool named %q: expected one of %s", name, strings.Join(names, ", "))
}
