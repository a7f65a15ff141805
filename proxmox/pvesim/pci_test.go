package pvesim

import (
	"net/url"
	"strings"
	"testing"
)

// TestPCIMappings: the cluster's PCI resource mappings are listed and
// read; hostpciN: mapping=ID is set on a VM only where the mapping has a
// device on its host, by a caller with Mapping.Use on /mapping/pci/ID; a
// raw device is root@pam's alone; a clone carries the mapping and is
// refused on a host without it; two VMs on one host never start with the
// same device.
func TestPCIMappings(t *testing.T) {
	e := start(t, func(w *World) {
		w.PCIMappings = []PCIMappingSpec{{ID: "igpu", Description: "Intel iGPU", Map: []PCIMapEntry{
			{Node: "pve1", Path: "0000:00:02.0", ID: "8086:46a3"}, {Node: "pve3", Path: "0000:00:02.0", ID: "8086:46a3"}}}}
	})
	list := e.ok("GET", "/cluster/mapping/pci", "").([]any)
	if len(list) != 1 {
		t.Fatalf("mappings %v", list)
	}
	m := list[0].(map[string]any)
	if m["id"] != "igpu" || m["description"] != "Intel iGPU" || len(m["map"].([]any)) != 2 || m["map"].([]any)[0] != "id=8086:46a3,node=pve1,path=0000:00:02.0" {
		t.Errorf("mapping %v", m)
	}
	checked := e.ok("GET", "/cluster/mapping/pci?check-node=pve2", "").([]any)[0].(map[string]any)
	if checks, _ := checked["checks"].([]any); len(checks) != 1 || !strings.Contains(checks[0].(map[string]any)["message"].(string), "pve2") {
		t.Errorf("check-node=pve2: %v", checked)
	}
	if one := e.ok("GET", "/cluster/mapping/pci/igpu", "").(map[string]any); one["id"] != "igpu" {
		t.Errorf("GET igpu: %v", one)
	}
	expectError(t, e.call("GET", "/cluster/mapping/pci/nope", ""), 500, "PCI mapping 'nope' does not exist")

	clone := func(newid, target string) string {
		t.Helper()
		return e.ok("POST", "/nodes/pve1/qemu/9000/clone", "newid="+newid+"&target="+target).(string)
	}
	e.wait(clone("5000", "pve1"))
	e.wait(clone("5001", "pve2"))
	e.wait(clone("5002", "pve1"))

	// On a host the mapping covers: set, read back, carried by a clone.
	if a := e.call("PUT", "/nodes/pve1/qemu/5000/config", "hostpci0="+url.QueryEscape("mapping=igpu,pcie=1")); a.code != 200 {
		t.Fatalf("hostpci0 on pve1: %s %s", a.status, a.raw)
	}
	if cfg := e.ok("GET", "/nodes/pve1/qemu/5000/config", "").(map[string]any); cfg["hostpci0"] != "mapping=igpu,pcie=1" {
		t.Errorf("config %v", cfg)
	}
	// A host the mapping does not cover refuses it, on config and on clone.
	expectError(t, e.call("PUT", "/nodes/pve2/qemu/5001/config", "hostpci0=mapping%3Digpu"), 500, "PCI mapping 'igpu' has no device on node 'pve2'")
	expectError(t, e.call("POST", "/nodes/pve1/qemu/5000/clone", "newid=5003&full=1&target=pve2"), 500, "PCI mapping 'igpu' has no device on node 'pve2'")
	st := e.wait(e.ok("POST", "/nodes/pve1/qemu/5000/clone", "newid=5004&full=1&target=pve3").(string))
	if st["exitstatus"] != "OK" {
		t.Fatalf("clone to pve3: %v", st)
	}
	if cfg := e.ok("GET", "/nodes/pve3/qemu/5004/config", "").(map[string]any); cfg["hostpci0"] != "mapping=igpu,pcie=1" {
		t.Errorf("the clone lost its mapping: %v", cfg)
	}
	// A mapping that does not exist; a raw device, which a token may never set.
	if a := e.call("PUT", "/nodes/pve1/qemu/5002/config", "hostpci0=mapping%3Dnope"); a.code != 400 || !strings.Contains(a.raw, "PCI mapping 'nope' does not exist") {
		t.Errorf("unknown mapping: %s %s", a.status, a.raw)
	}
	expectError(t, e.call("PUT", "/nodes/pve1/qemu/5002/config", "hostpci0=0000%3A01%3A00.0"), 403, "only root can set 'hostpci0' config for non-mapping devices")

	// One device, one running VM: the second start on pve1 fails.
	if st := e.wait(e.ok("POST", "/nodes/pve1/qemu/5000/status/start", "").(string)); st["exitstatus"] != "OK" {
		t.Fatalf("start 5000: %v", st)
	}
	if a := e.call("PUT", "/nodes/pve1/qemu/5002/config", "hostpci0=mapping%3Digpu"); a.code != 200 {
		t.Fatalf("hostpci0 on 5002: %s %s", a.status, a.raw)
	}
	if st := e.wait(e.ok("POST", "/nodes/pve1/qemu/5002/status/start", "").(string)); st["exitstatus"] != "PCI device '0000:00:02.0' already in use by VMID '5000'" {
		t.Errorf("second VM with the device started: %v", st)
	}

	// Without Mapping.Use the mapping can be neither used nor seen.
	e.sim.DenyPrivilege("Mapping.Use")
	e.sim.DenyPrivilege("Mapping.Audit")
	expectError(t, e.call("PUT", "/nodes/pve3/qemu/5004/config", "hostpci1=mapping%3Digpu"), 403, "Permission check failed (/mapping/pci/igpu, Mapping.Use)")
	if got := e.ok("GET", "/cluster/mapping/pci", "").([]any); len(got) != 0 {
		t.Errorf("a caller without Mapping.Audit or Mapping.Use sees %v", got)
	}
}
