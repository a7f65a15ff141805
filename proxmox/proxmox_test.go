package proxmox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
)

const secret = "0b7d6e2a-1111-4222-8333-444455556666"

type world struct {
	t   *testing.T
	sim *pvesim.Sim
	srv *pvesim.Server
	cfg config.Proxmox
	dir string
}

// newWorld starts pvesim with the default three hosts and template, a
// foreign VM (100) and a VM of another cluster (5500), and a config for it.
func newWorld(t *testing.T, mod func(*pvesim.World)) *world {
	t.Helper()
	w := pvesim.DefaultWorld(secret)
	w.Latencies = pvesim.FastLatencies()
	w.VMs = []pvesim.VMSpec{
		{VMID: 100, Name: "pihole", Host: "pve1", Storage: "local-lvm", Cores: 1, Memory: 1024, Disk: 8 << 30, Running: true},
		{VMID: 5500, Name: "talos-worker-5500", Host: "pve2", Storage: "shared", Cores: 4, Memory: 8192, Disk: 10 << 30, Running: true, Tags: "pve-autoscaler;cluster-other"},
	}
	if mod != nil {
		mod(&w)
	}
	sim, err := pvesim.New(w, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sim.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Proxmox
	cfg.URL = strings.TrimSuffix(srv.URL, "/api2/json")
	cfg.TokenID = "autoscaler@pve!scaler"
	cfg.TokenSecretFile = tokenFile
	cfg.TLS.Fingerprint = srv.Fingerprint
	cfg.Template = config.VMRef{Name: "talos-worker-template"}
	cfg.IPCIDR = "127.0.0.0/24"
	cfg.TaskTimeout = config.Duration(5 * time.Second)
	cfg.AgentTimeout = config.Duration(2 * time.Second)
	cfg.ShutdownTimeout = config.Duration(time.Second)
	return &world{t: t, sim: sim, srv: srv, cfg: cfg, dir: dir}
}

func (w *world) client(mod func(*config.Proxmox), log *zap.Logger) *Client {
	w.t.Helper()
	cfg := w.cfg
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(Options{Proxmox: cfg, Cluster: "homelab", Log: log, PollInterval: 5 * time.Millisecond, RequestTimeout: 2 * time.Second})
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

// provision runs every provisioning step and returns the vmid and IP.
func provision(t *testing.T, c *Client) (int, string) {
	t.Helper()
	ctx := context.Background()
	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	host, err := c.Place(inv, nil)
	if err != nil {
		t.Fatal(err)
	}
	vmid, err := c.CloneNew(ctx, inv, host)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(ctx, vmid, host, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, vmid); err != nil {
		t.Fatal(err)
	}
	ip, err := c.WaitIP(ctx, vmid, host)
	if err != nil {
		t.Fatal(err)
	}
	return vmid, ip
}

func TestProvisionAndRemove(t *testing.T) {
	w := newWorld(t, nil)
	c := w.client(nil, nil)
	vmid, ip := provision(t, c)
	v, ok := w.sim.Lookup(vmid)
	if !ok {
		t.Fatal("VM not created")
	}
	if vmid != 5000 || v.Name != "talos-worker-5000" || !v.Running || v.Cores != 4 || v.Memory != 8192 || v.IP != ip || !strings.HasPrefix(ip, "127.0.0.") {
		t.Errorf("VM %+v, ip %s", v, ip)
	}
	if !slices.Equal(v.Tags, []string{"cluster-homelab", "pool-default", "pve-autoscaler"}) {
		t.Errorf("tags %v", v.Tags)
	}
	if !strings.Contains(v.Description, "pve-autoscaler/cluster: homelab") || !strings.Contains(v.Description, "pve-autoscaler/pool: default\n") {
		t.Errorf("description %q", v.Description)
	}
	// Placement spread: pve1 holds a foreign VM, pve2 another cluster's
	// worker; ours counted none anywhere, so the most free memory wins.
	if v.Host != "pve3" {
		t.Errorf("placed on %s, want pve3 (most free memory)", v.Host)
	}
	// Idempotent steps: repeating them changes nothing.
	if err := c.Start(context.Background(), vmid); err != nil {
		t.Errorf("second start: %v", err)
	}
	if err := c.destroyOwned(context.Background(), vmid); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.sim.Lookup(vmid); ok {
		t.Error("VM still there after destroyOwned")
	}
	if err := c.destroyOwned(context.Background(), vmid); err != nil {
		t.Errorf("removing a VM already gone: %v", err)
	}
	req := w.sim.Requests()
	if req["DELETE /nodes/{node}/qemu/{vmid}"] != 1 || req["POST /nodes/{node}/qemu/{vmid}/status/shutdown"] != 1 {
		t.Errorf("requests %v", req)
	}
}

// TestDestroyWaitsForTheStop: the VM ignores ACPI, so the shutdown task
// fails after its timeout and a stop follows; the one DELETE is sent only
// once the VM is stopped (a DELETE on a running VM is refused by PVE, and
// scalers that ignore that leak VMs).
func TestDestroyWaitsForTheStop(t *testing.T) {
	w := newWorld(t, nil)
	c := w.client(func(p *config.Proxmox) { p.ShutdownTimeout = config.Duration(time.Second) }, nil)
	vmid, _ := provision(t, c)
	w.sim.IgnoreShutdown(vmid)
	if err := c.destroyOwned(context.Background(), vmid); err != nil {
		t.Fatal(err)
	}
	req := w.sim.Requests()
	if req["POST /nodes/{node}/qemu/{vmid}/status/stop"] != 1 || req["DELETE /nodes/{node}/qemu/{vmid}"] != 1 {
		t.Errorf("want one stop and one DELETE, got %v", req)
	}
	if _, ok := w.sim.Lookup(vmid); ok {
		t.Error("VM leaked")
	}
}

func TestNeverTouchesVMsNotOurs(t *testing.T) {
	w := newWorld(t, nil)
	c := w.client(nil, nil)
	ctx := context.Background()
	writes := w.sim.Writes()
	for _, vmid := range []int{100, 5500, 9000} {
		var no *NotOursError
		if err := c.destroyOwned(ctx, vmid); !errors.As(err, &no) {
			t.Errorf("destroyOwned(%d): want NotOursError, got %v", vmid, err)
		}
		if err := c.Start(ctx, vmid); !errors.As(err, &no) {
			t.Errorf("Start(%d): want NotOursError, got %v", vmid, err)
		}
	}
	var no *NotOursError
	if err := c.Configure(ctx, 100, "pve1", ""); !errors.As(err, &no) {
		t.Errorf("Configure(100): want NotOursError, got %v", err)
	}
	if err := c.destroy(ctx, 100); !errors.As(err, &no) {
		t.Errorf("destroy(100): want NotOursError, got %v", err)
	}
	if got := w.sim.Writes() - writes; got != 0 {
		t.Errorf("%d writes reached PVE for VMs that are not ours (%v)", got, w.sim.Requests())
	}
	if len(w.sim.VMs()) != 3 {
		t.Errorf("VMs %v", w.sim.VMs())
	}
}

func TestPlacement(t *testing.T) {
	w := newWorld(t, func(wd *pvesim.World) {
		wd.Hosts = []pvesim.HostSpec{{Name: "pve1", Cores: 8, Memory: 16 << 30}, {Name: "pve2", Cores: 8, Memory: 32 << 30}, {Name: "pve3", Cores: 8, Memory: 64 << 30, Offline: true}}
	})
	c := w.client(nil, nil)
	ctx := context.Background()
	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// pve1: 16 GiB - 2 GiB host - 1 GiB pihole - 4 GiB reserve = 9 GiB; pve2: 32 - 2 - 8 (other cluster) - 4 = 18 GiB.
	if h, err := c.Place(inv, nil); err != nil || h != "pve2" {
		t.Fatalf("place = %s, %v; want pve2", h, err)
	}
	// With 12 GiB promised on pve2 already, only pve1 fits.
	if h, err := c.Place(inv, map[string]int64{"pve2": 12 << 30}); err != nil || h != "pve1" {
		t.Fatalf("place with reservations = %s, %v; want pve1", h, err)
	}
	// Allowed hosts.
	only1 := w.client(func(p *config.Proxmox) { p.Hosts = []string{"pve1"} }, nil)
	if h, err := only1.Place(inv, nil); err != nil || h != "pve1" {
		t.Fatalf("allowed hosts: %s, %v", h, err)
	}
	// Nowhere: each host's shortfall is named.
	big := w.client(func(p *config.Proxmox) { p.VM.Memory = 20 << 30 }, nil)
	_, err = big.Place(inv, nil)
	var nr *NoRoomError
	if !errors.As(err, &nr) {
		t.Fatalf("want NoRoomError, got %v", err)
	}
	for _, want := range []string{"pve1 has 9216MiB free after the 4096MiB reserve, 11264MiB short of 20480MiB", "pve2 has 18432MiB free", "pve3 is offline"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Spread: with one of ours on pve2, the next goes to pve1 despite less room.
	vmid, _ := provision(t, c)
	if v, _ := w.sim.Lookup(vmid); v.Host != "pve2" {
		t.Fatalf("first worker on %s", v.Host)
	}
	inv, _ = c.Inventory(ctx)
	if h, _ := c.Place(inv, nil); h != "pve1" {
		t.Errorf("second worker placed on %s, want pve1 (fewest of ours)", h)
	}
}

func TestConcurrentProvisionsRaceForTheSameID(t *testing.T) {
	w := newWorld(t, nil)
	a, b := w.client(nil, nil), w.client(nil, nil) // two daemons
	ctx := context.Background()
	inv, err := a.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Both see 5000 free: the race is real.
	ida, erra := a.AllocateID(ctx, inv)
	idb, errb := b.AllocateID(ctx, inv)
	if erra != nil || errb != nil || ida != 5000 || idb != 5000 {
		t.Fatalf("ids %d %d, errors %v %v", ida, idb, erra, errb)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*Client{a, b} {
		wg.Go(func() { errs[i] = c.Clone(ctx, inv, 5000, "pve1", c.pools[0]) })
	}
	wg.Wait()
	lost := slices.IndexFunc(errs, func(e error) bool { return errors.Is(e, ErrIDTaken) })
	if lost < 0 || errs[1-lost] != nil {
		t.Fatalf("want one winner and one ErrIDTaken, got %v", errs)
	}
	// The loser allocates again and gets the next id.
	loser := []*Client{a, b}[lost]
	id, err := loser.CloneNew(ctx, inv, "pve1")
	if err != nil || id != 5001 {
		t.Fatalf("retry: %d, %v", id, err)
	}
	// And CloneNew races end with distinct VMs.
	ids := make([]int, 2)
	for i, c := range []*Client{a, b} {
		wg.Go(func() { ids[i], errs[i] = c.CloneNew(ctx, inv, "pve2") })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || ids[0] == ids[1] {
		t.Fatalf("ids %v errors %v", ids, errs)
	}
	if n := len(w.sim.VMs()); n != 7 {
		t.Errorf("%d VMs, want 7", n)
	}
}

func TestCloneParallelismAvoidsStorageLockTimeouts(t *testing.T) {
	for _, tc := range []struct {
		parallel int
		clones   int // clone POSTs expected for 3 VMs
	}{{1, 3}, {3, 4}} {
		w := newWorld(t, nil)
		w.sim.SetStorageLockLimit(1)
		c := w.client(func(p *config.Proxmox) { p.MaxParallel = tc.parallel }, nil)
		ctx := context.Background()
		inv, _ := c.Inventory(ctx)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failures []error
		for range 3 {
			wg.Go(func() {
				if _, err := c.CloneNew(ctx, inv, "pve1"); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("parallel %d: %v", tc.parallel, failures)
		}
		n := w.sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]
		if tc.parallel == 1 && n != tc.clones {
			t.Errorf("parallel 1: %d clone requests, want exactly 3 (no lock timeout to retry)", n)
		}
		if tc.parallel > 1 && n < tc.clones {
			t.Errorf("parallel %d: %d clone requests; expected lock timeouts and retries", tc.parallel, n)
		}
		if got := len(w.sim.VMs()); got != 6 {
			t.Errorf("parallel %d: %d VMs, want 6", tc.parallel, got)
		}
	}
}

func TestFaultsEndCleanly(t *testing.T) {
	ctx := context.Background()

	t.Run("clone task fails", func(t *testing.T) {
		w := newWorld(t, nil)
		c := w.client(nil, nil)
		w.sim.FailNextClone("clone failed: command '/usr/bin/qemu-img convert' failed: exit code 1")
		inv, _ := c.Inventory(ctx)
		_, err := c.CloneNew(ctx, inv, "pve1")
		var te *TaskError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "qemu-img convert") {
			t.Fatalf("want TaskError with PVE's text, got %v", err)
		}
		if len(w.sim.VMs()) != 3 {
			t.Errorf("orphan after failed clone: %v", w.sim.VMs())
		}
	})

	t.Run("clone slower than the task timeout", func(t *testing.T) {
		w := newWorld(t, nil)
		c := w.client(func(p *config.Proxmox) { p.TaskTimeout = config.Duration(100 * time.Millisecond) }, nil)
		w.sim.SlowNextClone(400 * time.Millisecond)
		inv, _ := c.Inventory(ctx)
		vmid, err := c.CloneNew(ctx, inv, "pve1")
		if err == nil || !strings.Contains(err.Error(), "did not finish within") {
			t.Fatalf("want a task timeout, got %v", err)
		}
		// Another process (a restarted daemon) finds an untagged VM: not
		// ours by the ownership rule, left alone.
		other := w.client(nil, nil)
		if err := other.destroy(ctx, vmid); err == nil {
			t.Fatal("another process cleaned up an untagged VM")
		}
		// The process that cloned it tags and removes it once its lock clears.
		for v, ok := w.sim.Lookup(vmid); ok && v.Lock != ""; v, ok = w.sim.Lookup(vmid) {
			time.Sleep(10 * time.Millisecond)
		}
		// destroy is bounded by task_timeout: 100ms is too short for its
		// dozen requests on a loaded machine.
		c.cfg.TaskTimeout = config.Duration(time.Minute)
		if err := c.destroy(ctx, vmid); err != nil {
			t.Fatalf("cleanup: %v", err)
		}
		if _, ok := w.sim.Lookup(vmid); ok {
			t.Error("slow clone left an orphan")
		}
	})

	t.Run("guest agent silent", func(t *testing.T) {
		w := newWorld(t, nil)
		c := w.client(func(p *config.Proxmox) { p.AgentTimeout = config.Duration(150 * time.Millisecond) }, nil)
		w.sim.SilenceAgentOfNewVMs(true)
		inv, _ := c.Inventory(ctx)
		vmid, err := c.CloneNew(ctx, inv, "pve1")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Configure(ctx, vmid, "pve1", ""); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx, vmid); err != nil {
			t.Fatal(err)
		}
		_, err = c.WaitIP(ctx, vmid, "pve1")
		if err == nil || !strings.Contains(err.Error(), "QEMU guest agent is not running") {
			t.Fatalf("want the agent's silence named, got %v", err)
		}
		if err := c.destroyOwned(ctx, vmid); err != nil {
			t.Fatal(err)
		}
		if len(w.sim.VMs()) != 3 {
			t.Errorf("orphan: %v", w.sim.VMs())
		}
	})

	t.Run("VM deleted by hand", func(t *testing.T) {
		w := newWorld(t, nil)
		c := w.client(nil, nil)
		vmid, _ := provision(t, c)
		w.sim.DeleteVM(vmid)
		if err := c.destroyOwned(ctx, vmid); err != nil {
			t.Errorf("removing a VM deleted by hand: %v", err)
		}
	})

	t.Run("VM migrated to another host", func(t *testing.T) {
		w := newWorld(t, nil)
		c := w.client(nil, nil)
		vmid, _ := provision(t, c)
		if err := w.sim.MigrateVM(vmid, "pve1"); err != nil {
			t.Fatal(err)
		}
		if err := c.destroyOwned(ctx, vmid); err != nil {
			t.Fatal(err)
		}
		if _, ok := w.sim.Lookup(vmid); ok {
			t.Error("migrated VM not removed")
		}
	})

	t.Run("host offline", func(t *testing.T) {
		w := newWorld(t, nil)
		c := w.client(nil, nil)
		vmid, _ := provision(t, c)
		v, _ := w.sim.Lookup(vmid)
		w.sim.SetHostOnline(v.Host, false)
		if err := c.destroyOwned(ctx, vmid); err == nil || !strings.Contains(err.Error(), "is offline") {
			t.Errorf("remove on an offline host: %v", err)
		}
		inv, _ := c.Inventory(ctx)
		if h, _ := c.Place(inv, nil); h == v.Host {
			t.Errorf("placed on offline host %s", h)
		}
		w.sim.SetHostOnline(v.Host, true)
		if err := c.destroyOwned(ctx, vmid); err != nil {
			t.Errorf("remove once the host is back: %v", err)
		}
	})

	t.Run("PVE answers 503 and hangs", func(t *testing.T) {
		w := newWorld(t, nil)
		c := w.client(nil, nil)
		w.sim.FailRequests(2, 503, "Service Unavailable")
		if _, err := c.Inventory(ctx); err != nil {
			t.Errorf("503s not retried: %v", err)
		}
		short, err := New(Options{Proxmox: w.cfg, Cluster: "homelab", PollInterval: 5 * time.Millisecond, RequestTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		w.sim.HangRequests(1)
		if _, err := short.Inventory(ctx); err != nil {
			t.Errorf("hung request not retried: %v", err)
		}
	})

	t.Run("missing privilege", func(t *testing.T) {
		w := newWorld(t, nil)
		c := w.client(nil, nil)
		w.sim.DenyPrivilege("VM.Clone")
		inv, _ := c.Inventory(ctx)
		_, err := c.CloneNew(ctx, inv, "pve1")
		if err == nil || !strings.Contains(err.Error(), "403 Permission check failed (/vms/9000, VM.Clone)") {
			t.Fatalf("want PVE's permission text, got %v", err)
		}
	})
}

func TestMACPoolForTemplatesWithoutAgent(t *testing.T) {
	w := newWorld(t, func(wd *pvesim.World) { wd.Templates[0].Agent = false })
	pool := []config.MACIP{{MAC: "BC:24:11:AA:00:01", IP: "192.168.10.51"}, {MAC: "BC:24:11:AA:00:02", IP: "192.168.10.52"}}
	c := w.client(func(p *config.Proxmox) { p.DHCPReservations = pool }, nil)
	ctx := context.Background()
	inv, _ := c.Inventory(ctx)
	vmid, err := c.CloneNew(ctx, inv, "pve1")
	if err != nil {
		t.Fatal(err)
	}
	mac, ip, err := c.NextMAC(ctx, inv, vmid)
	if err != nil || mac != pool[0].MAC || ip != pool[0].IP {
		t.Fatalf("NextMAC = %s %s %v", mac, ip, err)
	}
	// A second provision reading the same configs before the first wrote
	// its MAC gets the other one (scenario 5 of the safety issue).
	if other, _, err := c.NextMAC(ctx, inv, vmid+1); err != nil || other == mac {
		t.Fatalf("a parallel NextMAC got %s (%v), the first got %s", other, err, mac)
	}
	if err := c.Configure(ctx, vmid, "pve1", mac); err != nil {
		t.Fatal(err)
	}
	if v, _ := w.sim.Lookup(vmid); !strings.HasPrefix(v.Net0, "virtio=BC:24:11:AA:00:01,bridge=vmbr0") {
		t.Errorf("net0 %q", v.Net0)
	}
	inv, _ = c.Inventory(ctx)
	if mac, ip, err := c.NextMAC(ctx, inv, vmid+1); err != nil || mac != pool[1].MAC || ip != pool[1].IP {
		t.Errorf("second NextMAC = %s %s %v", mac, ip, err)
	}
	if err := c.Start(ctx, vmid); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitIP(ctx, vmid, "pve1"); err == nil || !strings.Contains(err.Error(), "no guest agent configured") {
		t.Errorf("WaitIP without an agent: %v", err)
	}
}

func TestConnectErrors(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	core, logs := observer.New(zap.InfoLevel)

	bad := w.cfg
	bad.TLS.Fingerprint = strings.Repeat("AB:", 31) + "AB"
	c, err := New(Options{Proxmox: bad, Cluster: "homelab", PollInterval: time.Millisecond, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inventory(ctx); err == nil || !strings.Contains(err.Error(), "does not match proxmox.tls.fingerprint") {
		t.Errorf("pinned fingerprint mismatch: %v", err)
	}

	caFile := filepath.Join(w.dir, "ca.pem")
	if err := os.WriteFile(caFile, w.srv.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	withCA := w.client(func(p *config.Proxmox) { p.TLS = config.TLS{CAFile: caFile} }, nil)
	if _, err := withCA.Inventory(ctx); err != nil {
		t.Errorf("CA file: %v", err)
	}
	system := w.client(func(p *config.Proxmox) { p.TLS = config.TLS{} }, nil)
	if _, err := system.Inventory(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("system roots must not trust the simulator's self-signed certificate: %v", err)
	}
	insecure := w.client(func(p *config.Proxmox) { p.TLS = config.TLS{InsecureSkipVerify: true} }, zap.New(core))
	if _, err := insecure.Inventory(ctx); err != nil {
		t.Errorf("insecure: %v", err)
	}
	if logs.FilterMessageSnippet("TLS verification of the PVE API is off").Len() != 1 {
		t.Errorf("no warning for insecure_skip_verify: %v", logs.All())
	}
	for _, e := range logs.All() {
		if strings.Contains(e.Message+fmt.Sprint(e.ContextMap()), secret) {
			t.Error("token secret logged")
		}
	}

	wrong := w.cfg
	wrong.TokenSecretFile = filepath.Join(w.dir, "other")
	_ = os.WriteFile(wrong.TokenSecretFile, []byte("not-the-secret"), 0o600)
	c, _ = New(Options{Proxmox: wrong, Cluster: "homelab", PollInterval: time.Millisecond})
	if _, err := c.Inventory(ctx); err == nil || !strings.Contains(err.Error(), "401 authentication failure") {
		t.Errorf("wrong token: %v", err)
	}
	missing := w.cfg
	missing.TokenSecretFile = filepath.Join(w.dir, "absent")
	if _, err := New(Options{Proxmox: missing, Cluster: "homelab"}); err == nil || !strings.Contains(err.Error(), "proxmox.token_secret_file") || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing token file: %v", err)
	}
	empty := w.cfg
	empty.TokenSecretFile = filepath.Join(w.dir, "empty")
	_ = os.WriteFile(empty.TokenSecretFile, nil, 0o600)
	if _, err := New(Options{Proxmox: empty, Cluster: "homelab"}); err == nil || !strings.Contains(err.Error(), "alone on one line") {
		t.Errorf("empty token file: %v", err)
	}
}

func TestTaskWarningsAreSuccess(t *testing.T) {
	w := newWorld(t, nil)
	core, logs := observer.New(zap.InfoLevel)
	c := w.client(nil, zap.New(core))
	ctx := context.Background()
	inv, _ := c.Inventory(ctx)
	vmid, err := c.CloneNew(ctx, inv, "pve1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(ctx, vmid, "pve1", ""); err != nil {
		t.Fatal(err)
	}
	w.sim.WarnNextTask(2)
	if err := c.Start(ctx, vmid); err != nil {
		t.Fatalf("start ending with WARNINGS: %v", err)
	}
	if logs.FilterMessage("PVE task ended with warnings").Len() != 1 {
		t.Errorf("warnings not logged: %v", logs.All())
	}
}

// TestSMBIOSIdentity: the metadata of one of our VMs carries its smbios1
// UUID (lower case), read once and then from the cache; Identity reads
// afresh and sees a VM replaced under the same vmid.
func TestSMBIOSIdentity(t *testing.T) {
	if got := SMBIOSUUID("manufacturer=UHJveG1veA==,uuid=6C2A5D2E-0000-4ABC-8DEF-0123456789AB,base64=1"); got != "6c2a5d2e-0000-4abc-8def-0123456789ab" {
		t.Errorf("SMBIOSUUID with other fields and upper case: %q", got)
	}
	if got := SMBIOSUUID("manufacturer=x"); got != "" {
		t.Errorf("SMBIOSUUID without uuid: %q", got)
	}
	w := newWorld(t, nil)
	c := w.client(nil, nil)
	vmid, _ := provision(t, c)
	v, _ := w.sim.Lookup(vmid)
	tpl, _ := w.sim.Lookup(9000)
	if v.UUID == "" || v.UUID == tpl.UUID {
		t.Fatalf("clone's UUID %q, template's %q", v.UUID, tpl.UUID)
	}
	// Upper case in PVE's config is read lower case.
	upper := strings.ToUpper(v.UUID)
	if _, err := w.sim.SetSMBIOSUUID(vmid, upper); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reads := func() int { return w.sim.Requests()["GET /nodes/{node}/qemu/{vmid}/config"] }
	m, err := c.Meta(ctx, vmid, v.Host)
	if err != nil || !m.Ours || m.UUID != v.UUID {
		t.Fatalf("Meta %+v, %v: want ours with UUID %s", m, err, v.UUID)
	}
	before := reads()
	for range 3 {
		if m, _ := c.Meta(ctx, vmid, v.Host); m.UUID != v.UUID {
			t.Fatalf("cached Meta UUID %q", m.UUID)
		}
	}
	if n := reads() - before; n != 0 {
		t.Errorf("%d config reads for cached metadata", n)
	}
	if id, err := c.Identity(ctx, vmid); err != nil || id != v.UUID {
		t.Fatalf("Identity %q, %v; want %s", id, err, v.UUID)
	}

	// Another machine behind the same vmid: the cache still shows the old
	// UUID, Identity the new one, and then the cache is read again.
	nu, err := w.sim.SetSMBIOSUUID(vmid, "")
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Meta(ctx, vmid, v.Host); m.UUID != v.UUID {
		t.Fatalf("cached Meta UUID %q before Identity", m.UUID)
	}
	before = reads()
	if id, err := c.Identity(ctx, vmid); err != nil || id != nu {
		t.Fatalf("Identity after the replacement: %q, %v; want %s", id, err, nu)
	}
	if reads()-before != 1 {
		t.Errorf("Identity made %d config reads, want 1", reads()-before)
	}
	if m, _ := c.Meta(ctx, vmid, v.Host); m.UUID != nu {
		t.Errorf("Meta after Identity saw a new UUID: %q, want %s", m.UUID, nu)
	}
	if err := c.destroyOwned(ctx, vmid); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Identity(ctx, vmid); !errors.Is(err, ErrGone) {
		t.Errorf("Identity of a VM gone: %v", err)
	}
}

// TestTheResetRecordNeedsOurMarker: recording "resetting", the step a
// Talos reset follows, checks ownership in full, as destroy does: a VM
// with our tags and vmid but a description a person rewrote (our marker
// gone) is refused; other steps need only the tags and range.
func TestTheResetRecordNeedsOurMarker(t *testing.T) {
	w := newWorld(t, nil)
	c := w.client(nil, nil)
	ctx := context.Background()
	vmid, _ := provision(t, c)
	if err := c.RecordStep(ctx, vmid, stepResetting); err != nil {
		t.Fatalf("our VM: %v", err)
	}
	v, _ := w.sim.Lookup(vmid)
	if err := apiErr(c.api.Put(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/config", v.Host, vmid), map[string]any{"description": "my database, do not touch"}, nil)); err != nil {
		t.Fatal(err)
	}
	var no *NotOursError
	if err := c.RecordStep(ctx, vmid, stepResetting); !errors.As(err, &no) {
		t.Errorf("resetting on a VM without our marker: want NotOursError, got %v", err)
	}
	if err := c.RecordStep(ctx, vmid, "joined"); err != nil {
		t.Errorf("another step: %v", err)
	}
}
