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

// Privileges returns the token's effective privileges on "/", where
// pve-autoscaler's steps need them (GET /access/permissions).
func (c *Client) Privileges(ctx context.Context) (map[string]bool, error) {
	var perms map[string]map[string]int
	if err := apiErr(c.api.Get(ctx, "/access/permissions?path=/", &perms)); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for p := range perms["/"] {
		out[p] = true
	}
	return out, nil
}

// Need is the privileges one step needs.
type Need struct {
	Step       string
	Privileges []string
}

// Needs lists the privileges each step needs on the given PVE version
// (deploy/proxmox-role.md): PVE 9 reads the guest agent with
// VM.GuestAgent.Audit, PVE 8 with VM.Monitor. Without the guest agent
// (a MAC/IP pool) that step is not needed.
func Needs(version string, agent bool) []Need {
	needs := []Need{
		{"inventory", []string{"VM.Audit", "Sys.Audit", "Datastore.Audit"}},
		{"clone", []string{"VM.Clone", "VM.Allocate", "Datastore.AllocateSpace", "SDN.Use"}},
		{"configure", []string{"VM.Config.CPU", "VM.Config.Memory", "VM.Config.Options", "VM.Config.Network", "VM.Config.Cloudinit"}},
		{"start and stop", []string{"VM.PowerMgmt"}},
		{"destroy", []string{"VM.Allocate"}},
	}
	if agent {
		priv := "VM.GuestAgent.Audit"
		if Major(version) < 9 {
			priv = "VM.Monitor"
		}
		needs = append(needs, Need{"read the address from the guest agent", []string{priv}})
	}
	return needs
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
}

var diskKey = regexp.MustCompile(`^(scsi|virtio|sata|ide)[0-9]+$`)

// Template reads the template's configuration.
func (c *Client) Template(ctx context.Context, inv Inventory) (TemplateInfo, error) {
	if inv.Template == nil {
		return TemplateInfo{}, fmt.Errorf("proxmox.template %s not found in the cluster (or the token may not see it)", c.cfg.Template)
	}
	t := inv.Template
	var cfg map[string]any
	if err := apiErr(c.api.Get(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/config", t.Host, t.VMID), &cfg)); err != nil {
		return TemplateInfo{}, fmt.Errorf("template %d config: %w", t.VMID, err)
	}
	info := TemplateInfo{VMID: t.VMID, Name: t.Name, Host: t.Host, Template: t.Template}
	agent := fmt.Sprint(cfg["agent"])
	info.Agent = agent == "1" || strings.Contains(agent, "enabled=1")
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
	free := c.Free(h, 0)
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
