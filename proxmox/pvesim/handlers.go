package pvesim

import (
	"crypto/sha1" //nolint:gosec // PVE's config digest is SHA-1
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"
)

// schema is an endpoint's parameters: name -> kind ('i' integer, 'b'
// boolean, 's' string), with '!' appended when required.
type schema map[string]string

func (sc schema) check(p map[string]string) *apiError {
	errs := map[string]string{}
	for k, v := range p {
		kind, ok := sc[k]
		if !ok {
			errs[k] = "property is not defined in schema and the schema does not allow additional properties"
			continue
		}
		switch strings.TrimSuffix(kind, "!") {
		case "i":
			if _, err := strconv.Atoi(v); err != nil {
				errs[k] = fmt.Sprintf("type check ('integer') failed - got '%s'", v)
			}
		case "b":
			if v != "0" && v != "1" {
				errs[k] = fmt.Sprintf("type check ('boolean') failed - got '%s'", v)
			}
		}
	}
	for k, kind := range sc {
		if strings.HasSuffix(kind, "!") {
			if _, ok := p[k]; !ok {
				errs[k] = "property is missing and it is not optional"
			}
		}
	}
	if len(errs) > 0 {
		return paramErr(errs)
	}
	return nil
}

var (
	noParams       = schema{}
	nextidSchema   = schema{"vmid": "i"}
	resourceSchema = schema{"type": "s"}
	permSchema     = schema{"path": "s", "userid": "s"}
	// mappingListSchema: check-node asks for each mapping's state on a node.
	mappingListSchema = schema{"check-node": "s"}
	aclSchema         = schema{"path": "s!", "roles": "s!", "users": "s", "groups": "s", "tokens": "s", "propagate": "b", "delete": "b", "digest": "s"}
	cloneSchema       = schema{"node": "s", "vmid": "i", "newid": "i!", "name": "s", "description": "s", "pool": "s", "snapname": "s",
		"storage": "s", "format": "s", "full": "b", "target": "s", "bwlimit": "i"}
	configSchema = schema{"node": "s", "vmid": "i", "cores": "i", "memory": "s", "tags": "s", "description": "s", "name": "s",
		"net0": "s", "agent": "s", "smbios1": "s", "onboot": "b", "delete": "s", "digest": "s", "revert": "s", "sockets": "i", "cpu": "s", "balloon": "i"}
	getConfigSchema = schema{"current": "b", "snapshot": "s"}
	startSchema     = schema{"timeout": "i", "skiplock": "b"}
	stopSchema      = schema{"timeout": "i", "skiplock": "b", "keepActive": "b", "overrule-shutdown": "b"}
	shutdownSchema  = schema{"timeout": "i", "forceStop": "b", "keepActive": "b", "skiplock": "b"}
	deleteSchema    = schema{"purge": "b", "destroy-unreferenced-disks": "b", "skiplock": "b"}
	logSchema       = schema{"start": "i", "limit": "i"}
	ticketSchema    = schema{"username": "s!", "password": "s!", "realm": "s", "otp": "s"}
)

func (s *Sim) dispatch(req *request, route string) (any, *apiError) {
	p := req.parts
	key := req.method + " " + route
	if len(p) >= 2 && p[0] == "nodes" {
		if aerr := s.nodeReachable(p[1]); aerr != nil {
			return nil, aerr
		}
	}
	var sc schema
	var h func(*request) (any, *apiError)
	switch key {
	case "GET /version":
		sc, h = noParams, s.getVersion
	case "GET /cluster/nextid":
		sc, h = nextidSchema, s.getNextID
	case "GET /cluster/resources":
		sc, h = resourceSchema, s.getResources
	case "GET /cluster/status":
		sc, h = noParams, s.getClusterStatus
	case "GET /nodes":
		sc, h = noParams, s.getNodes
	case "GET /nodes/{node}/status":
		sc, h = noParams, s.getNodeStatus
	case "POST /nodes/{node}/qemu/{vmid}/clone":
		sc, h = cloneSchema, s.postClone
	case "GET /nodes/{node}/qemu/{vmid}/config":
		sc, h = getConfigSchema, s.getConfig
	case "POST /nodes/{node}/qemu/{vmid}/config", "PUT /nodes/{node}/qemu/{vmid}/config":
		sc, h = configSchema, s.setConfig
	case "POST /nodes/{node}/qemu/{vmid}/status/start":
		sc, h = startSchema, s.power("qmstart")
	case "POST /nodes/{node}/qemu/{vmid}/status/stop":
		sc, h = stopSchema, s.power("qmstop")
	case "POST /nodes/{node}/qemu/{vmid}/status/shutdown":
		sc, h = shutdownSchema, s.power("qmshutdown")
	case "GET /nodes/{node}/qemu/{vmid}/status/current":
		sc, h = noParams, s.getCurrent
	case "DELETE /nodes/{node}/qemu/{vmid}":
		sc, h = deleteSchema, s.deleteVM
	case "GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces":
		sc, h = noParams, s.getInterfaces
	case "GET /nodes/{node}/tasks/{upid}/status":
		sc, h = noParams, s.getTaskStatus
	case "GET /nodes/{node}/tasks/{upid}/log":
		sc, h = logSchema, s.getTaskLog
	case "POST /access/ticket":
		sc, h = ticketSchema, s.postTicket
	case "GET /access/permissions":
		sc, h = permSchema, s.getPermissions
	case "GET /cluster/mapping/pci":
		sc, h = mappingListSchema, s.getPCIMappings
	case "GET /cluster/mapping/pci/{id}":
		sc, h = noParams, s.getPCIMapping
	case "GET /access/acl":
		sc, h = noParams, s.getACL
	case "PUT /access/acl":
		sc, h = aclSchema, s.putACL
	default:
		return nil, fail(501, "Method '%s /%s' not implemented", req.method, strings.Join(p, "/"))
	}
	if aerr := sc.check(req.params); aerr != nil {
		return nil, aerr
	}
	return h(req)
}

func (s *Sim) nodeReachable(name string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hosts[name]
	switch {
	case h == nil:
		return fail(500, "hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", name, name)
	case !h.online:
		return fail(595, "Connection refused")
	}
	return nil
}

// storageUsed is the space the VMs' disks take on a storage (on host, for
// a local one); s.mu must be held.
func (s *Sim) storageUsed(name, host string) int64 {
	var used int64
	for _, v := range s.vms {
		if v.storage == name && (s.storages[name].shared || v.node == host) {
			used += v.disk
		}
	}
	return used
}

// Privileges lists the privileges a PVE release knows (the VM, datastore,
// SDN, pool and system ones pve-autoscaler may meet). PVE 9 split
// VM.Monitor into VM.GuestAgent.* and Sys.Audit-gated ones; PVE 8 has
// VM.Monitor and no VM.GuestAgent.*.
func Privileges(version string) []string {
	common := []string{"Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
		"Permissions.Modify", "Pool.Allocate", "Pool.Audit", "SDN.Allocate", "SDN.Audit", "SDN.Use",
		"Sys.Audit", "Sys.Console", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog",
		"VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit",
		"VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options",
		"VM.Console", "VM.Migrate", "VM.PowerMgmt", "VM.Snapshot", "VM.Snapshot.Rollback"}
	if strings.HasPrefix(version, "7.") {
		return append(common, agentPrivileges(version)...)
	}
	// Resource mappings came with PVE 8.
	common = append(common, "Mapping.Audit", "Mapping.Modify", "Mapping.Use")
	return append(common, agentPrivileges(version)...)
}

func (s *Sim) getVersion(*request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rel := s.version
	if i := strings.LastIndex(rel, "."); i > 0 {
		rel = rel[:i]
	}
	return map[string]any{"version": s.version, "release": rel, "repoid": "a1b2c3d4"}, nil
}

func (s *Sim) getNextID(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := req.params["vmid"]; ok {
		id, _ := strconv.Atoi(v)
		if s.vms[id] != nil {
			return nil, paramErr(map[string]string{"vmid": fmt.Sprintf("VM %d already exists", id)})
		}
		if id < 100 || id > 999999999 {
			return nil, paramErr(map[string]string{"vmid": "value must have a minimum value of 100"})
		}
		return strconv.Itoa(id), nil
	}
	for id := 100; ; id++ {
		if s.vms[id] == nil {
			return strconv.Itoa(id), nil
		}
	}
}

func (s *Sim) getResources(req *request) (any, *apiError) {
	typ := req.params["type"]
	if typ != "" && typ != "vm" && typ != "node" && typ != "storage" && typ != "sdn" {
		return nil, paramErr(map[string]string{"type": fmt.Sprintf("value '%s' does not have a value in the enumeration 'vm, storage, node, sdn'", typ)})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	out := []map[string]any{}
	if typ == "" || typ == "node" {
		for _, h := range s.sortedHosts() {
			out = append(out, s.nodeEntry(req, h, now))
		}
	}
	if typ == "" || typ == "storage" {
		names := make([]string, 0, len(s.storages))
		for n := range s.storages {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, h := range s.sortedHosts() {
			for _, n := range names {
				st := s.storages[n]
				if !s.may(req, "/storage/"+n, "Datastore.Audit") {
					continue // PVE leaves out what the token may not audit
				}
				if !h.online {
					continue // PVE lists an offline node's storages as unknown; left out here
				}
				shared := 0
				if st.shared {
					shared = 1
				}
				out = append(out, map[string]any{"id": "storage/" + h.name + "/" + n, "type": "storage", "node": h.name, "storage": n,
					"status": "available", "shared": shared, "maxdisk": st.size, "disk": s.storageUsed(n, h.name), "plugintype": "lvmthin", "content": "images,rootdir"})
			}
		}
	}
	if typ == "" || typ == "vm" {
		for _, v := range s.sortedVMs() {
			if s.allowed(req, fmt.Sprintf("/vms/%d", v.vmid), "VM.Audit") != nil {
				continue // PVE leaves out what the token may not audit
			}
			e := map[string]any{"id": fmt.Sprintf("qemu/%d", v.vmid), "type": "qemu", "vmid": v.vmid, "name": v.name, "node": v.node,
				"status": "stopped", "template": 0, "maxcpu": v.cores, "maxmem": v.memory << 20, "maxdisk": v.disk, "disk": 0,
				"cpu": 0, "mem": 0, "uptime": 0, "tags": strings.Join(v.tags, ";"), "hastate": ""}
			if v.template {
				e["template"] = 1
			}
			if v.running {
				e["status"] = "running"
				e["uptime"] = int64(now.Sub(v.startedAt).Seconds())
				e["mem"] = v.memory << 19
				e["cpu"] = 0.1
			}
			if !s.hosts[v.node].online {
				e["status"] = "unknown"
			}
			if v.lock != "" {
				e["lock"] = v.lock
			}
			if v.pool != "" && s.may(req, "/pool/"+v.pool, "Pool.Audit") {
				e["pool"] = v.pool
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *Sim) sortedHosts() []*host {
	out := make([]*host, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (s *Sim) sortedVMs() []*vm {
	out := make([]*vm, 0, len(s.vms))
	for _, v := range s.vms {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].vmid < out[j].vmid })
	return out
}

// usedMemory is the memory running VMs on a host take, plus 2 GiB for the host itself.
func (s *Sim) usedMemory(node string) int64 {
	used := int64(2 << 30)
	for _, v := range s.vms {
		if v.node == node && v.running {
			used += v.memory << 20
		}
	}
	return used
}

// nodeEntry is a node as /nodes and /cluster/resources list it: every node
// is listed, its figures only with Sys.Audit on /nodes/NAME; s.mu must be held.
func (s *Sim) nodeEntry(req *request, h *host, now time.Time) map[string]any {
	e := map[string]any{"id": "node/" + h.name, "type": "node", "node": h.name, "status": "offline", "level": ""}
	if !s.may(req, "/nodes/"+h.name, "Sys.Audit") {
		if h.online {
			e["status"] = "online"
		}
		return e
	}
	e["maxcpu"], e["maxmem"], e["maxdisk"], e["disk"] = h.cores, h.memory, int64(100<<30), int64(10<<30)
	if h.online {
		e["status"] = "online"
		e["cpu"] = 0.05
		e["mem"] = s.usedMemory(h.name)
		e["uptime"] = int64(now.Sub(h.started).Seconds())
	}
	return e
}

func (s *Sim) getNodes(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, h := range s.sortedHosts() {
		e := s.nodeEntry(req, h, s.clock.Now())
		e["ssl_fingerprint"] = "00:11:22:33"
		out = append(out, e)
	}
	return out, nil
}

func (s *Sim) getNodeStatus(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hosts[req.parts[1]]
	if aerr := s.allowed(req, "/nodes/"+h.name, "Sys.Audit"); aerr != nil {
		return nil, aerr
	}
	used := s.usedMemory(h.name)
	return map[string]any{
		"cpu": 0.05, "loadavg": []string{"0.50", "0.40", "0.30"}, "uptime": int64(s.clock.Now().Sub(h.started).Seconds()),
		"memory":     map[string]any{"total": h.memory, "used": used, "free": h.memory - used, "available": h.memory - used},
		"cpuinfo":    map[string]any{"cpus": h.cores, "cores": h.cores, "sockets": 1, "model": "Simulated CPU"},
		"pveversion": "pve-manager/" + s.version + "/a1b2c3d4",
	}, nil
}

// vmAt finds the VM whose config lives on the path's node, as PVE does.
func (s *Sim) vmAt(req *request) (*vm, *apiError) {
	id, err := strconv.Atoi(req.parts[3])
	if err != nil {
		return nil, paramErr(map[string]string{"vmid": fmt.Sprintf("type check ('integer') failed - got '%s'", req.parts[3])})
	}
	v := s.vms[id]
	if v == nil || v.node != req.parts[1] {
		return nil, fail(500, "Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", req.parts[1], id)
	}
	return v, nil
}

// vmPriv is vmAt plus a privilege check on the VM's ACL path; s.mu must be held.
func (s *Sim) vmPriv(req *request, priv string) (*vm, *apiError) {
	v, aerr := s.vmAt(req)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.allowed(req, fmt.Sprintf("/vms/%d", v.vmid), priv); aerr != nil {
		return nil, aerr
	}
	return v, nil
}

// newTask registers a running task; s.mu must be held.
func (s *Sim) newTask(node, typ, id, user string) *task {
	s.pidSeq++
	now := s.clock.Now()
	t := &task{node: node, typ: typ, id: id, user: user, pid: 100000 + s.pidSeq, pstart: 5000000 + s.pidSeq*7, start: now, running: true}
	t.upid = fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", node, t.pid, t.pstart, now.Unix(), typ, id, user)
	if i := strings.Index(user, "!"); i > 0 {
		t.tokenid = user[i+1:]
	}
	s.tasks[t.upid] = t
	return t
}

// finishAfter ends the task after d: finish runs under s.mu and returns the
// exit status ("OK" or the error text), log lines and events to emit.
func (s *Sim) finishAfter(t *task, d time.Duration, finish func() (string, []string, []Event)) {
	s.taskTime += d
	s.clock.AfterFunc(d, func() {
		s.mu.Lock()
		exit, lines, evs := finish()
		t.log = append(t.log, lines...)
		if exit == "OK" && s.faults.warnNextTask > 0 {
			exit = fmt.Sprintf("WARNINGS: %d", s.faults.warnNextTask)
			s.faults.warnNextTask = 0
			t.log = append(t.log, "WARN: simulated warning", "TASK "+exit)
		} else if exit == "OK" {
			t.log = append(t.log, "TASK OK")
		} else {
			t.log = append(t.log, "TASK ERROR: "+exit)
		}
		t.exit, t.running = exit, false
		s.mu.Unlock()
		s.emit(evs...)
	})
}

func (s *Sim) postClone(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	src, aerr := s.vmAt(req)
	if aerr != nil {
		return nil, aerr
	}
	newid, _ := strconv.Atoi(req.params["newid"])
	if newid < 100 || newid > 999999999 {
		return nil, paramErr(map[string]string{"newid": "value must have a minimum value of 100"})
	}
	// PVE: VM.Clone on /vms/{vmid}, and VM.Allocate on /vms/{newid} or,
	// with pool, on /pool/{pool}.
	if aerr := s.allowed(req, fmt.Sprintf("/vms/%d", src.vmid), "VM.Clone"); aerr != nil {
		return nil, aerr
	}
	pool, inPool := req.params["pool"]
	if inPool && s.pools[pool] == nil {
		return nil, fail(403, "Permission check failed (pool '%s' does not exist)", pool)
	}
	if aerr := s.allowed(req, fmt.Sprintf("/vms/%d", newid), "VM.Allocate"); aerr != nil {
		if !inPool {
			return nil, aerr
		}
		if aerr := s.allowed(req, "/pool/"+pool, "VM.Allocate"); aerr != nil {
			return nil, aerr
		}
	}
	if s.vms[newid] != nil {
		return nil, fail(500, "unable to create VM %d: config file already exists", newid)
	}
	if src.lock != "" {
		return nil, fail(500, "VM %d is locked (%s)", src.vmid, src.lock)
	}
	full := !src.template
	if f, ok := req.params["full"]; ok {
		full = f == "1"
	}
	if !full && !src.template {
		return nil, fail(500, "Linked clone feature is not supported for drive 'scsi0'")
	}
	target := src.node
	if t, ok := req.params["target"]; ok {
		h := s.hosts[t]
		if h == nil {
			return nil, paramErr(map[string]string{"target": fmt.Sprintf("no such cluster node '%s'", t)})
		}
		if !h.online {
			return nil, fail(500, "target node '%s' is not online", t)
		}
		target = t
	}
	stName := src.storage
	if st, ok := req.params["storage"]; ok {
		if !full {
			return nil, fail(500, "parameter 'storage' not allowed for linked clones")
		}
		if s.storages[st] == nil {
			return nil, paramErr(map[string]string{"storage": fmt.Sprintf("storage '%s' does not exist", st)})
		}
		stName = st
	}
	if _, ok := req.params["format"]; ok && !full {
		return nil, fail(500, "parameter 'format' not allowed for linked clones")
	}
	if target != src.node && !s.storages[stName].shared {
		return nil, fail(500, "can't clone VM to node '%s' (VM uses local storage)", target)
	}
	if aerr := s.allowed(req, "/storage/"+stName, "Datastore.AllocateSpace"); aerr != nil {
		return nil, aerr
	}
	for _, k := range sortedKeys(src.hostpci) {
		if aerr := s.checkHostPCI(req, target, k, src.hostpci[k]); aerr != nil {
			return nil, aerr
		}
	}
	net0 := "virtio=" + s.mac() + ",bridge=" + bridgeOf(src.net0)
	if aerr := s.allowed(req, sdnPath(bridgeOf(src.net0)), "SDN.Use"); aerr != nil {
		return nil, aerr
	}
	name := req.params["name"]
	if name == "" {
		name = fmt.Sprintf("Copy-of-VM-%s", src.name)
	}
	silent := s.faults.agentSilentNew || s.faults.agentSilentN > 0
	if s.faults.agentSilentN > 0 {
		s.faults.agentSilentN--
	}
	nv := &vm{vmid: newid, name: name, node: target, cores: src.cores, memory: src.memory, tags: append([]string(nil), src.tags...),
		description: req.params["description"], agent: src.agent, lock: "clone", storage: stName, disk: src.disk, pool: pool,
		net0: net0, agentSilent: silent,
		// PVE gives every clone a new SMBIOS UUID (other smbios1 fields are copied).
		smbios1: withUUID(src.smbios1, NewUUID()), hostpci: maps.Clone(src.hostpci)}
	s.vms[newid] = nv
	t := s.newTask(src.node, "qmclone", strconv.Itoa(src.vmid), req.user)

	// Latency: linked clones take seconds; full clones copy the disk at a
	// bandwidth shared by the full clones running at once.
	d := s.lat.LinkedClone
	if full {
		s.cloning[stName]++
		bw := max(s.lat.FullCloneBandwidth, 1) / int64(s.cloning[stName])
		d = time.Duration(float64(src.disk) / float64(bw) * float64(time.Second))
	} else {
		s.cloning[stName]++
	}
	if s.faults.slowNextClone > 0 {
		d, s.faults.slowNextClone = s.faults.slowNextClone, 0
	}
	failMsg := s.faults.failNextClone
	s.faults.failNextClone = ""
	if s.faults.storageLockMax > 0 && s.cloning[stName] > s.faults.storageLockMax {
		failMsg = fmt.Sprintf("can't lock file '/var/lock/pve-manager/pve-storage-%s' - got timeout", stName)
		d = s.lat.StorageLock
	}
	lines := []string{fmt.Sprintf("create full clone of drive scsi0 (%s:vm-%d-disk-0)", stName, src.vmid)}
	if !full {
		lines = []string{fmt.Sprintf("create linked clone of drive scsi0 (%s:base-%d-disk-0)", stName, src.vmid)}
	} else {
		lines = append(lines, fmt.Sprintf("transferred %d of %d (100.00%%)", src.disk, src.disk))
	}
	s.finishAfter(t, d, func() (string, []string, []Event) {
		s.cloning[stName]--
		cur := s.vms[newid]
		if failMsg != "" {
			if cur == nv {
				delete(s.vms, newid) // PVE removes the half-made VM
			}
			return failMsg, nil, nil
		}
		if cur != nv {
			return fmt.Sprintf("unable to finish clone: VM %d disappeared", newid), nil, nil
		}
		nv.lock = ""
		return "OK", lines, []Event{s.event(EventCreated, nv)}
	})
	return t.upid, nil
}

func (s *Sim) digest(v *vm) string {
	sum := sha1.Sum(fmt.Appendf(nil, "%d/%d/%d/%s/%s/%s/%s/%d", v.vmid, v.cores, v.memory, strings.Join(v.tags, ";"), v.description, v.name, v.smbios1, v.digestN)) //nolint:gosec
	return hex.EncodeToString(sum[:])
}

func (s *Sim) getConfig(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, aerr := s.vmPriv(req, "VM.Audit")
	if aerr != nil {
		return nil, aerr
	}
	cfg := map[string]any{
		"name": v.name, "cores": v.cores, "memory": strconv.FormatInt(v.memory, 10), "net0": v.net0, "digest": s.digest(v),
		"scsi0": fmt.Sprintf("%s:vm-%d-disk-0,size=%dG", v.storage, v.vmid, v.disk>>30), "ostype": "l26", "scsihw": "virtio-scsi-single",
		"boot": "order=scsi0;net0",
	}
	if v.smbios1 != "" {
		cfg["smbios1"] = v.smbios1
	}
	if len(v.tags) > 0 {
		cfg["tags"] = strings.Join(v.tags, ";")
	}
	if v.description != "" {
		cfg["description"] = v.description
	}
	if v.agent {
		cfg["agent"] = "1"
	}
	if v.lock != "" {
		cfg["lock"] = v.lock
	}
	if v.template {
		cfg["template"] = 1
	}
	for k, val := range v.hostpci {
		cfg[k] = val
	}
	if req.params["current"] != "1" {
		for k, val := range v.pending {
			if k == "cores" {
				n, _ := strconv.Atoi(val)
				cfg[k] = n
			} else {
				cfg[k] = val
			}
		}
	}
	return cfg, nil
}

func (s *Sim) setConfig(req *request) (any, *apiError) {
	s.mu.Lock()
	v, aerr := s.vmAt(req)
	if aerr != nil {
		s.mu.Unlock()
		return nil, aerr
	}
	path := fmt.Sprintf("/vms/%d", v.vmid)
	for k, priv := range map[string]string{"cores": "VM.Config.CPU", "memory": "VM.Config.Memory", "net0": "VM.Config.Network",
		"tags": "VM.Config.Options", "description": "VM.Config.Options", "name": "VM.Config.Options", "agent": "VM.Config.Options",
		"smbios1": "VM.Config.HWType"} {
		if _, ok := req.params[k]; ok {
			if aerr := s.allowed(req, path, priv); aerr != nil {
				s.mu.Unlock()
				return nil, aerr
			}
		}
	}
	if n, ok := req.params["net0"]; ok && bridgeOf(n) != "" {
		if aerr := s.allowed(req, sdnPath(bridgeOf(n)), "SDN.Use"); aerr != nil {
			s.mu.Unlock()
			return nil, aerr
		}
	}
	if v.lock != "" {
		s.mu.Unlock()
		return nil, fail(500, "VM %d is locked (%s)", v.vmid, v.lock)
	}
	for k, val := range req.params {
		if !strings.HasPrefix(k, "hostpci") {
			continue
		}
		if aerr := s.allowed(req, path, "VM.Config.HWType"); aerr != nil {
			s.mu.Unlock()
			return nil, aerr
		}
		if aerr := s.checkHostPCI(req, v.node, k, val); aerr != nil {
			s.mu.Unlock()
			return nil, aerr
		}
	}
	if d, ok := req.params["digest"]; ok && d != s.digest(v) {
		s.mu.Unlock()
		return nil, fail(500, "detected modified configuration - file changed by other user? Try again.")
	}
	errs := map[string]string{}
	var tags []string
	if t, ok := req.params["tags"]; ok {
		var err error
		if tags, err = normalizeTags(t); err != nil {
			errs["tags"] = err.Error()
		}
	}
	var mem int64
	if m, ok := req.params["memory"]; ok {
		n, err := strconv.ParseInt(strings.TrimPrefix(m, "current="), 10, 64)
		if err != nil || n < 16 {
			errs["memory"] = fmt.Sprintf("value '%s' does not match the format 'memory'", m)
		}
		mem = n
	}
	if c, ok := req.params["cores"]; ok {
		if n, _ := strconv.Atoi(c); n < 1 || n > 1024 {
			errs["cores"] = "value must have a minimum value of 1"
		}
	}
	if sm, ok := req.params["smbios1"]; ok {
		if err := checkSMBIOS1(sm); err != nil {
			errs["smbios1"] = err.Error()
		}
	}
	if len(errs) > 0 {
		s.mu.Unlock()
		return nil, paramErr(errs)
	}
	apply := func() {
		for k, val := range req.params {
			switch k {
			case "cores", "memory":
				if v.running {
					if v.pending == nil {
						v.pending = map[string]string{}
					}
					v.pending[k] = val
					continue
				}
				if k == "cores" {
					v.cores, _ = strconv.Atoi(val)
				} else {
					v.memory = mem
				}
			case "tags":
				v.tags = tags
			case "description":
				v.description = val
			case "name":
				v.name = val
			case "net0":
				v.net0 = val
			case "smbios1":
				v.smbios1 = val
			case "agent":
				v.agent = strings.HasPrefix(val, "1") || strings.Contains(val, "enabled=1")
			default:
				if strings.HasPrefix(k, "hostpci") {
					if v.hostpci == nil {
						v.hostpci = map[string]string{}
					}
					v.hostpci[k] = val
				}
			}
		}
		v.digestN++
	}
	if req.method == "PUT" {
		if d := s.lat.ConfigWrite; d > 0 {
			s.mu.Unlock()
			landed := make(chan struct{})
			s.clock.AfterFunc(d, func() { close(landed) })
			<-landed
			s.mu.Lock()
			if s.vms[v.vmid] != v {
				s.mu.Unlock()
				return nil, fail(500, "Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", req.parts[1], v.vmid)
			}
		}
		apply()
		s.mu.Unlock()
		return nil, nil
	}
	t := s.newTask(req.parts[1], "qmconfig", strconv.Itoa(v.vmid), req.user)
	s.mu.Unlock()
	s.finishAfter(t, s.lat.Config, func() (string, []string, []Event) {
		if s.vms[v.vmid] != v {
			return fmt.Sprintf("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", t.node, v.vmid), nil, nil
		}
		apply()
		return "OK", nil, nil
	})
	return t.upid, nil
}

func (s *Sim) power(typ string) func(*request) (any, *apiError) {
	return func(req *request) (any, *apiError) {
		s.mu.Lock()
		defer s.mu.Unlock()
		v, aerr := s.vmPriv(req, "VM.PowerMgmt")
		if aerr != nil {
			return nil, aerr
		}
		t := s.newTask(req.parts[1], typ, strconv.Itoa(v.vmid), req.user)
		switch typ {
		case "qmstart":
			s.finishAfter(t, s.lat.Start, func() (string, []string, []Event) {
				switch {
				case s.vms[v.vmid] != v:
					return fmt.Sprintf("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", t.node, v.vmid), nil, nil
				case v.template:
					return "you can't start a vm if it's a template", nil, nil
				case v.lock != "":
					return fmt.Sprintf("VM %d is locked (%s)", v.vmid, v.lock), nil, nil
				case v.running:
					return fmt.Sprintf("VM %d already running", v.vmid), nil, nil
				}
				if msg := s.devicesFree(v); msg != "" {
					return msg, nil, nil
				}
				for k, val := range v.pending {
					if k == "cores" {
						v.cores, _ = strconv.Atoi(val)
					} else {
						v.memory, _ = strconv.ParseInt(val, 10, 64)
					}
				}
				v.pending = nil
				now := s.clock.Now()
				v.running, v.startedAt, v.agentAt = true, now, now.Add(s.lat.Agent)
				v.ip = s.startIP(v)
				return "OK", nil, []Event{s.event(EventStarted, v)}
			})
		case "qmstop":
			s.finishAfter(t, s.lat.Stop, func() (string, []string, []Event) {
				if s.vms[v.vmid] != v {
					return fmt.Sprintf("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", t.node, v.vmid), nil, nil
				}
				if !v.running {
					return "OK", nil, nil
				}
				v.running = false
				return "OK", nil, []Event{s.event(EventStopped, v)}
			})
		case "qmshutdown":
			timeout := 60 * time.Second
			if tv, ok := req.params["timeout"]; ok {
				n, _ := strconv.Atoi(tv)
				timeout = time.Duration(n) * time.Second
			}
			force := req.params["forceStop"] == "1"
			d := s.lat.Shutdown
			if v.ignoreACPI {
				d = timeout
			}
			s.finishAfter(t, d, func() (string, []string, []Event) {
				if s.vms[v.vmid] != v {
					return fmt.Sprintf("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", t.node, v.vmid), nil, nil
				}
				if !v.running {
					return "OK", nil, nil
				}
				if v.ignoreACPI && !force {
					return "VM quit/powerdown failed - got timeout", nil, nil
				}
				v.running = false
				return "OK", nil, []Event{s.event(EventStopped, v)}
			})
		}
		return t.upid, nil
	}
}

func (s *Sim) getCurrent(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, aerr := s.vmPriv(req, "VM.Audit")
	if aerr != nil {
		return nil, aerr
	}
	out := map[string]any{"vmid": v.vmid, "name": v.name, "status": "stopped", "qmpstatus": "stopped", "cpus": v.cores,
		"maxmem": v.memory << 20, "mem": 0, "uptime": 0, "tags": strings.Join(v.tags, ";"), "ha": map[string]any{"managed": 0}}
	if v.running {
		out["status"], out["qmpstatus"] = "running", "running"
		out["uptime"] = int64(s.clock.Now().Sub(v.startedAt).Seconds())
		out["mem"] = v.memory << 19
	}
	if v.lock != "" {
		out["lock"] = v.lock
	}
	if v.template {
		out["template"] = 1
	}
	if v.agent {
		out["agent"] = 1
	}
	return out, nil
}

func (s *Sim) deleteVM(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, aerr := s.vmPriv(req, "VM.Allocate")
	if aerr != nil {
		return nil, aerr
	}
	if v.running {
		return nil, fail(500, "VM %d is running - destroy failed", v.vmid)
	}
	if v.lock != "" {
		return nil, fail(500, "VM %d is locked (%s)", v.vmid, v.lock)
	}
	v.lock = "destroyed"
	t := s.newTask(req.parts[1], "qmdestroy", strconv.Itoa(v.vmid), req.user)
	s.finishAfter(t, s.lat.Destroy, func() (string, []string, []Event) {
		if s.vms[v.vmid] != v {
			return "OK", nil, nil
		}
		delete(s.vms, v.vmid)
		return "OK", []string{"Removing image: 100% complete...done."}, []Event{s.event(EventDestroyed, v)}
	})
	return t.upid, nil
}

func (s *Sim) getInterfaces(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, aerr := s.vmPriv(req, AgentPrivilege(s.version))
	if aerr != nil {
		return nil, aerr
	}
	switch {
	case !v.agent:
		return nil, fail(500, "No QEMU guest agent configured")
	case !v.running:
		return nil, fail(500, "VM %d is not running", v.vmid)
	case v.agentSilent || s.clock.Now().Before(v.agentAt):
		return nil, fail(500, "QEMU guest agent is not running")
	}
	mac := strings.ToLower(strings.TrimPrefix(strings.SplitN(v.net0, ",", 2)[0], "virtio="))
	return map[string]any{"result": []map[string]any{
		{"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": []map[string]any{
			{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}, {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}}},
		{"name": "eth0", "hardware-address": mac, "ip-addresses": []map[string]any{
			{"ip-address": v.ip, "ip-address-type": "ipv4", "prefix": 24},
			{"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "ipv6", "prefix": 64}}},
	}}, nil
}

func (s *Sim) task(req *request) (*task, *apiError) {
	t := s.tasks[req.parts[3]]
	if t == nil || t.node != req.parts[1] {
		return nil, fail(400, "no such task")
	}
	return t, nil
}

func (s *Sim) getTaskStatus(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, aerr := s.task(req)
	if aerr != nil {
		return nil, aerr
	}
	out := map[string]any{"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.start.Unix(),
		"type": t.typ, "id": t.id, "user": strings.SplitN(t.user, "!", 2)[0], "status": "running"}
	if t.tokenid != "" {
		out["tokenid"] = t.tokenid
	}
	if !t.running {
		out["status"] = "stopped"
		out["exitstatus"] = t.exit
	}
	return out, nil
}

func (s *Sim) getTaskLog(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, aerr := s.task(req)
	if aerr != nil {
		return nil, aerr
	}
	start, _ := strconv.Atoi(req.params["start"])
	limit := 50
	if l, ok := req.params["limit"]; ok {
		limit, _ = strconv.Atoi(l)
	}
	out := []map[string]any{}
	for i := start; i < len(t.log) && len(out) < limit; i++ {
		out = append(out, map[string]any{"n": i + 1, "t": t.log[i]})
	}
	return withTotal{out, len(t.log)}, nil
}

func (s *Sim) postTicket(req *request) (any, *apiError) {
	user := req.params["username"]
	if r := req.params["realm"]; r != "" && !strings.Contains(user, "@") {
		user += "@" + r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pw, ok := s.users[user]
	if !ok || pw != req.params["password"] {
		return nil, fail(401, "authentication failure")
	}
	ticket := fmt.Sprintf("PVE:%s:%08X::%016x", user, s.clock.Now().Unix(), rand.Uint64())
	csrf := fmt.Sprintf("%08X:%016x", s.clock.Now().Unix(), rand.Uint64())
	s.tickets[ticket], s.csrf[ticket] = user, csrf
	return map[string]any{"username": user, "ticket": ticket, "CSRFPreventionToken": csrf, "clustername": "sim",
		"cap": map[string]any{"vms": map[string]int{"VM.Allocate": 1}}}, nil
}

// smbios1Keys are the keys of PVE's smbios1 property string.
var smbios1Keys = map[string]bool{"base64": true, "family": true, "manufacturer": true, "product": true, "serial": true, "sku": true, "uuid": true, "version": true}

// checkSMBIOS1 validates an smbios1 value as PVE's schema does.
func checkSMBIOS1(val string) error {
	for _, kv := range strings.Split(val, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !smbios1Keys[k] {
			return fmt.Errorf("invalid format - format error\n%s: property is not defined in schema and the schema does not allow additional properties", kv)
		}
		if k == "uuid" && !uuidRE.MatchString(v) {
			return fmt.Errorf("invalid format - format error\nsmbios1.uuid: value does not match the regex pattern")
		}
	}
	return nil
}

// init adds hostpci0..hostpci15 to the config schema.
func init() {
	for i := range 16 {
		configSchema[fmt.Sprintf("hostpci%d", i)] = "s"
	}
}

// mappingOf reads the mapping id of a hostpciN value ("mapping=igpu,pcie=1");
// ok is false for a raw device ("0000:01:00.0", "host=0000:01:00.0,...").
func mappingOf(val string) (string, bool) {
	for _, f := range strings.Split(val, ",") {
		if id, ok := strings.CutPrefix(f, "mapping="); ok {
			return id, true
		}
	}
	return "", false
}

// checkHostPCI checks a hostpciN value for a VM on node: a raw device is
// root@pam's alone; a mapping must exist, be usable by the caller
// (Mapping.Use on /mapping/pci/ID) and have a device on node. s.mu held.
func (s *Sim) checkHostPCI(req *request, node, key, val string) *apiError {
	id, ok := mappingOf(val)
	if !ok {
		if req.token == nil && req.user == "root@pam" {
			return nil
		}
		return fail(403, "only root can set '%s' config for non-mapping devices", key)
	}
	m, ok := s.mappings[id]
	if !ok {
		return paramErr(map[string]string{key: fmt.Sprintf("PCI mapping '%s' does not exist", id)})
	}
	if aerr := s.allowed(req, "/mapping/pci/"+id, "Mapping.Use"); aerr != nil {
		return aerr
	}
	if _, ok := m.entry(node); !ok {
		return fail(500, "PCI mapping '%s' has no device on node '%s'", id, node)
	}
	return nil
}

// devicesFree says why v cannot start on its node with its mapped devices
// ("" when it can): a mapping gone from the node, or its device in use by
// another running VM there. s.mu held.
func (s *Sim) devicesFree(v *vm) string {
	for _, k := range sortedKeys(v.hostpci) {
		id, ok := mappingOf(v.hostpci[k])
		if !ok {
			continue
		}
		e, ok := s.mappings[id].entry(v.node)
		if !ok {
			return fmt.Sprintf("PCI mapping '%s' has no device on node '%s'", id, v.node)
		}
		for _, o := range s.vms {
			if o == v || !o.running || o.node != v.node {
				continue
			}
			for _, ov := range o.hostpci {
				if oid, ok := mappingOf(ov); ok && oid == id {
					return fmt.Sprintf("PCI device '%s' already in use by VMID '%d'", e.Path, o.vmid)
				}
			}
		}
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// mappingJSON is a mapping as /cluster/mapping/pci lists it.
func mappingJSON(m PCIMappingSpec, checkNode string) map[string]any {
	entries := make([]string, 0, len(m.Map))
	for _, e := range m.Map {
		entries = append(entries, fmt.Sprintf("id=%s,node=%s,path=%s", e.ID, e.Node, e.Path))
	}
	out := map[string]any{"id": m.ID, "type": "pci", "map": entries}
	if m.Description != "" {
		out["description"] = m.Description
	}
	if checkNode != "" {
		var checks []map[string]string
		if _, ok := m.entry(checkNode); !ok {
			checks = append(checks, map[string]string{"severity": "error", "message": "mapping for node '" + checkNode + "' not found"})
		}
		out["checks"] = checks
	}
	return out
}

// getPCIMappings lists the mappings the caller may see (Mapping.Audit or
// Mapping.Use on /mapping/pci/ID), sorted by id.
func (s *Sim) getPCIMappings(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.mappings))
	for id := range s.mappings {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := []map[string]any{}
	for _, id := range ids {
		p := "/mapping/pci/" + id
		if s.allowed(req, p, "Mapping.Audit") != nil && s.allowed(req, p, "Mapping.Use") != nil {
			continue
		}
		out = append(out, mappingJSON(s.mappings[id], req.params["check-node"]))
	}
	return out, nil
}

// getPCIMapping reads one mapping (Mapping.Audit on /mapping/pci/ID).
func (s *Sim) getPCIMapping(req *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := req.parts[3]
	if aerr := s.allowed(req, "/mapping/pci/"+id, "Mapping.Audit"); aerr != nil {
		return nil, aerr
	}
	m, ok := s.mappings[id]
	if !ok {
		return nil, fail(500, "PCI mapping '%s' does not exist", id)
	}
	return mappingJSON(m, ""), nil
}
