package strictjson

import (
	"strings"
	"testing"
	"time"
)

type inner struct {
	N int    `json:"n"`
	S string `json:"s"`
}

type base struct {
	ID string `json:"id"`
}

type doc struct {
	base
	Inner   inner             `json:"inner"`
	Ptr     *inner            `json:"ptr"`
	List    []inner           `json:"list"`
	Labels  map[string]string `json:"labels"`
	When    time.Time         `json:"when"`
	Flag    bool              `json:"flag"`
	Keep    int               `json:"keep"`
	Skipped string            `json:"-"`
}

func TestStrictDecodesEverything(t *testing.T) {
	d := doc{Keep: 7}
	errs := Decode([]byte(`{"id": "x", "inner": {"n": 1, "s": "a"}, "ptr": {"n": 2}, "list": [{"n": 3}, {"s": "b"}],
		"labels": {"k": "v"}, "when": "2026-11-27T00:00:00Z", "flag": true}`), &d)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if d.ID != "x" || d.Inner.N != 1 || d.Ptr.N != 2 || len(d.List) != 2 || d.List[1].S != "b" || d.Labels["k"] != "v" || !d.Flag || d.When.Year() != 2026 {
		t.Errorf("decoded %+v", d)
	}
	if d.Keep != 7 {
		t.Errorf("absent field lost its default: %d", d.Keep)
	}
}

func TestStrictReportsEveryProblemWithItsPath(t *testing.T) {
	var d doc
	errs := Decode([]byte(`{"idd": 1, "inner": {"n": "one", "z": 0}, "list": [{"n": 1}, {"n": true}], "labels": {"k": 5},
		"when": "soon", "flag": "yes", "Skipped": "x", "ptr": []}`), &d)
	got := make([]string, len(errs))
	for i, e := range errs {
		got[i] = e.Error()
	}
	want := []string{
		`Skipped: unknown field`,
		`flag: expected true or false, got the string "yes"`,
		`idd: unknown field (did you mean "id"?)`,
		`inner.n: expected a whole number, got the string "one"`,
		`inner.z: unknown field`,
		`labels.k: expected a string, got 5`,
		`list[1].n: expected a whole number, got true`,
		`ptr: expected a mapping of fields, got a list`,
		`when: parsing time`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems:\n%s", len(got), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	if err := Join(errs); err == nil || strings.Count(err.Error(), "\n") != len(want)-1 {
		t.Errorf("Join = %v", err)
	}
	if Join(nil) != nil {
		t.Error("Join(nil) != nil")
	}
}

func TestStrictNeedsAPointer(t *testing.T) {
	if errs := Decode([]byte(`{}`), doc{}); len(errs) != 1 {
		t.Errorf("non-pointer accepted: %v", errs)
	}
}

func TestClosest(t *testing.T) {
	fields := map[string][]int{"interval": nil, "min_workers": nil, "max_workers": nil, "cpu": nil}
	for in, want := range map[string]string{"intervall": "interval", "min_worker": "min_workers", "maxworkers": "max_workers", "CPU": "cpu", "memory": "", "x": ""} {
		if got := closest(in, fields); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}
