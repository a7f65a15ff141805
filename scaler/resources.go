package scaler

import (
	"encoding/json"
	"fmt"
	"math"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Resources is an amount of CPU (in millicores) and memory (in bytes).
// In JSON it reads and writes Kubernetes quantities: {"cpu":"3500m","memory":"8Gi"}.
type Resources struct {
	MilliCPU int64
	Memory   int64
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{MilliCPU: r.MilliCPU + o.MilliCPU, Memory: r.Memory + o.Memory}
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{MilliCPU: r.MilliCPU - o.MilliCPU, Memory: r.Memory - o.Memory}
}

// Fits reports whether r fits into room in both dimensions.
func (r Resources) Fits(room Resources) bool {
	return r.MilliCPU <= room.MilliCPU && r.Memory <= room.Memory
}

// IsZero reports whether both amounts are zero.
func (r Resources) IsZero() bool { return r.MilliCPU == 0 && r.Memory == 0 }

// String renders r as Kubernetes quantities, e.g. "cpu=3500m memory=8Gi".
func (r Resources) String() string {
	return fmt.Sprintf("cpu=%s memory=%s", cpuQuantity(r.MilliCPU).String(), memQuantity(r.Memory).String())
}

func cpuQuantity(m int64) *resource.Quantity { return resource.NewMilliQuantity(m, resource.DecimalSI) }
func memQuantity(b int64) *resource.Quantity { return resource.NewQuantity(b, resource.BinarySI) }

type resourcesJSON struct {
	CPU    *resource.Quantity `json:"cpu,omitempty"`
	Memory *resource.Quantity `json:"memory,omitempty"`
}

// MarshalJSON writes r as Kubernetes quantities.
func (r Resources) MarshalJSON() ([]byte, error) {
	return json.Marshal(resourcesJSON{CPU: cpuQuantity(r.MilliCPU), Memory: memQuantity(r.Memory)})
}

// UnmarshalJSON reads Kubernetes quantities ("4", "500m", "8Gi") and rejects
// unknown keys and negative amounts.
func (r *Resources) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("expected an object like {\"cpu\": \"4\", \"memory\": \"8Gi\"}")
	}
	var out Resources
	for k, v := range raw {
		var s any
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		str := fmt.Sprint(s)
		q, err := resource.ParseQuantity(str)
		if err != nil {
			return fmt.Errorf("%s: %q is not a quantity (expected e.g. \"4\", \"500m\", \"8Gi\")", k, shortText(str))
		}
		if q.Sign() < 0 {
			return fmt.Errorf("%s: %q is negative", k, str)
		}
		// Past these, MilliValue and Value would not fit in an int64.
		if (k == "cpu" && q.CmpInt64(math.MaxInt64/1000) > 0) || q.CmpInt64(math.MaxInt64) > 0 {
			return fmt.Errorf("%s: %q is too large", k, shortText(str))
		}
		switch k {
		case "cpu":
			out.MilliCPU = q.MilliValue()
		case "memory":
			out.Memory = q.Value()
		default:
			return fmt.Errorf("unknown resource %q (expected cpu or memory)", k)
		}
	}
	*r = out
	return nil
}

// shortText cuts a value quoted in an error to a readable length.
func shortText(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}
