package pvesim

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

const (
	poolToken  = "scaler@pve!pool"
	poolSecret = "7d1c0f4e-2b3a-4c5d-8e6f-0a1b2c3d4e5f"
)

// autoscalerRole is deploy/proxmox-role.md's role for a PVE version.
func autoscalerRole(version string) []string {
	return []string{"VM.Audit", "VM.Clone", "VM.Allocate", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Options", "VM.Config.Network",
		"VM.PowerMgmt", AgentPrivilege(version), "Datastore.AllocateSpace", "Datastore.Audit", "SDN.Use", "Sys.Audit"}
}

// poolScoped is a world with deploy/proxmox-role.md's pool-scoped token:
// the role on the pool "workers" (holding the template), the nodes, the
// shared storage and the bridge vmbr0, nothing on "/".
func poolScoped(version string) func(*World) {
	return func(w *World) {
		w.Version = version
		w.Roles = map[string][]string{"PVEAutoscaler": autoscalerRole(version)}
		w.Pools = []PoolSpec{{Name: "workers", VMs: []int{9000}}}
		w.Tokens = append(w.Tokens, TokenSpec{ID: poolToken, Secret: poolSecret})
		for _, p := range []string{"/pool/workers", "/nodes", "/storage/shared", "/sdn/zones/localnetwork/vmbr0"} {
			w.ACL = append(w.ACL, ACLSpec{Path: p, UGID: poolToken, Role: "PVEAutoscaler"})
		}
	}
}

var asPool = []string{"Authorization", "PVEAPIToken=" + poolToken + "=" + poolSecret}

func no() *bool { f := false; return &f }

// TestACLEvaluation is PVE's ACL evaluation, one rule a row: privileges on
// a path come from the deepest level holding an entry for the token, with
// propagation, NoAccess, and pools lending theirs to members.
func TestACLEvaluation(t *testing.T) {
	const tok = "t@pve!x"
	cases := []struct {
		name     string
		acl      []ACLSpec
		path     string
		has, not []string
	}{
		{"propagates down from /", []ACLSpec{{Path: "/", Role: "PVEAuditor"}}, "/vms/101", []string{"VM.Audit", "Sys.Audit"}, []string{"VM.PowerMgmt"}},
		{"propagate off: the path itself", []ACLSpec{{Path: "/vms", Role: "PVEAuditor", Propagate: no()}}, "/vms", []string{"VM.Audit"}, nil},
		{"propagate off: not below", []ACLSpec{{Path: "/vms", Role: "PVEAuditor", Propagate: no()}}, "/vms/101", nil, []string{"VM.Audit"}},
		{"a deeper entry replaces a wider one", []ACLSpec{{Path: "/", Role: "Administrator"}, {Path: "/vms/102", Role: "PVEAuditor"}}, "/vms/102",
			[]string{"VM.Audit"}, []string{"VM.PowerMgmt", "VM.Allocate"}},
		{"the wider one still holds beside it", []ACLSpec{{Path: "/", Role: "Administrator"}, {Path: "/vms/102", Role: "PVEAuditor"}}, "/vms/103",
			[]string{"VM.PowerMgmt", "VM.Allocate"}, nil},
		{"a pool member also has what its pool inherits", []ACLSpec{{Path: "/", Role: "Administrator"}, {Path: "/vms/101", Role: "PVEAuditor"}}, "/vms/101",
			[]string{"VM.Audit", "VM.PowerMgmt"}, nil},
		{"a non-propagating entry above does not replace", []ACLSpec{{Path: "/", Role: "Administrator"}, {Path: "/vms", Role: "NoAccess", Propagate: no()}}, "/vms/101",
			[]string{"VM.PowerMgmt"}, nil},
		{"NoAccess masks", []ACLSpec{{Path: "/", Role: "Administrator"}, {Path: "/vms/102", Role: "NoAccess"}}, "/vms/102", nil, []string{"VM.Audit"}},
		{"roles on one level add up", []ACLSpec{{Path: "/vms", Role: "PVEAuditor"}, {Path: "/vms", Role: "PowerOnly"}}, "/vms/102",
			[]string{"VM.Audit", "VM.PowerMgmt"}, []string{"VM.Allocate"}},
		{"a pool lends to its VMs", []ACLSpec{{Path: "/pool/workers", Role: "PowerOnly"}}, "/vms/101", []string{"VM.PowerMgmt"}, nil},
		{"not to other VMs", []ACLSpec{{Path: "/pool/workers", Role: "PowerOnly"}}, "/vms/102", nil, []string{"VM.PowerMgmt"}},
		{"a pool lends to its storages", []ACLSpec{{Path: "/pool/workers", Role: "PVEAuditor"}}, "/storage/shared", []string{"Datastore.Audit"}, nil},
		{"a VM's own entry and its pool's add up", []ACLSpec{{Path: "/pool/workers", Role: "PowerOnly"}, {Path: "/vms/101", Role: "PVEAuditor"}}, "/vms/101",
			[]string{"VM.Audit", "VM.PowerMgmt"}, nil},
		{"another token's entries do not count", []ACLSpec{{Path: "/", UGID: "other@pve!y", Role: "Administrator"}}, "/vms/101", nil, []string{"VM.Audit"}},
		{"a trailing slash is the same path", []ACLSpec{{Path: "/vms/101/", Role: "PVEAuditor"}}, "/vms/101", []string{"VM.Audit"}, nil},
		{"no entry: nothing", nil, "/vms/101", nil, []string{"VM.Audit"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := DefaultWorld(secret)
			// Privileges empty, not nil: without an entry of its own, nothing on "/".
			w.Tokens = append(w.Tokens, TokenSpec{ID: tok, Secret: "s", Privileges: []string{}}, TokenSpec{ID: "other@pve!y", Secret: "s2"})
			w.VMs = []VMSpec{{VMID: 101, Name: "a", Host: "pve1", Storage: "shared"}, {VMID: 102, Name: "b", Host: "pve1", Storage: "shared"}}
			w.Pools = []PoolSpec{{Name: "workers", VMs: []int{101}, Storages: []string{"shared"}}}
			w.Roles = map[string][]string{"PowerOnly": {"VM.PowerMgmt"}}
			for _, a := range tc.acl {
				if a.UGID == "" {
					a.UGID = tok
				}
				w.ACL = append(w.ACL, a)
			}
			s, err := New(w, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			got := s.privilegesOn(tok, tc.path)
			s.mu.Unlock()
			for _, p := range tc.has {
				if !hasKey(got, p) {
					t.Errorf("%s lacks %s: %v", tc.path, p, keys(got))
				}
			}
			for _, p := range tc.not {
				if hasKey(got, p) {
					t.Errorf("%s has %s: %v", tc.path, p, keys(got))
				}
			}
		})
	}
}

func hasKey(m map[string]bool, k string) bool { _, ok := m[k]; return ok }

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The endpoints: /access/permissions by path (1: propagated, 0: that path
// only), GET and PUT /access/acl, and /cluster/resources showing only what
// the token may audit.
func TestACLEndpoints(t *testing.T) {
	e := start(t, poolScoped("9.0.3"))
	perms := e.callOK(t, "GET", "/access/permissions?path=/pool/workers", asPool).(map[string]any)
	if p := perms["/pool/workers"].(map[string]any); p["VM.Clone"] != float64(1) || p["Sys.Audit"] != float64(1) || len(p) != len(autoscalerRole("9")) {
		t.Errorf("permissions on /pool/workers: %v", p)
	}
	if p := e.callOK(t, "GET", "/access/permissions?path=/vms/100", asPool).(map[string]any)["/vms/100"].(map[string]any); len(p) != 0 {
		t.Errorf("permissions on a VM outside the pool: %v", p)
	}
	if p := e.callOK(t, "GET", "/access/permissions?path=/vms/9000", asPool).(map[string]any)["/vms/9000"].(map[string]any); p["VM.Clone"] != float64(1) {
		t.Errorf("permissions on the template, a pool member: %v", p)
	}
	all := e.callOK(t, "GET", "/access/permissions", asPool).(map[string]any)
	var paths []string
	for p := range all {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if want := []string{"/nodes", "/pool/workers", "/sdn/zones/localnetwork/vmbr0", "/storage/shared", "/vms/9000"}; !slices.Equal(paths, want) {
		t.Errorf("permissions without a path: %v, want %v", paths, want)
	}

	// The pool-scoped token sees its pool's VMs, the nodes' figures and its storage only.
	res := e.callOK(t, "GET", "/cluster/resources", asPool).([]any)
	var seen []string
	for _, r := range res {
		m := r.(map[string]any)
		seen = append(seen, fmt.Sprint(m["id"]))
		if m["type"] == "node" && m["maxmem"] == nil {
			t.Errorf("node without its figures: %v", m)
		}
		if m["id"] == "qemu/9000" && m["pool"] != nil {
			t.Errorf("template entry shows its pool without Pool.Audit: %v", m)
		}
	}
	if got := strings.Join(seen, " "); got != "node/pve1 node/pve2 node/pve3 storage/pve1/shared storage/pve2/shared storage/pve3/shared qemu/9000" {
		t.Errorf("resources %s", got)
	}
	for _, r := range e.callOK(t, "GET", "/cluster/resources?type=vm", nil).([]any) {
		if m := r.(map[string]any); m["id"] == "qemu/9000" && m["pool"] != "workers" {
			t.Errorf("template entry for the administrator: %v", m)
		}
	}
	// Without Sys.Audit on /nodes, nodes are listed without their figures.
	a := e.call("PUT", "/access/acl", "path=/nodes&tokens="+poolToken+"&roles=PVEAutoscaler&delete=1")
	if a.code != 200 {
		t.Fatalf("PUT /access/acl delete: %s %s", a.status, a.raw)
	}
	for _, r := range e.callOK(t, "GET", "/cluster/resources?type=node", asPool).([]any) {
		if m := r.(map[string]any); m["maxmem"] != nil || m["status"] != "online" {
			t.Errorf("node without Sys.Audit: %v", m)
		}
	}
	expectError(t, e.call("GET", "/nodes/pve1/status", "", asPool...), 403, "Permission check failed (/nodes/pve1, Sys.Audit)")

	// GET /access/acl lists the entries; a token without Permissions.Modify may not add any.
	acl := e.callOK(t, "GET", "/access/acl", nil).([]any)
	found := 0
	for _, x := range acl {
		m := x.(map[string]any)
		if m["ugid"] == poolToken {
			found++
			if m["type"] != "token" || m["roleid"] != "PVEAutoscaler" || m["propagate"] != float64(1) {
				t.Errorf("acl entry %v", m)
			}
		}
	}
	if found != 3 {
		t.Errorf("%d entries for %s after one was deleted: %v", found, poolToken, acl)
	}
	expectError(t, e.call("PUT", "/access/acl", "path=/&tokens="+poolToken+"&roles=Administrator", asPool...), 403, "Permission check failed (/, Permissions.Modify)")
	expectError(t, e.call("PUT", "/access/acl", "path=/&tokens="+poolToken+"&roles=Nope"), 500, "role 'Nope' does not exist")
	// propagate=0 shows as 0 in /access/permissions.
	if a := e.call("PUT", "/access/acl", "path=/nodes/pve2&tokens="+poolToken+"&roles=PVEAuditor&propagate=0"); a.code != 200 {
		t.Fatalf("PUT /access/acl: %s %s", a.status, a.raw)
	}
	if p := e.callOK(t, "GET", "/access/permissions?path=/nodes/pve2", asPool).(map[string]any)["/nodes/pve2"].(map[string]any); p["Sys.Audit"] != float64(0) {
		t.Errorf("a non-propagating grant: %v", p)
	}
}

// callOK is ok with extra headers.
func (e *env) callOK(t *testing.T, method, path string, hdr []string) any {
	t.Helper()
	a := e.call(method, path, "", hdr...)
	if a.code != 200 {
		t.Fatalf("%s %s: %s %s", method, path, a.status, a.raw)
	}
	return a.body["data"]
}

// A clone into the pool with the pool-scoped token: VM.Allocate on the
// pool stands for VM.Allocate on the new vmid, the new VM joins the pool
// and so the token may run it; SDN.Use on the bridge is needed too.
func TestCloneIntoAPoolWithPoolScopedToken(t *testing.T) {
	e := start(t, poolScoped("9.0.3"))
	expectError(t, e.call("POST", "/nodes/pve1/qemu/9000/clone", "newid=5000", asPool...), 403, "Permission check failed (/vms/5000, VM.Allocate)")
	expectError(t, e.call("POST", "/nodes/pve1/qemu/9000/clone", "newid=5000&pool=other", asPool...), 403, "Permission check failed (pool 'other' does not exist)")
	expectError(t, e.call("POST", "/nodes/pve1/qemu/100/clone", "newid=5000&pool=workers&full=1", asPool...), 403, "Permission check failed (/vms/100, VM.Clone)")

	a := e.call("POST", "/nodes/pve1/qemu/9000/clone", "newid=5000&pool=workers&name=w1", asPool...)
	if a.code != 200 {
		t.Fatalf("clone into the pool: %s %s", a.status, a.raw)
	}
	if st := e.wait(a.body["data"].(string)); st["exitstatus"] != "OK" {
		t.Fatalf("clone task %v", st)
	}
	if v, _ := e.sim.Lookup(5000); v.Pool != "workers" {
		t.Errorf("the clone is in pool %q, want workers", v.Pool)
	}
	// The pool lends its privileges to its new member, not to other VMs.
	if a := e.call("PUT", "/nodes/pve1/qemu/5000/config", "cores=4&memory=4096&tags=cluster-x", asPool...); a.code != 200 {
		t.Errorf("configure the clone: %s %s", a.status, a.raw)
	}
	if a := e.call("POST", "/nodes/pve1/qemu/5000/status/start", "", asPool...); a.code != 200 {
		t.Errorf("start the clone: %s %s", a.status, a.raw)
	}
	expectError(t, e.call("POST", "/nodes/pve1/qemu/100/status/stop", "", asPool...), 403, "Permission check failed (/vms/100, VM.PowerMgmt)")
	expectError(t, e.call("DELETE", "/nodes/pve1/qemu/100", "", asPool...), 403, "Permission check failed (/vms/100, VM.Allocate)")
	expectError(t, e.call("PUT", "/nodes/pve1/qemu/5000/config", "net0=virtio,bridge=vmbr1", asPool...), 403, "Permission check failed (/sdn/zones/localnetwork/vmbr1, SDN.Use)")

	// Without SDN.Use on the template's bridge, no clone.
	if a := e.call("PUT", "/access/acl", "path=/sdn/zones/localnetwork/vmbr0&tokens="+poolToken+"&roles=PVEAutoscaler&delete=1"); a.code != 200 {
		t.Fatalf("PUT /access/acl: %s %s", a.status, a.raw)
	}
	expectError(t, e.call("POST", "/nodes/pve1/qemu/9000/clone", "newid=5001&pool=workers", asPool...), 403, "Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)")
	// Without Datastore.AllocateSpace on the storage, no clone either.
	if a := e.call("PUT", "/access/acl", "path=/sdn/zones/localnetwork/vmbr0&tokens="+poolToken+"&roles=PVEAutoscaler"); a.code != 200 {
		t.Fatalf("PUT /access/acl: %s %s", a.status, a.raw)
	}
	if a := e.call("PUT", "/access/acl", "path=/storage/shared&tokens="+poolToken+"&roles=PVEAutoscaler&delete=1"); a.code != 200 {
		t.Fatalf("PUT /access/acl: %s %s", a.status, a.raw)
	}
	expectError(t, e.call("POST", "/nodes/pve1/qemu/9000/clone", "newid=5001&pool=workers", asPool...), 403, "Permission check failed (/storage/shared, Datastore.AllocateSpace)")
}

// Reading the guest agent needs VM.GuestAgent.Audit on PVE 9 and
// VM.Monitor on PVE 8, and a role naming a privilege the release does not
// know is refused, as pveum role add refuses it.
func TestAgentPrivilegeByVersion(t *testing.T) {
	for _, tc := range []struct{ version, need, other string }{
		{"9.0.3", "VM.GuestAgent.Audit", "VM.Monitor"},
		{"8.4.1", "VM.Monitor", "VM.GuestAgent.Audit"},
	} {
		t.Run(tc.version, func(t *testing.T) {
			if got := AgentPrivilege(tc.version); got != tc.need {
				t.Errorf("AgentPrivilege(%s) = %s", tc.version, got)
			}
			w := DefaultWorld(secret)
			w.Version = tc.version
			w.Roles = map[string][]string{"R": {"VM.Audit", tc.other}}
			if _, err := New(w, nil); err == nil || !strings.Contains(err.Error(), tc.other) {
				t.Errorf("a role with %s on PVE %s: %v", tc.other, tc.version, err)
			}
			e := start(t, func(w *World) {
				w.Version = tc.version
				w.VMs[0].Agent = true
				w.Roles = map[string][]string{"Audit": {"VM.Audit"}, "Agent": {"VM.Audit", tc.need}}
				w.Tokens = append(w.Tokens, TokenSpec{ID: "a@pve!audit", Secret: "s1"}, TokenSpec{ID: "a@pve!agent", Secret: "s2"})
				w.ACL = []ACLSpec{{Path: "/vms", UGID: "a@pve!audit", Role: "Audit"}, {Path: "/vms", UGID: "a@pve!agent", Role: "Agent"}}
			})
			path := "/nodes/pve1/qemu/100/agent/network-get-interfaces"
			expectError(t, e.call("GET", path, "", "Authorization", "PVEAPIToken=a@pve!audit=s1"), 403, "Permission check failed (/vms/100, "+tc.need+")")
			if a := e.call("GET", path, "", "Authorization", "PVEAPIToken=a@pve!agent=s2"); a.code != 200 {
				t.Errorf("with %s: %s %s", tc.need, a.status, a.raw)
			}
		})
	}
}
