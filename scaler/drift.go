package scaler

import "fmt"

// DriftedWorker is a joined worker that is no longer what a new worker
// would be (Machine.Drift): its template's configuration, its pool's VM
// size or the Talos worker config changed since it was made.
type DriftedWorker struct {
	VMID int    `json:"vmid"`
	Node string `json:"node,omitempty"`
	Pool string `json:"pool,omitempty"`
	Why  string `json:"why"`
}

// DriftedOf lists the joined machines that drifted, with the Node of
// each one's identity ("" when none is seen).
func DriftedOf(machines []Machine, nodes []Node) []DriftedWorker {
	var out []DriftedWorker
	for _, m := range machines {
		if m.Drift == "" || m.Step != StepJoined || m.ForStandby {
			continue
		}
		dw := DriftedWorker{VMID: m.VMID, Pool: m.Pool, Why: m.Drift}
		if n, ok := NodeOf(m, nodes); ok {
			dw.Node = n.Name
		}
		out = append(out, dw)
	}
	return out
}

// noteDrift lists the drifted workers in the plan.
func (d *decision) noteDrift() {
	if len(d.s.Drifted) == 0 {
		return
	}
	d.plan.Drifted = d.s.Drifted
	first := d.s.Drifted[0]
	name := first.Node
	if name == "" {
		name = fmt.Sprintf("VM %d", first.VMID)
	}
	if d.p.ReplaceDrifted {
		d.note(CodeDrifted, "%s no longer what a new worker would be (e.g. %s: %s); they are replaced one at a time, a new worker first (policy.replace_drifted)", count(len(d.s.Drifted), "worker"), name, first.Why)
		return
	}
	d.note(CodeDrifted, "%s no longer what a new worker would be (e.g. %s: %s); they keep serving: replace them by draining each and letting a new one be made, or turn policy.replace_drifted on", count(len(d.s.Drifted), "worker"), name, first.Why)
}
