package pvesim

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Access control as PVE evaluates it (pve-access-control's roles and
// permissions, docs: pveum "Permissions"):
//
//   - An ACL entry grants a role (a set of privileges) to a token or user
//     on a path ("/", "/vms/101", "/pool/workers", "/storage/local-lvm",
//     "/sdn/zones/localnetwork/vmbr0", ...). With propagate (the default)
//     it also holds on every path below.
//   - The privileges on a path come from the entries of the deepest level,
//     walking from "/" down to the path, that holds an entry for the
//     token: those entries replace what an upper level granted.
//   - A VM in a resource pool has, besides its own, the privileges the
//     token holds on /pool/NAME; so does a storage in a pool.
//   - The role NoAccess grants nothing and masks what an upper level gave.
//
// Not modelled: groups, the intersection of a privilege-separated token's
// privileges with its user's (a token here holds what its own entries
// grant), nested pools, and root@pam's "everything" (no root user here).

// ACLSpec is one ACL entry of a world.
type ACLSpec struct {
	Path string `json:"path"`
	// UGID is the API token (user@realm!name) or user (user@realm) it grants to.
	UGID string `json:"ugid"`
	Role string `json:"role"`
	// Propagate nil means true, as pveum acl modify's default.
	Propagate *bool `json:"propagate"`
}

// PoolSpec is a resource pool and its members at start. A clone with
// pool=NAME joins it.
type PoolSpec struct {
	Name     string   `json:"name"`
	VMs      []int    `json:"vms"`
	Storages []string `json:"storages"`
}

type aclEntry struct {
	path, ugid, role string
	propagate        bool
}

type resourcePool struct {
	storages map[string]bool
}

// builtinRoles are PVE's own roles that matter here; Administrator holds
// every privilege of the release.
func builtinRoles(version string) map[string][]string {
	return map[string][]string{
		"Administrator": Privileges(version),
		"NoAccess":      {},
		"PVEAuditor":    {"Datastore.Audit", "Pool.Audit", "SDN.Audit", "Sys.Audit", "VM.Audit"},
		"PVEVMAdmin": append([]string{"VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit",
			"VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Console",
			"VM.Migrate", "VM.PowerMgmt", "VM.Snapshot", "VM.Snapshot.Rollback"}, agentPrivileges(version)...),
	}
}

func agentPrivileges(version string) []string {
	if major(version) < 9 {
		return []string{"VM.Monitor"}
	}
	return []string{"VM.GuestAgent.Audit", "VM.GuestAgent.FileRead", "VM.GuestAgent.FileWrite", "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.Unrestricted"}
}

func major(version string) int {
	n, _ := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	return n
}

// AgentPrivilege is the privilege reading the guest agent's network
// interfaces needs: VM.GuestAgent.Audit on PVE 9, VM.Monitor before.
func AgentPrivilege(version string) string {
	if major(version) < 9 {
		return "VM.Monitor"
	}
	return "VM.GuestAgent.Audit"
}

var aclPathRE = regexp.MustCompile(`^/([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$`)

// normalizeACLPath is PVE's form of a path: one leading slash, no trailing one.
func normalizeACLPath(p string) (string, bool) {
	p = "/" + strings.Trim(p, "/")
	return p, aclPathRE.MatchString(p)
}

// levels are the paths from "/" down to p: "/", "/vms", "/vms/101".
func levels(p string) []string {
	out := []string{"/"}
	if p == "/" {
		return out
	}
	cur := ""
	for _, part := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		cur += "/" + part
		out = append(out, cur)
	}
	return out
}

// rolesOn is the roles ugid holds on path, each with whether it propagates;
// s.mu must be held.
func (s *Sim) rolesOn(ugid, path string) map[string]bool {
	roles := map[string]bool{}
	lv := levels(path)
	for i, l := range lv {
		final := i == len(lv)-1
		var here map[string]bool
		for _, e := range s.acl {
			if e.path == l && e.ugid == ugid && (final || e.propagate) {
				if here == nil {
					here = map[string]bool{}
				}
				here[e.role] = here[e.role] || e.propagate
			}
		}
		if here != nil {
			roles = here // a deeper entry replaces the wider ones
		}
	}
	return roles
}

// privilegesOn is ugid's privileges on path, each with whether it
// propagates, with what a pool lends its member VMs and storages; s.mu
// must be held. Privileges denied by DenyPrivilege are left out.
func (s *Sim) privilegesOn(ugid, path string) map[string]bool {
	out := s.ownPrivileges(ugid, path)
	var pool string
	if id, ok := strings.CutPrefix(path, "/vms/"); ok {
		if n, err := strconv.Atoi(id); err == nil && s.vms[n] != nil {
			pool = s.vms[n].pool
		}
	}
	if st, ok := strings.CutPrefix(path, "/storage/"); ok {
		for name, p := range s.pools {
			if p.storages[st] {
				pool = name
			}
		}
	}
	if pool != "" {
		for p, prop := range s.ownPrivileges(ugid, "/pool/"+pool) {
			out[p] = out[p] || prop
		}
	}
	for p := range s.denied {
		delete(out, p)
	}
	return out
}

func (s *Sim) ownPrivileges(ugid, path string) map[string]bool {
	out := map[string]bool{}
	roles := s.rolesOn(ugid, path)
	if _, ok := roles["NoAccess"]; ok {
		return out
	}
	for r, prop := range roles {
		for _, p := range s.roles[r] {
			out[p] = out[p] || prop
		}
	}
	return out
}

// allowed checks a privilege on an ACL path for the request's token or
// user, with PVE's error; s.mu must be held.
func (s *Sim) allowed(req *request, path, priv string) *apiError {
	if !s.privilegesOn(req.user, path)[priv] {
		return fail(403, "Permission check failed (%s, %s)", path, priv)
	}
	return nil
}

// may is allowed as a yes or no.
func (s *Sim) may(req *request, path, priv string) bool { return s.allowed(req, path, priv) == nil }

// bridgeOf is the bridge a net0 value names ("virtio=...,bridge=vmbr0").
func bridgeOf(net string) string {
	for _, kv := range strings.Split(net, ",") {
		if b, ok := strings.CutPrefix(kv, "bridge="); ok {
			return b
		}
	}
	return ""
}

// sdnPath is the ACL path SDN.Use is checked on for a plain Linux bridge:
// PVE puts them in the zone "localnetwork".
func sdnPath(bridge string) string { return "/sdn/zones/localnetwork/" + bridge }

// getPermissions answers GET /access/permissions: with path, the
// privileges on that path (1: propagated, 0: on that path only); without,
// those on every path that has an entry for the token, and its pools'
// members.
func (s *Sim) getPermissions(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	who := req.user
	if uid := req.params["userid"]; uid != "" && uid != req.user {
		// A user may read its own tokens' permissions; anything else needs Sys.Audit on /access.
		if own, _, _ := strings.Cut(uid, "!"); own != req.user && !s.may(req, "/access", "Sys.Audit") {
			return nil, fail(403, "Permission check failed (/access, Sys.Audit)")
		}
		who = uid
	}
	render := func(path string) map[string]int {
		out := map[string]int{}
		for p, prop := range s.privilegesOn(who, path) {
			out[p] = 0
			if prop {
				out[p] = 1
			}
		}
		return out
	}
	if p, ok := req.params["path"]; ok {
		path, valid := normalizeACLPath(p)
		if !valid {
			return nil, paramErr(map[string]string{"path": fmt.Sprintf("invalid ACL path '%s'", p)})
		}
		return map[string]any{path: render(path)}, nil
	}
	out := map[string]any{}
	for _, e := range s.acl {
		if e.ugid != who {
			continue
		}
		out[e.path] = render(e.path)
		if name, ok := strings.CutPrefix(e.path, "/pool/"); ok && s.pools[name] != nil {
			for _, v := range s.vms {
				if v.pool == name {
					p := fmt.Sprintf("/vms/%d", v.vmid)
					out[p] = render(p)
				}
			}
			for st := range s.pools[name].storages {
				out["/storage/"+st] = render("/storage/" + st)
			}
		}
	}
	return out, nil
}

// mayModifyACL is PVE's "perm-modify" check: Permissions.Modify on the
// path, or the privilege that allocates what the path names.
func (s *Sim) mayModifyACL(req *request, path string) *apiError {
	if s.may(req, path, "Permissions.Modify") {
		return nil
	}
	for prefix, priv := range map[string]string{"/vms/": "VM.Allocate", "/storage/": "Datastore.Allocate", "/pool/": "Pool.Allocate"} {
		if strings.HasPrefix(path, prefix) && s.may(req, path, priv) {
			return nil
		}
	}
	return fail(403, "Permission check failed (%s, Permissions.Modify)", path)
}

// getACL answers GET /access/acl: the entries on paths the caller may
// modify permissions of.
func (s *Sim) getACL(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, e := range s.acl {
		if s.mayModifyACL(req, e.path) != nil {
			continue
		}
		typ := "user"
		if strings.Contains(e.ugid, "!") {
			typ = "token"
		}
		prop := 0
		if e.propagate {
			prop = 1
		}
		out = append(out, map[string]any{"path": e.path, "type": typ, "ugid": e.ugid, "roleid": e.role, "propagate": prop})
	}
	return out, nil
}

// putACL answers PUT /access/acl: adds (or with delete=1 removes) the
// entries for each role and each token or user listed.
func (s *Sim) putACL(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, ok := normalizeACLPath(req.params["path"])
	if !ok {
		return nil, paramErr(map[string]string{"path": fmt.Sprintf("invalid ACL path '%s'", req.params["path"])})
	}
	if aerr := s.mayModifyACL(req, path); aerr != nil {
		return nil, aerr
	}
	split := func(v string) []string {
		return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' })
	}
	roles := split(req.params["roles"])
	for _, r := range roles {
		if _, ok := s.roles[r]; !ok {
			return nil, fail(500, "role '%s' does not exist", r)
		}
	}
	var ugids []string
	for _, t := range split(req.params["tokens"]) {
		if s.tokens[t] == nil {
			return nil, fail(500, "no such token '%s'", t)
		}
		ugids = append(ugids, t)
	}
	ugids = append(ugids, split(req.params["users"])...)
	if len(ugids) == 0 {
		return nil, fail(500, "either 'users', 'groups' or 'tokens' is required")
	}
	if req.params["groups"] != "" {
		return nil, fail(501, "pvesim: groups are not modelled")
	}
	propagate := req.params["propagate"] != "0"
	del := req.params["delete"] == "1"
	for _, u := range ugids {
		for _, r := range roles {
			s.acl = slices.DeleteFunc(s.acl, func(e aclEntry) bool { return e.path == path && e.ugid == u && e.role == r })
			if !del {
				s.acl = append(s.acl, aclEntry{path: path, ugid: u, role: r, propagate: propagate})
			}
		}
	}
	return nil, nil
}

// setupAccess builds roles, pools and ACL entries from the world; a token
// or user with no entry of its own gets its privilege list (TokenSpec
// Privileges) or Administrator on "/", as before ACLs were modelled.
func (s *Sim) setupAccess(w World) error {
	s.roles = builtinRoles(s.version)
	known := Privileges(s.version)
	for name, privs := range w.Roles {
		if _, ok := s.roles[name]; ok {
			return fmt.Errorf("pvesim: role %q is built in", name)
		}
		for _, p := range privs {
			if !slices.Contains(known, p) {
				// pveum role add refuses it too.
				return fmt.Errorf("pvesim: role %s: invalid privilege '%s' (not a privilege of PVE %s)", name, p, s.version)
			}
		}
		s.roles[name] = privs
	}
	s.pools = map[string]*resourcePool{}
	for _, p := range w.Pools {
		if p.Name == "" || s.pools[p.Name] != nil {
			return fmt.Errorf("pvesim: pool %q: needs a unique name", p.Name)
		}
		rp := &resourcePool{storages: map[string]bool{}}
		for _, st := range p.Storages {
			if s.storages[st] == nil {
				return fmt.Errorf("pvesim: pool %s: unknown storage %q", p.Name, st)
			}
			rp.storages[st] = true
		}
		for _, id := range p.VMs {
			v := s.vms[id]
			if v == nil {
				return fmt.Errorf("pvesim: pool %s: unknown VM %d", p.Name, id)
			}
			if v.pool != "" {
				return fmt.Errorf("pvesim: VM %d is in pools %s and %s: a VM is in one pool at most", id, v.pool, p.Name)
			}
			v.pool = p.Name
		}
		s.pools[p.Name] = rp
	}
	named := map[string]bool{}
	for _, a := range w.ACL {
		path, ok := normalizeACLPath(a.Path)
		if !ok {
			return fmt.Errorf("pvesim: acl %q: not an ACL path", a.Path)
		}
		if _, ok := s.roles[a.Role]; !ok {
			return fmt.Errorf("pvesim: acl %s: unknown role %q", path, a.Role)
		}
		if a.UGID == "" {
			return fmt.Errorf("pvesim: acl %s: ugid (token or user) is required", path)
		}
		s.acl = append(s.acl, aclEntry{path: path, ugid: a.UGID, role: a.Role, propagate: a.Propagate == nil || *a.Propagate})
		named[a.UGID] = true
	}
	ids := make([]string, 0, len(w.Tokens)+len(w.Users))
	privs := map[string][]string{}
	for _, t := range w.Tokens {
		ids = append(ids, t.ID)
		privs[t.ID] = t.Privileges
	}
	for _, u := range w.Users {
		ids = append(ids, u.Name)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if named[id] {
			continue
		}
		role := "Administrator"
		if p := privs[id]; p != nil {
			role = "pvesim:" + id
			s.roles[role] = p
		}
		s.acl = append(s.acl, aclEntry{path: "/", ugid: id, role: role, propagate: true})
	}
	return nil
}

// getClusterStatus answers GET /cluster/status (Sys.Audit on "/"): the
// cluster entry, then one entry per node.
func (s *Sim) getClusterStatus(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if aerr := s.allowed(req, "/", "Sys.Audit"); aerr != nil {
		return nil, aerr
	}
	hosts := s.sortedHosts()
	up := 0
	for _, h := range hosts {
		if h.online {
			up++
		}
	}
	quorate := 0
	if 2*up > len(hosts) {
		quorate = 1
	}
	out := []map[string]any{{"type": "cluster", "id": "cluster", "name": "pvesim", "nodes": len(hosts), "quorate": quorate, "version": len(hosts) + 1}}
	for i, h := range hosts {
		online := 0
		if h.online {
			online = 1
		}
		local := 0
		if i == 0 {
			local = 1 // the node the API is asked on
		}
		out = append(out, map[string]any{"type": "node", "id": "node/" + h.name, "name": h.name, "nodeid": i + 1,
			"ip": fmt.Sprintf("127.0.0.%d", i+2), "level": "", "local": local, "online": online})
	}
	return out, nil
}

// Grant adds an ACL entry, as pveum acl modify does (an unknown role is an error).
func (s *Sim) Grant(a ACLSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, ok := normalizeACLPath(a.Path)
	if !ok {
		return fmt.Errorf("pvesim: %q is not an ACL path", a.Path)
	}
	if _, ok := s.roles[a.Role]; !ok {
		return fmt.Errorf("pvesim: role '%s' does not exist", a.Role)
	}
	s.acl = append(s.acl, aclEntry{path: path, ugid: a.UGID, role: a.Role, propagate: a.Propagate == nil || *a.Propagate})
	return nil
}

// Revoke removes every entry of ugid on path, as pveum acl delete does.
func (s *Sim) Revoke(path, ugid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, _ = normalizeACLPath(path)
	s.acl = slices.DeleteFunc(s.acl, func(e aclEntry) bool { return e.path == path && e.ugid == ugid })
}
