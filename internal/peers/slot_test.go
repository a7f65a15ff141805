package peers

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/pve-autoscaler/pve-autoscaler/config"
)

// Slots share one control plane: each side of each slot has its own
// label value, our daemon's selector picks its own Nodes only, and the
// NodePool and VM names never repeat.
func TestSlotsAreApart(t *testing.T) {
	slots := []slot{{"burst", 1}, {"burst", 2}, {"diurnal", 1}, {"diurnal", 2}, {"diurnal", 3}}
	seen := map[string]bool{}
	for _, s := range slots {
		sel, err := config.ParseWorkerSelector(s.workerSelector())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range slots {
			if got := sel.Matches(labels.Set{slotLabel: o.ours()}); got != (o == s) {
				t.Errorf("%s's selector matches %s's Nodes: %v", s.id(), o.id(), got)
			}
			if sel.Matches(labels.Set{slotLabel: o.theirs()}) {
				t.Errorf("%s's selector matches Karpenter's Nodes of %s", s.id(), o.id())
			}
		}
		for _, name := range []string{s.ours(), s.theirs(), s.nodePool(), s.namePrefix()} {
			if seen[name] {
				t.Errorf("%s repeats", name)
			}
			seen[name] = true
		}
		var p struct {
			Machine struct {
				NodeLabels map[string]string `json:"nodeLabels"`
			} `json:"machine"`
		}
		if err := yaml.UnmarshalStrict([]byte(s.patch()), &p); err != nil || !sel.Matches(labels.Set(p.Machine.NodeLabels)) {
			t.Errorf("%s: the patch %q (%v) does not give the labels the selector picks", s.id(), s.patch(), err)
		}
		if !strings.HasSuffix(s.namePrefix(), "-") {
			t.Errorf("name prefix %q", s.namePrefix())
		}
	}
}

func TestRequestsBySide(t *testing.T) {
	var r requests
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	r.add("a", t0)
	r.add("b", t0.Add(time.Second))
	r.add("a", t0.Add(2*time.Second))
	if got := r.of("a")(); len(got) != 2 || !got[1].Equal(t0.Add(2*time.Second)) {
		t.Errorf("a: %v", got)
	}
	if got := r.of("c")(); len(got) != 0 {
		t.Errorf("c: %v", got)
	}
}

// The table says over how many runs: the fewest any row has, on either
// side, while slots of different scenarios finish at different times.
func TestMinRuns(t *testing.T) {
	rows := []Row{{Ours: Sample{1, 2, 3}, Theirs: Sample{1, 2, 3}}, {Ours: Sample{1}, Theirs: Sample{1, 2}}}
	if got := minRuns(rows); got != 1 {
		t.Errorf("minRuns %d, want 1", got)
	}
	if got := minRuns(nil); got != 0 {
		t.Errorf("minRuns of no rows %d, want 0", got)
	}
}
