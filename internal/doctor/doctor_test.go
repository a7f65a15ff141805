package doctor

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/daemon"
	"github.com/pve-autoscaler/pve-autoscaler/internal/world"
	"github.com/pve-autoscaler/pve-autoscaler/kube"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

func TestMain(m *testing.M) {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(kubetest.Main(m, kubetest.Options{}))
}

// setup is a world and a config file for it; mod changes the config.
type setup struct {
	t   *testing.T
	w   *world.World
	env *kubetest.Env
}

func newSetup(t *testing.T, opts world.Options) *setup {
	t.Helper()
	env := kubetest.Require(t)
	w, err := world.New(env, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return &setup{t: t, w: w, env: env}
}

func (s *setup) run(mod func(*config.Config)) Report {
	s.t.Helper()
	c := s.w.Config()
	if mod != nil {
		mod(c)
	}
	y, err := c.YAML()
	if err != nil {
		s.t.Fatal(err)
	}
	path := filepath.Join(s.t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return Run(context.Background(), Options{Path: path, Timeout: 20 * time.Second, TalosPort: s.w.TalosPort})
}

// expect asserts that a check ended with st and that its finding and fix
// say what they must.
func expect(t *testing.T, r Report, area, name string, st Status, finding, fix string) {
	t.Helper()
	cs := r.Find(area, name)
	for _, c := range cs {
		if c.Status == st && strings.Contains(c.Finding, finding) && strings.Contains(c.Fix, fix) {
			return
		}
	}
	var b bytes.Buffer
	_ = r.WriteText(&b)
	t.Fatalf("want %s %s/%s with finding %q and fix %q; got:\n%s", st, area, name, finding, fix, b.String())
}

// cleanCluster leaves the control plane as a fresh one: the workers and
// objects earlier tests made are gone, one foreign worker reports metrics.
func cleanCluster(t *testing.T, env *kubetest.Env) {
	t.Helper()
	ctx := context.Background()
	if err := env.CreateNode(ctx, kubetest.NodeSpec{Name: "doctor-w1", CPU: "4", Memory: "8Gi"}); err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatal(err)
	}
	env.Metrics.SetDown(false)
	env.Metrics.SetNode("doctor-w1", "500m", "1Gi")
}

// TestClean: a correct set-up gives every check OK, and each area is checked.
func TestClean(t *testing.T) {
	s := newSetup(t, world.Options{})
	cleanCluster(t, s.env)
	r := s.run(nil)
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if r.Count(Warn) != 0 || r.Count(Fail) != 0 {
		t.Fatalf("a clean set-up has findings:\n%s", b.String())
	}
	t.Logf("\n%s", b.String())
	for _, want := range [][2]string{
		{"config", "file"}, {"config", "cooldown"},
		{"proxmox", "api"}, {"proxmox", "tls"}, {"proxmox", "privileges"}, {"proxmox", "template"}, {"proxmox", "guest agent"},
		{"proxmox", "host pve1"}, {"proxmox", "host pve2"}, {"proxmox", "host pve3"},
		{"talos", "worker config"}, {"talos", "talosconfig"},
		{"kubernetes", "api"}, {"kubernetes", "rbac"}, {"kubernetes", "metrics api"}, {"kubernetes", "vpa"},
		{"kubernetes", "hpa requests"}, {"kubernetes", "hpa and vpa"}, {"kubernetes", "vpa single replica"}, {"kubernetes", "pdb"}, {"kubernetes", "workers"}, {"kubernetes", "identity"},
	} {
		if len(r.Find(want[0], want[1])) == 0 {
			t.Errorf("no %s/%s check:\n%s", want[0], want[1], b.String())
		}
	}
	expect(t, r, "kubernetes", "workers", OK, "it did not create (doctor-w1", "")
	// Nodes outside kubernetes.worker_selector are named as not counted.
	sel := s.run(func(c *config.Config) { c.Kubernetes.WorkerSelector = "doctor.example/none=x" })
	expect(t, sel, "kubernetes", "workers", OK, "outside kubernetes.worker_selector \"doctor.example/none=x\", not counted", "")
	if f := sel.Find("kubernetes", "workers"); len(f) != 1 || strings.Contains(f[0].Finding, "doctor-w1") {
		t.Errorf("doctor-w1 is outside the selector but counted: %+v", f)
	}
	expect(t, r, "kubernetes", "identity", OK, "agree by vmid and SMBIOS UUID", "")
	expect(t, r, "config", "cooldown", OK, "estimated", "")
	if !strings.Contains(b.String(), "checks: ") || !strings.Contains(b.String(), "0 FAIL") {
		t.Errorf("no summary line:\n%s", b.String())
	}
	if strings.Contains(b.String(), s.w.TokenSecret()) {
		t.Error("the token secret reached the report")
	}
}

func TestConfigFindings(t *testing.T) {
	s := newSetup(t, world.Options{})
	cleanCluster(t, s.env)
	r := s.run(func(c *config.Config) {
		c.Policy.CPU.ScaleUpAt, c.Policy.CPU.ScaleDownAt = 70, 50
		c.Policy.Cooldown.AfterScaleUp = config.Duration(time.Minute)
	})
	expect(t, r, "config", "policy.cpu", Warn, "20 points apart", "at least 30 points apart")
	expect(t, r, "config", "cooldown", Warn, "shorter than a worker's provisioning", "after_scale_up to at least")
	if r.Failed() {
		t.Error("warnings alone made the report fail")
	}

	// A config with problems: one FAIL with all of them; the areas they
	// touch are not checked, and say why.
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("cluster: {name: x}\npolicy: {min_workers: 9}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = Run(context.Background(), Options{Path: path})
	expect(t, r, "config", "file", Fail, "proxmox.url: required", "correct it in "+path)
	expect(t, r, "config", "file", Fail, "policy.min_workers (line 2:10): 9 is above max_workers 6", "")
	expect(t, r, "proxmox", "not checked", Warn, "proxmox.url", "correct the config problems")
	expect(t, r, "talos", "not checked", Warn, "talos.worker_config_file", "correct the config problems")
	if !r.Failed() || !r.ConfigFailed() || len(r.Find("proxmox", "api")) != 0 || len(r.Find("config", "file")) != 1 {
		t.Error("a broken config went on to the checks it touches, or gave more than one FAIL")
	}
	if len(r.Find("kubernetes", "api")) != 1 {
		t.Error("the Kubernetes checks, which no problem touches, did not run")
	}

	// A problem no other check reads (issue 20: a log level stopped
	// doctor at once): one FAIL, and every other check runs.
	r = s.run(func(c *config.Config) { c.Daemon.Log.Level = "verbose" })
	expect(t, r, "config", "file", Fail, `1 problem: daemon.log.level (line `, "correct it in")
	expect(t, r, "proxmox", "api", OK, "", "")
	expect(t, r, "kubernetes", "api", OK, "", "")
	if len(r.Find("talos", "worker config")) != 1 || r.Count(Fail) != 1 {
		var b bytes.Buffer
		_ = r.WriteText(&b)
		t.Errorf("want the config's one FAIL and every other check:\n%s", b.String())
	}
}

// TestCooldownMeasured: with workers of ours, the provisioning time is
// measured (VM creation in its description to Node creation), and a
// cooldown shorter than it is reported.
func TestCooldownMeasured(t *testing.T) {
	s := newSetup(t, world.Options{})
	cleanCluster(t, s.env)
	ctx := context.Background()
	c := s.w.Config()
	pc, err := proxmox.New(proxmox.Options{Proxmox: c.Proxmox, Cluster: c.Cluster.Name, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := pc.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vmid, err := pc.CloneNew(ctx, inv, "pve1")
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Configure(ctx, vmid, "pve1", "", scaler.StepJoined); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the Node registers a while after the clone
	name := pc.Name(vmid)
	if err := s.env.CreateNode(ctx, kubetest.NodeSpec{Name: name, CPU: "4", Memory: "8Gi",
		Labels: map[string]string{scaler.LabelManaged: "true", scaler.LabelVMID: strconv.Itoa(vmid), scaler.LabelHost: "pve1"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.env.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	r := s.run(nil)
	expect(t, r, "config", "cooldown", OK, "measured: median of the 1 workers", "")
	r = s.run(func(c *config.Config) { c.Policy.Cooldown.AfterScaleUp = config.Duration(500 * time.Millisecond) })
	expect(t, r, "config", "cooldown", Warn, "shorter than a worker's provisioning", "at least")
	expect(t, r, "kubernetes", "workers", OK, "1 workers created by pve-autoscaler", "")
}

func TestProxmoxFindings(t *testing.T) {
	t.Run("insecure TLS shows the fingerprint to pin", func(t *testing.T) {
		s := newSetup(t, world.Options{})
		r := s.run(func(c *config.Config) { c.Proxmox.TLS = config.TLS{InsecureSkipVerify: true} })
		expect(t, r, "proxmox", "tls", Warn, "not verified", s.w.PVE.Fingerprint)
	})
	t.Run("wrong fingerprint", func(t *testing.T) {
		s := newSetup(t, world.Options{})
		r := s.run(func(c *config.Config) { c.Proxmox.TLS.Fingerprint = strings.Repeat("AB:", 31) + "AB" })
		expect(t, r, "proxmox", "api", Fail, "does not match", "proxmox.tls.fingerprint")
	})
	t.Run("unreachable", func(t *testing.T) {
		s := newSetup(t, world.Options{})
		r := s.run(func(c *config.Config) { c.Proxmox.URL = "https://127.0.0.1:1/api2/json" })
		expect(t, r, "proxmox", "api", Fail, "127.0.0.1:1", "check proxmox.url")
	})
	t.Run("missing privileges on PVE 9", func(t *testing.T) {
		s := newSetup(t, world.Options{})
		s.w.Sim.DenyPrivilege("VM.PowerMgmt")
		s.w.Sim.DenyPrivilege("VM.GuestAgent.Audit")
		r := s.run(nil)
		expect(t, r, "proxmox", "privileges", Fail, "lacks VM.PowerMgmt (start and stop), VM.GuestAgent.Audit", `pveum role modify PVEAutoscaler --append 1 --privs "VM.PowerMgmt VM.GuestAgent.Audit"`)
	})
	t.Run("PVE 8 names VM.Monitor", func(t *testing.T) {
		nine := pvesim.Privileges("9.0.3") // a PVE 9 role on a PVE 8 host: no VM.Monitor
		s := newSetup(t, world.Options{PVE: func(pw *pvesim.World) {
			pw.Version = "8.4.1"
			pw.Tokens[0].Privileges = nine
		}})
		r := s.run(nil)
		expect(t, r, "proxmox", "privileges", Fail, "lacks VM.Monitor", `--privs "VM.Monitor"`)
		// Without the guest agent (DHCP reservations), VM.Monitor is not needed.
		r = s.run(func(c *config.Config) {
			c.Proxmox.DHCPReservations = []config.MACIP{{MAC: "BC:24:11:00:00:01", IP: "127.0.0.51"}, {MAC: "BC:24:11:00:00:02", IP: "127.0.0.52"},
				{MAC: "BC:24:11:00:00:03", IP: "127.0.0.53"}, {MAC: "BC:24:11:00:00:04", IP: "127.0.0.54"}, {MAC: "BC:24:11:00:00:05", IP: "127.0.0.55"}, {MAC: "BC:24:11:00:00:06", IP: "127.0.0.56"}}
		})
		expect(t, r, "proxmox", "privileges", OK, "every privilege", "")
	})
	t.Run("pool-scoped token", func(t *testing.T) {
		// deploy/proxmox-role.md's set-up: the role on the pool (holding
		// the template), /nodes, the storage and the bridge; nothing on /.
		const token = "autoscaler@pve!scaler"
		s := newSetup(t, world.Options{PVE: func(pw *pvesim.World) {
			pw.Roles = map[string][]string{"PVEAutoscaler": {"VM.Audit", "VM.Clone", "VM.Allocate", "VM.Config.CPU", "VM.Config.Memory",
				"VM.Config.Options", "VM.PowerMgmt", "VM.GuestAgent.Audit", "Datastore.AllocateSpace", "Datastore.Audit", "SDN.Use", "Sys.Audit"}}
			pw.Pools = []pvesim.PoolSpec{{Name: "workers", VMs: []int{9000}}}
			for _, p := range []string{"/pool/workers", "/nodes", "/storage/shared", "/sdn/zones/localnetwork/vmbr0"} {
				pw.ACL = append(pw.ACL, pvesim.ACLSpec{Path: p, UGID: token, Role: "PVEAutoscaler"})
			}
		}})
		pool := func(c *config.Config) { c.Proxmox.ResourcePool = "workers" }
		r := s.run(pool)
		for _, path := range []string{"/pool/workers", "/vms/9000", "/nodes/pve1", "/nodes/pve3", "/storage/shared", "/sdn/zones/localnetwork/vmbr0"} {
			expect(t, r, "proxmox", "privileges", OK, "every privilege the steps need on "+path, "")
		}
		for _, c := range r.Checks {
			if c.Area == "proxmox" && c.Status == Fail {
				t.Errorf("a clean pool-scoped set-up fails: %+v", c)
			}
		}
		// Without resource_pool, the VM privileges are looked for on /vms.
		r = s.run(nil)
		expect(t, r, "proxmox", "privileges", Fail, "lacks VM.Audit (inventory), VM.Clone (clone), VM.Allocate (clone)", "pveum acl modify /vms --tokens 'autoscaler@pve!scaler' --roles PVEAutoscaler")
		// A missing grant: its exact pveum line.
		s.w.Sim.Revoke("/sdn/zones/localnetwork/vmbr0", token)
		r = s.run(pool)
		expect(t, r, "proxmox", "privileges", Fail, "lacks SDN.Use (clone onto the template's bridge) on /sdn/zones/localnetwork/vmbr0",
			"pveum acl modify /sdn/zones/localnetwork/vmbr0 --tokens 'autoscaler@pve!scaler' --roles PVEAutoscaler")
		expect(t, r, "proxmox", "privileges", OK, "on /pool/workers", "")
		// A role short of a privilege: the role line.
		s.w.Sim.Revoke("/nodes", token)
		if err := s.w.Sim.Grant(pvesim.ACLSpec{Path: "/nodes", UGID: token, Role: "PVEAuditor"}); err != nil {
			t.Fatal(err)
		}
		s.w.Sim.Revoke("/pool/workers", token)
		if err := s.w.Sim.Grant(pvesim.ACLSpec{Path: "/pool/workers", UGID: token, Role: "PVEAuditor"}); err != nil {
			t.Fatal(err)
		}
		r = s.run(pool)
		expect(t, r, "proxmox", "privileges", Fail, "lacks VM.Clone (clone), VM.Allocate (clone)", `pveum role modify PVEAutoscaler --append 1 --privs "VM.Clone VM.Allocate`)
	})
	t.Run("template", func(t *testing.T) {
		s := newSetup(t, world.Options{})
		r := s.run(func(c *config.Config) { c.Proxmox.Template = config.VMRef{Name: "talos-v2"} })
		expect(t, r, "proxmox", "template", Fail, "talos-v2 not found", "set proxmox.template")
		r = s.run(func(c *config.Config) { c.Proxmox.Template = config.VMRef{ID: world.ForeignVMID} })
		expect(t, r, "proxmox", "template", Fail, "is not a template", fmt.Sprintf("qm template %d", world.ForeignVMID))
		s.w.Sim.SetTemplateAgent(9000, false)
		r = s.run(nil)
		expect(t, r, "proxmox", "guest agent", Fail, "no guest agent", "qm set 9000 --agent enabled=1")
	})
	t.Run("full clones without room", func(t *testing.T) {
		s := newSetup(t, world.Options{})
		s.w.Sim.SetStorageSize("shared", 15<<30) // the template takes 10 of it
		r := s.run(func(c *config.Config) { c.Proxmox.CloneMode = "full" })
		expect(t, r, "proxmox", "storage", Fail, "less than one full clone", "free space on shared")
		s.w.Sim.SetStorageSize("shared", 40<<30)
		r = s.run(func(c *config.Config) { c.Proxmox.CloneMode = "full" })
		expect(t, r, "proxmox", "storage", Warn, "room for 3 full clones", "lower policy.max_workers")
	})
	t.Run("hosts", func(t *testing.T) {
		s := newSetup(t, world.Options{})
		s.w.Sim.SetHostOnline("pve2", false)
		r := s.run(func(c *config.Config) { c.Proxmox.Hosts = []string{"pve1", "pve2", "pve7"} })
		expect(t, r, "proxmox", "host pve2", Warn, "offline", "bring it back")
		expect(t, r, "proxmox", "host pve1", OK, "room for 7 workers", "")
		expect(t, r, "proxmox", "host pve7", Fail, "not a node", "correct proxmox.hosts")
	})
}

func TestTalosFindings(t *testing.T) {
	s := newSetup(t, world.Options{})
	dir := t.TempDir()
	// The world's worker config with another cluster's talosconfig.
	other := newSetup(t, world.Options{})
	r := s.run(func(c *config.Config) { c.Talos.TalosconfigFile = other.w.Config().Talos.TalosconfigFile })
	expect(t, r, "talos", "talosconfig", Fail, "is not the CA", "the same secrets bundle")

	notWorker := filepath.Join(dir, "cp.yaml")
	data, err := os.ReadFile(s.w.Config().Talos.WorkerConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notWorker, bytes.Replace(data, []byte("type: worker"), []byte("type: controlplane"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.run(func(c *config.Config) { c.Talos.WorkerConfigFile = notWorker })
	expect(t, r, "talos", "worker config", Fail, notWorker, "worker.yaml")

	patch := filepath.Join(dir, "patch.yaml")
	if err := os.WriteFile(patch, []byte("- op: replace\n  path: /machine/nosuchfield/x\n  value: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.run(func(c *config.Config) { c.Talos.PatchFiles = []string{patch} })
	expect(t, r, "talos", "patches", Fail, patch, "correct the patch")
}

// kubeconfigFor writes a kubeconfig authenticating as a ServiceAccount.
func kubeconfigFor(t *testing.T, env *kubetest.Env, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatal(err)
	}
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %s, certificate-authority-data: %s}}]
users: [{name: u, user: {token: %s}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, env.APIServer, base64.StdEncoding.EncodeToString(env.CAPEM), tr.Status.Token)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubernetesFindings(t *testing.T) {
	s := newSetup(t, world.Options{})
	cleanCluster(t, s.env)
	ctx := context.Background()
	cs := s.env.Client

	t.Run("credentials without RBAC", func(t *testing.T) {
		kc := kubeconfigFor(t, s.env, "kube-system", "doctor-nobody")
		r := s.run(func(c *config.Config) { c.Kubernetes.Kubeconfig = kc })
		expect(t, r, "kubernetes", "rbac", Fail, "may not: get nodes, list nodes", "kubectl apply -f deploy/rbac.yaml")
		expect(t, r, "kubernetes", "pdb", Warn, "may not list poddisruptionbudgets", "--kubeconfig")
	})
	t.Run("unreachable API", func(t *testing.T) {
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := s.run(func(c *config.Config) { c.Kubernetes.Kubeconfig = kc })
		expect(t, r, "kubernetes", "api", Fail, "127.0.0.1:1", "kubectl --kubeconfig")
	})
	t.Run("metrics API missing", func(t *testing.T) {
		s.env.Metrics.SetDown(true)
		defer s.env.Metrics.SetDown(false)
		r := s.run(nil)
		expect(t, r, "kubernetes", "metrics api", Fail, "metrics.k8s.io unavailable", "--kubelet-insecure-tls")
	})

	ns := s.env.Namespace(t)
	one := int32(1)
	deploy := func(name string, replicas int32, cpuRequest bool) {
		t.Helper()
		res := corev1.ResourceRequirements{}
		if cpuRequest {
			res.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
		}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
			Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{NodeSelector: map[string]string{"doctor": "none"}, Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: res}}}}}}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	hpa := func(name, target string) {
		t.Helper()
		seventy := int32(70)
		h := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target},
			MinReplicas:    &one, MaxReplicas: 5,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &seventy}}}}}}
		if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("HPA without requests", func(t *testing.T) {
		deploy("norequests", 2, false)
		hpa("norequests", "norequests")
		r := s.run(nil)
		expect(t, r, "kubernetes", "hpa requests", Warn, "HPA "+ns+"/norequests scales Deployment norequests on cpu utilization, but container(s) app request no cpu", "set resources.requests.cpu on app")
	})

	installVPA(t, s.env)
	dyn, err := dynamic.NewForConfig(s.env.Rest)
	if err != nil {
		t.Fatal(err)
	}
	vpaFor := func(name, target, mode string) {
		t.Helper()
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec": map[string]any{"targetRef": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
				"updatePolicy": map[string]any{"updateMode": mode}},
		}}
		if _, err := dyn.Resource(VPAResource).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("HPA and VPA on the same workload", func(t *testing.T) {
		deploy("both", 2, true)
		hpa("both", "both")
		vpaFor("both-vpa", "both", "Auto")
		r := s.run(nil)
		expect(t, r, "kubernetes", "hpa and vpa", Warn, "HPA "+ns+"/both and VPA "+ns+"/both-vpa (Auto) both act on cpu of Deployment both", "controlledResources")
	})
	t.Run("VPA Auto on one replica", func(t *testing.T) {
		deploy("single", 1, true)
		vpaFor("single-vpa", "single", "Auto")
		vpaFor("single-initial", "single", "Initial") // Initial never evicts: not reported
		r := s.run(nil)
		expect(t, r, "kubernetes", "vpa single replica", Warn, "VPA "+ns+"/single-vpa in Auto mode on Deployment single with 1 replica", "updateMode to Initial")
		if n := len(r.Find("kubernetes", "vpa single replica")); n != 1 {
			t.Errorf("%d single-replica findings, want 1 (Initial mode does not evict)", n)
		}
	})
	t.Run("PDB allowing no disruption", func(t *testing.T) {
		zero := intstr.FromInt32(0)
		p := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "strict", Namespace: ns},
			Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "both"}}}}
		if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := s.run(nil)
		expect(t, r, "kubernetes", "pdb", Warn, "PodDisruptionBudget "+ns+"/strict: its spec allows no disruption", "maxUnavailable: 1")
	})
}

// installVPA installs the VerticalPodAutoscaler CRD (enough of it for the
// API to serve the objects doctor reads).
func installVPA(t *testing.T, env *kubetest.Env) {
	t.Helper()
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(env.Rest)
	if err != nil {
		t.Fatal(err)
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "verticalpodautoscalers.autoscaling.k8s.io",
			// As the real CRD: *.k8s.io groups need the approval annotation.
			"annotations": map[string]any{"api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/63797"}},
		"spec": map[string]any{
			"group": "autoscaling.k8s.io", "scope": "Namespaced",
			"names": map[string]any{"plural": "verticalpodautoscalers", "singular": "verticalpodautoscaler", "kind": "VerticalPodAutoscaler", "shortNames": []any{"vpa"}},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
		},
	}}
	if _, err := dyn.Resource(crds).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := dyn.Resource(VPAResource).Namespace("default").List(ctx, metav1.ListOptions{}); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the VPA CRD was not served within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStandbyPool: doctor shows standby and what keeps it from
// serving.
func TestStandbyPool(t *testing.T) {
	s := newSetup(t, world.Options{})
	cleanCluster(t, s.env)
	r := s.run(func(c *config.Config) { c.Policy.Standby.Size = 2 })
	expect(t, r, "proxmox", "standby", Warn, "standby 0 of 2 (hosts: any): empty", "refills standby")
	r = s.run(func(c *config.Config) { c.Policy.Standby.Size = 1; c.Policy.Standby.Hosts = []string{"pve9"} })
	expect(t, r, "proxmox", "standby", Fail, "names pve9, not a node", "correct policy.standby.hosts")

	// A daemon builds the pool; doctor lists its worker.
	c := s.w.Config()
	c.Policy.MinWorkers, c.Policy.Standby.Size = 1, 1
	c.Policy.ScaleUpAfter, c.Policy.ScaleDownAfter, c.Policy.Cooldown = 0, 0, config.Cooldown{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := daemon.Build(ctx, c, daemon.Options{TalosPort: s.w.TalosPort, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		p, _ := d.Reconciler.Tick(ctx)
		if p.Standby != nil && p.Standby.Ready == 1 && len(d.Reconciler.Status().Operations) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no standby worker built: %+v", p.Standby)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.Reconciler.Wait()
	r = s.run(func(c *config.Config) { c.Policy.Standby.Size = 1 })
	expect(t, r, "proxmox", "standby", OK, "standby 1 of 1 (hosts: any): talos-worker-", "")
	s.w.Sim.SetTemplateAgent(9000, true)
	r = s.run(func(c *config.Config) { c.Policy.Standby.Size = 1 })
	if !slices.ContainsFunc(r.Checks, func(c Check) bool {
		return strings.HasPrefix(c.Name, "standby talos-worker-") && c.Status == Warn && strings.Contains(c.Finding, "template whose configuration has changed")
	}) {
		var b bytes.Buffer
		_ = r.WriteText(&b)
		t.Errorf("no stale standby warning:\n%s", b.String())
	}
}

// TestIdentityFindings: doctor reports what the daemon would hold on.
// Two managed Nodes whose VMs are nowhere: a safety hold (FAIL); one: a
// WARN that the daemon confirms before acting.
func TestIdentityFindings(t *testing.T) {
	s := newSetup(t, world.Options{})
	cleanCluster(t, s.env)
	ctx := context.Background()
	add := func(name, vmid string) {
		if err := s.env.CreateNode(ctx, kubetest.NodeSpec{Name: name, CPU: "4", Memory: "8Gi", SystemUUID: "4c4c4544-0000-0000-0000-00000000" + vmid,
			Labels: map[string]string{scaler.LabelManaged: "true", scaler.LabelVMID: vmid}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.env.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	// The daemon's "kept" rule: a Node whose VM exists but is not ours (here
	// the template's vmid) lacks no VM; it is a WARN of its own.
	add("doctor-kept", "9000")
	expect(t, s.run(nil), "kubernetes", "identity", Warn, "VM 9000 (Node doctor-kept): the VM exists but is not ours", "tags")
	for _, f := range s.run(nil).Checks {
		if strings.Contains(f.Finding, "doctor-kept has no VM") {
			t.Errorf("a kept worker's Node is reported as one without a VM: %+v", f)
		}
	}
	add("doctor-ghost-1", "5801")
	expect(t, s.run(nil), "kubernetes", "identity", Warn, "Node doctor-ghost-1 has no VM", "Safety")
	add("doctor-ghost-2", "5802")
	expect(t, s.run(nil), "kubernetes", "identity", Fail, "safety hold", "Safety")
}

// TestKubernetesChecksWithExactlyTheRBACOfDeploy: doctor run as
// deploy/rbac.yaml's ServiceAccount finds every Kubernetes check the
// daemon needs OK, and the apiserver's audit log shows it was refused
// only what the daemon never needs (its HPA and VPA checks ask for more,
// and say so).
func TestKubernetesChecksWithExactlyTheRBACOfDeploy(t *testing.T) {
	s := newSetup(t, world.Options{})
	kubetest.ApplyRBAC(t, s.env, "../../deploy/rbac.yaml")
	kc, user := kubetest.ServiceAccountKubeconfig(t, s.env, "kube-system", "pve-autoscaler")
	begin := time.Now().Add(-time.Second)
	r := s.run(func(c *config.Config) { c.Kubernetes.Kubeconfig = kc; c.Daemon.Control.Name = "pve-autoscaler-control" }) // deploy/rbac.yaml's name
	// Not the daemon's: whole-cluster reads doctor asks for on its own
	// account, and the metrics API of a world with no worker yet (OK when
	// the shared control plane has one).
	beyond := map[string]string{
		"hpa":         "may not list horizontalpodautoscalers",
		"vpa":         "may not list verticalpodautoscalers",
		"metrics api": "reports no node",
	}
	n := 0
	for _, c := range r.Checks {
		if c.Area != "kubernetes" {
			continue
		}
		n++
		if c.Name == "metrics api" && c.Status == OK {
			continue // other tests' workers left in the shared control plane
		}
		if want, ok := beyond[c.Name]; ok {
			if c.Status != Warn || !strings.Contains(c.Finding, want) {
				t.Errorf("kubernetes %s: %s %q, want WARN %q", c.Name, c.Status, c.Finding, want)
			}
		} else if c.Status != OK {
			t.Errorf("kubernetes %s: %s %s (fix: %s)", c.Name, c.Status, c.Finding, c.Fix)
		}
	}
	reqs, err := s.env.AuditRequests(user, begin)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range reqs {
		if q.Code == 403 && q.Resource != "horizontalpodautoscalers" && q.Resource != "verticalpodautoscalers" {
			t.Errorf("refused: %s %s/%s %s/%s", q.Verb, q.Group, q.Resource, q.Namespace, q.Name)
		}
	}
	if n < len(beyond)+3 || len(reqs) == 0 {
		t.Errorf("%d kubernetes checks, %d requests as %s", n, len(reqs), user)
	}
}

// TestDoctorShowsPauseAndBoost: a pause set with `pve-autoscaler pause`
// is a warning naming who set it and why; an active boost is shown; an
// ended pause is not.
func TestDoctorShowsPauseAndBoost(t *testing.T) {
	s := newSetup(t, world.Options{})
	c := s.w.Config()
	now := time.Now()
	write := func(pause string) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: c.Daemon.Control.Name, Namespace: c.Daemon.Control.Namespace}, Data: map[string]string{
			kube.ControlKeyPause:  pause,
			kube.ControlKeyBoosts: fmt.Sprintf(`[{"workers":4,"by":"bob@pve2","since":%q,"until":%q}]`, now.Add(-time.Minute).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)),
		}}
		ctx := context.Background()
		_ = s.env.Client.CoreV1().ConfigMaps(cm.Namespace).Delete(ctx, cm.Name, metav1.DeleteOptions{})
		if _, err := s.env.Client.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = s.env.Client.CoreV1().ConfigMaps(cm.Namespace).Delete(ctx, cm.Name, metav1.DeleteOptions{})
		})
	}
	write(fmt.Sprintf(`{"by":"alice@pve1","reason":"disk swap","since":%q}`, now.Add(-time.Minute).Format(time.RFC3339)))
	r := s.run(nil)
	p := r.Find(areaKube, "pause")
	if len(p) != 1 || p[0].Status != Warn || !strings.Contains(p[0].Finding, "alice@pve1") || !strings.Contains(p[0].Finding, "disk swap") {
		t.Errorf("pause check: %+v", p)
	}
	if b := r.Find(areaKube, "boost"); len(b) != 1 || !strings.Contains(b[0].Finding, "raises the minimum to 4") {
		t.Errorf("boost check: %+v", b)
	}
	write(fmt.Sprintf(`{"by":"alice@pve1","since":%q,"until":%q}`, now.Add(-2*time.Hour).Format(time.RFC3339), now.Add(-time.Hour).Format(time.RFC3339)))
	if p := s.run(nil).Find(areaKube, "pause"); len(p) != 1 || p[0].Status != OK {
		t.Errorf("an ended pause: %+v", p)
	}
}
