package proxmox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// VM is one VM as /cluster/resources shows it.
type VM struct {
	VMID     int
	Name     string
	Host     string
	Status   string // running, stopped, unknown (host offline)
	Template bool
	Tags     []string
	Lock     string
	MaxMem   int64
	// Cores is the VM's vCPUs as listed (maxcpu; 0: unknown).
	Cores int
	Pool  string
}

// Host is one PVE host and its room for new VMs.
type Host struct {
	Name     string
	Online   bool
	MemTotal int64
	MemUsed  int64
	// OurVMs counts this cluster's VMs on the host.
	OurVMs int
	// InFlight is the memory of our VMs there that are not running yet
	// (cloning, stopped): PVE does not count it as used, we must.
	InFlight int64
}

// Inventory is what one /cluster/resources call tells.
type Inventory struct {
	// Ours are the VMs tagged pve-autoscaler and cluster-<name>, wherever they run now.
	Ours []VM
	// Untagged are VMs with our name prefix in our vmid range but no tags
	// yet: possibly ours, cloned by a daemon that stopped before configuring
	// them. Only their description can tell (Created).
	Untagged []VM
	// All is every VM the token may see.
	All []VM
	// Template is the first worker pool's template (proxmox.template
	// without pools:); Templates each pool's, by pool name.
	Template  *VM
	Templates map[string]*VM
	// Ambiguous says, by pool name, why a template given by name is none:
	// more than one VM has the name (templates first: one template and
	// VMs of the same name pick the template).
	Ambiguous map[string]string
	Hosts     []Host
}

type resource struct {
	Type     string  `json:"type"`
	VMID     int     `json:"vmid"`
	Name     string  `json:"name"`
	Node     string  `json:"node"`
	Status   string  `json:"status"`
	Template int     `json:"template"`
	Tags     string  `json:"tags"`
	Lock     string  `json:"lock"`
	MaxMem   int64   `json:"maxmem"`
	MaxCPU   int     `json:"maxcpu"`
	Mem      int64   `json:"mem"`
	Pool     string  `json:"pool"`
	CPU      float64 `json:"cpu"`
}

// Owns reports whether a listed VM passes the list's part of the
// ownership rule: both of our tags for this cluster, in our vmid range,
// not a template. The description's marker, the rule's third part, is
// checked on a fresh read of the VM's config (ownedConfig) before each
// destructive call.
func (c *Client) Owns(v VM) bool {
	return slices.Contains(v.Tags, TagOwner) && slices.Contains(v.Tags, ClusterTag(c.cluster)) &&
		v.VMID >= c.cfg.VMIDRange.Min && v.VMID <= c.cfg.VMIDRange.Max && !v.Template
}

// Inventory lists our VMs, the template and the hosts' room in one call.
func (c *Client) Inventory(ctx context.Context) (Inventory, error) {
	var res []resource
	if err := c.retry(ctx, "GET /cluster/resources", func() error {
		return apiErr(c.api.Get(ctx, "/cluster/resources", &res))
	}); err != nil {
		return Inventory{}, fmt.Errorf("PVE inventory: %w", err)
	}
	var inv Inventory
	hosts := map[string]*Host{}
	for _, r := range res {
		if r.Type == "node" {
			hosts[r.Node] = &Host{Name: r.Node, Online: r.Status == "online", MemTotal: r.MaxMem, MemUsed: r.Mem}
		}
	}
	for _, r := range res {
		if r.Type != "qemu" {
			continue
		}
		v := VM{VMID: r.VMID, Name: r.Name, Host: r.Node, Status: r.Status, Template: r.Template == 1, Lock: r.Lock, MaxMem: r.MaxMem, Cores: r.MaxCPU, Pool: r.Pool}
		if r.Tags != "" {
			v.Tags = strings.FieldsFunc(strings.ToLower(r.Tags), func(c rune) bool { return c == ';' || c == ',' || c == ' ' })
		}
		inv.All = append(inv.All, v)
		if len(v.Tags) == 0 && !v.Template && strings.HasPrefix(v.Name, c.cfg.NamePrefix) && v.VMID >= c.cfg.VMIDRange.Min && v.VMID <= c.cfg.VMIDRange.Max {
			inv.Untagged = append(inv.Untagged, v)
		}
		if c.Owns(v) {
			inv.Ours = append(inv.Ours, v)
			if h := hosts[v.Host]; h != nil {
				h.OurVMs++
				// A stopped VM in standby costs its disk, not memory: its
				// start checks the host's room then. A clone not configured
				// yet has the template's memory: it will have a worker's.
				if v.Status != "running" && !slices.Contains(v.Tags, StepTag("standby")) {
					h.InFlight += max(v.MaxMem, c.vmMemory())
				}
			}
		}
	}
	for _, p := range c.pools {
		c.findTemplate(&inv, p)
	}
	inv.Template = inv.Templates[c.pools[0].Name]
	for _, h := range hosts {
		inv.Hosts = append(inv.Hosts, *h)
	}
	// Forget the metadata of VMs gone (deleted by hand: the id may return).
	present := make(map[int]bool, len(inv.All))
	for _, v := range inv.All {
		present[v.VMID] = true
	}
	c.mu.Lock()
	for id := range c.metas {
		if !present[id] {
			delete(c.metas, id)
		}
	}
	for _, v := range inv.All {
		if v.VMID >= c.cfg.VMIDRange.Min && v.VMID <= c.cfg.VMIDRange.Max {
			c.seen[v.VMID] = true
		}
	}
	c.mu.Unlock()
	sort.Slice(inv.Hosts, func(i, j int) bool { return inv.Hosts[i].Name < inv.Hosts[j].Name })
	return inv, nil
}

// findTemplate sets a pool's template in the inventory: the VM of its
// vmid, or the one VM of its name (a template before other VMs). Two of
// the same name are none: cloning the wrong one is not a guess to make.
func (c *Client) findTemplate(inv *Inventory, p config.Pool) {
	var named, templates []VM
	for _, v := range inv.All {
		if matchesTemplate(v, p.Template) {
			named = append(named, v)
			if v.Template {
				templates = append(templates, v)
			}
		}
	}
	pick := named
	if len(templates) > 0 {
		pick = templates
	}
	switch {
	case len(pick) == 1:
		if inv.Templates == nil {
			inv.Templates = map[string]*VM{}
		}
		t := pick[0]
		inv.Templates[p.Name] = &t
	case len(pick) > 1:
		var which []string
		for _, v := range pick {
			which = append(which, fmt.Sprintf("%d on %s", v.VMID, v.Host))
		}
		if inv.Ambiguous == nil {
			inv.Ambiguous = map[string]string{}
		}
		inv.Ambiguous[p.Name] = fmt.Sprintf("%s %s names %d VMs (%s): give the template's vmid instead of its name",
			c.templatePath(p.Name), p.Template, len(pick), strings.Join(which, ", "))
	}
}

// noTemplate says why a pool has no template in the inventory.
func (c *Client) noTemplate(inv Inventory, pool string) error {
	if why := inv.Ambiguous[pool]; why != "" {
		return errors.New(why)
	}
	tpl := c.cfg.Template
	if p, err := c.pool(pool); err == nil {
		tpl = p.Template
	}
	return fmt.Errorf("%s %s not found in the cluster (or the token may not see it)", c.templatePath(pool), tpl)
}

func matchesTemplate(v VM, t config.VMRef) bool {
	if t.ID != 0 {
		return v.VMID == t.ID
	}
	return v.Name == t.Name
}

func (c *Client) vmMemory() int64 { return int64(c.pools[0].VM.Memory) }

// Free is the memory a host can still give new VMs, before any reserve:
// total less used, less our VMs not running yet, less promised (memory
// promised to clones not yet visible in the inventory). Workers reports it
// to the scaler as is; the scaler keeps proxmox.host_memory_reserve out of
// its decisions itself (scaler.Policy.Spare).
func (c *Client) Free(h Host, promised int64) int64 {
	return h.MemTotal - h.MemUsed - h.InFlight - promised
}

// spare is what placement may give a new VM on a host: Free less the
// configured reserve. The one place this package applies the reserve
// (Place, and Room for doctor).
func (c *Client) spare(h Host, promised int64) int64 {
	return c.Free(h, promised) - int64(c.cfg.HostMemReserve)
}

// NoRoomError lists each host's shortfall when no host can take a worker.
type NoRoomError struct{ Reasons []string }

func (e *NoRoomError) Error() string {
	return "no PVE host has room for a worker: " + strings.Join(e.Reasons, "; ")
}

// Place picks the host for a new worker: online, allowed, with free memory
// for it; then the one with the fewest of our VMs, then the most free
// memory. promised is memory promised to provisions not yet visible in the
// inventory, by host.
func (c *Client) Place(inv Inventory, promised map[string]int64, only ...string) (string, error) {
	return c.place(inv, promised, c.vmMemory(), only...)
}

// place is Place for a VM of need bytes.
func (c *Client) place(inv Inventory, promised map[string]int64, need int64, only ...string) (string, error) {
	best, bestFree, bestOurs := "", int64(0), 0
	var reasons []string
	for _, h := range inv.Hosts {
		switch {
		case len(c.cfg.Hosts) > 0 && !slices.Contains(c.cfg.Hosts, h.Name):
			continue
		case len(only) > 0 && !slices.Contains(only, h.Name):
			continue
		case !h.Online:
			reasons = append(reasons, h.Name+" is offline")
			continue
		}
		free := c.spare(h, promised[h.Name])
		if free < need {
			reasons = append(reasons, fmt.Sprintf("%s has %s free after the %s reserve, %s short of %s",
				h.Name, mib(max(free, 0)), mib(int64(c.cfg.HostMemReserve)), mib(need-max(free, 0)), mib(need)))
			continue
		}
		if best == "" || h.OurVMs < bestOurs || (h.OurVMs == bestOurs && free > bestFree) {
			best, bestFree, bestOurs = h.Name, free, h.OurVMs
		}
	}
	if best == "" {
		if len(reasons) == 0 {
			reasons = append(reasons, fmt.Sprintf("none of the allowed hosts %v is in the cluster", append(c.cfg.Hosts, only...)))
		}
		return "", &NoRoomError{Reasons: reasons}
	}
	return best, nil
}

func mib(b int64) string { return fmt.Sprintf("%dMiB", b>>20) }

// Name is the VM (and node) name for an id.
func (c *Client) Name(vmid int) string { return c.cfg.NamePrefix + strconv.Itoa(vmid) }

// AllocateID picks a free vmid in the configured range: free in the
// inventory, confirmed by cluster/nextid, and not being allocated by this
// process. Release it if the clone is not made.
func (c *Client) AllocateID(ctx context.Context, inv Inventory) (int, error) {
	used := map[int]bool{}
	for _, v := range inv.All {
		used[v.VMID] = true
	}
	// Ids of VMs this process has seen go last: a VM deleted by hand may
	// still have its Node (named after the id) until its absence is
	// confirmed, and a new worker under that name would meet it.
	ids := make([]int, 0, c.cfg.VMIDRange.Max-c.cfg.VMIDRange.Min+1)
	var seen []int
	c.mu.Lock()
	for id := c.cfg.VMIDRange.Min; id <= c.cfg.VMIDRange.Max; id++ {
		if c.seen[id] {
			seen = append(seen, id)
		} else {
			ids = append(ids, id)
		}
	}
	c.mu.Unlock()
	for _, id := range append(ids, seen...) {
		c.mu.Lock()
		taken := used[id] || c.claimed[id]
		if !taken {
			c.claimed[id] = true
		}
		c.mu.Unlock()
		if taken {
			continue
		}
		var got string
		err := c.retry(ctx, "GET /cluster/nextid", func() error {
			return apiErr(c.api.Get(ctx, "/cluster/nextid?vmid="+strconv.Itoa(id), &got))
		})
		if err == nil {
			return id, nil
		}
		c.Release(id)
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == 400 && strings.Contains(ae.Message, "already exists") {
			continue
		}
		return 0, fmt.Errorf("PVE cluster/nextid: %w", err)
	}
	return 0, fmt.Errorf("no free vmid in proxmox.vmid_range %d..%d", c.cfg.VMIDRange.Min, c.cfg.VMIDRange.Max)
}

// Release forgets a claimed vmid.
func (c *Client) Release(vmid int) {
	c.mu.Lock()
	delete(c.claimed, vmid)
	c.mu.Unlock()
}

// ErrIDTaken means another VM got the id first; allocate another.
var ErrIDTaken = errors.New("vmid taken by another VM")

// Description is the metadata block written on every VM we create. Its
// request line is unique to one clone request: a retried request that finds
// the VM there can tell its own clone from another daemon's.
func (c *Client) Description(now time.Time, template string) string {
	d := fmt.Sprintf("Worker VM managed by pve-autoscaler %s. Removing it by hand is safe; editing the lines below is not.\n\npve-autoscaler/cluster: %s\npve-autoscaler/created: %s\npve-autoscaler/request: %s\n",
		c.version, c.cluster, now.UTC().Format(time.RFC3339), rand.Text()[:12])
	if template != "" {
		d += "pve-autoscaler/template: " + template + "\n"
	}
	return d
}

// Clone clones the template to vmid on host: linked when the template is
// a template and clone_mode is linked, else full (to the target storage).
// Repeating it for a VM that exists already (a resumed provisioning)
// waits for it instead of cloning again.
func (c *Client) Clone(ctx context.Context, inv Inventory, vmid int, host string, pool config.Pool) error {
	return c.clone(ctx, inv, vmid, host, pool, "")
}

// ReplacesLine is the description line naming the worker a new VM
// replaces (scaler.Machine.Replaces): its vmid and SMBIOS UUID.
func ReplacesLine(vmid int, uuid string) string {
	return fmt.Sprintf("pve-autoscaler/replaces: %d %s\n", vmid, scaler.NormalUUID(uuid))
}

// clone is Clone with extra lines (ReplacesLine) in the description.
func (c *Client) clone(ctx context.Context, inv Inventory, vmid int, host string, pool config.Pool, extra string) error {
	defer c.Release(vmid)
	if inv.Templates[pool.Name] == nil {
		return c.noTemplate(inv, pool.Name)
	}
	tpl := *inv.Templates[pool.Name]
	select {
	case c.clones <- struct{}{}:
		defer func() { <-c.clones }()
	case <-ctx.Done():
		return ctx.Err()
	}
	// The template's digest now, for the drift check of standby workers
	// (best effort: an unreadable digest only disables that check).
	digest, err := c.templateDigest(ctx, tpl)
	if err != nil {
		c.log.Info("template digest unreadable", zap.Error(err))
	}
	params := map[string]any{
		"newid":       vmid,
		"name":        c.Name(vmid),
		"target":      host,
		"description": c.Description(c.now(), digest) + "pve-autoscaler/pool: " + pool.Name + "\n" + c.buildLine(pool.Name) + extra,
	}
	c.mu.Lock()
	c.untagged[vmid] = params["description"].(string) // cloned by this process, not tagged yet
	c.mu.Unlock()
	full := c.cfg.CloneMode == "full" || !tpl.Template
	params["full"] = full
	if full && c.cfg.Storage != "" {
		params["storage"] = c.cfg.Storage
	}
	if pool := c.cfg.ResourcePoolName(); pool != "" {
		params["pool"] = pool // PVE: VM.Allocate on /pool/NAME, and the new VM joins it
	}
	path := fmt.Sprintf("/nodes/%s/qemu/%d/clone", tpl.Host, tpl.VMID)
	return c.retry(ctx, "clone", func() error {
		var upid string
		err := apiErr(c.api.Post(ctx, path, params, &upid))
		if err != nil {
			if strings.Contains(err.Error(), "config file already exists") {
				// A request whose answer was lost (a client timeout, a proxy)
				// may have cloned already: that VM, with the very description
				// sent, is this clone; anything else got the id first.
				if mine, werr := c.awaitOwnClone(ctx, host, vmid, params["description"].(string)); mine {
					return werr
				}
				return fmt.Errorf("%w: %v", ErrIDTaken, err)
			}
			return fmt.Errorf("clone of %s (vmid %d) to %d on %s: %w", tpl.Name, tpl.VMID, vmid, host, err)
		}
		c.log.Info("cloning", zap.Int("vmid", vmid), zap.String("host", host), zap.Bool("full", full), zap.String("upid", upid))
		if err := c.waitTask(ctx, upid); err != nil {
			return fmt.Errorf("clone to %d on %s: %w", vmid, host, err)
		}
		return nil
	})
}

// awaitOwnClone reports whether the VM at vmid on host is the clone this
// process asked for (its description is exactly the one sent, which holds
// the time of the request), and if so waits until PVE has finished it.
func (c *Client) awaitOwnClone(ctx context.Context, host string, vmid int, description string) (bool, error) {
	for {
		// PVE builds a clone's config on the template's node and moves it to
		// the target at the end: read it where the cluster lists it now.
		if inv, err := c.Inventory(ctx); err == nil {
			if i := slices.IndexFunc(inv.All, func(v VM) bool { return v.VMID == vmid }); i >= 0 {
				host = inv.All[i].Host
			}
		}
		cfg, err := c.config(ctx, host, vmid)
		if err != nil || strings.TrimSpace(cfg.Description) != strings.TrimSpace(description) {
			return false, nil
		}
		if cfg.Lock == "" {
			c.log.Info("the clone whose answer was lost exists: taken as this clone", zap.Int("vmid", vmid), zap.String("host", host))
			return true, nil
		}
		select {
		case <-ctx.Done():
			return true, fmt.Errorf("clone to %d on %s: still locked (%s): %w", vmid, host, cfg.Lock, ctx.Err())
		case <-time.After(c.poll):
		}
	}
}

// TagNew tags a VM this process has just cloned (its description must
// carry our marker) with our tags at step cloned.
func (c *Client) TagNew(ctx context.Context, vmid int, host string) error {
	cfg, err := c.config(ctx, host, vmid)
	if err != nil {
		return fmt.Errorf("tag %d: %w", vmid, err)
	}
	if !c.createdByUs(cfg) {
		return &NotOursError{VMID: vmid, Why: "its description has no pve-autoscaler metadata for cluster " + c.cluster}
	}
	c.mu.Lock()
	sent := c.untagged[vmid]
	c.mu.Unlock()
	if sent != "" && strings.TrimSpace(cfg.Description) != strings.TrimSpace(sent) {
		return &NotOursError{VMID: vmid, Why: "its description is another clone request's (another daemon's clone)"}
	}
	err = c.retry(ctx, "tag", func() error {
		return apiErr(c.api.Put(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/config", host, vmid), map[string]any{"tags": c.ownTags("cloned", poolOfDescription(cfg.Description)), "digest": cfg.Digest}, nil))
	})
	if err != nil {
		return fmt.Errorf("tag %d on %s: %w", vmid, host, err)
	}
	c.mu.Lock()
	delete(c.untagged, vmid)
	c.mu.Unlock()
	return nil
}

// ownedConfig checks, on a fresh read of a listed VM's config, the part of
// the ownership rule a list cannot show: our description's marker.
func (c *Client) ownedConfig(ctx context.Context, v VM) error {
	cfg, err := c.config(ctx, v.Host, v.VMID)
	if err != nil {
		return err
	}
	if !c.createdByUs(cfg) {
		return &NotOursError{VMID: v.VMID, Why: "its description has no pve-autoscaler metadata for cluster " + c.cluster}
	}
	return nil
}

type vmConfig struct {
	Name        string `json:"name"`
	Tags        string `json:"tags"`
	Description string `json:"description"`
	Net0        string `json:"net0"`
	Lock        string `json:"lock"`
	Digest      string `json:"digest"`
	SMBIOS1     string `json:"smbios1"`
}

// SMBIOSUUID reads the uuid= field of a PVE smbios1 value
// ("uuid=6c2a...,manufacturer=..."), lower-cased: the VM's SMBIOS UUID,
// which its guest reads as its system UUID. "" when there is none.
func SMBIOSUUID(smbios1 string) string {
	for _, kv := range strings.Split(smbios1, ",") {
		if u, ok := strings.CutPrefix(strings.TrimSpace(kv), "uuid="); ok {
			return strings.ToLower(strings.TrimSpace(u)) // as scaler.NormalUUID: proxmox does not import scaler
		}
	}
	return ""
}

func (c *Client) config(ctx context.Context, host string, vmid int) (vmConfig, error) {
	var cfg vmConfig
	err := c.retry(ctx, "GET config", func() error {
		return apiErr(c.api.Get(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/config", host, vmid), &cfg))
	})
	return cfg, err
}

// createdByUs reads the metadata block of a VM's description.
func (c *Client) createdByUs(cfg vmConfig) bool {
	return strings.Contains(cfg.Description, "\npve-autoscaler/cluster: "+c.cluster+"\n")
}

// StepTag is the tag recording a provisioning or removal step.
func StepTag(step string) string { return "step-" + step }

// Step reads the step tag of a VM ("" when none).
func Step(v VM) string {
	for _, t := range v.Tags {
		if s, ok := strings.CutPrefix(t, "step-"); ok {
			return s
		}
	}
	return ""
}

// ownTags is our tags plus the worker pool's and the step's.
func (c *Client) ownTags(step, pool string) string {
	tags := TagOwner + ";" + ClusterTag(c.cluster)
	if pool != "" {
		tags += ";" + PoolTag(pool)
	}
	if step != "" {
		tags += ";" + StepTag(step)
	}
	return tags
}

// Meta is what a VM's description records: when it was cloned and from
// which template configuration (the template's config digest then); and
// the VM's SMBIOS UUID, read in the same config request.
type Meta struct {
	Ours     bool
	Created  time.Time
	Template string
	// Pool is the worker pool it was cloned for ("": before pools).
	Pool string
	// Build is what it was made from besides the template and its size
	// (Options.Build then; "": made before builds were recorded).
	Build string
	// Replaces and ReplacesVMID name the worker it was made to replace
	// (ReplacesLine; "" and 0: none).
	Replaces     string
	ReplacesVMID int
	// UUID is the VM's smbios1 uuid, lower case ("" when it has none).
	// Cached with the rest: a VM replaced behind our back under the same
	// vmid keeps its old UUID here until Identity sees the new one.
	UUID string
}

// Created reads when one of our VMs was cloned, from its description; it
// also tells whether the description marks it ours.
func (c *Client) Created(ctx context.Context, vmid int, host string) (time.Time, bool, error) {
	m, err := c.Meta(ctx, vmid, host)
	return m.Created, m.Ours, err
}

// Meta reads a VM's description metadata and SMBIOS UUID. Descriptions of
// our VMs never change, so what was read is kept (by vmid) and later calls
// cost no API request; a VM that is not ours is read again each time.
func (c *Client) Meta(ctx context.Context, vmid int, host string) (Meta, error) {
	c.mu.Lock()
	m, ok := c.metas[vmid]
	c.mu.Unlock()
	if ok {
		return m, nil
	}
	cfg, err := c.config(ctx, host, vmid)
	if err != nil {
		return Meta{}, err
	}
	m.UUID = SMBIOSUUID(cfg.SMBIOS1)
	if !c.createdByUs(cfg) {
		return m, nil
	}
	m.Ours = true
	for _, line := range strings.Split(cfg.Description, "\n") {
		if v, ok := strings.CutPrefix(line, "pve-autoscaler/created: "); ok {
			t, err := time.Parse(time.RFC3339, strings.TrimSpace(v))
			if err != nil {
				return m, err
			}
			m.Created = t
		}
		if v, ok := strings.CutPrefix(line, "pve-autoscaler/template: "); ok {
			m.Template = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "pve-autoscaler/pool: "); ok {
			m.Pool = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "pve-autoscaler/build: "); ok {
			m.Build = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "pve-autoscaler/replaces: "); ok {
			id, uuid, _ := strings.Cut(strings.TrimSpace(v), " ")
			if n, err := strconv.Atoi(id); err == nil && n > 0 && strings.TrimSpace(uuid) != "" {
				m.Replaces, m.ReplacesVMID = scaler.NormalUUID(uuid), n
			}
		}
	}
	c.mu.Lock()
	c.metas[vmid] = m
	c.mu.Unlock()
	return m, nil
}

// Identity reads a VM's SMBIOS UUID afresh (one inventory and one config
// request, no cache), wherever the VM runs now: the check right before a
// destructive or secret-bearing call that the machine is still the one
// the listing showed. A VM gone gives ErrGone. A UUID that differs from
// the cached one drops the cached metadata, so the next listing reads it
// again.
func (c *Client) Identity(ctx context.Context, vmid int) (string, error) {
	inv, err := c.Inventory(ctx)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(inv.All, func(v VM) bool { return v.VMID == vmid })
	if i < 0 {
		return "", fmt.Errorf("identity of %d: %w", vmid, c.unlisted(ctx, vmid))
	}
	cfg, err := c.config(ctx, inv.All[i].Host, vmid)
	if err != nil {
		return "", fmt.Errorf("identity of %d: %w", vmid, err)
	}
	id := SMBIOSUUID(cfg.SMBIOS1)
	c.mu.Lock()
	if m, ok := c.metas[vmid]; ok && m.UUID != id {
		delete(c.metas, vmid)
	}
	c.mu.Unlock()
	return id, nil
}

// forget drops what is known of a VM (destroyed: its id may come back).
func (c *Client) forget(vmid int) {
	c.mu.Lock()
	delete(c.metas, vmid)
	for m, holder := range c.macs {
		if holder == vmid {
			delete(c.macs, m) // its VM is destroyed: the MAC is free again
		}
	}
	c.mu.Unlock()
}

// TemplateDigest is the template's identity for drift checks: its vmid
// and config digest ("9000@3f2a..."), read at most every TemplateCheck.
func (c *Client) TemplateDigest(ctx context.Context, inv Inventory) (string, error) {
	if inv.Template == nil {
		return "", fmt.Errorf("%s %s not found in the cluster (or the token may not see it)", c.templatePath(c.pools[0].Name), c.pools[0].Template)
	}
	return c.templateDigest(ctx, *inv.Template)
}

// templateDigest is one template's identity ("9000@3f2a..."), read at
// most every TemplateCheck.
func (c *Client) templateDigest(ctx context.Context, tpl VM) (string, error) {
	c.mu.Lock()
	e := c.tplDigests[tpl.VMID]
	c.mu.Unlock()
	if e.digest != "" && time.Since(e.at) < c.templateCheck {
		return e.digest, nil
	}
	cfg, err := c.config(ctx, tpl.Host, tpl.VMID)
	if err != nil {
		return "", fmt.Errorf("template %d config: %w", tpl.VMID, err)
	}
	d := fmt.Sprintf("%d@%s", tpl.VMID, cfg.Digest)
	c.mu.Lock()
	c.tplDigests[tpl.VMID] = digestAt{d, time.Now()}
	c.mu.Unlock()
	return d, nil
}

// PowerOff shuts one of our VMs down (gracefully, then stopped); a VM
// stopped already is success. Its disks and configuration stay.
func (c *Client) PowerOff(ctx context.Context, vmid int) error {
	v, err := c.ours(ctx, vmid)
	if err != nil {
		return fmt.Errorf("power off %d: %w", vmid, err)
	}
	switch v.Status {
	case "stopped":
		return nil
	case "unknown":
		return fmt.Errorf("power off %d: its host %s is offline", vmid, v.Host)
	}
	if err := c.ownedConfig(ctx, v); err != nil {
		return fmt.Errorf("power off %d: %w", vmid, err)
	}
	if err := c.stop(ctx, v); err != nil {
		return fmt.Errorf("power off %d: %w", vmid, err)
	}
	return nil
}

// stepResetting is scaler.StepResetting: the step whose record precedes a
// Talos reset.
const stepResetting = "resetting"

// RecordStep re-tags one of our VMs with the step reached.
func (c *Client) RecordStep(ctx context.Context, vmid int, step string) error {
	v, err := c.ours(ctx, vmid)
	if err != nil {
		return fmt.Errorf("record step %s on %d: %w", step, vmid, err)
	}
	if step == stepResetting {
		// The Talos reset follows this record: ownership in full (the
		// description's marker too), as destroy and power-off check it.
		if err := c.ownedConfig(ctx, v); err != nil {
			return fmt.Errorf("record step %s on %d: %w", step, vmid, err)
		}
	}
	return c.retry(ctx, "set step", func() error {
		return apiErr(c.api.Put(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/config", v.Host, vmid), map[string]any{"tags": c.ownTags(step, WorkerPool(v))}, nil))
	})
}

// Configure sizes and tags a freshly cloned VM (and gives it a MAC of the
// pool when the template has no guest agent), recording step in its tags
// when given. The VM must carry our description or our tags: the scaler
// configures only VMs it created.
func (c *Client) Configure(ctx context.Context, vmid int, host string, mac string, step ...string) error {
	cfg, err := c.config(ctx, host, vmid)
	if err != nil {
		return fmt.Errorf("configure %d: %w", vmid, err)
	}
	tags := strings.FieldsFunc(cfg.Tags, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
	if !c.createdByUs(cfg) && !(slices.Contains(tags, TagOwner) && slices.Contains(tags, ClusterTag(c.cluster))) {
		return &NotOursError{VMID: vmid, Why: "its description has no pve-autoscaler metadata for cluster " + c.cluster}
	}
	name := poolOfDescription(cfg.Description)
	if name == "" {
		name = WorkerPool(VM{Tags: tags})
	}
	pool, err := c.pool(name)
	if err != nil {
		return fmt.Errorf("configure %d: %w", vmid, err)
	}
	params := map[string]any{
		"cores":  pool.VM.Cores,
		"memory": strconv.FormatInt(int64(pool.VM.Memory)>>20, 10),
		"tags":   c.ownTags(strings.Join(step, ""), pool.Name),
		"digest": cfg.Digest,
	}
	for i, d := range pool.PCI {
		params[fmt.Sprintf("hostpci%d", i)] = "mapping=" + d.Mapping
	}
	if mac != "" {
		params["net0"] = "virtio=" + strings.ToUpper(mac) + ",bridge=" + bridgeOf(cfg.Net0)
	}
	return c.retry(ctx, "configure", func() error {
		if err := apiErr(c.api.Put(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/config", host, vmid), params, nil)); err != nil {
			return fmt.Errorf("configure %d on %s: %w", vmid, host, err)
		}
		return nil
	})
}

func bridgeOf(net0 string) string {
	for _, kv := range strings.Split(net0, ",") {
		if b, ok := strings.CutPrefix(kv, "bridge="); ok {
			return b
		}
	}
	return "vmbr0"
}

// NextMAC returns the first DHCP reservation whose MAC no VM uses yet.
func (c *Client) NextMAC(ctx context.Context, inv Inventory, vmid int) (mac, ip string, err error) {
	used := map[string]bool{}
	for _, v := range inv.All {
		if v.Template {
			continue
		}
		if h := inv.Host(v.Host); h != nil && !h.Online {
			// Its MAC cannot be read: handing it out again would put two
			// machines on one address when the host is back.
			return "", "", fmt.Errorf("proxmox.dhcp_reservations: host %s is offline, so VM %d's MAC is unknown; no MAC is handed out until it is back", v.Host, v.VMID)
		}
		cfg, err := c.config(ctx, v.Host, v.VMID)
		if err != nil {
			return "", "", fmt.Errorf("reading VM %d's MAC: %w", v.VMID, err)
		}
		for _, kv := range strings.Split(cfg.Net0, ",") {
			if _, m, ok := strings.Cut(kv, "="); ok {
				if _, perr := net.ParseMAC(m); perr == nil {
					used[strings.ToUpper(m)] = true
				}
			}
		}
	}
	// Reserved under the lock: provisions in parallel read the same
	// configs, and each must take another MAC.
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.cfg.DHCPReservations {
		m := strings.ToUpper(e.MAC)
		if holder, ok := c.macs[m]; used[m] || ok && holder != vmid {
			continue
		}
		c.macs[m] = vmid
		return e.MAC, e.IP, nil
	}
	return "", "", fmt.Errorf("proxmox.dhcp_reservations: all %d MAC addresses are in use", len(c.cfg.DHCPReservations))
}

// Host is the listed host of that name (nil when none is).
func (inv Inventory) Host(name string) *Host {
	for i := range inv.Hosts {
		if inv.Hosts[i].Name == name {
			return &inv.Hosts[i]
		}
	}
	return nil
}

// Start starts a VM of ours; a VM already running is fine.
func (c *Client) Start(ctx context.Context, vmid int) error {
	v, err := c.ours(ctx, vmid)
	if err != nil {
		return fmt.Errorf("start %d: %w", vmid, err)
	}
	if v.Status == "running" {
		return nil
	}
	return c.retry(ctx, "start", func() error {
		var upid string
		if err := apiErr(c.api.Post(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/status/start", v.Host, vmid), nil, &upid)); err != nil {
			return fmt.Errorf("start %d on %s: %w", vmid, v.Host, err)
		}
		err := c.waitTask(ctx, upid)
		var te *TaskError
		if errors.As(err, &te) && strings.Contains(te.Status, "already running") {
			return nil
		}
		return err
	})
}

type agentIfaces struct {
	Result []struct {
		Name string `json:"name"`
		Addr []struct {
			IP   string `json:"ip-address"`
			Type string `json:"ip-address-type"`
		} `json:"ip-addresses"`
	} `json:"result"`
}

// WaitIP asks the guest agent for the VM's first IPv4 that is not loopback
// (inside ip_cidr when set), until agent_timeout passes.
func (c *Client) WaitIP(ctx context.Context, vmid int, host string) (string, error) {
	var filter netip.Prefix
	if c.cfg.IPCIDR != "" {
		filter, _ = netip.ParsePrefix(c.cfg.IPCIDR)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AgentTimeout.D())
	defer cancel()
	pause := c.backoff()
	var last error
	for {
		var ifs agentIfaces
		err := apiErr(c.api.Get(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/agent/network-get-interfaces", host, vmid), &ifs))
		if err == nil {
			for _, i := range ifs.Result {
				for _, a := range i.Addr {
					ip, perr := netip.ParseAddr(a.IP)
					if perr != nil || !ip.Is4() || i.Name == "lo" {
						continue
					}
					// A loopback address counts only when ip_cidr asks for it
					// (the simulated world's VMs live on 127.0.0.x).
					if filter.IsValid() && !filter.Contains(ip) || !filter.IsValid() && ip.IsLoopback() {
						continue
					}
					return ip.String(), nil
				}
			}
			err = errors.New("the guest agent reports no IPv4 address" + map[bool]string{true: " in " + c.cfg.IPCIDR, false: ""}[filter.IsValid()])
		} else if ae := (*APIError)(nil); errors.As(err, &ae) && strings.Contains(ae.Message, "No QEMU guest agent configured") {
			return "", fmt.Errorf("VM %d has no guest agent configured: enable agent on the template, or set proxmox.dhcp_reservations", vmid)
		}
		if ctx.Err() == nil || last == nil {
			last = err // a request cut by the deadline says less than the answer before it
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("VM %d on %s: no address from the guest agent within %s: %v", vmid, host, c.cfg.AgentTimeout.D(), last)
		case <-time.After(pause()):
		}
	}
}

// NotOursError refuses to touch a VM the scaler did not create.
type NotOursError struct {
	VMID int
	Why  string
}

func (e *NotOursError) Error() string {
	return fmt.Sprintf("refusing to touch VM %d: %s", e.VMID, e.Why)
}

// ErrGone means the VM no longer exists.
var ErrGone = errors.New("VM does not exist")

// unlisted explains a VM missing from the list: ErrGone only when a
// direct read says it does not exist (Gone); a VM the token cannot list
// any more is not gone.
func (c *Client) unlisted(ctx context.Context, vmid int) error {
	gone, err := c.Gone(ctx, vmid)
	switch {
	case err != nil:
		return fmt.Errorf("VM %d is not in the list and could not be read: %w", vmid, err)
	case !gone:
		return fmt.Errorf("VM %d is not in the list but exists (the token may no longer see it): not treated as gone", vmid)
	}
	return ErrGone
}

// ours re-reads a VM (wherever it runs now) and checks our tags.
func (c *Client) ours(ctx context.Context, vmid int) (VM, error) {
	inv, err := c.Inventory(ctx)
	if err != nil {
		return VM{}, err
	}
	for _, v := range inv.All {
		if v.VMID != vmid {
			continue
		}
		switch {
		case v.Template:
			return v, &NotOursError{VMID: vmid, Why: "it is a template"}
		case vmid < c.cfg.VMIDRange.Min || vmid > c.cfg.VMIDRange.Max:
			return v, &NotOursError{VMID: vmid, Why: fmt.Sprintf("it is outside proxmox.vmid_range %d..%d", c.cfg.VMIDRange.Min, c.cfg.VMIDRange.Max)}
		case !c.Owns(v):
			return v, &NotOursError{VMID: vmid, Why: fmt.Sprintf("it lacks the tags %s and %s (tags: %v)", TagOwner, ClusterTag(c.cluster), v.Tags)}
		}
		return v, nil
	}
	return VM{}, c.unlisted(ctx, vmid)
}

// destroyOwned shuts a VM of ours down (stopping it if it does not go within
// shutdown_timeout), waits for that, destroys it with its disks, waits, and
// checks it is gone. Ownership is checked before each destructive call. A
// VM already gone is success.
func (c *Client) destroyOwned(ctx context.Context, vmid int) error {
	v, err := c.ours(ctx, vmid)
	if errors.Is(err, ErrGone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %d: %w", vmid, err)
	}
	if v.Status == "unknown" {
		return fmt.Errorf("remove %d: its host %s is offline", vmid, v.Host)
	}
	if err := c.ownedConfig(ctx, v); err != nil {
		return fmt.Errorf("remove %d: %w", vmid, err)
	}
	if v.Status == "running" {
		if err := c.stop(ctx, v); err != nil {
			return fmt.Errorf("remove %d: %w", vmid, err)
		}
	}
	// Re-read: the VM may have moved or been retagged meanwhile.
	v, err = c.ours(ctx, vmid)
	if errors.Is(err, ErrGone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %d: %w", vmid, err)
	}
	if v.Status == "running" {
		return fmt.Errorf("remove %d: still running after stop; not destroying", vmid)
	}
	if err := c.ownedConfig(ctx, v); err != nil {
		return fmt.Errorf("remove %d: %w", vmid, err)
	}
	err = c.retry(ctx, "destroy", func() error {
		var upid string
		err := apiErr(c.api.Delete(ctx, fmt.Sprintf("/nodes/%s/qemu/%d?purge=1&destroy-unreferenced-disks=1", v.Host, vmid), &upid))
		if err != nil {
			return err
		}
		c.log.Info("destroying", zap.Int("vmid", vmid), zap.String("host", v.Host), zap.String("upid", upid))
		return c.waitTask(ctx, upid)
	})
	if err != nil && !strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("remove %d: destroy: %w", vmid, err)
	}
	if _, err := c.ours(ctx, vmid); !errors.Is(err, ErrGone) {
		return fmt.Errorf("remove %d: the VM is still there after its destroy task", vmid)
	}
	c.forget(vmid)
	return nil
}

// stop shuts down gracefully, then stops; it returns when the VM is stopped.
func (c *Client) stop(ctx context.Context, v VM) error {
	base := fmt.Sprintf("/nodes/%s/qemu/%d/status/", v.Host, v.VMID)
	timeout := int(c.cfg.ShutdownTimeout.D() / time.Second)
	var upid string
	err := apiErr(c.api.Post(ctx, base+"shutdown", map[string]any{"timeout": timeout, "forceStop": false}, &upid))
	if err == nil {
		err = c.waitTask(ctx, upid)
	}
	if err != nil {
		c.log.Info("shutdown did not finish, stopping", zap.Int("vmid", v.VMID), zap.Error(err))
		if err := c.retry(ctx, "stop", func() error {
			var upid string
			if err := apiErr(c.api.Post(ctx, base+"stop", nil, &upid)); err != nil {
				return err
			}
			return c.waitTask(ctx, upid)
		}); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
	}
	var cur struct {
		Status string `json:"status"`
	}
	if err := apiErr(c.api.Get(ctx, base+"current", &cur)); err != nil {
		return fmt.Errorf("status after stop: %w", err)
	}
	if cur.Status != "stopped" {
		return fmt.Errorf("status %q after stop", cur.Status)
	}
	return nil
}

// CloneNew allocates an id and clones to host, taking another id when a
// concurrent clone (another process, another daemon) got there first.
func (c *Client) CloneNew(ctx context.Context, inv Inventory, host string) (int, error) {
	return c.CloneNewIn(ctx, inv, host, c.pools[0])
}

// CloneNewIn is CloneNew for a VM of worker pool pool.
func (c *Client) CloneNewIn(ctx context.Context, inv Inventory, host string, pool config.Pool) (int, error) {
	return c.cloneNew(ctx, inv, host, pool, "")
}

// cloneNew is CloneNewIn with extra description lines (ReplacesLine).
func (c *Client) cloneNew(ctx context.Context, inv Inventory, host string, pool config.Pool, extra string) (int, error) {
	for range 10 {
		vmid, err := c.AllocateID(ctx, inv)
		if err != nil {
			return 0, err
		}
		c.mu.Lock()
		c.seen[vmid] = true
		c.mu.Unlock()
		err = c.clone(ctx, inv, vmid, host, pool, extra)
		if err == nil {
			// Tagged at once: a VM without our tags is never ours, so the
			// window in which a crash leaves an untagged clone is one request.
			err = c.TagNew(ctx, vmid, host)
		}
		if !errors.Is(err, ErrIDTaken) {
			return vmid, err
		}
		c.mu.Lock()
		delete(c.untagged, vmid)
		c.mu.Unlock()
		c.log.Info("vmid taken by a concurrent clone, allocating another", zap.Int("vmid", vmid))
		if inv, err = c.Inventory(ctx); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("clone: ten vmids in a row were taken by concurrent clones")
}

// destroy destroys one of our VMs (destroyOwned), waiting for a clone's lock to clear
// first. A clone this process made that outlived its timeout, still
// untagged, is tagged and removed; any other VM must pass the ownership
// rule (a VM whose tags were removed by hand is left alone). A VM already
// gone is success.
func (c *Client) destroy(ctx context.Context, vmid int) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.TaskTimeout.D())
	defer cancel()
	for {
		inv, err := c.Inventory(ctx)
		if err != nil {
			return fmt.Errorf("cleanup %d: %w", vmid, err)
		}
		i := slices.IndexFunc(inv.All, func(v VM) bool { return v.VMID == vmid })
		if i < 0 {
			if err := c.unlisted(ctx, vmid); !errors.Is(err, ErrGone) {
				return fmt.Errorf("cleanup %d: %w", vmid, err)
			}
			return nil
		}
		v := inv.All[i]
		if v.Lock == "" {
			if !c.Owns(v) {
				// Only a clone this process made and has not tagged yet (a
				// clone that outlived its timeout) is tagged here; a VM
				// whose tags someone removed is not ours any more.
				c.mu.Lock()
				fresh := c.untagged[vmid] != ""
				c.mu.Unlock()
				if !fresh {
					return fmt.Errorf("cleanup %d: %w", vmid, &NotOursError{VMID: vmid, Why: fmt.Sprintf("it lacks the tags %s and %s (tags: %v); left alone", TagOwner, ClusterTag(c.cluster), v.Tags)})
				}
				if err := c.TagNew(ctx, vmid, v.Host); err != nil {
					return fmt.Errorf("cleanup %d: %w", vmid, err)
				}
			}
			return c.destroyOwned(ctx, vmid)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cleanup %d: still locked (%s) after %s", vmid, v.Lock, c.cfg.TaskTimeout.D())
		case <-time.After(c.poll):
		}
	}
}

// ReservedAddress is the IP of the DHCP reservation whose MAC a VM has.
func (c *Client) ReservedAddress(ctx context.Context, vmid int) (string, error) {
	v, err := c.ours(ctx, vmid)
	if err != nil {
		return "", err
	}
	cfg, err := c.config(ctx, v.Host, vmid)
	if err != nil {
		return "", err
	}
	for _, e := range c.cfg.DHCPReservations {
		if strings.Contains(strings.ToUpper(cfg.Net0), strings.ToUpper(e.MAC)) {
			return e.IP, nil
		}
	}
	return "", fmt.Errorf("VM %d's net0 holds no MAC of proxmox.dhcp_reservations", vmid)
}
