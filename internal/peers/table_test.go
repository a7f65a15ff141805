package peers

import (
	"math"
	"strings"
	"testing"
)

func TestSampleMeanAndRange(t *testing.T) {
	s := Sample{3, 1, 2}
	if s.Mean() != 2 {
		t.Fatalf("mean %v", s.Mean())
	}
	if lo, hi := s.Range(); lo != 1 || hi != 3 {
		t.Fatalf("range %v-%v", lo, hi)
	}
	if s[0] != 3 {
		t.Fatal("Range sorted the sample in place")
	}
	if !math.IsNaN(Sample(nil).Mean()) {
		t.Fatal("empty mean is not NaN")
	}
}

func TestRowCellsAndWinner(t *testing.T) {
	r := Row{Scenario: "burst", Figure: "to first node request", Unit: "s", Better: Lower, Digits: 1,
		Ours: Sample{30.2, 30.4, 30.3}, Theirs: Sample{1.1, 1.0, 1.2}}
	if got := r.Cell(r.Ours); got != "30.3 (30.2-30.4)" {
		t.Fatalf("cell %q", got)
	}
	if r.Winner() != "Karpenter" {
		t.Fatalf("lower is better: winner %q", r.Winner())
	}
	r.Better = Higher
	if r.Winner() != "pve-autoscaler" {
		t.Fatalf("higher is better: winner %q", r.Winner())
	}
	r.Theirs = Sample{30.3}
	if r.Winner() != "equal" || r.Cell(r.Theirs) != "30.3" {
		t.Fatalf("equal means: %q, %q", r.Winner(), r.Cell(r.Theirs))
	}
	r.Theirs = nil
	if r.Winner() != "-" || r.Cell(nil) != "n/a" {
		t.Fatalf("missing side: %q %q", r.Winner(), r.Cell(nil))
	}
	same := Row{Digits: 0, Ours: Sample{3, 3, 3}}
	if got := same.Cell(same.Ours); got != "3 (all 3)" {
		t.Fatalf("constant sample %q", got)
	}
	capped := Row{Digits: 0, Cap: 900, Ours: Sample{900, 300}}
	if got := capped.Cell(capped.Ours); got != "600 (300->900)" {
		t.Fatalf("capped %q", got)
	}
	both := Row{Better: Lower, Cap: 900, Ours: Sample{900}, Theirs: Sample{900}}
	if both.Winner() != "-" {
		t.Fatalf("both past the limit: winner %q", both.Winner())
	}
}

func TestTable(t *testing.T) {
	out := Table([]Row{{Scenario: "burst", Figure: "nodes added", Better: Neither, Ours: Sample{3}, Theirs: Sample{3}}}, 1)
	want := "| burst | nodes added | 3 | 3 | - |"
	if !strings.Contains(out, want) || !strings.HasPrefix(out, "| scenario |") {
		t.Fatalf("table:\n%s\nwant a row %q", out, want)
	}
}

func TestReplaceBlock(t *testing.T) {
	doc := "# B\n\n## Peers\n\nprose before\n\n" + BeginMark("b") + "\nstale\ntable\n" + EndMark("b") + "\n\nprose after\n\n## Next\n"
	got := ReplaceBlock(doc, "## Peers", "b", "fresh\n")
	want := "# B\n\n## Peers\n\nprose before\n\n" + BeginMark("b") + "\nfresh\n" + EndMark("b") + "\n\nprose after\n\n## Next\n"
	if got != want {
		t.Fatalf("replace:\n%q\nwant\n%q", got, want)
	}
	if again := ReplaceBlock(got, "## Peers", "b", "fresh"); again != want {
		t.Fatalf("not idempotent:\n%q", again)
	}
	added := ReplaceBlock("# B\n\ntext\n", "## Peers", "b", "new")
	if added != "# B\n\ntext\n\n## Peers\n\n"+BeginMark("b")+"\nnew\n"+EndMark("b")+"\n" {
		t.Fatalf("appended: %q", added)
	}
	// Another block is left alone.
	other := BeginMark("c") + "\nkeep\n" + EndMark("c") + "\n"
	if got := ReplaceBlock(other+doc, "## Peers", "b", "fresh"); got != other+want {
		t.Fatalf("other block:\n%q", got)
	}
	// An end mark before the begin mark is no block: append, never cut.
	odd := EndMark("b") + "\nkeep\n" + BeginMark("b") + "\n"
	if got := ReplaceBlock(odd, "## Peers", "b", "x"); !strings.HasPrefix(got, odd) {
		t.Fatalf("marks out of order lost text: %q", got)
	}
}
