package pvesim

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const secret = "5f0c3b1e-0000-4000-8000-000000000001"

type env struct {
	t   *testing.T
	sim *Sim
	srv *Server
	hc  *http.Client
}

func start(t *testing.T, mod func(*World)) *env {
	t.Helper()
	w := DefaultWorld(secret)
	w.Latencies = FastLatencies()
	w.Users = []UserSpec{{Name: "root@pam", Password: "pw"}}
	w.VMs = []VMSpec{{VMID: 100, Name: "pihole", Host: "pve1", Storage: "local-lvm", Cores: 1, Memory: 1024, Disk: 8 << 30, Running: true}}
	if mod != nil {
		mod(&w)
	}
	sim, err := New(w, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sim.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CertPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	return &env{t: t, sim: sim, srv: srv, hc: hc}
}

type answer struct {
	status string
	code   int
	body   map[string]any
	raw    string
}

// call sends a raw request; body is form-encoded unless it starts with '{'.
func (e *env) call(method, path, body string, hdr ...string) answer {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "PVEAPIToken=autoscaler@pve!scaler="+secret)
	if body != "" {
		if strings.HasPrefix(body, "{") {
			req.Header.Set("Content-Type", "application/json")
		} else {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a := answer{status: res.Status, code: res.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func (e *env) ok(method, path, body string) any {
	e.t.Helper()
	a := e.call(method, path, body)
	if a.code != 200 {
		e.t.Fatalf("%s %s: %s %s", method, path, a.status, a.raw)
	}
	return a.body["data"]
}

// wait polls a task until it stops and returns its status answer.
func (e *env) wait(upid string) map[string]any {
	e.t.Helper()
	node := strings.Split(upid, ":")[1]
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := e.ok("GET", "/nodes/"+node+"/tasks/"+url.PathEscape(upid)+"/status", "").(map[string]any)
		if st["status"] == "stopped" {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s still running", upid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func expectError(t *testing.T, a answer, code int, msg string) {
	t.Helper()
	if want := fmt.Sprintf("%d %s", code, msg); a.code != code || a.status != want {
		t.Errorf("status line %q, want %q", a.status, want)
	}
	if a.body == nil || a.body["data"] != nil || a.body["message"] != msg+"\n" {
		t.Errorf("body %s, want data null and message %q", a.raw, msg+"\n")
	}
}

var upidRE = regexp.MustCompile(`^UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:qmclone:9000:autoscaler@pve!scaler:$`)

func TestEnvelopeAndVersion(t *testing.T) {
	e := start(t, nil)
	a := e.call("GET", "/version", "")
	if a.code != 200 || a.status != "200 OK" || !strings.HasPrefix(a.raw, `{"data":{`) {
		t.Fatalf("%s %s", a.status, a.raw)
	}
	v := a.body["data"].(map[string]any)
	if v["version"] != "9.0.3" || v["release"] != "9.0" {
		t.Errorf("version %v", v)
	}
}

func TestAuth(t *testing.T) {
	e := start(t, nil)
	expectError(t, e.call("GET", "/version", "", "Authorization", ""), 401, "No ticket")
	expectError(t, e.call("GET", "/version", "", "Authorization", "PVEAPIToken=autoscaler@pve!scaler=wrong"), 401, "authentication failure")

	// Ticket auth: the cookie for reads, plus the CSRF header for writes.
	a := e.call("POST", "/access/ticket", "username=root@pam&password=pw", "Authorization", "")
	if a.code != 200 {
		t.Fatalf("ticket: %s %s", a.status, a.raw)
	}
	d := a.body["data"].(map[string]any)
	ticket, csrf := d["ticket"].(string), d["CSRFPreventionToken"].(string)
	if !strings.HasPrefix(ticket, "PVE:root@pam:") || csrf == "" {
		t.Fatalf("ticket %v", d)
	}
	cookie := "PVEAuthCookie=" + ticket
	if a := e.call("GET", "/cluster/nextid", "", "Authorization", "", "Cookie", cookie); a.code != 200 {
		t.Errorf("GET with ticket: %s", a.status)
	}
	expectError(t, e.call("POST", "/nodes/pve1/qemu/100/status/stop", "", "Authorization", "", "Cookie", cookie), 401, "Permission denied - invalid csrf token")
	if a := e.call("POST", "/nodes/pve1/qemu/100/status/stop", "", "Authorization", "", "Cookie", cookie, "CSRFPreventionToken", csrf); a.code != 200 {
		t.Errorf("POST with ticket and CSRF: %s %s", a.status, a.raw)
	}
	expectError(t, e.call("POST", "/access/ticket", "username=root@pam&password=nope", "Authorization", ""), 401, "authentication failure")
}

func TestNextIDAndParameterErrors(t *testing.T) {
	e := start(t, nil)
	a := e.call("GET", "/cluster/nextid", "")
	if a.raw != `{"data":"101"}` {
		t.Errorf("nextid %s (a string; 100 is taken)", a.raw)
	}
	a = e.call("GET", "/cluster/nextid?vmid=9000", "")
	expectError(t, a, 400, "Parameter verification failed.")
	if errs := a.body["errors"].(map[string]any); errs["vmid"] != "VM 9000 already exists" {
		t.Errorf("errors %v", errs)
	}
	a = e.call("POST", "/nodes/pve1/qemu/9000/clone", "newid=5000&colour=blue&full=true")
	expectError(t, a, 400, "Parameter verification failed.")
	errs := a.body["errors"].(map[string]any)
	if !strings.Contains(errs["colour"].(string), "property is not defined in schema") || errs["full"] != "type check ('boolean') failed - got 'true'" {
		t.Errorf("errors %v", errs)
	}
	a = e.call("POST", "/nodes/pve1/qemu/9000/clone", "name=x")
	if errs := a.body["errors"].(map[string]any); errs["newid"] != "property is missing and it is not optional" {
		t.Errorf("missing newid: %s", a.raw)
	}
	expectError(t, e.call("GET", "/nodes/pve1/frobnicate", ""), 501, "Method 'GET /nodes/pve1/frobnicate' not implemented")
	expectError(t, e.call("GET", "/nodes/pve1/tasks/UPID:pve1:00000001:00000001:00000001:qmstart:1:x@pve:/status", ""), 400, "no such task")
}

func TestLinkedCloneLifecycle(t *testing.T) {
	e := start(t, nil)
	var events []Event
	var mu sync.Mutex
	e.sim.Subscribe(func(ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() })

	// JSON body, JSON booleans.
	upid := e.ok("POST", "/nodes/pve1/qemu/9000/clone", `{"newid": 5000, "name": "talos-worker-5000", "full": false, "target": "pve2", "description": "x"}`).(string)
	if !upidRE.MatchString(upid) {
		t.Fatalf("UPID %q", upid)
	}
	cfg := e.ok("GET", "/nodes/pve2/qemu/5000/config", "").(map[string]any)
	if cfg["lock"] != "clone" {
		t.Errorf("new VM not locked while cloning: %v", cfg)
	}
	expectError(t, e.call("PUT", "/nodes/pve2/qemu/5000/config", "cores=4"), 500, "VM 5000 is locked (clone)")
	st := e.wait(upid)
	if st["exitstatus"] != "OK" || st["type"] != "qmclone" || st["id"] != "9000" || st["node"] != "pve1" || st["user"] != "autoscaler@pve" || st["tokenid"] != "scaler" {
		t.Errorf("task status %v", st)
	}
	log := e.call("GET", "/nodes/pve1/tasks/"+url.PathEscape(upid)+"/log?start=0&limit=50", "")
	lines := log.body["data"].([]any)
	if log.body["total"] != float64(len(lines)) || lines[len(lines)-1].(map[string]any)["t"] != "TASK OK" || lines[0].(map[string]any)["n"] != float64(1) {
		t.Errorf("task log %s", log.raw)
	}
	if !strings.Contains(lines[0].(map[string]any)["t"].(string), "create linked clone of drive scsi0") {
		t.Errorf("log line %v", lines[0])
	}

	// Tags are normalized as PVE stores them; PUT is synchronous.
	if a := e.call("PUT", "/nodes/pve2/qemu/5000/config", "cores=4&memory=8192&tags="+url.QueryEscape("Pve-Autoscaler;cluster-homelab,zeta+1 pve-autoscaler")); a.raw != `{"data":null}` {
		t.Fatalf("PUT config: %s %s", a.status, a.raw)
	}
	cfg = e.ok("GET", "/nodes/pve2/qemu/5000/config", "").(map[string]any)
	if cfg["tags"] != "cluster-homelab;pve-autoscaler;zeta+1" || cfg["cores"] != float64(4) || cfg["memory"] != "8192" || cfg["lock"] != nil {
		t.Errorf("config %v", cfg)
	}
	a := e.call("PUT", "/nodes/pve2/qemu/5000/config", "tags=-bad")
	if a.code != 400 || !strings.Contains(a.raw, "invalid tag") {
		t.Errorf("bad tag: %s %s", a.status, a.raw)
	}

	// The agent: not running while stopped, then silent until it boots.
	expectError(t, e.call("GET", "/nodes/pve2/qemu/5000/agent/network-get-interfaces", ""), 500, "VM 5000 is not running")
	st = e.wait(e.ok("POST", "/nodes/pve2/qemu/5000/status/start", "").(string))
	if st["exitstatus"] != "OK" {
		t.Fatalf("start %v", st)
	}
	expectError(t, e.call("GET", "/nodes/pve2/qemu/5000/agent/network-get-interfaces", ""), 500, "QEMU guest agent is not running")
	if st := e.wait(e.ok("POST", "/nodes/pve2/qemu/5000/status/start", "").(string)); st["exitstatus"] != "VM 5000 already running" {
		t.Errorf("second start: %v", st)
	}
	// The agent answers once the VM has booted.
	deadline := time.Now().Add(5 * time.Second)
	for a := e.call("GET", "/nodes/pve2/qemu/5000/agent/network-get-interfaces", ""); a.code != 200; a = e.call("GET", "/nodes/pve2/qemu/5000/agent/network-get-interfaces", "") {
		if time.Now().After(deadline) {
			t.Fatalf("agent still silent: %s %s", a.status, a.raw)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ifs := e.ok("GET", "/nodes/pve2/qemu/5000/agent/network-get-interfaces", "").(map[string]any)["result"].([]any)
	eth0 := ifs[1].(map[string]any)
	ip := eth0["ip-addresses"].([]any)[0].(map[string]any)
	if eth0["name"] != "eth0" || !strings.HasPrefix(ip["ip-address"].(string), "127.0.0.") || ip["ip-address-type"] != "ipv4" {
		t.Errorf("interfaces %v", ifs)
	}
	cur := e.ok("GET", "/nodes/pve2/qemu/5000/status/current", "").(map[string]any)
	if cur["status"] != "running" || cur["agent"] != float64(1) || cur["template"] != nil {
		t.Errorf("status/current %v", cur)
	}

	// Destroy is refused while running; stop, then destroy.
	expectError(t, e.call("DELETE", "/nodes/pve2/qemu/5000?purge=1&destroy-unreferenced-disks=1", ""), 500, "VM 5000 is running - destroy failed")
	e.wait(e.ok("POST", "/nodes/pve2/qemu/5000/status/stop", "").(string))
	st = e.wait(e.ok("DELETE", "/nodes/pve2/qemu/5000?purge=1&destroy-unreferenced-disks=1", "").(string))
	if st["exitstatus"] != "OK" || st["type"] != "qmdestroy" {
		t.Errorf("destroy %v", st)
	}
	expectError(t, e.call("GET", "/nodes/pve2/qemu/5000/config", ""), 500, "Configuration file 'nodes/pve2/qemu-server/5000.conf' does not exist")

	mu.Lock()
	defer mu.Unlock()
	var kinds []string
	for _, ev := range events {
		kinds = append(kinds, string(ev.Type))
	}
	if strings.Join(kinds, ",") != "created,started,stopped,destroyed" || events[1].IP == "" || events[1].Host != "pve2" {
		t.Errorf("events %v", events)
	}
}

func TestSynchronousCloneRefusals(t *testing.T) {
	e := start(t, func(w *World) {
		w.VMs = append(w.VMs, VMSpec{VMID: 200, Name: "plain", Host: "pve1", Storage: "local-lvm", Cores: 1, Memory: 512, Disk: 1 << 30})
	})
	expectError(t, e.call("POST", "/nodes/pve1/qemu/9000/clone", "newid=100"), 500, "unable to create VM 100: config file already exists")
	expectError(t, e.call("POST", "/nodes/pve1/qemu/9000/clone", "newid=5000&full=0&storage=local-lvm"), 500, "parameter 'storage' not allowed for linked clones")
	expectError(t, e.call("POST", "/nodes/pve1/qemu/200/clone", "newid=5000&full=0"), 500, "Linked clone feature is not supported for drive 'scsi0'")
	expectError(t, e.call("POST", "/nodes/pve1/qemu/200/clone", "newid=5000&target=pve2"), 500, "can't clone VM to node 'pve2' (VM uses local storage)")
	expectError(t, e.call("POST", "/nodes/pve2/qemu/9000/clone", "newid=5000"), 500, "Configuration file 'nodes/pve2/qemu-server/9000.conf' does not exist")
	// A template cannot start: the failure is inside the task.
	if st := e.wait(e.ok("POST", "/nodes/pve1/qemu/9000/status/start", "").(string)); st["exitstatus"] != "you can't start a vm if it's a template" {
		t.Errorf("start template: %v", st)
	}
	if len(e.sim.VMs()) != 3 {
		t.Errorf("a refused clone left a VM behind: %v", e.sim.VMs())
	}
}

func TestFaults(t *testing.T) {
	e := start(t, nil)

	e.sim.FailNextClone("clone failed: command 'qemu-img' failed: exit code 1")
	st := e.wait(e.ok("POST", "/nodes/pve1/qemu/9000/clone", "newid=5000&full=0").(string))
	if st["exitstatus"] != "clone failed: command 'qemu-img' failed: exit code 1" {
		t.Errorf("failed clone: %v", st)
	}
	if _, ok := e.sim.Lookup(5000); ok {
		t.Error("failed clone left its VM")
	}

	e.sim.SetStorageLockLimit(1)
	u1 := e.ok("POST", "/nodes/pve1/qemu/9000/clone", "newid=5001&full=0").(string)
	u2 := e.ok("POST", "/nodes/pve1/qemu/9000/clone", "newid=5002&full=0").(string)
	if st := e.wait(u2); st["exitstatus"] != "can't lock file '/var/lock/pve-manager/pve-storage-shared' - got timeout" {
		t.Errorf("second parallel clone: %v", st)
	}
	if st := e.wait(u1); st["exitstatus"] != "OK" {
		t.Errorf("first parallel clone: %v", st)
	}
	e.sim.SetStorageLockLimit(0)

	e.sim.DenyPrivilege("VM.Allocate")
	expectError(t, e.call("POST", "/nodes/pve1/qemu/9000/clone", "newid=5003"), 403, "Permission check failed (/vms/5003, VM.Allocate)")

	e.sim.SetHostOnline("pve3", false)
	expectError(t, e.call("GET", "/nodes/pve3/status", ""), 595, "Connection refused")
	nodes := e.ok("GET", "/cluster/resources?type=node", "").([]any)
	if nodes[2].(map[string]any)["status"] != "offline" {
		t.Errorf("offline host shown as %v", nodes[2])
	}

	e.sim.FailRequests(1, 500, "proxy loop detected")
	expectError(t, e.call("GET", "/version", ""), 500, "proxy loop detected")
	if a := e.call("GET", "/version", ""); a.code != 200 {
		t.Errorf("fault outlived its count: %s", a.status)
	}

	e.sim.HangRequests(1)
	short := *e.hc
	short.Timeout = 100 * time.Millisecond
	req, _ := http.NewRequest("GET", e.srv.URL+"/version", nil)
	if _, err := short.Do(req); err == nil {
		t.Error("hung request answered")
	}

	if err := e.sim.MigrateVM(5001, "pve2"); err != nil {
		t.Fatal(err)
	}
	expectError(t, e.call("GET", "/nodes/pve1/qemu/5001/config", ""), 500, "Configuration file 'nodes/pve1/qemu-server/5001.conf' does not exist")
	res := e.ok("GET", "/cluster/resources?type=vm", "").([]any)
	found := false
	for _, r := range res {
		if m := r.(map[string]any); m["vmid"] == float64(5001) && m["node"] == "pve2" && m["id"] == "qemu/5001" && m["type"] == "qemu" {
			found = true
		}
	}
	if !found {
		t.Errorf("migrated VM not found on pve2 in %v", res)
	}
	if !e.sim.DeleteVM(5001) {
		t.Error("DeleteVM")
	}
}

func TestShutdownTimeoutAndCounters(t *testing.T) {
	e := start(t, nil)
	before := e.sim.Writes()
	e.sim.IgnoreShutdown(100)
	if st := e.wait(e.ok("POST", "/nodes/pve1/qemu/100/status/shutdown", "timeout=0").(string)); st["exitstatus"] != "VM quit/powerdown failed - got timeout" {
		t.Errorf("shutdown ignored: %v", st)
	}
	if st := e.wait(e.ok("POST", "/nodes/pve1/qemu/100/status/shutdown", "timeout=0&forceStop=1").(string)); st["exitstatus"] != "OK" {
		t.Errorf("forced shutdown: %v", st)
	}
	// Stop on a stopped VM succeeds.
	if st := e.wait(e.ok("POST", "/nodes/pve1/qemu/100/status/stop", "").(string)); st["exitstatus"] != "OK" {
		t.Errorf("stop stopped: %v", st)
	}
	if got := e.sim.Writes() - before; got != 3 {
		t.Errorf("writes %d, want 3", got)
	}
	if n := e.sim.Requests()["POST /nodes/{node}/qemu/{vmid}/status/shutdown"]; n != 2 {
		t.Errorf("shutdown count %d (%v)", n, e.sim.Requests())
	}
}

func TestServeOnlyLoopback(t *testing.T) {
	sim, err := New(DefaultWorld("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:8006", ":8006"} {
		if srv, err := sim.Serve(addr); err == nil {
			srv.Close()
			t.Errorf("%s accepted", addr)
		}
	}
}

func TestAsyncConfigAndPendingChanges(t *testing.T) {
	e := start(t, nil)
	// POST config is a task (qmconfig); on a running VM, cores become pending.
	upid := e.ok("POST", "/nodes/pve1/qemu/100/config", "cores=2&description=dns").(string)
	if !strings.Contains(upid, ":qmconfig:100:") {
		t.Fatalf("UPID %s", upid)
	}
	if st := e.wait(upid); st["exitstatus"] != "OK" {
		t.Fatalf("config task %v", st)
	}
	cfg := e.ok("GET", "/nodes/pve1/qemu/100/config", "").(map[string]any)
	cur := e.ok("GET", "/nodes/pve1/qemu/100/config?current=1", "").(map[string]any)
	if cfg["cores"] != float64(2) || cur["cores"] != float64(1) || cfg["description"] != "dns" {
		t.Errorf("pending %v current %v", cfg["cores"], cur["cores"])
	}
	// A stale digest is refused.
	expectError(t, e.call("PUT", "/nodes/pve1/qemu/100/config", "name=x&digest=0000"), 500, "detected modified configuration - file changed by other user? Try again.")
	// Success with warnings.
	e.sim.WarnNextTask(1)
	if st := e.wait(e.ok("POST", "/nodes/pve1/qemu/100/status/stop", "").(string)); st["exitstatus"] != "WARNINGS: 1" {
		t.Errorf("warned task %v", st)
	}
}

func TestFullClone(t *testing.T) {
	e := start(t, nil)
	upid := e.ok("POST", "/nodes/pve1/qemu/9000/clone", "newid=6000&full=1&storage=local-lvm&name=full").(string)
	if st := e.wait(upid); st["exitstatus"] != "OK" {
		t.Fatalf("full clone %v", st)
	}
	log := e.call("GET", "/nodes/pve1/tasks/"+url.PathEscape(upid)+"/log", "")
	if !strings.Contains(log.raw, "create full clone of drive scsi0") || !strings.Contains(log.raw, "transferred 10737418240 of 10737418240 (100.00%)") {
		t.Errorf("log %s", log.raw)
	}
	if v, _ := e.sim.Lookup(6000); v.Storage != "local-lvm" || v.Host != "pve1" || v.Template {
		t.Errorf("full clone %+v", v)
	}
}

// smbiosRE is smbios1 as PVE prints a VM's fresh one: a lower-case
// version 4 UUID.
var smbiosRE = regexp.MustCompile(`^uuid=[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestSMBIOSUUID(t *testing.T) {
	e := start(t, nil)
	var created []Event
	var mu sync.Mutex
	e.sim.Subscribe(func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Type == EventCreated {
			created = append(created, ev)
		}
	})
	tpl := e.ok("GET", "/nodes/pve1/qemu/9000/config", "").(map[string]any)["smbios1"]
	foreign := e.ok("GET", "/nodes/pve1/qemu/100/config", "").(map[string]any)["smbios1"]
	for _, v := range []any{tpl, foreign} {
		if s, _ := v.(string); !smbiosRE.MatchString(s) {
			t.Fatalf("smbios1 %v: want uuid=<random v4>", v)
		}
	}
	if tpl == foreign {
		t.Fatalf("two VMs made at start share smbios1 %v", tpl)
	}

	// Two clones of one template: each gets a new UUID, shown while it is
	// still locked and after.
	seen := map[any]int{tpl: 9000, foreign: 100}
	for _, id := range []string{"5000", "5001"} {
		upid := e.ok("POST", "/nodes/pve1/qemu/9000/clone", "newid="+id+"&name=w"+id).(string)
		locked := e.ok("GET", "/nodes/pve1/qemu/"+id+"/config", "").(map[string]any)
		e.wait(upid)
		cfg := e.ok("GET", "/nodes/pve1/qemu/"+id+"/config", "").(map[string]any)
		got, _ := cfg["smbios1"].(string)
		if !smbiosRE.MatchString(got) || locked["smbios1"] != got {
			t.Fatalf("clone %s: smbios1 %q (while cloning %v)", id, got, locked["smbios1"])
		}
		if other, dup := seen[got]; dup {
			t.Fatalf("clone %s has the smbios1 of VM %d: %s", id, other, got)
		}
		seen[got] = 0
	}
	mu.Lock()
	if len(created) != 2 || "uuid="+created[0].UUID == tpl || created[0].UUID == "" || created[0].UUID == created[1].UUID {
		t.Errorf("created events carry UUIDs %+v", created)
	}
	mu.Unlock()
	if v, _ := e.sim.Lookup(5000); "uuid="+v.UUID != e.ok("GET", "/nodes/pve1/qemu/5000/config", "").(map[string]any)["smbios1"] {
		t.Errorf("Lookup UUID %q differs from the config", v.UUID)
	}

	// Set through the config like any key; other fields kept as given.
	before := e.ok("GET", "/nodes/pve1/qemu/5000/config", "").(map[string]any)["digest"]
	const set = "manufacturer=UHJveG1veA==,uuid=0f8e6a3c-1d2b-4c5d-9e7f-a1b2c3d4e5f6,base64=1"
	if a := e.call("PUT", "/nodes/pve1/qemu/5000/config", "smbios1="+url.QueryEscape(set)); a.raw != `{"data":null}` {
		t.Fatalf("PUT smbios1: %s %s", a.status, a.raw)
	}
	cfg := e.ok("GET", "/nodes/pve1/qemu/5000/config", "").(map[string]any)
	if cfg["smbios1"] != set || cfg["digest"] == before {
		t.Errorf("after PUT: smbios1 %v, digest changed %v", cfg["smbios1"], cfg["digest"] != before)
	}
	a := e.call("PUT", "/nodes/pve1/qemu/5000/config", "smbios1=uuid=not-a-uuid")
	if errs, _ := a.body["errors"].(map[string]any); a.code != 400 || !strings.Contains(fmt.Sprint(errs["smbios1"]), "invalid format") {
		t.Errorf("bad uuid: %s %s", a.status, a.raw)
	}
	// A clone of that VM keeps its other fields and gets a new UUID.
	e.wait(e.ok("POST", "/nodes/pve1/qemu/5000/clone", "newid=5002&full=1").(string))
	got := e.ok("GET", "/nodes/pve1/qemu/5002/config", "").(map[string]any)["smbios1"].(string)
	if !strings.HasPrefix(got, "manufacturer=UHJveG1veA==,uuid=") || !strings.HasSuffix(got, ",base64=1") || strings.Contains(got, "0f8e6a3c") {
		t.Errorf("clone of a VM with more smbios1 fields: %q", got)
	}

	// The fault: another machine behind the same vmid.
	nu, err := e.sim.SetSMBIOSUUID(5001, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ok("GET", "/nodes/pve1/qemu/5001/config", "").(map[string]any)["smbios1"]; got != "uuid="+nu {
		t.Errorf("after SetSMBIOSUUID: smbios1 %v, want uuid=%s", got, nu)
	}
	if _, dup := seen["uuid="+nu]; dup {
		t.Errorf("SetSMBIOSUUID gave an old UUID %s", nu)
	}
	if _, err := e.sim.SetSMBIOSUUID(5001, "x"); err == nil {
		t.Error("SetSMBIOSUUID took a non-UUID")
	}
}

// TestDHCPReservations: a VM whose net0 MAC has a reservation takes its
// address when it starts, agent or not; one without takes the pool's
// next. A slowed config write lands only when it answers.
func TestDHCPReservations(t *testing.T) {
	e := start(t, func(w *World) {
		w.DHCP = []DHCPReservation{{MAC: "bc:24:11:00:00:01", IP: "127.0.9.201"}}
		w.Latencies.ConfigWrite = 50 * time.Millisecond
		w.Templates[0].Agent = false
	})
	for _, id := range []string{"5000", "5001"} {
		e.wait(e.ok("POST", "/nodes/pve1/qemu/9000/clone", `{"newid": `+id+`, "name": "w-`+id+`", "full": false}`).(string))
	}
	if a := e.call("PUT", "/nodes/pve1/qemu/5000/config", "net0="+url.QueryEscape("virtio=BC:24:11:00:00:01,bridge=vmbr0")); a.code != 200 {
		t.Fatalf("PUT net0: %s", a.raw)
	}
	for _, id := range []string{"5000", "5001"} {
		e.wait(e.ok("POST", "/nodes/pve1/qemu/"+id+"/status/start", "").(string))
	}
	ips := map[int]string{}
	for _, v := range e.sim.VMs() {
		ips[v.VMID] = v.IP
	}
	if ips[5000] != "127.0.9.201" {
		t.Errorf("VM 5000 with a reserved MAC is at %q, want 127.0.9.201", ips[5000])
	}
	if ips[5001] == "" || ips[5001] == "127.0.9.201" {
		t.Errorf("VM 5001 without a reservation is at %q", ips[5001])
	}
	if _, err := New(World{Hosts: []HostSpec{{Name: "pve1", Cores: 1, Memory: 1}}, DHCP: []DHCPReservation{{MAC: "nope", IP: "127.0.0.1"}}}, nil); err == nil || !strings.Contains(err.Error(), "dhcp[0]") {
		t.Errorf("a bad reservation: %v", err)
	}
}
