// Package pvesim is a Proxmox VE API simulator: an HTTPS server on loopback
// that answers the endpoints pve-autoscaler uses with PVE's own shapes (the
// {"data": ...} envelope, the error text in the HTTP status line and the
// body, 400 parameter errors with their errors map, API-token and ticket
// auth, asynchronous UPID tasks, locks, cluster/nextid as a string) and
// PVE's behaviour (docs: ../shared/docs/PVE-API.md), with latencies on an
// injectable clock, faults to inject from Go, request counters, and VM
// lifecycle events for other simulators to follow.
//
// # What it models, and how faithfully
//
// SMBIOS identity: every VM has an smbios1 value, shown by GET
// .../config as PVE prints it ("smbios1": "uuid=<uuid>", other smbios1
// fields such as manufacturer kept in PVE's comma-separated form). A VM
// made at start (World.VMs, World.Templates) gets a random RFC 4122
// version 4 UUID, as qm create does, unless its VMSpec names one; a
// clone gets a NEW random UUID (the source's other smbios1 fields are
// kept), as qemu-server's clone does: two VMs never share one. The
// config PUT/POST take smbios1 like other keys (VM.Config.HWType; a uuid
// that is not a UUID is a 400 "invalid format"). The UUID is what a
// guest reads from its SMBIOS table: the kubelet's systemUUID and Talos'
// SystemInformation. SetSMBIOSUUID changes it behind the scaler's back
// (the VM was replaced by another machine with the same vmid). Events
// carry the UUID the VM had then. Not modelled: vmgenid, which PVE also
// regenerates on clone, and smbios1's base64 encoding of the other fields.
package pvesim

import (
	crand "crypto/rand"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// World is the simulator's starting state and behaviour.
type World struct {
	Hosts     []HostSpec    `json:"hosts"`
	Storages  []StorageSpec `json:"storages"`
	Templates []VMSpec      `json:"templates"`
	// VMs are other guests present at start (not ours: the scaler must never touch them).
	VMs       []VMSpec    `json:"vms"`
	Tokens    []TokenSpec `json:"tokens"`
	Users     []UserSpec  `json:"users"`
	Latencies Latencies   `json:"latencies"`
	// IPPool is where started VMs' guest agents take their IPv4 from (default 127.0.0.0/24, from .10).
	IPPool string `json:"ip_pool"`
	// Version is what /version reports (default 9.0.3).
	Version string `json:"version"`
	// DHCP are the LAN's DHCP reservations: a VM whose net0 MAC has one
	// takes that address when it starts, with or without a guest agent
	// (which then reports it). Other VMs take the next address of IPPool.
	DHCP []DHCPReservation `json:"dhcp"`
	// PCIMappings are the cluster's PCI resource mappings (Datacenter >
	// Resource Mappings, PVE 8 and later).
	PCIMappings []PCIMappingSpec `json:"pci_mappings"`
	// Roles are custom roles (name: privileges) besides PVE's built-in ones.
	Roles map[string][]string `json:"roles"`
	// ACL grants roles to tokens and users by path (acl.go). A token or
	// user without an entry holds its Privileges (or Administrator) on "/".
	ACL []ACLSpec `json:"acl"`
	// Pools are resource pools and their members at start.
	Pools []PoolSpec `json:"pools"`
}

// PCIMappingSpec is a cluster-wide PCI resource mapping: per host, the
// device it stands for there. A VM uses it as hostpciN: mapping=ID, the
// only way an API token may pass a device through (a raw device is
// root@pam's alone); using it needs Mapping.Use on /mapping/pci/ID.
type PCIMappingSpec struct {
	ID          string        `json:"id"`
	Description string        `json:"description"`
	Map         []PCIMapEntry `json:"map"`
}

// PCIMapEntry is a mapping's device on one host.
type PCIMapEntry struct {
	Node string `json:"node"`
	Path string `json:"path"` // 0000:00:02.0
	ID   string `json:"id"`   // vendor:device, 8086:46a3
}

// entry is the mapping's device on node, if it has one there.
func (m PCIMappingSpec) entry(node string) (PCIMapEntry, bool) {
	for _, e := range m.Map {
		if e.Node == node {
			return e, true
		}
	}
	return PCIMapEntry{}, false
}

// DHCPReservation is one DHCP reservation of the LAN: MAC to IPv4.
type DHCPReservation struct {
	MAC string `json:"mac"`
	IP  string `json:"ip"`
}

// HostSpec is a PVE node.
type HostSpec struct {
	Name    string `json:"name"`
	Cores   int    `json:"cores"`
	Memory  int64  `json:"memory"` // bytes
	Offline bool   `json:"offline"`
}

// StorageSpec is a storage; Shared ones are reachable from every host.
type StorageSpec struct {
	Name   string `json:"name"`
	Shared bool   `json:"shared"`
	Size   int64  `json:"size"` // bytes
}

// VMSpec is a VM or template present at start.
type VMSpec struct {
	VMID     int    `json:"vmid"`
	Name     string `json:"name"`
	Host     string `json:"host"`
	Storage  string `json:"storage"`
	Cores    int    `json:"cores"`
	Memory   int64  `json:"memory"` // MiB
	Disk     int64  `json:"disk"`   // bytes
	Agent    bool   `json:"agent"`
	Template bool   `json:"template"`
	Running  bool   `json:"running"`
	Tags     string `json:"tags"`
	// UUID is the SMBIOS UUID (smbios1 uuid=); empty: a random version 4
	// UUID, as PVE generates for a new VM.
	UUID string `json:"uuid"`
}

// TokenSpec is an API token. Without an entry in World.ACL, it holds
// Privileges on "/" (nil: every privilege, the role Administrator).
type TokenSpec struct {
	ID string `json:"id"` // user@realm!name
	// Secret empty: a random UUID, as PVE generates (read it with TokenSecret).
	Secret     string   `json:"secret"`
	Privileges []string `json:"privileges"`
}

// UserSpec is a user for ticket (password) auth.
type UserSpec struct {
	Name     string `json:"name"` // user@realm
	Password string `json:"password"`
}

// Latencies are in simulated time.
type Latencies struct {
	LinkedClone time.Duration `json:"linked_clone"`
	// FullCloneBandwidth is bytes per second shared by the full clones running at once.
	FullCloneBandwidth int64         `json:"full_clone_bandwidth"`
	Start              time.Duration `json:"start"`
	Stop               time.Duration `json:"stop"`
	Shutdown           time.Duration `json:"shutdown"`
	Destroy            time.Duration `json:"destroy"`
	Config             time.Duration `json:"config"`
	// ConfigWrite is how long a synchronous config write (PUT) takes to
	// land and answer (default 0: at once); tests slow it to open the
	// window between reading configs and a write landing.
	ConfigWrite time.Duration `json:"config_write"`
	// Agent is how long after start the guest agent answers.
	Agent time.Duration `json:"agent"`
	// AuthFailure delays 401 answers (PVE: 3 s).
	AuthFailure time.Duration `json:"auth_failure"`
	// StorageLock is how long a clone waits for a storage lock before timing out.
	StorageLock time.Duration `json:"storage_lock"`
}

// DefaultLatencies are PVE-API.md's realistic figures.
func DefaultLatencies() Latencies {
	return Latencies{
		LinkedClone: 3 * time.Second, FullCloneBandwidth: 200 << 20,
		Start: 2 * time.Second, Stop: time.Second, Shutdown: 5 * time.Second, Destroy: 2 * time.Second,
		Config: 500 * time.Millisecond, Agent: 15 * time.Second, AuthFailure: 3 * time.Second, StorageLock: 10 * time.Second,
	}
}

// FastLatencies is every latency at a few milliseconds, for tests.
func FastLatencies() Latencies {
	return Latencies{LinkedClone: 30 * time.Millisecond, FullCloneBandwidth: 10 << 30, Start: 10 * time.Millisecond, Stop: 10 * time.Millisecond,
		Shutdown: 10 * time.Millisecond, Destroy: 10 * time.Millisecond, Config: 5 * time.Millisecond, Agent: 30 * time.Millisecond,
		AuthFailure: 5 * time.Millisecond, StorageLock: 20 * time.Millisecond}
}

// DefaultWorld is three 32-core 64 GiB hosts, a shared storage holding the
// Talos template 9000 (agent on), local-lvm on each host, and the token
// autoscaler@pve!scaler with the given secret.
func DefaultWorld(secret string) World {
	w := World{
		Storages:  []StorageSpec{{Name: "shared", Shared: true, Size: 4 << 40}, {Name: "local-lvm", Size: 1 << 40}},
		Templates: []VMSpec{{VMID: 9000, Name: "talos-worker-template", Host: "pve1", Storage: "shared", Cores: 2, Memory: 2048, Disk: 10 << 30, Agent: true, Template: true}},
		Tokens:    []TokenSpec{{ID: "autoscaler@pve!scaler", Secret: secret}},
		Latencies: DefaultLatencies(),
	}
	for i := 1; i <= 3; i++ {
		w.Hosts = append(w.Hosts, HostSpec{Name: fmt.Sprintf("pve%d", i), Cores: 32, Memory: 64 << 30})
	}
	return w
}

// EventType is a VM lifecycle event.
type EventType string

const (
	EventCreated   EventType = "created"
	EventStarted   EventType = "started"
	EventStopped   EventType = "stopped"
	EventDestroyed EventType = "destroyed"
)

// Event tells observers what happened to a VM.
type Event struct {
	Type   EventType
	VMID   int
	Name   string
	Host   string
	IP     string
	Cores  int
	Memory int64 // MiB
	Tags   []string
	// UUID is the VM's SMBIOS UUID (smbios1 uuid=) at the time of the event.
	UUID string
}

type host struct {
	name    string
	cores   int
	memory  int64
	online  bool
	started time.Time
}

type storage struct {
	name   string
	shared bool
	size   int64
}

type vm struct {
	vmid        int
	name        string
	node        string
	running     bool
	template    bool
	cores       int
	memory      int64 // MiB
	pending     map[string]string
	tags        []string
	description string
	net0        string
	smbios1     string // PVE's smbios1 value, "uuid=..." and any other fields
	agent       bool
	lock        string
	storage     string
	disk        int64
	pool        string
	ip          string
	startedAt   time.Time
	agentAt     time.Time
	agentSilent bool
	ignoreACPI  bool
	digestN     int
	hostpci     map[string]string // "hostpci0" -> "mapping=igpu,pcie=1"
}

type task struct {
	upid, node, typ, id, user, tokenid string
	pid, pstart                        int
	start                              time.Time
	running                            bool
	exit                               string
	log                                []string
}

type token struct {
	secret string
}

// Sim is the simulated PVE cluster. Its methods are safe for concurrent use.
type Sim struct {
	clock Clock
	lat   Latencies

	mu        sync.Mutex
	version   string
	hosts     map[string]*host
	storages  map[string]*storage
	vms       map[int]*vm
	tasks     map[string]*task
	tokens    map[string]*token
	users     map[string]string
	tickets   map[string]string // ticket -> user
	csrf      map[string]string // ticket -> CSRF token
	ipPool    netip.Prefix
	nextIP    netip.Addr
	dhcp      map[string]string // upper-case MAC -> IPv4 (World.DHCP)
	rnd       *rand.Rand
	observers []func(Event)
	// requestHooks hear each request as it arrives (under s.mu).
	requestHooks []func(method, route string)
	// taskTime is the latency injected into tasks so far.
	taskTime time.Duration
	pidSeq   int

	faults   faults
	requests map[string]int
	writes   int
	cloning  map[string]int // storage -> clones running

	denied map[string]bool

	mappings map[string]PCIMappingSpec // PCI resource mappings by id
	roles    map[string][]string
	acl      []aclEntry
	pools    map[string]*resourcePool
}

type faults struct {
	warnNextTask   int
	failNextClone  string
	slowNextClone  time.Duration
	storageLockMax int
	agentSilentNew bool
	agentSilentN   int // the next agentSilentN clones have a silent agent
	failRequests   int
	failCode       int
	failMessage    string
	hangRequests   int
	hang           chan struct{}
	loseAnswer     string // "METHOD route": carried out, its answer never sent
}

// New builds a simulator from a world. clock nil means real time.
func New(w World, clock Clock) (*Sim, error) {
	if clock == nil {
		clock = NewScaledClock(1)
	}
	s := &Sim{
		clock: clock, lat: w.Latencies, version: w.Version,
		hosts: map[string]*host{}, storages: map[string]*storage{}, vms: map[int]*vm{},
		tasks: map[string]*task{}, tokens: map[string]*token{}, users: map[string]string{},
		tickets: map[string]string{}, csrf: map[string]string{},
		rnd:      rand.New(rand.NewPCG(1, 2)),
		requests: map[string]int{}, cloning: map[string]int{}, denied: map[string]bool{},
		mappings: map[string]PCIMappingSpec{},
	}
	for _, m := range w.PCIMappings {
		if _, dup := s.mappings[m.ID]; dup || m.ID == "" {
			return nil, fmt.Errorf("pvesim: PCI mapping %q defined twice or without an id", m.ID)
		}
		s.mappings[m.ID] = m
	}
	if s.version == "" {
		s.version = "9.0.3"
	}
	if (s.lat == Latencies{}) {
		s.lat = DefaultLatencies()
	}
	pool := w.IPPool
	if pool == "" {
		pool = "127.0.0.0/24"
	}
	p, err := netip.ParsePrefix(pool)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("pvesim: ip_pool %q: expected an IPv4 prefix such as 127.0.0.0/24", pool)
	}
	s.ipPool = p.Masked()
	s.dhcp = map[string]string{}
	for i, r := range w.DHCP {
		mac, err := net.ParseMAC(r.MAC)
		ip, ierr := netip.ParseAddr(r.IP)
		if err != nil || len(mac) != 6 || ierr != nil || !ip.Is4() {
			return nil, fmt.Errorf("pvesim: dhcp[%d]: expected a MAC and an IPv4 address, got %q and %q", i, r.MAC, r.IP)
		}
		s.dhcp[strings.ToUpper(mac.String())] = ip.String()
	}
	s.nextIP = s.ipPool.Addr()
	for range 10 {
		s.nextIP = s.nextIP.Next()
	}
	now := clock.Now()
	for _, h := range w.Hosts {
		if h.Name == "" || h.Cores < 1 || h.Memory < 1 {
			return nil, fmt.Errorf("pvesim: host %q: needs a name, cores and memory", h.Name)
		}
		s.hosts[h.Name] = &host{name: h.Name, cores: h.Cores, memory: h.Memory, online: !h.Offline, started: now.Add(-24 * time.Hour)}
	}
	for _, st := range w.Storages {
		s.storages[st.Name] = &storage{name: st.Name, shared: st.Shared, size: st.Size}
	}
	for _, list := range [][]VMSpec{w.Templates, w.VMs} {
		for _, v := range list {
			if s.hosts[v.Host] == nil {
				return nil, fmt.Errorf("pvesim: VM %d: unknown host %q", v.VMID, v.Host)
			}
			if s.storages[v.Storage] == nil {
				return nil, fmt.Errorf("pvesim: VM %d: unknown storage %q", v.VMID, v.Storage)
			}
			if s.vms[v.VMID] != nil || v.VMID < 100 {
				return nil, fmt.Errorf("pvesim: VM %d: duplicate or below 100", v.VMID)
			}
			tags, _ := normalizeTags(v.Tags)
			id := v.UUID
			if id == "" {
				id = NewUUID()
			} else if !uuidRE.MatchString(id) {
				return nil, fmt.Errorf("pvesim: VM %d: uuid %q is not a UUID", v.VMID, id)
			}
			nv := &vm{vmid: v.VMID, name: v.Name, node: v.Host, template: v.Template, cores: max(v.Cores, 1), memory: max(v.Memory, 512),
				tags: tags, agent: v.Agent, storage: v.Storage, disk: v.Disk, net0: "virtio=" + s.mac() + ",bridge=vmbr0", smbios1: "uuid=" + id}
			if v.Running && !v.Template {
				nv.running, nv.startedAt, nv.agentAt = true, now, now
				nv.ip = s.allocIP()
			}
			s.vms[v.VMID] = nv
		}
	}
	for _, t := range w.Tokens {
		tk := &token{secret: t.Secret}
		if tk.secret == "" {
			tk.secret = NewUUID() // PVE's token secrets are UUIDs
		}
		s.tokens[t.ID] = tk
	}
	for _, u := range w.Users {
		s.users[u.Name] = u.Password
	}
	if err := s.setupAccess(w); err != nil {
		return nil, err
	}
	return s, nil
}

// TokenSecret is an API token's secret (generated when the world left it empty).
func (s *Sim) TokenSecret(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tokens[id]; t != nil {
		return t.secret
	}
	return ""
}

// Subscribe registers an observer of VM lifecycle events. Observers run
// outside the simulator's lock, in the order events happen.
func (s *Sim) Subscribe(f func(Event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observers = append(s.observers, f)
}

func (s *Sim) event(t EventType, v *vm) Event {
	return Event{Type: t, VMID: v.vmid, Name: v.name, Host: v.node, IP: v.ip, Cores: v.cores, Memory: v.memory, Tags: append([]string(nil), v.tags...),
		UUID: smbiosUUID(v.smbios1)}
}

// NewUUID is a random RFC 4122 version 4 UUID, lower case, as PVE
// generates for smbios1.
func NewUUID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// uuidRE is PVE's smbios1 uuid format.
var uuidRE = regexp.MustCompile(`^[a-fA-F0-9]{8}(-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}$`)

// smbiosUUID reads uuid= from an smbios1 value.
func smbiosUUID(smbios1 string) string {
	for _, kv := range strings.Split(smbios1, ",") {
		if u, ok := strings.CutPrefix(kv, "uuid="); ok {
			return u
		}
	}
	return ""
}

// withUUID is an smbios1 value with its uuid replaced (added when absent),
// the other fields kept in their order.
func withUUID(smbios1, id string) string {
	var out []string
	found := false
	for _, kv := range strings.Split(smbios1, ",") {
		switch {
		case kv == "":
			continue
		case strings.HasPrefix(kv, "uuid="):
			kv, found = "uuid="+id, true
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, "uuid="+id)
	}
	return strings.Join(out, ",")
}

// emit delivers events; call without s.mu held.
func (s *Sim) emit(evs ...Event) {
	s.mu.Lock()
	obs := append([]func(Event){}, s.observers...)
	s.mu.Unlock()
	for _, e := range evs {
		for _, o := range obs {
			o(e)
		}
	}
}

func (s *Sim) mac() string {
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", s.rnd.IntN(256), s.rnd.IntN(256), s.rnd.IntN(256))
}

// startIP is the address a VM takes when it starts: its MAC's DHCP
// reservation, else the one it had, else the next of the pool.
func (s *Sim) startIP(v *vm) string {
	for _, kv := range strings.Split(v.net0, ",") {
		if _, m, ok := strings.Cut(kv, "="); ok {
			if mac, err := net.ParseMAC(m); err == nil {
				if ip, ok := s.dhcp[strings.ToUpper(mac.String())]; ok {
					return ip
				}
			}
		}
	}
	if v.ip != "" {
		return v.ip
	}
	return s.allocIP()
}

func (s *Sim) allocIP() string {
	ip := s.nextIP
	s.nextIP = s.nextIP.Next()
	if !s.ipPool.Contains(s.nextIP) {
		s.nextIP = s.ipPool.Addr().Next()
	}
	return ip.String()
}

// --- fault injection and inspection from Go ---

// FailNextClone makes the next clone task fail with msg (in the task, as PVE does).
func (s *Sim) FailNextClone(msg string) { s.mu.Lock(); s.faults.failNextClone = msg; s.mu.Unlock() }

// WarnNextTask makes the next task that would end "OK" end "WARNINGS: n"
// (PVE's success with warnings).
func (s *Sim) WarnNextTask(n int) { s.mu.Lock(); s.faults.warnNextTask = n; s.mu.Unlock() }

// SlowNextClone makes the next clone take d of simulated time.
func (s *Sim) SlowNextClone(d time.Duration) { s.mu.Lock(); s.faults.slowNextClone = d; s.mu.Unlock() }

// SetStorageLockLimit makes a clone fail with a storage lock timeout when
// more than n clones already run on its target storage (0: no limit).
func (s *Sim) SetStorageLockLimit(n int) { s.mu.Lock(); s.faults.storageLockMax = n; s.mu.Unlock() }

// SilenceAgentOfNewVMs makes the guest agent of VMs cloned from now on never answer.
func (s *Sim) SilenceAgentOfNewVMs(on bool) { s.mu.Lock(); s.faults.agentSilentNew = on; s.mu.Unlock() }

// SilenceAgentOfNextVMs makes the guest agent of the next n VMs cloned
// never answer (a count, not a time: a test under load cannot miss it).
func (s *Sim) SilenceAgentOfNextVMs(n int) { s.mu.Lock(); s.faults.agentSilentN = n; s.mu.Unlock() }

// SilenceAgent makes one VM's guest agent never answer.
func (s *Sim) SilenceAgent(vmid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.vms[vmid]; v != nil {
		v.agentSilent = true
	}
}

// IgnoreShutdown makes a VM ignore ACPI shutdown requests.
func (s *Sim) IgnoreShutdown(vmid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.vms[vmid]; v != nil {
		v.ignoreACPI = true
	}
}

// SetHostOnline takes a host offline (its VMs unreachable, requests through it 595) or back.
func (s *Sim) SetHostOnline(name string, online bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.hosts[name]; h != nil {
		h.online = online
	}
}

// DeleteVM removes a VM behind the scaler's back, as a person in the web UI would.
func (s *Sim) DeleteVM(vmid int) bool {
	s.mu.Lock()
	v := s.vms[vmid]
	if v == nil {
		s.mu.Unlock()
		return false
	}
	delete(s.vms, vmid)
	ev := s.event(EventDestroyed, v)
	s.mu.Unlock()
	s.emit(ev)
	return true
}

// MigrateVM moves a VM to another host, as HA or a migration would.
func (s *Sim) MigrateVM(vmid int, to string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vms[vmid]
	if v == nil || s.hosts[to] == nil {
		return fmt.Errorf("pvesim: no VM %d or host %q", vmid, to)
	}
	v.node = to
	return nil
}

// FailRequests answers the next n API requests with code and message.
func (s *Sim) FailRequests(n, code int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.failRequests, s.faults.failCode, s.faults.failMessage = n, code, message
}

// HangRequests makes the next n API requests hang until the client gives up.
func (s *Sim) HangRequests(n int) { s.mu.Lock(); s.faults.hangRequests = n; s.mu.Unlock() }

// DenyPrivilege makes every check of priv fail with 403, whatever the token has.
func (s *Sim) DenyPrivilege(priv string) { s.mu.Lock(); s.denied[priv] = true; s.mu.Unlock() }

// SetStorageSize changes a storage's size (bytes).
func (s *Sim) SetStorageSize(name string, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.storages[name]; st != nil {
		st.size = size
	}
}

// SetTemplateAgent turns the guest agent option of a VM (a template) on or off.
func (s *Sim) SetTemplateAgent(vmid int, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.vms[vmid]; v != nil {
		v.agent = on
		v.digestN++ // a config change: its digest changes
	}
}

// SetSMBIOSUUID changes a VM's SMBIOS UUID behind the scaler's back: the
// VM was replaced by another machine with the same vmid. uuid "" takes a
// fresh random one. It returns the new UUID.
func (s *Sim) SetSMBIOSUUID(vmid int, uuid string) (string, error) {
	if uuid == "" {
		uuid = NewUUID()
	}
	if !uuidRE.MatchString(uuid) {
		return "", fmt.Errorf("pvesim: %q is not a UUID", uuid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vms[vmid]
	if v == nil {
		return "", fmt.Errorf("pvesim: no VM %d", vmid)
	}
	v.smbios1 = withUUID(v.smbios1, uuid)
	v.digestN++
	return uuid, nil
}

// SetHostMemory changes a host's total memory (bytes): a host that has
// filled up, for the scaler.
func (s *Sim) SetHostMemory(name string, total int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.hosts[name]; h != nil {
		h.memory = total
	}
}

// VM is a read-only view of a VM for tests.
type VM struct {
	VMID        int
	Name        string
	Host        string
	Running     bool
	Template    bool
	Cores       int
	Memory      int64 // MiB
	Tags        []string
	Description string
	Lock        string
	IP          string
	Pool        string
	Storage     string
	Net0        string
	// UUID is the SMBIOS UUID (smbios1 uuid=).
	UUID string
	// HostPCI is its hostpciN settings ("hostpci0": "mapping=igpu").
	HostPCI map[string]string
}

// VMs returns every VM, sorted by vmid.
func (s *Sim) VMs() []VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VM, 0, len(s.vms))
	for _, v := range s.vms {
		out = append(out, VM{VMID: v.vmid, Name: v.name, Host: v.node, Running: v.running, Template: v.template, Cores: v.cores, Memory: v.memory,
			Tags: append([]string(nil), v.tags...), Description: v.description, Lock: v.lock, IP: v.ip, Pool: v.pool, Storage: v.storage, Net0: v.net0,
			UUID: smbiosUUID(v.smbios1), HostPCI: maps.Clone(v.hostpci)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VMID < out[j].VMID })
	return out
}

// Lookup returns one VM.
func (s *Sim) Lookup(vmid int) (VM, bool) {
	for _, v := range s.VMs() {
		if v.VMID == vmid {
			return v, true
		}
	}
	return VM{}, false
}

// Requests returns the request count by "METHOD /route", e.g. "POST /nodes/{node}/qemu/{vmid}/clone".
func (s *Sim) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// OnRequest calls f with each request's method and route (e.g. "POST
// /nodes/{node}/qemu/{vmid}/clone") as it arrives, before it is answered.
// f runs under the simulator's lock: it must not call back into it.
func (s *Sim) OnRequest(f func(method, route string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requestHooks = append(s.requestHooks, f)
}

// TaskTime is the latency the simulator has put into its tasks so far
// (clones, config changes, starts, stops, destroys).
func (s *Sim) TaskTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.taskTime
}

// Writes returns the number of requests that were not GETs (every one a
// possible change), authenticated or not.
func (s *Sim) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// RunningTasks returns how many tasks are still running.
func (s *Sim) RunningTasks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.tasks {
		if t.running {
			n++
		}
	}
	return n
}

// normalizeTags does what PVE does with a tags value: split on , ; and
// spaces, check each, lowercase, sort, de-duplicate.
func normalizeTags(in string) ([]string, error) {
	f := strings.FieldsFunc(in, func(r rune) bool { return r == ',' || r == ';' || r == ' ' })
	set := map[string]bool{}
	for _, t := range f {
		t = strings.ToLower(t)
		if !tagOK(t) {
			return nil, fmt.Errorf("invalid format - invalid tag %q", t)
		}
		set[t] = true
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out, nil
}

func tagOK(t string) bool {
	if t == "" {
		return false
	}
	for i, r := range t {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_'
		if i > 0 {
			ok = ok || r == '-' || r == '+' || r == '.'
		}
		if !ok {
			return false
		}
	}
	return true
}

// AllowPrivilege undoes DenyPrivilege.
func (s *Sim) AllowPrivilege(priv string) { s.mu.Lock(); delete(s.denied, priv); s.mu.Unlock() }

// SetTags replaces a VM's tags behind the scaler's back, as a person
// editing them in the web UI would (normalized as PVE does).
func (s *Sim) SetTags(vmid int, tags ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vms[vmid]
	if v == nil {
		return fmt.Errorf("pvesim: no VM %d", vmid)
	}
	norm, err := normalizeTags(strings.Join(tags, ";"))
	if err != nil {
		return err
	}
	v.tags = norm
	return nil
}

// LoseNextAnswer carries out the next request to route ("POST
// /nodes/{node}/qemu/{vmid}/clone") and never answers it: the client times
// out not knowing that PVE did the work, as when a proxy drops the answer.
func (s *Sim) LoseNextAnswer(route string) { s.mu.Lock(); s.faults.loseAnswer = route; s.mu.Unlock() }
