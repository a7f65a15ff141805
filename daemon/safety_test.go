package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
	"github.com/pve-autoscaler/pve-autoscaler/talos"
)

// safetyWatch records, while a row runs, what must never happen: a Node
// deleted while its VM exists, a VM destroyed while its Node held pods
// that were not drained, a foreign VM touched.
type safetyWatch struct {
	t      *testing.T
	w      *world.World
	events chan pvesim.Event
}

func watchSafety(t *testing.T, w *world.World) *safetyWatch {
	s := &safetyWatch{t: t, w: w, events: make(chan pvesim.Event, 1024)}
	w.Sim.Subscribe(func(e pvesim.Event) {
		select {
		case s.events <- e:
		default:
		}
	})
	return s
}

// destroyed lists the VMs destroyed so far.
func (s *safetyWatch) destroyed() []int {
	var out []int
	for {
		select {
		case e := <-s.events:
			if e.Type == pvesim.EventDestroyed {
				out = append(out, e.VMID)
			}
		default:
			return out
		}
	}
}

// nodeNames lists the managed Nodes.
func nodeNames(t *testing.T, w *world.World) []string {
	t.Helper()
	list, err := w.Kube.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: scaler.LabelManaged + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return names
}

// tickFor ticks the daemon for d (several times ConfirmAbsence).
func tickFor(d *Daemon, dur time.Duration) {
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		_, _ = d.Reconciler.Tick(context.Background())
		time.Sleep(100 * time.Millisecond)
	}
	d.Reconciler.Wait()
}

// TestSafetyMatrix: each row puts the daemon before a partial or wrong
// view and checks that nothing working was deleted or destroyed, then that
// the workers are back within policy once the fault ends.
func TestSafetyMatrix(t *testing.T) {
	rows := []struct {
		name  string
		fault func(*testing.T, *world.World) (end func())
		// during checks the world while the fault lasts.
		during func(*testing.T, *world.World, *Daemon, []int)
		want   int
		keep   bool // the row leaves a VM that is not ours any more: skip checkWorld
		// lossy: the fault itself kills pods (a Node deleted by hand makes
		// the pod GC delete its pods): the guarded workload is not checked.
		lossy bool
	}{
		{name: "scenario 1: the token loses VM.Audit (our VMs leave PVE's list)",
			fault: func(t *testing.T, w *world.World) func() {
				w.Sim.DenyPrivilege("VM.Audit")
				return func() { w.Sim.AllowPrivilege("VM.Audit") }
			},
			during: func(t *testing.T, w *world.World, d *Daemon, destroyed []int) {
				if st := d.Reconciler.Status(); !strings.Contains(st.SafetyHold, "none of the 2 Nodes") {
					t.Errorf("no safety hold: %q", st.SafetyHold)
				}
			}, want: 2},
		{name: "scenario 2: a person removes our tags from a running worker",
			fault: func(t *testing.T, w *world.World) func() {
				for _, v := range w.Sim.VMs() {
					if !v.Template && v.VMID != world.ForeignVMID {
						if err := w.Sim.SetTags(v.VMID); err != nil {
							t.Fatal(err)
						}
						break
					}
				}
				return func() {}
			},
			during: func(t *testing.T, w *world.World, d *Daemon, destroyed []int) {
				for _, v := range w.Sim.VMs() {
					if !v.Template && v.VMID != world.ForeignVMID && len(v.Tags) == 0 && !v.Running {
						t.Errorf("the untagged worker %d was stopped", v.VMID)
					}
					if len(v.Tags) == 0 && !v.Template && v.VMID != world.ForeignVMID {
						if len(nodeNames(t, w)) != 2 {
							t.Errorf("Nodes %v: the untagged worker's Node must stay", nodeNames(t, w))
						}
					}
				}
			}, want: 2, keep: true},
		{name: "scenario 4: a Node deleted by hand (kubectl delete node)",
			fault: func(t *testing.T, w *world.World) func() {
				names := nodeNames(t, w)
				if err := w.Kube.Client.CoreV1().Nodes().Delete(context.Background(), names[0], metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				return func() {}
			},
			// Its VM goes once the absence is confirmed, through the guards,
			// and a replacement comes: back to two workers.
			want: 2, lossy: true},
		// Issue 15: a withdraw that crashed between its uncordon and its
		// unmark left a "drained" mark of ours on a worker; a person then
		// drains it with kubectl (their cordon, no annotation of ours).
		// Their cordon is no drain of ours: the removal is withdrawn (the
		// mark goes, their cordon stays), never resumed into a reset.
		{name: "a person's cordon on a Node with a stale drained mark of ours",
			fault: func(t *testing.T, w *world.World) func() {
				name := nodeNames(t, w)[0]
				personDrains(t, w, name, map[string]any{scaler.AnnotationRemoval: scaler.RemovalDrained})
				return func() { patchNode(t, w, name, map[string]any{"spec": map[string]any{"unschedulable": nil}}) }
			},
			during: func(t *testing.T, w *world.World, d *Daemon, destroyed []int) {
				n, err := w.Kube.Client.CoreV1().Nodes().Get(context.Background(), nodeNames(t, w)[0], metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if !n.Spec.Unschedulable {
					t.Errorf("the person's cordon on %s was taken away", n.Name)
				}
				if m := n.Annotations[scaler.AnnotationRemoval]; m != "" {
					t.Errorf("the stale removal mark %q stays: not withdrawn", m)
				}
			}, want: 2},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			w := newWorld(t)
			d, _ := build(t, w, faultConfig(w, 2, 3), Options{RequestTimeout: 300 * time.Millisecond})
			minReady := guard(t, w)
			converge(t, d, "two workers", 90*time.Second, func() bool {
				v, n := joined(t, w)
				return v == 2 && n == 2 && ours(w) == 2
			})
			d.Reconciler.Wait()
			before := nodeNames(t, w)
			watch := watchSafety(t, w)
			end := row.fault(t, w)
			tickFor(d, 3*2*time.Second) // three times ConfirmAbsence
			destroyed := watch.destroyed()
			if row.during != nil {
				row.during(t, w, d, destroyed)
			}
			if !row.lossy {
				if len(destroyed) != 0 {
					t.Errorf("VMs destroyed during the fault: %v", destroyed)
				}
				if after := nodeNames(t, w); !slices.Equal(after, before) {
					t.Errorf("Nodes %v during the fault, %v before", after, before)
				}
			}
			end()
			converge(t, d, "back within policy", 90*time.Second, func() bool {
				_, n := joined(t, w)
				return n == row.want && d.Reconciler.Status().SafetyHold == ""
			})
			d.Reconciler.Wait()
			if !row.keep {
				checkWorld(t, w, row.want)
			}
			if m := minReady(); m < 1 && !row.lossy {
				t.Errorf("the guarded workload dropped to %d Ready pods", m)
			}
		})
	}
}

// Scenario 3: the daemon is down longer than max_provision_time after it
// sent a worker its config; the worker joined meanwhile. The next daemon
// adopts it: same VM, recorded joined, never destroyed.
func TestDaemonDownPastMaxProvisionTimeAdoptsTheWorker(t *testing.T) {
	w := newWorld(t)
	cfg := testConfig(w, 1, 3)
	cfg.Policy.MaxProvisionTime = config.Duration(3 * time.Second)
	var d *Daemon
	hook, crashed := crashAt(scaler.OpProvision, scaler.StepApplying, func() { d.Reconciler.Abort() })
	d, _ = build(t, w, cfg, Options{AfterStep: hook})
	if _, err := d.Reconciler.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-crashed:
	case <-time.After(30 * time.Second):
		t.Fatal("never reached applying")
	}
	d.Reconciler.Wait()
	watch := watchSafety(t, w)
	// Down for longer than max_provision_time; the machine installs and joins.
	deadline := time.Now().Add(30 * time.Second)
	for _, n := joined(t, w); n != 1; _, n = joined(t, w) {
		if time.Now().After(deadline) {
			t.Fatal("the worker never joined while the daemon was down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(4 * time.Second)
	d2, _ := build(t, w, cfg, Options{})
	converge(t, d2, "the worker adopted", 30*time.Second, func() bool {
		v, n := joined(t, w)
		return v == 1 && n == 1 && ours(w) == 1
	})
	d2.Reconciler.Wait()
	if got := watch.destroyed(); len(got) != 0 {
		t.Errorf("VMs destroyed: %v", got)
	}
	if got := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; got != 1 {
		t.Errorf("%d clones, want 1", got)
	}
	checkWorld(t, w, 1)
}

// Scenario 7: the clone's answer is lost (a client timeout while PVE goes
// on cloning): the retry takes that VM, never a second one.
func TestLostCloneAnswerMakesOneVM(t *testing.T) {
	w := newWorld(t)
	w.Sim.LoseNextAnswer("POST /nodes/{node}/qemu/{vmid}/clone")
	d, _ := build(t, w, testConfig(w, 1, 3), Options{RequestTimeout: 300 * time.Millisecond})
	converge(t, d, "one worker", 60*time.Second, func() bool {
		v, n := joined(t, w)
		return v == 1 && n == 1
	})
	d.Reconciler.Wait()
	if got := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; got != 2 {
		t.Errorf("%d clone requests, want 2 (the lost one, its retry)", got)
	}
	checkWorld(t, w, 1)
}

// Scenario 10: policy.drain.remove_undrained removes a node whose drain a
// PodDisruptionBudget refused, as configured; the node stays cordoned
// from the drain until it is gone, so no new pod lands on it first.
func TestRemoveUndrainedKeepsTheNodeCordoned(t *testing.T) {
	w := newWorld(t)
	startWith(t, w, 2)
	_, pdbHook := dbPinnedOnRemoval(t, w)
	cfg := testConfig(w, 1, 3)
	cfg.Policy.Drain.Timeout = config.Duration(2 * time.Second)
	cfg.Policy.Drain.RemoveUndrained = true
	var mu sync.Mutex
	var seen []string // the removed node's schedulability after each removal step
	node := ""
	hook := func(kind scaler.OperationKind, vmid int, step string) {
		pdbHook(kind, vmid, step)
		mu.Lock()
		defer mu.Unlock()
		if kind != scaler.OpRemove || node == "" {
			return
		}
		n, err := w.Kube.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		switch {
		case err != nil:
			seen = append(seen, step+": gone")
		case n.Spec.Unschedulable:
			seen = append(seen, step+": cordoned")
		default:
			seen = append(seen, step+": schedulable")
		}
	}
	d2, _ := build(t, w, cfg, Options{AfterStep: hook})
	converge(t, d2, "one worker, the other removed undrained", 60*time.Second, func() bool {
		mu.Lock()
		for _, op := range d2.Reconciler.Status().Operations {
			if op.Kind == scaler.OpRemove && node == "" {
				node = op.Node
			}
		}
		named := node != ""
		mu.Unlock()
		v, n := joined(t, w)
		return named && v == 1 && n == 1 && ours(w) == 1
	})
	d2.Reconciler.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if strings.HasSuffix(s, "schedulable") {
			t.Errorf("the node was schedulable during its removal: %v", seen)
		}
	}
	if !slices.Contains(seen, scaler.RemovalDrained+": cordoned") {
		t.Errorf("steps seen %v: want the node cordoned once recorded drained", seen)
	}
}

// crashAfterReset is the daemon's Talos port with a crash right after a
// reset went through, before the removal records it.
type crashAfterReset struct {
	talos.NodeOS
	crash func()
	once  sync.Once
}

func (c *crashAfterReset) Reset(ctx context.Context, m scaler.Machine, ip string) error {
	err := c.NodeOS.Reset(ctx, m, ip)
	if err == nil {
		c.once.Do(c.crash)
		return errors.New("crashed after the reset")
	}
	return err
}

// Scenario 9: the daemon is killed between the Talos reset and its record.
// The next daemon resumes the removal: the machine no longer answers,
// which counts as reset (with reset_unreachable: fail), and the VM goes;
// the removal never hangs retrying a reset against a halted machine.
func TestCrashBetweenResetAndItsRecord(t *testing.T) {
	w := newWorld(t)
	startWith(t, w, 2)
	d1, _ := build(t, w, testConfig(w, 1, 3), Options{})
	os := &crashAfterReset{NodeOS: talos.NodeOS{Client: d1.Talos, Identities: d1.PVE}}
	d1.Reconciler = scaler.NewReconciler(proxmox.NewWorkers(d1.PVE), os, d1.Kube,
		d1.Policy, scaler.ReconcileOptions{MaxProvisionTime: time.Minute, BackoffMin: time.Second, ConfirmAbsence: 2 * time.Second})
	crashed := make(chan struct{})
	os.crash = func() { d1.Reconciler.Abort(); close(crashed) }
	for deadline := time.Now().Add(60 * time.Second); ; {
		_, _ = d1.Reconciler.Tick(context.Background())
		select {
		case <-crashed:
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatalf("never crashed after a reset; status %+v", d1.Reconciler.Status())
			}
			continue
		}
		break
	}
	d1.Reconciler.Wait()
	resets := 0
	for _, v := range w.Sim.VMs() {
		if f := w.Talos(v.VMID); f != nil {
			resets += len(f.Resets())
		}
	}
	if resets != 1 {
		t.Fatalf("%d resets before the crash, want 1", resets)
	}
	resetting := 0
	for _, v := range w.Sim.VMs() {
		if slices.Contains(v.Tags, "step-"+scaler.StepResetting) {
			resetting++
		}
	}
	if resetting != 1 {
		t.Fatalf("%d VMs recorded resetting after the crash, want 1", resetting)
	}
	d2, _ := build(t, w, testConfig(w, 1, 3), Options{})
	convergeWorkers(t, w, d2, "the removal finished after the crash", 1)
	checkWorld(t, w, 1)
}

// Scenario 8: a scale-down that would park the worker in standby
// meets a drain a PodDisruptionBudget refuses. The worker stays: recorded
// joined (before its removal mark is cleared), uncordoned, running, its
// pods in place; nothing is powered off.
func TestParkWithAFailedDrainKeepsTheWorker(t *testing.T) {
	w := newWorld(t)
	startWith(t, w, 2)
	ns, pdbHook := dbPinnedOnRemoval(t, w)
	cfg := withStandby(w, 1, 3, 1)
	cfg.Policy.Drain.Timeout = config.Duration(2 * time.Second)
	watch := watchSafety(t, w)
	d2, _ := build(t, w, cfg, Options{AfterStep: pdbHook})
	converge(t, d2, "a park to fail on its drain", 60*time.Second, func() bool {
		return strings.Contains(d2.Reconciler.Status().LastError, "disruption budget")
	})
	d2.Reconciler.Wait()
	for _, e := range watch.destroyed() {
		t.Errorf("VM %d destroyed", e)
	}
	for _, v := range w.Sim.VMs() {
		if v.Template || v.VMID == world.ForeignVMID || slices.Contains(v.Tags, "step-"+scaler.StandbyPrefix+scaler.StepJoined) || slices.Contains(v.Tags, "step-"+scaler.StepStandby) {
			continue
		}
		if !v.Running {
			t.Errorf("worker VM %d powered off after a failed drain", v.VMID)
		}
	}
	waitRunning(t, w, ns, "app=db", 2)
	for _, name := range nodeNames(t, w) {
		n, err := w.Kube.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Annotations[scaler.AnnotationRemoval] != "" || (n.Spec.Unschedulable && !slices.ContainsFunc(n.Spec.Taints, func(tn corev1.Taint) bool { return tn.Key == scaler.TaintStandby })) {
			t.Errorf("Node %s after the failed park: cordoned %v, annotations %v", name, n.Spec.Unschedulable, n.Annotations)
		}
	}
}

// Scenario 11 end to end: two daemons with leader election. The leader is
// stopped (SIGTERM) while a provisioning step is held; through its grace
// it keeps renewing the Lease and the standby never leads; once the step
// is done the Lease is released, and the standby takes over and finishes
// the same worker: one clone, one machine config.
func TestLeaderStopsWithinItsGrace(t *testing.T) {
	w := newWorld(t)
	cfg := testConfig(w, 1, 3)
	cfg.Policy.Interval = config.Duration(time.Second)
	lease := "pve-autoscaler-grace-" + strconv.Itoa(w.TalosPort)
	cfg.Daemon.LeaderElection = config.LeaderElection{Enabled: true, Namespace: "kube-system", LeaseName: lease}
	const leaseFor = 2 * time.Second
	type runner struct {
		srv    *Server
		cancel context.CancelFunc
		done   chan error
	}
	start := func(o Options) runner {
		ctx, cancel := context.WithCancel(context.Background())
		o.TalosPort, o.Poll, o.Log = w.TalosPort, 5*time.Millisecond, failureLog(t)
		o.Lease, o.Renew, o.Retry = leaseFor, leaseFor/2, 100*time.Millisecond
		o.StopGrace = time.Minute
		d, err := Build(ctx, cfg, o)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		r := runner{srv: NewServer(d.Reconciler, NewMetrics(), time.Second), cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- d.Run(ctx, r.srv) }()
		t.Cleanup(cancel)
		return r
	}
	leading := func(r runner) bool {
		r.srv.mu.Lock()
		defer r.srv.mu.Unlock()
		return r.srv.leader
	}
	reached, held := make(chan int, 1), make(chan struct{})
	var once sync.Once
	a := start(Options{AfterStep: func(kind scaler.OperationKind, vmid int, step string) {
		if kind == scaler.OpProvision && step == scaler.StepApplying {
			once.Do(func() { reached <- vmid; <-held }) // the config is sent; the step is held
		}
	}})
	var vmid int
	select {
	case vmid = <-reached:
	case <-time.After(60 * time.Second):
		t.Fatal("the leader never sent a machine config")
	}
	b := start(Options{})
	a.cancel() // SIGTERM while the step is held: the grace begins
	readLease := func() (holder string, renewed time.Time) {
		l, err := w.Kube.Client.CoordinationV1().Leases("kube-system").Get(context.Background(), lease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		if l.Spec.RenewTime != nil {
			renewed = l.Spec.RenewTime.Time
		}
		return holder, renewed
	}
	holder, first := readLease()
	// Three Lease durations of grace: renewed all along, the standby never leads.
	for end := time.Now().Add(3 * leaseFor); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if leading(b) {
			t.Fatal("the standby led during the leader's grace")
		}
		if h, _ := readLease(); h != holder {
			t.Fatalf("the Lease passed from %q to %q during the grace", holder, h)
		}
	}
	if _, last := readLease(); !last.After(first.Add(leaseFor)) {
		t.Errorf("the Lease was not renewed during the grace (renewed %s, then %s)", first, last)
	}
	close(held)
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("the leader stopped with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the leader did not stop once its step was done")
	}
	for deadline := time.Now().Add(30 * time.Second); !leading(b); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the standby never took over")
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if v, n := joined(t, w); v == 1 && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the standby did not finish the worker")
		}
	}
	b.cancel()
	<-b.done
	if got := w.Sim.Requests()["POST /nodes/{node}/qemu/{vmid}/clone"]; got != 1 {
		t.Errorf("%d clones, want 1", got)
	}
	if n := w.Talos(vmid); n == nil || len(n.Applied()) != 1 {
		t.Errorf("VM %d: machine configs sent %v, want 1", vmid, n)
	}
}

// Scenario 5 end to end: a template without the guest agent, so each
// worker's address comes from its MAC's DHCP reservation
// (proxmox.dhcp_reservations). Three provisions start in one plan; config
// writes take 400 ms to land, so each provision reads the others' configs
// before their MACs are written. Still: three distinct MACs, each VM at
// its reservation's address, one machine config per machine.
func TestDHCPReservationsWithParallelProvisions(t *testing.T) {
	env := kubetest.Require(t)
	lat := pvesim.FastLatencies()
	lat.ConfigWrite = 400 * time.Millisecond
	var pool []config.MACIP
	w, err := world.New(env, world.Options{Latencies: &lat, PVE: func(pw *pvesim.World) {
		pw.Templates[0].Agent = false
		prefix := netip.MustParsePrefix(pw.IPPool)
		for i := range 4 { // high in the /24: never handed out by the pool meanwhile
			ip := netip.AddrFrom4([4]byte{prefix.Addr().As4()[0], prefix.Addr().As4()[1], prefix.Addr().As4()[2], byte(201 + i)})
			r := pvesim.DHCPReservation{MAC: fmt.Sprintf("BC:24:11:00:5E:%02X", i+1), IP: ip.String()}
			pw.DHCP = append(pw.DHCP, r)
			pool = append(pool, config.MACIP{MAC: r.MAC, IP: r.IP})
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	cfg := testConfig(w, 3, 4)
	cfg.Proxmox.DHCPReservations = pool
	// The three provisions meet once cloned: their configures (each reads
	// every config, then writes its MAC) start together, so the reads all
	// come before any write lands. Without the reservation in memory, two
	// take the same MAC (broken once, on a loaded machine: 2 of 3 runs
	// failed with the barrier, 1 of 3 without it; a provision's reads can
	// still lag a write by more than 400 ms under load).
	var cloned sync.WaitGroup
	cloned.Add(3)
	var mu sync.Mutex
	seen := map[int]bool{}
	barrier := func(kind scaler.OperationKind, vmid int, step string) {
		if kind != scaler.OpProvision || step != scaler.StepCloned {
			return
		}
		mu.Lock()
		first := !seen[vmid] && len(seen) < 3
		seen[vmid] = true
		mu.Unlock()
		if first {
			cloned.Done()
			cloned.Wait()
		}
	}
	d, _ := build(t, w, cfg, Options{AfterStep: barrier})
	convergeWorkers(t, w, d, "3 workers on their reservations", 3)
	reserved := map[string]string{}
	for _, r := range pool {
		reserved[r.MAC] = r.IP
	}
	macs := map[string]int{}
	configs := 0
	for _, v := range w.Sim.VMs() {
		if v.Template || v.VMID == world.ForeignVMID {
			continue
		}
		mac := ""
		for _, kv := range strings.Split(v.Net0, ",") {
			if _, m, ok := strings.Cut(kv, "="); ok && strings.Count(m, ":") == 5 {
				mac = strings.ToUpper(m)
			}
		}
		macs[mac]++
		if ip, ok := reserved[mac]; !ok || v.IP != ip {
			t.Errorf("VM %d: MAC %q, address %s; want a reserved MAC and its address %q", v.VMID, mac, v.IP, ip)
		}
		if n := w.Talos(v.VMID); n != nil {
			configs += len(n.Applied())
		}
	}
	for mac, n := range macs {
		if n != 1 {
			t.Errorf("MAC %s on %d VMs", mac, n)
		}
	}
	if len(macs) != 3 {
		t.Errorf("%d distinct MACs, want 3: %v", len(macs), macs)
	}
	applies, _ := w.Counts()
	if configs+applies != 3 {
		t.Errorf("%d machine configs sent to 3 machines, want one each", configs+applies)
	}
}

// patchNode merge-patches a Node as kubectl would (not as the daemon).
func patchNode(t *testing.T, w *world.World, name string, patch map[string]any) {
	t.Helper()
	b, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Kube.Client.CoreV1().Nodes().Patch(context.Background(), name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "kubectl-cordon"}); err != nil {
		t.Fatal(err)
	}
}

// personDrains is a person's kubectl drain of Node name: their cordon (no
// annotation of ours) with annotations added (the removal-of UUID of
// ann's mark is the Node's own), then its pods evicted (a PDB may refuse
// an eviction for a while: retried).
func personDrains(t *testing.T, w *world.World, name string, ann map[string]any) {
	t.Helper()
	ctx := context.Background()
	n, err := w.Kube.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ann[scaler.AnnotationRemoval]; ok {
		ann[scaler.AnnotationRemovalOf] = n.Status.NodeInfo.SystemUUID
	}
	patchNode(t, w, name, map[string]any{"metadata": map[string]any{"annotations": ann}, "spec": map[string]any{"unschedulable": true}})
	deadline := time.Now().Add(60 * time.Second)
	for {
		pods, err := w.Kube.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
		if err != nil {
			t.Fatal(err)
		}
		left := 0
		for _, p := range pods.Items {
			if ref := metav1.GetControllerOf(&p); ref != nil && ref.Kind == "DaemonSet" || p.DeletionTimestamp != nil {
				continue
			}
			left++
			_ = w.Kube.Client.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pods left on %s after a minute of evictions", left, name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
