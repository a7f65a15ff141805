package config

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as Go duration text ("60s", "5m", "1h30m").
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads duration text; bare numbers are refused because their unit is ambiguous.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected a duration such as \"60s\" or \"5m\", got %s (a bare number has no unit)", b)
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("expected a duration such as \"60s\" or \"5m\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// ByteSize is an amount of memory written with a binary unit ("8GiB", "512MiB"; "Gi"/"Mi" work too).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10},
	{"B", 1},
}

// ParseByteSize reads "8GiB", "8Gi", "512MiB", "1024B".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
				break
			}
			// 2^63 itself does not fit: the largest float64 below it does.
			if v := n * float64(u.mult); v >= math.MaxInt64 {
				return 0, fmt.Errorf("%q is too large: expected at most 8EiB", s)
			}
			return ByteSize(n * float64(u.mult)), nil
		}
	}
	return 0, fmt.Errorf("expected a size such as \"8GiB\" or \"512MiB\", got %q", s)
}

// String renders the size in the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range byteUnits[:4] {
		if b != 0 && int64(b)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.mult, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", int64(b))
}

// MarshalJSON writes the size with its unit.
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads a size with a unit; bare numbers are refused (PVE counts MiB, Kubernetes bytes).
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("expected a size such as \"8GiB\" or \"512MiB\", got %s (a bare number has no unit)", data)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// VMRef names a VM by id (9000) or by name ("talos-worker-template").
type VMRef struct {
	ID   int
	Name string
}

// IsZero reports whether nothing was given.
func (r VMRef) IsZero() bool { return r.ID == 0 && r.Name == "" }

func (r VMRef) String() string {
	if r.ID != 0 {
		return strconv.Itoa(r.ID)
	}
	return r.Name
}

// MarshalJSON writes the id as a number or the name as a string.
func (r VMRef) MarshalJSON() ([]byte, error) {
	if r.ID != 0 {
		return json.Marshal(r.ID)
	}
	return json.Marshal(r.Name)
}

// UnmarshalJSON reads a vmid (number or digits) or a name.
func (r *VMRef) UnmarshalJSON(b []byte) error {
	var n json.Number
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("expected a vmid or a VM name")
	}
	switch t := v.(type) {
	case json.Number:
		n = t
	case string:
		if _, err := strconv.Atoi(t); err == nil {
			n = json.Number(t)
		} else {
			*r = VMRef{Name: strings.TrimSpace(t)}
			return nil
		}
	default:
		return fmt.Errorf("expected a vmid or a VM name, got %s", b)
	}
	id, err := strconv.Atoi(n.String())
	if err != nil {
		return fmt.Errorf("expected a whole vmid, got %s", n)
	}
	*r = VMRef{ID: id}
	return nil
}
