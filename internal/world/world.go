// Package world is the simulated world pve-autoscaler runs against in its
// end-to-end tests (and the demo): pvesim for Proxmox, a fake Talos API on
// each started VM's address, and a real Kubernetes control plane with kwok.
// It is consistent end to end: when a VM's Talos endpoint receives its
// config and "reboots", a Node registers with the hostname and labels from
// that config and the VM's cores and memory as capacity. One identity runs
// through all three: the VM's smbios1 uuid is what its fake Talos machine
// reports as SystemInformation and its Node as systemUUID.
package world

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	tconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
	"github.com/pve-autoscaler/pve-autoscaler/talos/talosfake"
)

// Options shape the world.
type Options struct {
	// Latencies of PVE (default: a few milliseconds each).
	Latencies *pvesim.Latencies
	// InstallDelay is how long Talos takes to install and reboot (default 50ms).
	InstallDelay time.Duration
	// BootDelay is how long after a VM starts its Talos maintenance API
	// answers (default 0: at once).
	BootDelay time.Duration
	// PVE, if set, changes the simulated Proxmox VE before it starts
	// (its version, tokens, storages).
	PVE func(*pvesim.World)
	// Devices are what a device plugin advertises on the Node of a VM
	// passed a PCI mapping through: by mapping id, extended resources
	// ("igpu": {"gpu.intel.com/i915": "1"}).
	Devices map[string]map[string]string
}

// World is a running simulated world.
type World struct {
	Sim       *pvesim.Sim
	PVE       *pvesim.Server
	Kube      *kubetest.Env
	Dir       string
	TalosPort int
	IPPool    string

	bundle *secrets.Bundle
	opts   Options

	mu       sync.Mutex
	fakes    map[int]*talosfake.Node
	applies  int
	resets   int
	neverUp  int
	reject   int
	closed   bool
	nodeMade map[string]bool
	nodeUIDs map[types.UID]bool // every Node this world made, by UID (names repeat across worlds)
	joined   map[string]time.Time
	booting  map[int]*time.Timer
	// installed remembers each VM's applied config: started again (the
	// standby), it boots installed and its Node comes back.
	installed map[int][]byte
}

const tokenSecret = "11111111-2222-4333-8444-555566667777"

// ForeignVMID is a running VM of someone else's in every world.
const ForeignVMID = 100

func randInt(n int64) int64 {
	v, _ := rand.Int(rand.Reader, big.NewInt(n))
	return v.Int64()
}

// New starts pvesim and the Talos side, on the given control plane.
func New(kube *kubetest.Env, opts Options) (*World, error) {
	if opts.InstallDelay == 0 {
		opts.InstallDelay = 50 * time.Millisecond
	}
	w := &World{Kube: kube, opts: opts, fakes: map[int]*talosfake.Node{}, nodeMade: map[string]bool{}, nodeUIDs: map[types.UID]bool{}, joined: map[string]time.Time{}, booting: map[int]*time.Timer{}, installed: map[int][]byte{}}
	// A loopback /24 and a port of our own, so parallel test packages never meet.
	w.IPPool = fmt.Sprintf("127.%d.%d.0/24", 100+randInt(100), 1+randInt(250))
	w.TalosPort = int(20000 + randInt(30000))

	pw := pvesim.DefaultWorld(tokenSecret)
	pw.IPPool = w.IPPool
	// A guest that is not ours: the scaler must never touch it.
	pw.VMs = []pvesim.VMSpec{{VMID: ForeignVMID, Name: "pihole", Host: "pve1", Storage: "local-lvm", Cores: 1, Memory: 1024, Disk: 8 << 30, Running: true, Tags: "dns"}}
	pw.Latencies = pvesim.FastLatencies()
	if opts.Latencies != nil {
		pw.Latencies = *opts.Latencies
	}
	if opts.PVE != nil {
		opts.PVE(&pw)
	}
	sim, err := pvesim.New(pw, nil)
	if err != nil {
		return nil, err
	}
	w.Sim = sim
	sim.Subscribe(w.follow)
	if w.PVE, err = sim.Serve("127.0.0.1:0"); err != nil {
		return nil, err
	}

	if w.Dir, err = os.MkdirTemp("", "world-"); err != nil {
		return nil, err
	}
	if err := w.talosFiles(); err != nil {
		return nil, err
	}
	return w, nil
}

// talosFiles generates the cluster's secrets, worker config and talosconfig.
func (w *World) talosFiles() error {
	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), tconfig.TalosVersionCurrent)
	if err != nil {
		return err
	}
	w.bundle = bundle
	in, err := generate.NewInput("homelab", "https://127.0.0.1:6443", "1.34.0", generate.WithSecretsBundle(bundle),
		generate.WithEndpointList([]string{"127.0.0.1"}), generate.WithInstallDisk("/dev/sda"))
	if err != nil {
		return err
	}
	cfg, err := in.Config(machine.TypeWorker)
	if err != nil {
		return err
	}
	b, err := cfg.Bytes()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(w.Dir, "worker.yaml"), b, 0o600); err != nil {
		return err
	}
	tc, err := in.Talosconfig()
	if err != nil {
		return err
	}
	if b, err = tc.Bytes(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(w.Dir, "talosconfig"), b, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(w.Dir, "pve-token"), []byte(tokenSecret+"\n"), 0o600)
}

// Config is a daemon configuration for this world (policy at its defaults).
func (w *World) Config() *config.Config {
	c := config.Default()
	c.Cluster.Name = "homelab"
	c.Proxmox.URL = w.PVE.URL
	c.Proxmox.TokenID = "autoscaler@pve!scaler"
	c.Proxmox.TokenSecretFile = filepath.Join(w.Dir, "pve-token")
	c.Proxmox.TLS.Fingerprint = w.PVE.Fingerprint
	c.Proxmox.Template = config.VMRef{Name: "talos-worker-template"}
	c.Proxmox.IPCIDR = w.IPPool
	c.Proxmox.TaskTimeout = config.Duration(10 * time.Second)
	c.Proxmox.AgentTimeout = config.Duration(10 * time.Second)
	c.Proxmox.ShutdownTimeout = config.Duration(2 * time.Second)
	c.Talos.WorkerConfigFile = filepath.Join(w.Dir, "worker.yaml")
	c.Talos.TalosconfigFile = filepath.Join(w.Dir, "talosconfig")
	c.Talos.Port = w.TalosPort
	c.Kubernetes.Kubeconfig = w.Kube.Kubeconfig
	c.Policy.Timezone = "UTC"
	c.Daemon.TraceFile = filepath.Join(w.Dir, "trace.csv")
	// A control ConfigMap of its own: a pause in one world never holds
	// another's daemon on the shared control plane.
	c.Daemon.Control.Name = "pve-autoscaler-control-" + strings.TrimPrefix(filepath.Base(w.Dir), "world-")
	return &c
}

// TokenSecret is the PVE API token's secret.
func (w *World) TokenSecret() string { return tokenSecret }

// RejectNextApply makes the next n Talos endpoints refuse their config.
func (w *World) RejectNextApply(n int) { w.mu.Lock(); w.reject = n; w.mu.Unlock() }

// NeverUp makes the next n Talos endpoints never come back after install.
func (w *World) NeverUp(n int) { w.mu.Lock(); w.neverUp = n; w.mu.Unlock() }

// Counts returns the Talos applies and resets so far.
func (w *World) Counts() (applies, resets int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.applies, w.resets
}

// follow keeps a fake Talos API on every started VM's address.
func (w *World) follow(e pvesim.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	switch e.Type {
	case pvesim.EventStarted:
		if w.fakes[e.VMID] != nil || w.booting[e.VMID] != nil || e.IP == "" {
			return
		}
		if w.opts.BootDelay > 0 {
			w.booting[e.VMID] = time.AfterFunc(w.opts.BootDelay, func() {
				w.mu.Lock()
				defer w.mu.Unlock()
				if w.booting[e.VMID] == nil || w.closed {
					return
				}
				delete(w.booting, e.VMID)
				w.boot(e)
			})
			return
		}
		w.boot(e)
	case pvesim.EventStopped, pvesim.EventDestroyed:
		if t := w.booting[e.VMID]; t != nil {
			t.Stop()
			delete(w.booting, e.VMID)
		}
		if n := w.fakes[e.VMID]; n != nil {
			w.applies += len(n.Applied())
			w.resets += len(n.Resets())
			go n.Close()
			delete(w.fakes, e.VMID)
		}
		if w.installed[e.VMID] != nil {
			// Its kubelet stops, with the VM or as it is destroyed (by hand
			// too): the Node goes NotReady (kwok lets go of it).
			w.power(e.Name, false)
		}
		if e.Type == pvesim.EventDestroyed {
			delete(w.installed, e.VMID)
		}
	}
}

// boot starts a VM's fake Talos API: in maintenance mode, or installed
// when it was installed before; w.mu is held.
func (w *World) boot(vm pvesim.Event) {
	opts := talosfake.Options{
		Addr: net.JoinHostPort(vm.IP, strconv.Itoa(w.TalosPort)), CA: w.bundle.Certs.OS, InstallDelay: w.opts.InstallDelay,
		// The machine's SMBIOS UUID is its VM's smbios1 uuid.
		UUID: vm.UUID,
		OnInstalled: func(_ *talosfake.Node, cfg []byte) {
			w.mu.Lock()
			w.installed[vm.VMID] = cfg
			w.mu.Unlock()
			w.join(vm, cfg)
		},
		// A reset node's kubelet is gone; its Node object stays.
		OnReset: func(*talosfake.Node, *machineapi.ResetRequest) {
			w.mu.Lock()
			delete(w.installed, vm.VMID)
			w.mu.Unlock()
			w.leave(vm.Name)
		},
	}
	var n *talosfake.Node
	var err error
	if cfg := w.installed[vm.VMID]; cfg != nil {
		opts.OnInstalled = func(_ *talosfake.Node, cfg []byte) { w.rejoin(vm, cfg) }
		n, err = talosfake.StartInstalled(opts, cfg)
	} else {
		n, err = talosfake.Start(opts)
	}
	if err != nil {
		return
	}
	if w.neverUp > 0 {
		w.neverUp--
		n.NeverUp()
	}
	if w.reject > 0 {
		w.reject--
		n.RejectApply("1 error occurred:\n\t* machine.install.disk: disk /dev/sda not found")
	}
	w.fakes[vm.VMID] = n
}

// Talos is the fake Talos machine of a started VM (nil: none now).
func (w *World) Talos(vmid int) *talosfake.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fakes[vmid]
}

// JoinedAt is when the world registered the Node name (zero: not yet).
func (w *World) JoinedAt(name string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.joined[name]
}

// join registers the Node the applied config describes.
func (w *World) join(vm pvesim.Event, data []byte) {
	cfg, name, ok := nodeConfig(vm, data)
	if !ok {
		return
	}
	labels := map[string]string{}
	for k, v := range cfg.Machine().NodeLabels() {
		labels[k] = v
	}
	var taints []corev1.Taint
	// machine.nodeTaints, which Talos puts on its Node: "key: value:Effect".
	for k, v := range cfg.Machine().NodeTaints() {
		value, effect, ok := strings.Cut(v, ":")
		if !ok {
			value, effect = "", v
		}
		taints = append(taints, corev1.Taint{Key: k, Value: value, Effect: corev1.TaintEffect(effect)})
	}
	for _, t := range cfg.Machine().Kubelet().ExtraArgs()["register-with-taints"] {
		for _, one := range strings.Split(t, ",") {
			kv, effect, _ := strings.Cut(one, ":")
			k, v, _ := strings.Cut(kv, "=")
			taints = append(taints, corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)})
		}
	}
	var extended map[string]string
	if v, ok := w.Sim.Lookup(vm.VMID); ok {
		for _, val := range v.HostPCI {
			for _, f := range strings.Split(val, ",") {
				if id, ok := strings.CutPrefix(f, "mapping="); ok {
					for r, n := range w.opts.Devices[id] {
						if extended == nil {
							extended = map[string]string{}
						}
						extended[r] = n
					}
				}
			}
		}
	}
	err := w.Kube.CreateNode(context.Background(), kubetest.NodeSpec{Name: name, CPU: strconv.Itoa(vm.Cores), Memory: fmt.Sprintf("%dMi", vm.Memory), Labels: labels, Taints: taints,
		SystemUUID: vm.UUID, Extended: extended}) // the kubelet reads the VM's SMBIOS UUID
	if err == nil {
		n, gerr := w.Kube.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		w.mu.Lock()
		if gerr == nil {
			w.nodeUIDs[n.UID] = true
		}
		w.nodeMade[name] = true
		w.joined[name] = time.Now()
		w.mu.Unlock()
	}
}

// nodeConfig reads an applied machine config and the Node name it gives.
func nodeConfig(vm pvesim.Event, data []byte) (tconfig.Provider, string, bool) {
	cfg, err := configloader.NewFromBytes(data)
	if err != nil || cfg.Machine() == nil {
		return nil, "", false
	}
	name := vm.Name
	if h := cfg.NetworkHostnameConfig(); h != nil && h.Hostname() != "" {
		name = h.Hostname()
	}
	return cfg, name, true
}

// rejoin is an installed machine started again: its Node comes back
// Ready (or registers, if it was deleted meanwhile).
func (w *World) rejoin(vm pvesim.Event, data []byte) {
	_, name, ok := nodeConfig(vm, data)
	if !ok {
		return
	}
	if _, err := w.Kube.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{}); err != nil {
		w.join(vm, data)
		return
	}
	w.power(name, true)
	w.mu.Lock()
	w.joined[name] = time.Now()
	w.mu.Unlock()
}

// power makes a Node's kubelet stop (off: kwok lets go of it and it goes
// NotReady) or come back (on: kwok runs it again and it turns Ready).
func (w *World) power(name string, on bool) {
	ctx := context.Background()
	nodes := w.Kube.Client.CoreV1().Nodes()
	value := "off"
	if on {
		value = "fake"
	}
	_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Annotations[kubetest.KwokAnnotation] = value
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if on {
		return
	}
	_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		for i, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				n.Status.Conditions[i].Status = corev1.ConditionFalse
				n.Status.Conditions[i].Reason = "KubeletNotReady"
				n.Status.Conditions[i].Message = "the VM is stopped"
				n.Status.Conditions[i].LastTransitionTime = metav1.Now()
			}
		}
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// leave stops a reset machine's kubelet: its Node goes NotReady and stays,
// as a real one does until someone deletes it (Talos's reset does not).
func (w *World) leave(name string) {
	w.power(name, false)
}

// MadeNode says whether a Node UID is of a Node this world made: the
// control plane is shared by a package's tests, whose Nodes have the same
// names, and an Event recorded by an earlier test can arrive late.
func (w *World) MadeNode(uid types.UID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodeUIDs[uid]
}

// Close stops the fakes and pvesim and deletes the Nodes the world made.
func (w *World) Close() {
	w.mu.Lock()
	w.closed = true
	for _, t := range w.booting {
		t.Stop()
	}
	fakes := w.fakes
	w.fakes = map[int]*talosfake.Node{}
	made := w.nodeMade
	w.mu.Unlock()
	for _, n := range fakes {
		n.Close()
	}
	w.PVE.Close()
	for name := range made {
		_ = w.Kube.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
	}
	_ = os.RemoveAll(w.Dir)
}
