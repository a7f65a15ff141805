package talos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	tconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	mtype "github.com/siderolabs/talos/pkg/machinery/config/machine"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/talos/talosfake"
)

// cluster is a real Talos cluster's secrets, worker config and talosconfig,
// generated as `talosctl gen config` does.
type cluster struct {
	dir          string
	bundle       *secrets.Bundle
	worker       string // worker.yaml
	controlplane string // controlplane.yaml
	talosconfig  string
	workerBytes  []byte
}

func newCluster(t *testing.T) *cluster { return newClusterFor(t, tconfig.TalosVersionCurrent) }

var (
	clustersMu sync.Mutex
	clusters   = map[*tconfig.VersionContract]*cluster{}
	clusterDir string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "talos-test-")
	if err != nil {
		panic(err)
	}
	clusterDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// newClusterFor generates (once per package run, the keys take a while)
// for a Talos version contract: before 1.12 the config is one v1alpha1
// document; from 1.12 on it has several. Tests must not change its files.
func newClusterFor(t *testing.T, contract *tconfig.VersionContract) *cluster {
	t.Helper()
	clustersMu.Lock()
	defer clustersMu.Unlock()
	if c, ok := clusters[contract]; ok {
		return c
	}
	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		t.Fatal(err)
	}
	in, err := generate.NewInput("homelab", "https://127.0.0.1:6443", "1.34.0",
		generate.WithSecretsBundle(bundle), generate.WithEndpointList([]string{"127.0.0.1"}),
		generate.WithInstallDisk("/dev/sda"), // talosctl gen config's default
		generate.WithVersionContract(contract))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(clusterDir, "cluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{dir: dir, bundle: bundle}
	write := func(name string, data []byte) string {
		p := filepath.Join(c.dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, typ := range []mtype.Type{mtype.TypeWorker, mtype.TypeControlPlane} {
		cfg, err := in.Config(typ)
		if err != nil {
			t.Fatal(err)
		}
		b, err := cfg.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if typ == mtype.TypeWorker {
			c.worker, c.workerBytes = write("worker.yaml", b), b
		} else {
			c.controlplane = write("controlplane.yaml", b)
		}
	}
	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}
	b, err := tc.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	c.talosconfig = write("talosconfig", b)
	clusters[contract] = c
	return c
}

// file writes a file of the test's own, beside nothing shared.
func (c *cluster) file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loopbackIP picks a random 127.0.0.x so parallel tests never share an address.
func loopbackIP() string { return fmt.Sprintf("127.0.%d.%d", rand.IntN(250)+1, rand.IntN(250)+2) }

// freePort finds a port free on ip.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startNode(t *testing.T, c *cluster, opts talosfake.Options) *talosfake.Node {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = net.JoinHostPort(loopbackIP(), "0")
	}
	opts.CA = c.bundle.Certs.OS
	if opts.InstallDelay == 0 {
		opts.InstallDelay = 50 * time.Millisecond
	}
	n, err := talosfake.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func newClient(t *testing.T, c *cluster, port string, patches []string, log *zap.Logger) *Client {
	t.Helper()
	p, _ := strconv.Atoi(port)
	cl, err := New(Options{
		WorkerConfigFile: c.worker, TalosconfigFile: c.talosconfig, PatchFiles: patches,
		Port: p, ApplyTimeout: 3 * time.Second, ResetTimeout: time.Second, RetryInterval: 20 * time.Millisecond, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func waitState(t *testing.T, n *talosfake.Node, want talosfake.State) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("node state %s, want %s", n.State(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestApplyInstallsWithHostnameLabelsAndPatches(t *testing.T) {
	c := newCluster(t)
	strategic := c.file(t, "sysctl.yaml", "machine:\n  sysctls:\n    net.core.somaxconn: \"65535\"\n")
	zone := c.file(t, "zone.yaml", "machine:\n  nodeLabels:\n    topology.kubernetes.io/zone: rack-a\n")
	var installed atomic.Pointer[[]byte]
	node := startNode(t, c, talosfake.Options{OnInstalled: func(_ *talosfake.Node, cfg []byte) { installed.Store(&cfg) }})
	core, logs := observer.New(zap.DebugLevel)
	cl := newClient(t, c, node.Port(), []string{strategic, zone}, zap.New(core))

	n := Node{Name: "talos-worker-5001", VMID: 5001, Host: "pve2", IP: node.IP(), UUID: node.UUID()}
	if err := cl.Apply(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	waitState(t, node, talosfake.Running)
	applied := node.Applied()
	if len(applied) != 1 {
		t.Fatalf("%d configs applied", len(applied))
	}
	if got := installed.Load(); got == nil || string(*got) != string(applied[0]) {
		t.Fatal("OnInstalled not called with the applied config")
	}
	cfg, err := configloader.NewFromBytes(applied[0])
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Machine().Type() != mtype.TypeWorker {
		t.Errorf("type %s", cfg.Machine().Type())
	}
	if h := cfg.NetworkHostnameConfig(); h == nil || h.Hostname() != n.Name {
		t.Errorf("hostname config %+v", h)
	}
	labels := cfg.Machine().NodeLabels()
	for k, v := range map[string]string{LabelManaged: "true", LabelVMID: "5001", LabelHost: "pve2", "topology.kubernetes.io/zone": "rack-a"} {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q (labels %v)", k, labels[k], v, labels)
		}
	}
	if got := cfg.Machine().Sysctls()["net.core.somaxconn"]; got != "65535" {
		t.Errorf("strategic patch not applied: sysctl %q", got)
	}
	// The machine config is a secret: no log line may carry it.
	token := cfg.Machine().Security().Token()
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, token) || strings.Contains(line, "BEGIN") {
			t.Errorf("secret in log: %s", line)
		}
	}
	if logs.FilterMessage("talos config applied").Len() != 1 {
		t.Errorf("no apply log: %v", logs.All())
	}
}

func TestApplyRetriesUntilTheVMBoots(t *testing.T) {
	c := newCluster(t)
	ip := loopbackIP()
	port := freePort(t, ip)
	core, logs := observer.New(zap.DebugLevel)
	cl := newClient(t, c, strconv.Itoa(port), nil, zap.New(core))
	done := make(chan error, 1)
	const uuid = "0f8e6a3c-1d2b-4c5d-9e7f-a1b2c3d4e5f6"
	go func() {
		done <- cl.Apply(context.Background(), Node{Name: "w1", VMID: 5001, Host: "pve1", IP: ip, UUID: uuid})
	}()
	// The VM is still booting: nothing listens until an attempt has failed.
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("talos maintenance API not answering yet").Len() == 0 {
		select {
		case err := <-done:
			t.Fatalf("apply returned before the node listened, without a failed attempt: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no failed attempt logged while nothing listens")
		}
		time.Sleep(5 * time.Millisecond)
	}
	node := startNode(t, c, talosfake.Options{Addr: net.JoinHostPort(ip, strconv.Itoa(port)), UUID: uuid})
	if err := <-done; err != nil {
		t.Fatalf("apply after boot: %v", err)
	}
	if len(node.Applied()) != 1 {
		t.Fatal("config not received")
	}
	applied := logs.FilterMessage("talos config applied").All()
	if len(applied) != 1 {
		t.Fatalf("%d 'talos config applied' entries", len(applied))
	}
	if n := applied[0].ContextMap()["attempts"]; n.(int64) < 2 {
		t.Errorf("applied after %v attempts: the test needs a retry", n)
	}
}

func TestApplyNodeNeverAnswers(t *testing.T) {
	c := newCluster(t)
	ip := loopbackIP()
	cl := newClient(t, c, strconv.Itoa(freePort(t, ip)), nil, nil)
	cl.opts.ApplyTimeout = 300 * time.Millisecond
	start := time.Now()
	err := cl.Apply(context.Background(), Node{Name: "w1", VMID: 5001, Host: "pve1", IP: ip, UUID: "0f8e6a3c-1d2b-4c5d-9e7f-a1b2c3d4e5f6"})
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Node != "w1" || ue.Op != "apply" {
		t.Fatalf("want UnreachableError, got %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("apply took %v, timeout was 300ms", el)
	}
}

func TestApplyRejected(t *testing.T) {
	c := newCluster(t)
	node := startNode(t, c, talosfake.Options{})
	node.RejectApply("1 error occurred:\n\t* install disk or diskSelector should be defined")
	cl := newClient(t, c, node.Port(), nil, nil)
	err := cl.Apply(context.Background(), Node{Name: "w1", VMID: 5001, Host: "pve1", IP: node.IP(), UUID: node.UUID()})
	var re *RejectedError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "install disk or diskSelector should be defined") {
		t.Fatalf("want RejectedError with Talos's text, got %v", err)
	}
	if !strings.Contains(err.Error(), "node w1 refused") {
		t.Errorf("error %q", err)
	}
}

func installedNode(t *testing.T, c *cluster, opts talosfake.Options) (*talosfake.Node, *Client, Node) {
	t.Helper()
	node := startNode(t, c, opts)
	cl := newClient(t, c, node.Port(), nil, nil)
	n := Node{Name: "talos-worker-5002", VMID: 5002, Host: "pve1", IP: node.IP(), UUID: node.UUID()}
	if err := cl.Apply(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	return node, cl, n
}

func TestVersionAndResetOverMTLS(t *testing.T) {
	c := newCluster(t)
	var resetSeen atomic.Bool
	node, cl, n := installedNode(t, c, talosfake.Options{OnReset: func(*talosfake.Node, *machine.ResetRequest) { resetSeen.Store(true) }})
	waitState(t, node, talosfake.Running)

	v, err := cl.Version(context.Background(), n)
	if err != nil || v != "v1.13.9" {
		t.Fatalf("version %q, %v", v, err)
	}
	if err := cl.Reset(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	resets := node.Resets()
	if len(resets) != 1 {
		t.Fatalf("%d resets", len(resets))
	}
	r := resets[0]
	if !r.GetGraceful() || r.GetReboot() || r.GetMode() != machine.ResetRequest_ALL || len(r.GetSystemPartitionsToWipe()) != 0 {
		t.Errorf("reset request %v: want graceful, no reboot, wipe all", r)
	}
	if !resetSeen.Load() || node.State() != talosfake.Halted {
		t.Errorf("reset callback %v, state %s", resetSeen.Load(), node.State())
	}
	for _, md := range node.NodeMetadata() {
		if md != n.IP {
			t.Errorf("node metadata %q, want the VM's IP %s", md, n.IP)
		}
	}
	if len(node.NodeMetadata()) < 2 {
		t.Errorf("node metadata not sent: %v", node.NodeMetadata())
	}
	// A halted node no longer answers: a second reset is unreachable.
	var ue *UnreachableError
	if err := cl.Reset(context.Background(), n); !errors.As(err, &ue) {
		t.Errorf("reset of a halted node: %v", err)
	}
}

func TestResetUnreachableAndHanging(t *testing.T) {
	c := newCluster(t)
	node, cl, n := installedNode(t, c, talosfake.Options{})
	waitState(t, node, talosfake.Running)
	node.HangReset()
	var ue *UnreachableError
	if err := cl.Reset(context.Background(), n); !errors.As(err, &ue) || ue.Op != "reset" {
		t.Fatalf("hanging reset: want UnreachableError, got %v", err)
	}
	node.GoDown()
	if err := cl.Reset(context.Background(), n); !errors.As(err, &ue) {
		t.Fatalf("node down: want UnreachableError, got %v", err)
	}
	if _, err := cl.Version(context.Background(), n); !errors.As(err, &ue) {
		t.Fatalf("version of a node down: want UnreachableError, got %v", err)
	}
}

func TestTLSMismatch(t *testing.T) {
	c := newCluster(t)
	node := startNode(t, c, talosfake.Options{})
	node.WrongCA()
	cl := newClient(t, c, node.Port(), nil, nil)
	n := Node{Name: "w1", VMID: 5001, Host: "pve1", IP: node.IP(), UUID: node.UUID()}
	if err := cl.Apply(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	waitState(t, node, talosfake.Running)
	var te *TLSError
	var ue *UnreachableError
	err := cl.Reset(context.Background(), n)
	if !errors.As(err, &te) || errors.As(err, &ue) {
		t.Fatalf("want TLSError (and not unreachable), got %v", err)
	}
	if _, err := cl.Version(context.Background(), n); !errors.As(err, &te) {
		t.Fatalf("version: want TLSError, got %v", err)
	}
	if len(node.Resets()) != 0 {
		t.Error("reset reached a node whose certificate did not verify")
	}
}

func TestNewErrorsNameTheFile(t *testing.T) {
	c := newCluster(t)
	good := Options{WorkerConfigFile: c.worker, TalosconfigFile: c.talosconfig}
	cases := []struct {
		name string
		mod  func(*Options)
		want []string
	}{
		{"control-plane config", func(o *Options) { o.WorkerConfigFile = c.controlplane }, []string{c.controlplane, "is a controlplane config"}},
		{"unparsable config", func(o *Options) { o.WorkerConfigFile = c.file(t, "junk.yaml", "machine: [unclosed\n") }, []string{"junk.yaml", "not a Talos machine config"}},
		{"config failing validation", func(o *Options) {
			o.WorkerConfigFile = c.file(t, "bad.yaml", strings.Replace(string(c.workerBytes), "disk: /dev/sda", `disk: ""`, 1))
		}, []string{"bad.yaml", "fails Talos validation", "install disk or diskSelector should be defined"}},
		{"missing config", func(o *Options) { o.WorkerConfigFile = filepath.Join(c.dir, "none.yaml") }, []string{"none.yaml", "no such file"}},
		{"unparsable patch", func(o *Options) { o.PatchFiles = []string{c.file(t, "p1.yaml", "{{{")} }, []string{"p1.yaml", "not a strategic merge patch or JSON 6902 patch"}},
		{"patch that does not apply", func(o *Options) {
			o.PatchFiles = []string{c.file(t, "p2.yaml", "- op: remove\n  path: /machine/nonexistent/field\n")}
		}, []string{"p2.yaml", "does not apply"}},
		{"missing patch", func(o *Options) { o.PatchFiles = []string{filepath.Join(c.dir, "gone.yaml")} }, []string{"gone.yaml", "no such file"}},
		{"bad talosconfig", func(o *Options) { o.TalosconfigFile = c.file(t, "tc", "context: x\ncontexts: {}\n") }, []string{"tc", `current context "x" is not defined`}},
		{"missing talosconfig", func(o *Options) { o.TalosconfigFile = filepath.Join(c.dir, "notc") }, []string{"notc", "no such file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mod(&o)
			_, err := New(o)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error quotes a secret: %q", err)
			}
		})
	}
	if _, err := New(good); err != nil {
		t.Fatalf("good options: %v", err)
	}
}

// TestJSON6902Patches: on a single-document config (Talos before 1.12) a
// JSON 6902 patch applies after the per-node patch; on a multi-document one
// Talos refuses JSON 6902, and the error names the patch file.
func TestJSON6902Patches(t *testing.T) {
	patch := "- op: add\n  path: /machine/nodeLabels/topology.kubernetes.io~1zone\n  value: rack-a\n"

	legacy := newClusterFor(t, tconfig.TalosVersion1_11)
	cl := newClient(t, legacy, "50000", []string{legacy.file(t, "zone.yaml", patch)}, nil)
	out, err := cl.Render(Node{Name: "talos-worker-5003", VMID: 5003, Host: "pve3", IP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configloader.NewFromBytes(out)
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.NetworkHostnameConfig(); h == nil || h.Hostname() != "talos-worker-5003" {
		t.Errorf("legacy hostname %+v", h)
	}
	if l := cfg.Machine().NodeLabels(); l["topology.kubernetes.io/zone"] != "rack-a" || l[LabelVMID] != "5003" {
		t.Errorf("legacy labels %v", l)
	}

	modern := newCluster(t)
	p := modern.file(t, "zone.yaml", patch)
	_, err = New(Options{WorkerConfigFile: modern.worker, TalosconfigFile: modern.talosconfig, PatchFiles: []string{p}})
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "JSON6902 patches are not supported for multi-document") {
		t.Fatalf("want an error naming %s and Talos's reason, got %v", p, err)
	}
}

func TestOptionsFromConfig(t *testing.T) {
	c := newCluster(t)
	o := OptionsFrom(config.Talos{WorkerConfigFile: c.worker, TalosconfigFile: c.talosconfig, PatchFiles: []string{"a"}}, nil)
	if o.WorkerConfigFile != c.worker || o.TalosconfigFile != c.talosconfig || len(o.PatchFiles) != 1 {
		t.Errorf("options %+v", o)
	}
	o.PatchFiles = nil
	cl, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if cl.opts.Port != DefaultPort || cl.opts.ApplyTimeout != 10*time.Minute || cl.opts.ResetTimeout != 5*time.Minute {
		t.Errorf("defaults %+v", cl.opts)
	}
}

func TestNodeNeverComesBackAfterInstall(t *testing.T) {
	c := newCluster(t)
	node := startNode(t, c, talosfake.Options{})
	node.NeverUp()
	cl := newClient(t, c, node.Port(), nil, nil)
	n := Node{Name: "w1", VMID: 5001, Host: "pve1", IP: node.IP(), UUID: node.UUID()}
	if err := cl.Apply(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	waitState(t, node, talosfake.Down)
	var ue *UnreachableError
	if _, err := cl.Version(context.Background(), n); !errors.As(err, &ue) {
		t.Fatalf("want UnreachableError from a node that never came back, got %v", err)
	}
}

// TestCheckCA: the talosconfig of the same cluster matches; one from
// another cluster's secrets is refused, naming both files.
func TestCheckCA(t *testing.T) {
	c := newCluster(t)
	cl := newClient(t, c, "50000", nil, nil)
	if err := cl.CheckCA(); err != nil {
		t.Fatalf("same cluster: %v", err)
	}
	other := newClusterFor(t, tconfig.TalosVersion1_11) // its own secrets bundle
	mixed, err := New(Options{WorkerConfigFile: c.worker, TalosconfigFile: other.talosconfig})
	if err != nil {
		t.Fatal(err)
	}
	err = mixed.CheckCA()
	if err == nil || !strings.Contains(err.Error(), other.talosconfig) || !strings.Contains(err.Error(), c.worker) || !strings.Contains(err.Error(), "is not the CA") {
		t.Fatalf("mismatched CA: %v", err)
	}
}

// TestRenderStandby: a standby build's kubelet registers the Node with the
// standby taint; a normal one does not. Both validate, on both contracts.
func TestRenderStandby(t *testing.T) {
	for _, c := range []*cluster{newCluster(t), newClusterFor(t, tconfig.TalosVersion1_11)} {
		cl := newClient(t, c, "50000", nil, nil)
		for _, sb := range []bool{false, true} {
			data, err := cl.Render(Node{Name: "w1", VMID: 5001, Host: "pve1", IP: "127.0.0.1", Standby: sb})
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := configloader.NewFromBytes(data)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Machine().NodeLabels()[LabelManaged] != "true" {
				t.Errorf("standby %v: labels %v", sb, cfg.Machine().NodeLabels())
			}
			got := strings.Join(cfg.Machine().Kubelet().ExtraArgs()["register-with-taints"], ",")
			if sb && got != StandbyTaint || !sb && got != "" {
				t.Errorf("standby %v: register-with-taints %q", sb, got)
			}
		}
	}
}

// TestApplyRefusesAnotherMachine: in maintenance mode (no authentication)
// the config, which holds the cluster's secrets, goes only to a machine
// whose SystemInformation reports the VM's SMBIOS UUID.
func TestApplyRefusesAnotherMachine(t *testing.T) {
	c := newCluster(t)
	node := startNode(t, c, talosfake.Options{UUID: "6c2a5d2e-1111-4abc-8def-0123456789ab"})
	cl := newClient(t, c, node.Port(), nil, nil)
	n := Node{Name: "w1", VMID: 5001, Host: "pve1", IP: node.IP(), UUID: "0f8e6a3c-1d2b-4c5d-9e7f-a1b2c3d4e5f6"}

	var ie *IdentityError
	err := cl.Apply(context.Background(), n)
	if !errors.As(err, &ie) || ie.Expected != n.UUID || ie.Found != node.UUID() || ie.IP != n.IP || ie.Node != "w1" || ie.Op != "apply" {
		t.Fatalf("apply to another machine: want IdentityError naming both UUIDs, got %v", err)
	}
	for _, s := range []string{n.UUID, node.UUID(), n.IP} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if node.IdentityReads() == 0 {
		t.Error("the machine's SystemInformation was never read")
	}

	// Unknown expected UUID: refused without asking.
	reads := node.IdentityReads()
	if err := cl.Apply(context.Background(), Node{Name: "w1", VMID: 5001, Host: "pve1", IP: node.IP()}); !errors.As(err, &ie) || ie.Expected != "" {
		t.Fatalf("apply with no expected UUID: want IdentityError, got %v", err)
	}
	if node.IdentityReads() != reads {
		t.Error("an apply with no expected UUID still talked to the machine")
	}

	// The fault: the machine reports another UUID than its own.
	n.UUID = node.UUID()
	node.ReportUUID("9a9a9a9a-2222-4bbb-8ccc-dddddddddddd")
	if err := cl.Apply(context.Background(), n); !errors.As(err, &ie) || ie.Found != "9a9a9a9a-2222-4bbb-8ccc-dddddddddddd" {
		t.Fatalf("apply to a machine reporting another UUID: %v", err)
	}
	if got := node.Applied(); len(got) != 0 || node.State() != talosfake.Maintenance {
		t.Fatalf("%d configs reached a machine that is not the VM (state %s)", len(got), node.State())
	}

	// Its own UUID, written upper case as PVE may keep it: applied.
	node.ReportUUID("")
	n.UUID = strings.ToUpper(node.UUID())
	if err := cl.Apply(context.Background(), n); err != nil {
		t.Fatalf("apply to the right machine: %v", err)
	}
	if len(node.Applied()) != 1 {
		t.Fatalf("%d configs applied to the right machine", len(node.Applied()))
	}
}

// TestResetRefusesAnotherMachine: over mTLS, a reset goes only to a
// machine whose SystemInformation reports the VM's SMBIOS UUID.
func TestResetRefusesAnotherMachine(t *testing.T) {
	c := newCluster(t)
	node, cl, n := installedNode(t, c, talosfake.Options{})
	waitState(t, node, talosfake.Running)
	reads := node.IdentityReads()

	node.ReportUUID("9a9a9a9a-2222-4bbb-8ccc-dddddddddddd")
	var ie *IdentityError
	err := cl.Reset(context.Background(), n)
	if !errors.As(err, &ie) || ie.Op != "reset" || ie.Expected != n.UUID || ie.Found != "9a9a9a9a-2222-4bbb-8ccc-dddddddddddd" || ie.IP != n.IP {
		t.Fatalf("reset of another machine: want IdentityError, got %v", err)
	}
	if node.IdentityReads() == reads {
		t.Error("SystemInformation not read over mTLS")
	}
	for _, md := range node.NodeMetadata() {
		if md != n.IP {
			t.Errorf("node metadata %q, want %s", md, n.IP)
		}
	}
	empty := n
	empty.UUID = ""
	if err := cl.Reset(context.Background(), empty); !errors.As(err, &ie) || ie.Expected != "" {
		t.Fatalf("reset with no expected UUID: want IdentityError, got %v", err)
	}
	if len(node.Resets()) != 0 || node.State() != talosfake.Running {
		t.Fatalf("%d resets reached a machine that is not the VM (state %s)", len(node.Resets()), node.State())
	}

	node.ReportUUID("")
	if err := cl.Reset(context.Background(), n); err != nil {
		t.Fatalf("reset of the right machine: %v", err)
	}
	if len(node.Resets()) != 1 || node.State() != talosfake.Halted {
		t.Fatalf("%d resets, state %s", len(node.Resets()), node.State())
	}
}
