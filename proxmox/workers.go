package proxmox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// Workers is scaler.Infra over the Client: the worker VMs as the
// reconciler sees them, and the state that spans its calls.
type Workers struct {
	c *Client

	mu       sync.Mutex
	promised map[string]int64  // memory promised to clones not yet visible, by host
	devices  map[[2]string]int // PCI devices (host, mapping) promised to clones not yet visible
	hosts    map[int]string    // vmid -> host, as last seen
	macIP    map[int]string    // vmid -> IP from the DHCP reservations
	dhcp     bool              // proxmox.dhcp_reservations: each VM takes a reserved MAC
	// untaggedSaid: VMs named like ours without our tags, logged once.
	untaggedSaid map[int]bool
	// fresh are clones this process made whose SMBIOS UUID it never read
	// (the clone task outlived its timeout, the config was unreadable):
	// they never started, so no machine ran; the one case a VM of unknown
	// identity may be destroyed (the reconciler's discard).
	fresh map[int]bool
}

// NewWorkers builds the reconciler's view of c's worker VMs.
func NewWorkers(c *Client) *Workers {
	return &Workers{c: c, devices: map[[2]string]int{}, dhcp: len(c.cfg.DHCPReservations) > 0, promised: map[string]int64{}, hosts: map[int]string{}, macIP: map[int]string{}, untaggedSaid: map[int]bool{}, fresh: map[int]bool{}}
}

// Machines lists our VMs (those passing the ownership rule's list part) and the hosts' room.
func (w *Workers) Machines(ctx context.Context) ([]scaler.Machine, []scaler.Host, error) {
	inv, err := w.c.Inventory(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []scaler.Machine
	add := func(v VM, step string) error {
		m := scaler.Machine{VMID: v.VMID, Name: v.Name, Host: v.Host, Running: v.Status == "running", Stopped: v.Status == "stopped", Step: step, Locked: v.Lock != "", Pool: WorkerPool(v)}
		if s, ok := strings.CutPrefix(step, scaler.StandbyPrefix); ok {
			m.Step, m.ForStandby = s, true // a build for standby
		}
		if step == scaler.StepJoined || step == scaler.StepRemoving {
			// The SMBIOS UUID and the description's marker, read once per
			// VM. Unreadable (its host offline): the UUID is unknown, the
			// listing goes on; OS and Destroy read afresh before acting.
			if meta, err := w.c.Meta(ctx, v.VMID, v.Host); err == nil {
				if !meta.Ours {
					return nil // tagged, but without our marker: not ours
				}
				m.UUID = meta.UUID
				m.Replaces, m.ReplacesVMID = meta.Replaces, meta.ReplacesVMID
				// A removal a restart withdraws makes it a joined worker
				// again: its drift is known for that tick too.
				m.Drift = w.c.drift(ctx, inv, v, meta, m.Pool)
			}
		} else {
			// Read once per VM (descriptions do not change): no request per tick.
			meta, err := w.c.Meta(ctx, v.VMID, v.Host)
			if err != nil {
				if h := inv.Host(v.Host); h != nil && !h.Online {
					// Its host is offline: listed without what the config
					// tells (creation time, UUID), so it neither expires
					// nor matches a Node, and the tick goes on.
					out = append(out, m)
					return nil
				}
				return err
			}
			if !meta.Ours {
				return nil // an untagged VM that is not ours: never touched
			}
			m.Created = meta.Created
			m.UUID = meta.UUID
			m.Replaces, m.ReplacesVMID = meta.Replaces, meta.ReplacesVMID
			if step == scaler.StepStandby && meta.Template != "" {
				// The digest of its pool's template, read at most every
				// five minutes (cached by the adapter).
				template := ""
				if tpl := inv.Templates[w.c.poolName(m.Pool)]; tpl != nil {
					template, _ = w.c.templateDigest(ctx, *tpl)
				}
				if template != "" && template != meta.Template {
					tid, _, _ := strings.Cut(meta.Template, "@")
					m.Stale = "cloned from template " + tid + " whose configuration has changed since"
				}
			}
		}
		out = append(out, m)
		return nil
	}
	for _, v := range inv.Ours {
		if err := add(v, Step(v)); err != nil {
			return nil, nil, err
		}
	}
	// A VM with our name but without our tags is not ours (the ownership
	// rule): a person may have removed them to keep the worker, or a crash
	// came between a clone and its tagging. It is never touched; it is
	// said once.
	w.mu.Lock()
	for _, v := range inv.Untagged {
		if !w.untaggedSaid[v.VMID] {
			w.untaggedSaid[v.VMID] = true
			w.c.Log().Warn("a VM with our name prefix in our vmid range has no pve-autoscaler tags: not ours, left alone (delete it by hand if it is a leftover clone)",
				zap.Int("vmid", v.VMID), zap.String("name", v.Name), zap.String("host", v.Host))
		}
	}
	w.mu.Unlock()
	w.mu.Lock()
	for _, m := range out {
		w.hosts[m.VMID] = m.Host
	}
	var hosts []scaler.Host
	for _, h := range inv.Hosts {
		// Before the reserve, which the scaler applies (Policy.Spare);
		// an overcommitted host has no room, not less than none.
		hosts = append(hosts, scaler.Host{Name: h.Name, Online: h.Online, MemoryFree: max(w.c.Free(h, w.promised[h.Name]), 0)})
	}
	w.mu.Unlock()
	return out, hosts, nil
}

// Create places, allocates and clones one VM of worker pool pool ("":
// the first).
func (w *Workers) Create(ctx context.Context, pool string, only []string, replaces scaler.Machine) (scaler.Machine, error) {
	spec, err := w.c.pool(pool)
	if err != nil {
		return scaler.Machine{}, err
	}
	inv, err := w.c.Inventory(ctx)
	if err != nil {
		return scaler.Machine{}, err
	}
	var mappings map[string]PCIMapping
	if len(spec.PCI) > 0 {
		if mappings, err = w.c.PCIMappings(ctx); err != nil {
			return scaler.Machine{}, err
		}
	}
	memory := int64(spec.VM.Memory)
	w.mu.Lock()
	host, err := w.c.PlaceIn(inv, w.promised, spec, mappings, w.devices, only...)
	if err == nil {
		w.promised[host] += memory
		for _, d := range spec.PCI {
			w.devices[[2]string{host, d.Mapping}]++
		}
	}
	w.mu.Unlock()
	if err != nil {
		return scaler.Machine{}, err
	}
	defer func() {
		w.mu.Lock()
		w.promised[host] -= memory
		for _, d := range spec.PCI {
			w.devices[[2]string{host, d.Mapping}]--
		}
		w.mu.Unlock()
	}()
	extra := ""
	if replaces.VMID != 0 {
		if replaces.UUID == "" {
			return scaler.Machine{}, fmt.Errorf("a replacement for VM %d: its SMBIOS UUID is unknown", replaces.VMID)
		}
		extra = ReplacesLine(replaces.VMID, replaces.UUID)
	}
	vmid, err := w.c.cloneNew(ctx, inv, host, spec, extra)
	m := scaler.Machine{VMID: vmid, Name: w.c.Name(vmid), Host: host, Step: scaler.StepCloned, Created: w.c.Now(), Pool: spec.Name}
	if replaces.VMID != 0 {
		m.Replaces, m.ReplacesVMID = scaler.NormalUUID(replaces.UUID), replaces.VMID
	}
	if err == nil {
		w.mu.Lock()
		w.hosts[vmid] = host
		w.mu.Unlock()
		// The clone's new SMBIOS UUID (cached for the listings after).
		// Unreadable now: unknown, and OS reads it afresh before acting.
		if meta, merr := w.c.Meta(ctx, vmid, host); merr == nil {
			m.UUID = meta.UUID
		}
	}
	if vmid != 0 {
		w.mu.Lock()
		if m.UUID == "" {
			w.fresh[vmid] = true // ours, never started: destroyable without its UUID
		} else {
			delete(w.fresh, vmid) // an earlier clone's mark under a vmid used again
		}
		w.mu.Unlock()
	}
	return m, err
}

func (w *Workers) host(ctx context.Context, vmid int) (string, error) {
	w.mu.Lock()
	h, ok := w.hosts[vmid]
	w.mu.Unlock()
	if ok {
		return h, nil
	}
	if _, _, err := w.Machines(ctx); err != nil {
		return "", err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if h, ok := w.hosts[vmid]; ok {
		return h, nil
	}
	return "", fmt.Errorf("VM %d not found", vmid)
}

// Configure sizes and tags, taking the MAC of a free DHCP reservation when
// proxmox.dhcp_reservations is set.
func (w *Workers) Configure(ctx context.Context, vmid int, step string) error {
	host, err := w.host(ctx, vmid)
	if err != nil {
		return err
	}
	mac := ""
	if w.dhcp {
		inv, err := w.c.Inventory(ctx)
		if err != nil {
			return err
		}
		var ip string
		if mac, ip, err = w.c.NextMAC(ctx, inv, vmid); err != nil {
			return err
		}
		w.mu.Lock()
		w.macIP[vmid] = ip
		w.mu.Unlock()
	}
	return w.c.Configure(ctx, vmid, host, mac, step)
}

// RecordStep re-tags the VM with the step reached.
func (w *Workers) RecordStep(ctx context.Context, vmid int, step string) error {
	return w.c.RecordStep(ctx, vmid, step)
}

// Start starts the VM.
func (w *Workers) Start(ctx context.Context, vmid int) error {
	w.mu.Lock()
	delete(w.fresh, vmid) // a machine runs (or may): no longer a fresh clone
	w.mu.Unlock()
	return w.c.Start(ctx, vmid)
}

// Address is the VM's IP: from the DHCP reservations, or the guest agent.
func (w *Workers) Address(ctx context.Context, vmid int) (string, error) {
	w.mu.Lock()
	ip, ok := w.macIP[vmid]
	w.mu.Unlock()
	if ok {
		return ip, nil
	}
	if w.dhcp {
		if ip, err := w.c.ReservedAddress(ctx, vmid); err == nil {
			return ip, nil
		}
	}
	host, err := w.host(ctx, vmid)
	if err != nil {
		return "", err
	}
	return w.c.WaitIP(ctx, vmid, host)
}

// sameMachine checks, on a fresh read, that the machine decided on is
// still the one under its vmid (a VM gone is no other machine). A machine
// decided on without its UUID (its config unreadable when listed, its
// host offline) is read afresh, and refused while it is still unknown
// (scaler.UnknownIdentityError): never destroyed nor stopped on an
// identity nobody knows. The exception: a clone this process made that
// never got its UUID read (fresh), which never started.
func (w *Workers) sameMachine(ctx context.Context, m scaler.Machine, op string) error {
	if m.UUID == "" {
		w.mu.Lock()
		fresh := w.fresh[m.VMID]
		w.mu.Unlock()
		if fresh && op == "destroy" {
			return nil
		}
		now, err := w.c.CheckIdentity(ctx, m, op)
		switch {
		case errors.Is(err, ErrGone):
			return nil
		case err != nil:
			return fmt.Errorf("%w (%v)", &scaler.UnknownIdentityError{VMID: m.VMID, Op: op}, err)
		case now == "":
			return &scaler.UnknownIdentityError{VMID: m.VMID, Op: op}
		}
		return nil
	}
	if _, err := w.c.CheckIdentity(ctx, m, op); err != nil && !errors.Is(err, ErrGone) {
		return err
	}
	return nil
}

// Destroy stops and destroys one of our VMs (destroy), once the machine
// decided on is still the one under its vmid; a VM gone is success.
func (w *Workers) Destroy(ctx context.Context, m scaler.Machine) error {
	vmid := m.VMID
	if err := w.sameMachine(ctx, m, "destroy"); err != nil {
		return err
	}
	err := w.c.destroy(ctx, vmid)
	if err == nil {
		w.mu.Lock()
		delete(w.hosts, vmid)
		delete(w.macIP, vmid)
		delete(w.fresh, vmid)
		w.mu.Unlock()
	}
	return err
}

// Gone reads the VM directly: true only when PVE says it does not exist.
func (w *Workers) Gone(ctx context.Context, vmid int) (bool, error) { return w.c.Gone(ctx, vmid) }

// Sane checks that the VM list can be trusted to show what is missing.
func (w *Workers) Sane(ctx context.Context) error { return w.c.Sane(ctx) }

// PowerOff shuts the VM down and keeps it (a standby worker), once the
// machine decided on is still the one under its vmid.
func (w *Workers) PowerOff(ctx context.Context, m scaler.Machine) error {
	if err := w.sameMachine(ctx, m, "power off"); err != nil {
		return err
	}
	return w.c.PowerOff(ctx, m.VMID)
}

// IdentityChangedError means the VM's SMBIOS UUID is no longer the one
// listed: another machine under the same vmid, not the one decided on.
type IdentityChangedError struct {
	VMID     int
	Listed   string
	Now      string
	Op       string
	NodeName string
}

func (e *IdentityChangedError) Error() string {
	return fmt.Sprintf("%s %s: VM %d's SMBIOS UUID is %s now, %s when listed: another machine under the same vmid; not touching it",
		e.Op, e.NodeName, e.VMID, e.Now, e.Listed)
}

// CheckIdentity reads the SMBIOS UUID of the VM under m's vmid afresh
// (Identity) before op acts on m: when the listing knew m's UUID, the two
// must agree (else an IdentityChangedError). It returns the UUID read; a
// VM gone gives an error wrapping ErrGone.
func (c *Client) CheckIdentity(ctx context.Context, m scaler.Machine, op string) (string, error) {
	now, err := c.Identity(ctx, m.VMID)
	if err != nil {
		return "", fmt.Errorf("%s %s: reading VM %d's SMBIOS UUID: %w", op, m.Name, m.VMID, err)
	}
	if listed := strings.ToLower(m.UUID); listed != "" && now != listed {
		return "", &IdentityChangedError{VMID: m.VMID, Listed: listed, Now: now, Op: op, NodeName: m.Name}
	}
	return now, nil
}

var _ scaler.Infra = (*Workers)(nil)
