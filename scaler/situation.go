package scaler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pve-autoscaler/pve-autoscaler/internal/strictjson"
)

// Situation is everything Decide needs besides the policy: a snapshot, the
// moment it describes, and the history at that moment. `plan --snapshot`
// reads one from a JSON file, which is how a situation is replayed.
type Situation struct {
	Time time.Time `json:"time"`
	Snapshot
	History History `json:"history"`
}

// MaxSnapshotSize is the largest situation file read: a 5,000-node
// cluster with 150,000 pods takes about 19 MiB.
const MaxSnapshotSize = 64 << 20

// Bounds on a snapshot's amounts: one quantity, and all of them added up,
// so that no sum the engine makes can wrap around.
const (
	maxMilliCPU    = 1_000_000 * 1000 // a million cores
	maxMemory      = 1 << 50          // 1 PiB
	maxTotalAmount = 1 << 60
)

// ParseSituation strictly decodes a situation file's JSON; name is used in
// errors. Every problem is reported, each with its field path; broken JSON
// with its line and column.
func ParseSituation(name string, data []byte) (Situation, error) {
	var s Situation
	if len(data) > MaxSnapshotSize {
		return s, fmt.Errorf("snapshot %s: more than %d bytes: a snapshot may hold at most %d MiB", name, MaxSnapshotSize, MaxSnapshotSize>>20)
	}
	if err := checkJSON(data); err != nil {
		return s, fmt.Errorf("snapshot %s: %w", name, *err)
	}
	errs := strictjson.Decode(data, &s)
	if s.Time.IsZero() && !hasPath(errs, "time") {
		errs = append(errs, strictjson.Error{Path: "time", Message: "required: the moment the snapshot describes (RFC 3339, e.g. 2026-11-27T18:00:00Z)"})
	}
	for i, op := range s.Operations {
		switch op.Kind {
		case OpProvision, OpRemove, OpRefill, OpRetire:
		default:
			errs = append(errs, strictjson.Error{Path: fmt.Sprintf("operations[%d].kind", i), Message: fmt.Sprintf("%q: expected provision, remove, refill or retire", op.Kind)})
		}
	}
	errs = append(errs, s.check()...)
	if len(errs) > 0 {
		return s, fmt.Errorf("snapshot %s: %w", name, strictjson.Join(errs))
	}
	return s, nil
}

// checkJSON finds what strict decoding cannot place: broken or truncated
// JSON (with its line and column), something other than one object.
func checkJSON(data []byte) *strictjson.Error {
	at := func(off int64, format string, args ...any) *strictjson.Error {
		line, col := lineCol(data, off)
		return &strictjson.Error{Line: line, Column: col, Message: fmt.Sprintf(format, args...)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return &strictjson.Error{Message: "empty: expected a JSON object (docs/snapshot.md)"}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return at(int64(len(data)), "the JSON ends before it is complete (truncated?)")
		case errors.As(err, &se):
			return at(se.Offset, "not valid JSON: %s", se.Error())
		}
		return at(dec.InputOffset(), "not valid JSON: %v", err)
	}
	if raw[0] != '{' {
		return at(dec.InputOffset()-int64(len(raw))+1, "expected a JSON object (docs/snapshot.md), got %s", describe(raw))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return at(dec.InputOffset(), "more after the snapshot's object: expected one object")
	}
	return nil
}

func describe(raw json.RawMessage) string {
	switch raw[0] {
	case '[':
		return "a list"
	case '"':
		return "a string"
	}
	return "a value"
}

// lineCol is the line and column (both from 1) of the byte just before
// offset off (encoding/json's offsets point past the byte in question).
func lineCol(data []byte, off int64) (line, col int) {
	if len(data) == 0 {
		return 1, 1
	}
	off = min(max(off, 1), int64(len(data)))
	before := data[:off-1]
	line = bytes.Count(before, []byte("\n")) + 1
	col = len(before) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// check finds what decodes but cannot be true of one moment of one
// cluster: a name, vmid, UUID or host twice, negative room, and amounts
// past their bounds (which the engine's sums could wrap around).
func (s *Situation) check() []strictjson.Error {
	var errs []strictjson.Error
	fail := func(path, format string, args ...any) {
		errs = append(errs, strictjson.Error{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	type seen map[string]string
	once := func(m seen, key, path, what string) {
		if first, ok := m[key]; ok {
			fail(path, "%s %s is also %s: expected each once", what, key, first)
			return
		}
		m[key] = path
	}
	names, vmids, uuids := seen{}, seen{}, seen{}
	// Each term is at most 2^50+1 and a sum stops growing past the bound,
	// so these sums cannot wrap either.
	var cpu, mem int64
	add := func(total *int64, v int64) {
		if *total <= maxTotalAmount {
			*total += v
		}
	}
	amount := func(path string, r Resources) {
		if r.MilliCPU > maxMilliCPU {
			fail(path+".cpu", "%s: expected at most 1000000 cores", cpuQuantity(r.MilliCPU))
		}
		if r.Memory > maxMemory {
			fail(path+".memory", "%s: expected at most 1Pi", memQuantity(r.Memory))
		}
		add(&cpu, min(r.MilliCPU, maxMilliCPU+1))
		add(&mem, min(r.Memory, maxMemory+1))
	}
	for i, n := range s.Nodes {
		path := fmt.Sprintf("nodes[%d]", i)
		if n.Name == "" {
			fail(path+".name", "required")
		} else {
			once(names, n.Name, path+".name", "the name of")
		}
		if n.VMID < 0 {
			fail(path+".vmid", "%d: expected a vmid (100 or more), or none", n.VMID)
		} else if n.VMID != 0 {
			once(vmids, fmt.Sprint(n.VMID), path+".vmid", "the vmid of")
		}
		if n.SystemUUID != "" {
			once(uuids, NormalUUID(n.SystemUUID), path+".system_uuid", "the system UUID of")
		}
		amount(path+".allocatable", n.Allocatable)
		amount(path+".usage", n.Usage)
		amount(path+".requests", n.Requests)
		for j, p := range n.Pods {
			amount(fmt.Sprintf("%s.pods[%d].requests", path, j), p.Requests)
		}
	}
	for i, p := range s.PendingPods {
		amount(fmt.Sprintf("pending_pods[%d].requests", i), p.Requests)
		for name, n := range p.Extended {
			if n < 0 {
				fail(fmt.Sprintf("pending_pods[%d].extended.%s", i, name), "%d: expected 0 or more", n)
			}
		}
	}
	hosts := seen{}
	for i, h := range s.Hosts {
		path := fmt.Sprintf("hosts[%d]", i)
		if h.Name == "" {
			fail(path+".name", "required")
		} else {
			once(hosts, h.Name, path+".name", "the name of")
		}
		switch {
		case h.MemoryFree < 0:
			fail(path+".memory_free", "%d: expected 0 or more (the adapter reports a host without room as 0)", h.MemoryFree)
		case h.MemoryFree > maxMemory:
			fail(path+".memory_free", "%d: expected at most 1 PiB", h.MemoryFree)
		default:
			add(&mem, h.MemoryFree)
		}
	}
	standby := seen{}
	for i, w := range s.Standby {
		if w.VMID <= 0 {
			fail(fmt.Sprintf("standby[%d].vmid", i), "%d: expected a vmid", w.VMID)
		} else {
			once(standby, fmt.Sprint(w.VMID), fmt.Sprintf("standby[%d].vmid", i), "the vmid of")
		}
	}
	ops := seen{}
	for i, op := range s.Operations {
		if op.VMID < 0 {
			fail(fmt.Sprintf("operations[%d].vmid", i), "%d: expected a vmid, or none", op.VMID)
		} else if op.VMID != 0 {
			once(ops, fmt.Sprint(op.VMID), fmt.Sprintf("operations[%d].vmid", i), "the vmid of")
		}
	}
	if s.Control != nil {
		for i, b := range s.Control.Boosts {
			if b.Workers < 0 || b.Workers > 100000 {
				fail(fmt.Sprintf("control.boosts[%d].workers", i), "%d: expected 0 to 100000", b.Workers)
			}
			if !b.Until.After(b.Since) {
				fail(fmt.Sprintf("control.boosts[%d].until", i), "%s: expected after since (%s)", b.Until.Format(time.RFC3339), b.Since.Format(time.RFC3339))
			}
		}
	}
	if s.History.UpOwed < 0 || s.History.UpOwed > 100000 {
		fail("history.up_owed", "%d: expected 0 to 100000", s.History.UpOwed)
	}
	if cpu > maxTotalAmount || mem > maxTotalAmount {
		fail("", "the snapshot's amounts add up to more than 2^60 millicores or bytes: the engine's sums would overflow")
	}
	return errs
}

func hasPath(errs []strictjson.Error, p string) bool {
	for _, e := range errs {
		if e.Path == p {
			return true
		}
	}
	return false
}
