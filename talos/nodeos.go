package talos

import (
	"context"
	"errors"
	"strings"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// Identities reads a VM's SMBIOS UUID afresh and checks it against the
// one listed (proxmox.Client.CheckIdentity).
type Identities interface {
	CheckIdentity(ctx context.Context, m scaler.Machine, op string) (string, error)
}

// NodeOS is scaler.NodeOS over the Client: a config or a reset goes only
// to the machine that reports the VM's SMBIOS UUID.
type NodeOS struct {
	Client *Client
	// Identities, when set, is asked for the VM's SMBIOS UUID afresh right
	// before a config or a reset leaves; nil: m.UUID as listed.
	Identities Identities
}

var _ scaler.NodeOS = NodeOS{}

func node(m scaler.Machine, ip, uuid string) Node {
	return Node{Name: m.Name, VMID: m.VMID, Host: m.Host, IP: ip, UUID: uuid, Standby: m.ForStandby, Pool: m.Pool}
}

// uuid is the SMBIOS UUID the machine at the VM's address must report for
// op to go ahead: the VM's, read afresh; when the listing knew it
// (m.UUID), the two must agree.
func (o NodeOS) uuid(ctx context.Context, m scaler.Machine, op string) (string, error) {
	if o.Identities == nil {
		return strings.ToLower(m.UUID), nil
	}
	return o.Identities.CheckIdentity(ctx, m, "talos "+op)
}

// Apply sends the worker config in maintenance mode, to the machine only
// if it reports the VM's SMBIOS UUID.
func (o NodeOS) Apply(ctx context.Context, m scaler.Machine, ip string) error {
	id, err := o.uuid(ctx, m, "apply")
	if err != nil {
		return err
	}
	return o.Client.Apply(ctx, node(m, ip, id))
}

// Reset resets the node gracefully, only if it reports the VM's SMBIOS UUID.
func (o NodeOS) Reset(ctx context.Context, m scaler.Machine, ip string) error {
	id, err := o.uuid(ctx, m, "reset")
	if err != nil {
		return err
	}
	return o.Client.Reset(ctx, node(m, ip, id))
}

// Unreachable reports a node that did not answer.
func (o NodeOS) Unreachable(err error) bool {
	var ue *UnreachableError
	return errors.As(err, &ue)
}
