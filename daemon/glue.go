// Package daemon wires the adapters (proxmox, talos, kube) to the
// reconciler's small interfaces, and runs the loop with its HTTP endpoints.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pve-autoscaler/pve-autoscaler/kube"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
	"github.com/pve-autoscaler/pve-autoscaler/talos"
)

// Infra adapts the proxmox adapter to scaler.Infra.
type Infra struct {
	PVE *proxmox.Client

	mu       sync.Mutex
	reserved map[string]int64 // memory promised to clones not yet visible
	memory   int64
	hosts    map[int]string // vmid -> host, as last seen
	macIP    map[int]string // vmid -> IP from the MAC/IP pool
	pool     bool
	// untaggedSaid: VMs named like ours without our tags, logged once.
	untaggedSaid map[int]bool
}

// NewInfra builds the glue; vmMemory is the worker VM's memory in bytes.
func NewInfra(pve *proxmox.Client, vmMemory int64, macPool bool) *Infra {
	return &Infra{PVE: pve, memory: vmMemory, pool: macPool, reserved: map[string]int64{}, hosts: map[int]string{}, macIP: map[int]string{}, untaggedSaid: map[int]bool{}}
}

// Machines lists our VMs (those passing the ownership rule's list part) and the hosts' room.
func (i *Infra) Machines(ctx context.Context) ([]scaler.Machine, []scaler.Host, error) {
	inv, err := i.PVE.Inventory(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []scaler.Machine
	template, templateRead := "", false
	add := func(v proxmox.VM, step string) error {
		m := scaler.Machine{VMID: v.VMID, Name: v.Name, Host: v.Host, Running: v.Status == "running", Stopped: v.Status == "stopped", Step: step, Locked: v.Lock != ""}
		if s, ok := strings.CutPrefix(step, scaler.PoolPrefix); ok {
			m.Step, m.ForStandby = s, true // a build for the warm pool
		}
		if step == scaler.StepJoined || step == scaler.StepRemoving {
			// The SMBIOS UUID and the description's marker, read once per
			// VM. Unreadable (its host offline): the UUID is unknown, the
			// listing goes on; OS and Destroy read afresh before acting.
			if meta, err := i.PVE.Meta(ctx, v.VMID, v.Host); err == nil {
				if !meta.Ours {
					return nil // tagged, but without our marker: not ours
				}
				m.UUID = meta.UUID
			}
		} else {
			// Read once per VM (descriptions do not change): no request per tick.
			meta, err := i.PVE.Meta(ctx, v.VMID, v.Host)
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
			if step == scaler.StepStandby && meta.Template != "" {
				if !templateRead {
					// At most one request per five minutes (cached by the adapter).
					template, _ = i.PVE.TemplateDigest(ctx, inv)
					templateRead = true
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
		if err := add(v, proxmox.Step(v)); err != nil {
			return nil, nil, err
		}
	}
	// A VM with our name but without our tags is not ours (the ownership
	// rule): a person may have removed them to keep the worker, or a crash
	// came between a clone and its tagging. It is never touched; it is
	// said once.
	i.mu.Lock()
	for _, v := range inv.Untagged {
		if !i.untaggedSaid[v.VMID] {
			i.untaggedSaid[v.VMID] = true
			i.PVE.Log().Warn("a VM with our name prefix in our vmid range has no pve-autoscaler tags: not ours, left alone (delete it by hand if it is a leftover clone)",
				zap.Int("vmid", v.VMID), zap.String("name", v.Name), zap.String("host", v.Host))
		}
	}
	i.mu.Unlock()
	i.mu.Lock()
	for _, m := range out {
		i.hosts[m.VMID] = m.Host
	}
	var hosts []scaler.Host
	for _, h := range inv.Hosts {
		// The engine subtracts the reserve itself.
		hosts = append(hosts, scaler.Host{Name: h.Name, Online: h.Online, MemoryFree: i.PVE.Free(h, i.reserved[h.Name]) + i.PVE.Reserve()})
	}
	i.mu.Unlock()
	return out, hosts, nil
}

// Create places, allocates and clones one VM.
func (i *Infra) Create(ctx context.Context, only []string) (scaler.Machine, error) {
	inv, err := i.PVE.Inventory(ctx)
	if err != nil {
		return scaler.Machine{}, err
	}
	i.mu.Lock()
	host, err := i.PVE.Place(inv, i.reserved, only...)
	if err == nil {
		i.reserved[host] += i.memory
	}
	i.mu.Unlock()
	if err != nil {
		return scaler.Machine{}, err
	}
	defer func() {
		i.mu.Lock()
		i.reserved[host] -= i.memory
		i.mu.Unlock()
	}()
	vmid, err := i.PVE.CloneNew(ctx, inv, host)
	m := scaler.Machine{VMID: vmid, Name: i.PVE.Name(vmid), Host: host, Step: scaler.StepCloned, Created: i.PVE.Now()}
	if err == nil {
		i.mu.Lock()
		i.hosts[vmid] = host
		i.mu.Unlock()
		// The clone's new SMBIOS UUID (cached for the listings after).
		// Unreadable now: unknown, and OS reads it afresh before acting.
		if meta, merr := i.PVE.Meta(ctx, vmid, host); merr == nil {
			m.UUID = meta.UUID
		}
	}
	return m, err
}

func (i *Infra) host(ctx context.Context, vmid int) (string, error) {
	i.mu.Lock()
	h, ok := i.hosts[vmid]
	i.mu.Unlock()
	if ok {
		return h, nil
	}
	if _, _, err := i.Machines(ctx); err != nil {
		return "", err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if h, ok := i.hosts[vmid]; ok {
		return h, nil
	}
	return "", fmt.Errorf("VM %d not found", vmid)
}

// Configure sizes and tags, taking a MAC of the pool when configured.
func (i *Infra) Configure(ctx context.Context, vmid int, step string) error {
	host, err := i.host(ctx, vmid)
	if err != nil {
		return err
	}
	mac := ""
	if i.pool {
		inv, err := i.PVE.Inventory(ctx)
		if err != nil {
			return err
		}
		var ip string
		if mac, ip, err = i.PVE.NextMAC(ctx, inv, vmid); err != nil {
			return err
		}
		i.mu.Lock()
		i.macIP[vmid] = ip
		i.mu.Unlock()
	}
	return i.PVE.Configure(ctx, vmid, host, mac, step)
}

// Record re-tags the VM with its step.
func (i *Infra) Record(ctx context.Context, vmid int, step string) error {
	return i.PVE.SetStep(ctx, vmid, step)
}

// Start starts the VM.
func (i *Infra) Start(ctx context.Context, vmid int) error { return i.PVE.Start(ctx, vmid) }

// Address is the VM's IP: from the MAC/IP pool, or the guest agent.
func (i *Infra) Address(ctx context.Context, vmid int) (string, error) {
	i.mu.Lock()
	ip, ok := i.macIP[vmid]
	i.mu.Unlock()
	if ok {
		return ip, nil
	}
	if i.pool {
		if ip, err := i.PVE.PoolAddress(ctx, vmid); err == nil {
			return ip, nil
		}
	}
	host, err := i.host(ctx, vmid)
	if err != nil {
		return "", err
	}
	return i.PVE.WaitIP(ctx, vmid, host)
}

// sameMachine checks, on a fresh read, that the machine decided on is
// still the one under its vmid (a VM gone is no other machine).
func (i *Infra) sameMachine(ctx context.Context, m scaler.Machine, op string) error {
	listed := strings.ToLower(m.UUID)
	if listed == "" {
		return nil
	}
	now, err := i.PVE.Identity(ctx, m.VMID)
	switch {
	case errors.Is(err, proxmox.ErrGone):
	case err != nil:
		return fmt.Errorf("%s %d: reading its SMBIOS UUID: %w", op, m.VMID, err)
	case now != listed:
		return &IdentityChangedError{VMID: m.VMID, Listed: listed, Now: now, Op: op, NodeName: m.Name}
	}
	return nil
}

// Destroy removes the VM.
func (i *Infra) Destroy(ctx context.Context, m scaler.Machine) error {
	vmid := m.VMID
	if err := i.sameMachine(ctx, m, "destroy"); err != nil {
		return err
	}
	err := i.PVE.Cleanup(ctx, vmid)
	if err == nil {
		i.mu.Lock()
		delete(i.hosts, vmid)
		delete(i.macIP, vmid)
		i.mu.Unlock()
	}
	return err
}

// Gone reads the VM directly: true only when PVE says it does not exist.
func (i *Infra) Gone(ctx context.Context, vmid int) (bool, error) { return i.PVE.Gone(ctx, vmid) }

// Sane checks that the VM list can be trusted to show what is missing.
func (i *Infra) Sane(ctx context.Context) error { return i.PVE.Sane(ctx) }

// PowerOff shuts the VM down and keeps it (the warm pool), once the
// machine decided on is still the one under its vmid.
func (i *Infra) PowerOff(ctx context.Context, m scaler.Machine) error {
	if err := i.sameMachine(ctx, m, "power off"); err != nil {
		return err
	}
	return i.PVE.PowerOff(ctx, m.VMID)
}

// OS adapts the talos adapter.
type OS struct {
	Talos *talos.Client
	// PVE, when set, is asked for the VM's SMBIOS UUID afresh right before
	// a config or a reset leaves (Identity); nil: m.UUID as listed.
	PVE *proxmox.Client
}

func node(m scaler.Machine, ip, uuid string) talos.Node {
	return talos.Node{Name: m.Name, VMID: m.VMID, Host: m.Host, IP: ip, UUID: uuid, Standby: m.ForStandby}
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

// uuid is the SMBIOS UUID the machine at the VM's address must report for
// op to go ahead: the VM's, read afresh from PVE; when the listing knew it
// (m.UUID), the two must agree.
func (o OS) uuid(ctx context.Context, m scaler.Machine, op string) (string, error) {
	listed := strings.ToLower(m.UUID)
	if o.PVE == nil {
		return listed, nil
	}
	now, err := o.PVE.Identity(ctx, m.VMID)
	if err != nil {
		return "", fmt.Errorf("talos %s %s: reading VM %d's SMBIOS UUID: %w", op, m.Name, m.VMID, err)
	}
	if listed != "" && now != listed {
		return "", &IdentityChangedError{VMID: m.VMID, Listed: listed, Now: now, Op: "talos " + op, NodeName: m.Name}
	}
	return now, nil
}

// Apply sends the worker config in maintenance mode, to the machine only
// if it reports the VM's SMBIOS UUID.
func (o OS) Apply(ctx context.Context, m scaler.Machine, ip string) error {
	id, err := o.uuid(ctx, m, "apply")
	if err != nil {
		return err
	}
	return o.Talos.Apply(ctx, node(m, ip, id))
}

// Reset resets the node gracefully, only if it reports the VM's SMBIOS UUID.
func (o OS) Reset(ctx context.Context, m scaler.Machine, ip string) error {
	id, err := o.uuid(ctx, m, "reset")
	if err != nil {
		return err
	}
	return o.Talos.Reset(ctx, node(m, ip, id))
}

// Unreachable reports a node that did not answer.
func (o OS) Unreachable(err error) bool {
	var ue *talos.UnreachableError
	return errors.As(err, &ue)
}

// Cluster adapts the kube adapter.
type Cluster struct{ Kube *kube.Client }

// Snapshot is the kube snapshot.
func (c Cluster) Snapshot(ctx context.Context, now time.Time) (scaler.Snapshot, error) {
	return c.Kube.Snapshot(ctx, now)
}

// WaitReady waits for the node.
func (c Cluster) WaitReady(ctx context.Context, name string, timeout time.Duration) error {
	return c.Kube.WaitReady(ctx, name, timeout, nil)
}

// SetRemovalStep records the removal step on the node, with the machine's
// SMBIOS UUID ("" clears both).
func (c Cluster) SetRemovalStep(ctx context.Context, name, step, uuid string) error {
	var v, of *string
	if step != "" {
		v, of = &step, &uuid
	}
	return c.Kube.Annotate(ctx, name, nil, map[string]*string{scaler.AnnotationRemoval: v, scaler.AnnotationRemovalOf: of})
}

// Cordon cordons or uncordons.
func (c Cluster) Cordon(ctx context.Context, name string, on bool) error {
	return c.Kube.SetCordon(ctx, name, on)
}

// SetStandby taints or untaints the node for the warm pool.
func (c Cluster) SetStandby(ctx context.Context, name string, on bool) error {
	return c.Kube.SetStandby(ctx, name, on)
}

// Drain drains the node.
func (c Cluster) Drain(ctx context.Context, name string) error { return c.Kube.Drain(ctx, name) }

// DeleteNode deletes the Node object while it is still n's machine.
func (c Cluster) DeleteNode(ctx context.Context, n scaler.Node) error {
	return c.Kube.DeleteNode(ctx, n)
}

// NodeOf reads the Node of m's identity from the API server.
func (c Cluster) NodeOf(ctx context.Context, m scaler.Machine) (*scaler.Node, error) {
	return c.Kube.NodeOf(ctx, m)
}

// Event records an Event on the node.
func (c Cluster) Event(n, t, reason, msg string) { c.Kube.Event(n, t, reason, msg) }

// PodEvent records an Event on a pod.
func (c Cluster) PodEvent(ns, name, t, reason, msg string) { c.Kube.PodEvent(ns, name, t, reason, msg) }
