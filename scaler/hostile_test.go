package scaler

import (
	"errors"
	"strings"
	"testing"

	"github.com/pve-autoscaler/pve-autoscaler/internal/strictjson"
)

// hostileSnapshots are the snapshots of issue 20's "Hostile input", each
// with what its error must say; FuzzParseSituation's seeds too.
var hostileSnapshots = []struct {
	name, json string
	want       []string
}{
	{"empty", "", []string{"empty: expected a JSON object"}},
	{"truncated", "{\n  \"time\": \"2026-11-27T18:00:00Z\",\n  \"nodes\": [{\"name\": \"w1\"", []string{"line 3:", "ends before it is complete"}},
	{"broken", "{\n  \"time\": \"2026-11-27T18:00:00Z\",\n  \"nodes\": [}\n", []string{"line 3:13", "not valid JSON"}},
	{"a list", "[1, 2]", []string{"line 1:1", "expected a JSON object", "a list"}},
	{"two objects", `{"time": "2026-11-27T18:00:00Z"} {}`, []string{"line 1:", "more after the snapshot's object"}},
	{"duplicate node name", `{"time": "2026-11-27T18:00:00Z", "nodes": [{"name": "w1"}, {"name": "w1"}]}`, []string{"nodes[1].name: the name of w1 is also nodes[0].name"}},
	{"duplicate vmid", `{"time": "2026-11-27T18:00:00Z", "nodes": [{"name": "w1", "vmid": 5000}, {"name": "w2", "vmid": 5000}]}`, []string{"nodes[1].vmid: the vmid of 5000 is also nodes[0].vmid"}},
	{"duplicate uuid", `{"time": "2026-11-27T18:00:00Z", "nodes": [{"name": "w1", "system_uuid": "AB-1"}, {"name": "w2", "system_uuid": "ab-1"}]}`, []string{"nodes[1].system_uuid: the system UUID of ab-1 is also nodes[0].system_uuid"}},
	{"duplicate host", `{"time": "2026-11-27T18:00:00Z", "hosts": [{"name": "pve1", "online": true}, {"name": "pve1"}]}`, []string{"hosts[1].name: the name of pve1 is also hosts[0].name"}},
	{"negative room", `{"time": "2026-11-27T18:00:00Z", "hosts": [{"name": "pve1", "online": true, "memory_free": -1}]}`, []string{"hosts[0].memory_free: -1: expected 0 or more"}},
	{"overflowing quantity", `{"time": "2026-11-27T18:00:00Z", "nodes": [{"name": "w1", "allocatable": {"cpu": "99999999999999999999"}}]}`, []string{"nodes[0].allocatable: cpu:", "too large"}},
	{"absurd quantity", `{"time": "2026-11-27T18:00:00Z", "nodes": [{"name": "w1", "usage": {"memory": "2Ei"}}]}`, []string{"nodes[0].usage.memory: 2Ei: expected at most 1Pi"}},
	{"sums past the bound", `{"time": "2026-11-27T18:00:00Z", "nodes": [` + strings.TrimSuffix(strings.Repeat(`{"name": "w", "usage": {"memory": "1Pi"}},`, 1), ",") + `]}`, nil},
	{"negative owed", `{"time": "2026-11-27T18:00:00Z", "history": {"up_owed": -5}}`, []string{"history.up_owed: -5"}},
	{"huge memory_free", `{"time": "2026-11-27T18:00:00Z", "hosts": [{"name": "pve1", "memory_free": 1e300}]}`, []string{"hosts[0].memory_free"}},
}

func TestHostileSnapshots(t *testing.T) {
	for _, tc := range hostileSnapshots {
		if tc.want == nil {
			continue // a seed only
		}
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSituation("s.json", []byte(tc.json))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestSnapshotAmountsCannotAddUpPastTheBound: 1,100 nodes of 1 PiB each
// are each within their bound, but their sum is refused.
func TestSnapshotAmountsCannotAddUpPastTheBound(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"time": "2026-11-27T18:00:00Z", "nodes": [`)
	for i := range 1100 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"name": "w` + itoa(i) + `", "allocatable": {"memory": "1Pi"}}`)
	}
	b.WriteString("]}")
	_, err := ParseSituation("s.json", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "add up to more than 2^60") {
		t.Fatalf("sum past the bound: %v", err)
	}
}

func TestSnapshotSizeLimit(t *testing.T) {
	big := make([]byte, MaxSnapshotSize+1)
	_, err := ParseSituation("big.json", big)
	if err == nil || !strings.Contains(err.Error(), "at most 64 MiB") {
		t.Fatalf("65 MiB: %v", err)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// FuzzParseSituation: no input panics the decoder, and an error names
// the snapshot and a field path or a line.
func FuzzParseSituation(f *testing.F) {
	for _, tc := range hostileSnapshots {
		f.Add([]byte(tc.json))
	}
	f.Add([]byte(`{"time": "2026-11-27T18:00:00Z", "nodes": [{"name": "w1", "ready": true, "allocatable": {"cpu": "4", "memory": "8Gi"}, "pods": [{"namespace": "a", "name": "p", "requests": {"cpu": "1"}}]}], "operations": [{"kind": "provision", "vmid": 5001}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseSituation("fuzz.json", data)
		if err == nil {
			return
		}
		if !strings.HasPrefix(err.Error(), "snapshot fuzz.json: ") {
			t.Fatalf("the error does not name the snapshot: %v", err)
		}
		for _, p := range problemsOf(t, err) {
			if p.Path == "" && p.Line == 0 && !wholeFile(p.Message) {
				t.Errorf("a problem names no path or line: %q", p.Message)
			}
		}
	})
}

// problemsOf unwraps ParseSituation's error into its problems.
func problemsOf(t *testing.T, err error) []strictjson.Error {
	t.Helper()
	var list []error
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		list = joined.Unwrap()
	} else {
		list = []error{err}
	}
	var out []strictjson.Error
	for _, e := range list {
		var p strictjson.Error
		if !errors.As(e, &p) {
			t.Fatalf("not a problem: %v", e)
		}
		out = append(out, p)
	}
	return out
}

func wholeFile(msg string) bool {
	return strings.HasPrefix(msg, "empty:") || strings.HasPrefix(msg, "the snapshot's amounts")
}
