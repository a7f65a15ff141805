package proxmox

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

// What doctor asks PVE: its version, the token's privileges, the
// template's configuration and the storages' room. All reads.

// Version is PVE's version ("9.0.3").
func (c *Client) Version(ctx context.Context) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	if err := apiErr(c.api.Get(ctx, "/version", &v)); err != nil {
		return "", err
	}
	return v.Version, nil
}

// PermissionsOn returns the token's effective privileges on one ACL path
// (GET /access/permissions?path=...): what PVE grants there through
// propagation and, for a pool member, through its pool.
func (c *Client) PermissionsOn(ctx context.Context, path string) (map[string]bool, error) {
	var perms map[string]map[string]int
	if err := apiErr(c.api.Get(ctx, "/access/permissions?path="+url.QueryEscape(path), &perms)); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for p := range perms[path] {
		out[p] = true
	}
	return out, nil
}

// VMPath is the ACL path the VM privileges are granted on: the resource
// pool's (/pool/NAME) when one is configured, else /vms.
func VMPath(p config.Proxmox) string {
	if pool := p.ResourcePoolName(); pool != "" {
		return "/pool/" + pool
	}
	return "/vms"
}

// Need is the privileges one step needs.
type Need struct {
	Step       string
	Privileges []string
}

// Grant is what the steps need on one ACL path (deploy/proxmox-role.md).
type Grant struct {
	Path  string
	Needs []Need
}

// Scope is what decides the grants: the config, PVE's version, and what
// doctor learnt of the template (zero values: not known, left out).
type Scope struct {
	Proxmox config.Proxmox
	Version string
	// Template is the template's vmid; Storage the storage clones go to;
	// Bridge the template's net0 bridge.
	Template int
	Storage  string
	Bridge   string
	// Hosts are the PVE nodes workers may be placed on.
	Hosts []string
	// Mappings are the PCI resource mappings the pools pass through
	// (hostpciN: mapping=ID), sorted.
	Mappings []string
}

// AgentPrivilege is the privilege reading the guest agent needs: PVE 9
// has VM.GuestAgent.Audit, PVE 8 VM.Monitor.
func AgentPrivilege(version string) string {
	if Major(version) < 9 {
		return "VM.Monitor"
	}
	return "VM.GuestAgent.Audit"
}

// Grants lists the privileges each step needs, by ACL path: the VMs' path
// (the pool's, or /vms), the template (a pool member, or covered by
// /vms), each node, the clones' storage and the template's bridge
// (/sdn/zones/localnetwork/BRIDGE for a plain Linux bridge), and each PCI
// mapping a pool passes through (/mapping/pci/ID).
func Grants(s Scope) []Grant {
	p := s.Proxmox
	configure := []string{"VM.Config.CPU", "VM.Config.Memory", "VM.Config.Options"}
	if len(p.DHCPReservations) > 0 {
		configure = append(configure, "VM.Config.Network") // net0 takes a reserved MAC
	}
	vms := []Need{
		{"inventory", []string{"VM.Audit"}},
		{"clone", []string{"VM.Clone", "VM.Allocate"}},
		{"configure", configure},
		{"start and stop", []string{"VM.PowerMgmt"}},
		{"destroy", []string{"VM.Allocate"}},
	}
	if len(p.DHCPReservations) == 0 {
		vms = append(vms, Need{"read the address from the guest agent", []string{AgentPrivilege(s.Version)}})
	}
	if len(s.Mappings) > 0 {
		// PVE checks hostpciN like the other hardware-type options.
		vms = append(vms, Need{"pass a PCI device through (hostpciN)", []string{"VM.Config.HWType"}})
	}
	out := []Grant{{Path: VMPath(p), Needs: vms}}
	if s.Template != 0 {
		out = append(out, Grant{Path: fmt.Sprintf("/vms/%d", s.Template), Needs: []Need{{"clone the template", []string{"VM.Audit", "VM.Clone"}}}})
	}
	for _, h := range s.Hosts {
		out = append(out, Grant{Path: "/nodes/" + h, Needs: []Need{{"inventory (the host's memory)", []string{"Sys.Audit"}}}})
	}
	if s.Storage != "" {
		out = append(out, Grant{Path: "/storage/" + s.Storage, Needs: []Need{{"clone (disk space)", []string{"Datastore.AllocateSpace"}}, {"storage room", []string{"Datastore.Audit"}}}})
	}
	if s.Bridge != "" {
		out = append(out, Grant{Path: "/sdn/zones/localnetwork/" + s.Bridge, Needs: []Need{{"clone onto the template's bridge", []string{"SDN.Use"}}}})
	}
	for _, m := range s.Mappings {
		out = append(out, Grant{Path: "/mapping/pci/" + m, Needs: []Need{{"pass the mapped device through", []string{"Mapping.Use"}}}})
	}
	return out
}

// Major is a version's major number (0 when unreadable).
func Major(version string) int {
	n, _ := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	return n
}

// TemplateInfo is what doctor checks about the template.
type TemplateInfo struct {
	VMID     int
	Name     string
	Host     string
	Template bool
	Agent    bool
	// Storage and Disk are the boot disk's storage and size in bytes.
	Storage string
	Disk    int64
	// Bridge is net0's bridge ("vmbr0").
	Bridge string
}

var diskKey = regexp.MustCompile(`^(scsi|virtio|sata|ide)[0-9]+$`)

// Template reads the template's configuration.
func (c *Client) Template(ctx context.Context, inv Inventory) (TemplateInfo, error) {
	if inv.Template == nil {
		return TemplateInfo{}, c.noTemplate(inv, c.pools[0].Name)
	}
	t := inv.Template
	var cfg map[string]any
	if err := apiErr(c.api.Get(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/config", t.Host, t.VMID), &cfg)); err != nil {
		return TemplateInfo{}, fmt.Errorf("template %d config: %w", t.VMID, err)
	}
	info := TemplateInfo{VMID: t.VMID, Name: t.Name, Host: t.Host, Template: t.Template}
	agent := fmt.Sprint(cfg["agent"])
	info.Agent = agent == "1" || strings.Contains(agent, "enabled=1")
	if n, ok := cfg["net0"].(string); ok {
		info.Bridge = bridgeOf(n)
	}
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		if diskKey.MatchString(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	boot := fmt.Sprint(cfg["boot"])
	for _, k := range keys {
		v := fmt.Sprint(cfg[k])
		if strings.Contains(v, "media=cdrom") {
			continue
		}
		if info.Storage != "" && !strings.Contains(boot, k) {
			continue
		}
		info.Storage, _, _ = strings.Cut(v, ":")
		info.Disk = diskSize(v)
	}
	return info, nil
}

// diskSize reads size=10G (K, M, G, T) from a disk's option string.
func diskSize(opt string) int64 {
	for _, f := range strings.Split(opt, ",") {
		v, ok := strings.CutPrefix(f, "size=")
		if !ok || v == "" {
			continue
		}
		mult := int64(1)
		switch v[len(v)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			v = v[:len(v)-1]
		}
		n, err := strconv.ParseFloat(v, 64)
		if err == nil {
			return int64(n * float64(mult))
		}
	}
	return 0
}

// StorageRoom is one storage's size and use as one host sees it.
type StorageRoom struct {
	Host, Storage string
	Total, Used   int64
	Shared        bool
}

// Storages lists the storages by host (GET /cluster/resources?type=storage).
func (c *Client) Storages(ctx context.Context) ([]StorageRoom, error) {
	var res []struct {
		Node    string `json:"node"`
		Storage string `json:"storage"`
		MaxDisk int64  `json:"maxdisk"`
		Disk    int64  `json:"disk"`
		Shared  int    `json:"shared"`
		Status  string `json:"status"`
	}
	if err := apiErr(c.api.Get(ctx, "/cluster/resources?type=storage", &res)); err != nil {
		return nil, err
	}
	out := make([]StorageRoom, 0, len(res))
	for _, r := range res {
		if r.Status != "" && r.Status != "available" {
			continue
		}
		out = append(out, StorageRoom{Host: r.Node, Storage: r.Storage, Total: r.MaxDisk, Used: r.Disk, Shared: r.Shared == 1})
	}
	return out, nil
}

// Room is how many workers of the configured size fit on a host now, after
// the reserve and the memory promised to our VMs not yet running.
func (c *Client) Room(h Host) int {
	free := c.spare(h, 0)
	if m := c.vmMemory(); m > 0 && free > 0 {
		return int(free / m)
	}
	return 0
}

// PeerFingerprint connects to the PVE API's address without verifying it
// and returns the SHA-256 fingerprint of the certificate it presents, for
// doctor to suggest as proxmox.tls.fingerprint. Nothing is sent.
func PeerFingerprint(ctx context.Context, rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "8006")
	}
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only reads the certificate to show it
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", fmt.Errorf("%s presented no certificate", host)
	}
	sum := sha256.Sum256(certs[0].Raw)
	return fingerprint(sum[:]), nil
}
