package proxmox

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

// Worker pools on the Proxmox side: each VM is tagged pool-<name> and
// its description records the pool it was cloned for; a pool's VMs are
// cloned from its template, sized by its vm, given its PCI mappings
// (hostpciN: mapping=ID) and placed on its hosts, only where every
// mapping has a device that no VM of ours uses yet.

// PoolTag is the tag naming a VM's worker pool. Step tags start with
// "step-" ("step-pool-joined" for a standby build), so a pool tag is
// never read as a step nor a step tag as a pool.
func PoolTag(pool string) string { return "pool-" + pool }

// WorkerPool reads the worker pool tag of a VM ("" when none).
func WorkerPool(v VM) string {
	for _, t := range v.Tags {
		if p, ok := strings.CutPrefix(t, "pool-"); ok {
			return p
		}
	}
	return ""
}

// poolOfDescription reads the worker pool a VM was cloned for from its
// description ("" when none: cloned before pools).
func poolOfDescription(desc string) string {
	for _, line := range strings.Split(desc, "\n") {
		if v, ok := strings.CutPrefix(line, "pve-autoscaler/pool: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

type digestAt struct {
	digest string
	at     time.Time
}

// poolsOr is pools, or the one pool named default of p's single-pool fields.
func poolsOr(pools []config.Pool, p config.Proxmox) []config.Pool {
	if len(pools) > 0 {
		return pools
	}
	return []config.Pool{{Name: config.DefaultPool, Template: p.Template, VM: p.VM}}
}

// pool is the worker pool named name; "" (made before pools) and default
// (a single-pool config's) are the pool named default, else the first.
func (c *Client) pool(name string) (config.Pool, error) {
	if name == "" || name == config.DefaultPool {
		// Made before pools, or in a single-pool config: the pool named
		// default, else the first (scaler.Policy.PoolOfName agrees).
		for _, p := range c.pools {
			if p.Name == config.DefaultPool {
				return p, nil
			}
		}
		return c.pools[0], nil
	}
	for _, p := range c.pools {
		if p.Name == name {
			return p, nil
		}
	}
	return config.Pool{}, fmt.Errorf("worker pool %q is not in the configuration", name)
}

// poolName is the name of the pool a VM tagged pool-<name> (or not,
// "") belongs to.
func (c *Client) poolName(tag string) string {
	p, err := c.pool(tag)
	if err != nil {
		return tag
	}
	return p.Name
}

// templatePath is the config path of a pool's template, for messages.
func (c *Client) templatePath(pool string) string {
	for i, p := range c.pools {
		if p.Name == pool && !(len(c.pools) == 1 && p.Name == config.DefaultPool) {
			return fmt.Sprintf("pools[%d].template", i)
		}
	}
	return "proxmox.template"
}

// PCIMapping is a PVE PCI resource mapping: the hosts it has a device on.
type PCIMapping struct {
	ID    string
	Hosts []string
}

// PCIMappings lists the cluster's PCI resource mappings the token may
// see (/cluster/mapping/pci; Mapping.Audit or Mapping.Use on each).
func (c *Client) PCIMappings(ctx context.Context) (map[string]PCIMapping, error) {
	var raw []struct {
		ID  string   `json:"id"`
		Map []string `json:"map"`
	}
	if err := c.retry(ctx, "GET /cluster/mapping/pci", func() error {
		return apiErr(c.api.Get(ctx, "/cluster/mapping/pci", &raw))
	}); err != nil {
		return nil, fmt.Errorf("PVE PCI mappings: %w", err)
	}
	out := make(map[string]PCIMapping, len(raw))
	for _, m := range raw {
		pm := PCIMapping{ID: m.ID}
		for _, e := range m.Map {
			for _, kv := range strings.Split(e, ",") {
				if h, ok := strings.CutPrefix(kv, "node="); ok && !slices.Contains(pm.Hosts, h) {
					pm.Hosts = append(pm.Hosts, h)
				}
			}
		}
		out[m.ID] = pm
	}
	return out, nil
}

// deviceUse counts, per host and mapping, our VMs there of pools that
// pass that mapping through (their device is taken, running or not).
func (c *Client) deviceUse(inv Inventory) map[[2]string]int {
	use := map[[2]string]int{}
	for _, v := range inv.Ours {
		p, err := c.pool(WorkerPool(v))
		if err != nil {
			continue
		}
		for _, d := range p.PCI {
			use[[2]string{v.Host, d.Mapping}]++
		}
	}
	return use
}

// PlaceIn picks the host for a new worker of pool: as Place, among the
// pool's hosts, with the pool's VM memory, and, for a pool with PCI
// mappings, only a host where each mapping has a device and none of our
// VMs (nor a clone of this process, devices) holds it already.
func (c *Client) PlaceIn(inv Inventory, promised map[string]int64, pool config.Pool, mappings map[string]PCIMapping, devices map[[2]string]int, only ...string) (string, error) {
	allowed := slices.Clone(only)
	if len(pool.Hosts) > 0 {
		if len(allowed) == 0 {
			allowed = slices.Clone(pool.Hosts)
		} else {
			allowed = slices.DeleteFunc(allowed, func(h string) bool { return !slices.Contains(pool.Hosts, h) })
			if len(allowed) == 0 {
				return "", &NoRoomError{Reasons: []string{fmt.Sprintf("none of the hosts %v is one of pool %s's hosts %v", only, pool.Name, pool.Hosts)}}
			}
		}
	}
	var reasons []string
	if len(pool.PCI) > 0 {
		use := c.deviceUse(inv)
		for k, n := range devices {
			use[k] += n
		}
		var ok []string
		for _, h := range inv.Hosts {
			if len(allowed) > 0 && !slices.Contains(allowed, h.Name) {
				continue
			}
			why := ""
			for _, d := range pool.PCI {
				m, found := mappings[d.Mapping]
				switch {
				case !found:
					why = fmt.Sprintf("PCI mapping %s does not exist (or the token lacks Mapping.Audit or Mapping.Use on /mapping/pci/%s)", d.Mapping, d.Mapping)
				case !slices.Contains(m.Hosts, h.Name):
					why = fmt.Sprintf("%s has no device of PCI mapping %s", h.Name, d.Mapping)
				case use[[2]string{h.Name, d.Mapping}] > 0:
					why = fmt.Sprintf("%s's device of PCI mapping %s is taken by another worker", h.Name, d.Mapping)
				}
				if why != "" {
					break
				}
			}
			if why != "" {
				reasons = append(reasons, why)
				continue
			}
			ok = append(ok, h.Name)
		}
		if len(ok) == 0 {
			return "", &NoRoomError{Reasons: reasons}
		}
		allowed = ok
	}
	return c.place(inv, promised, int64(pool.VM.Memory), allowed...)
}
