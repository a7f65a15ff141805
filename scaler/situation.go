package scaler

import (
	"fmt"
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

// ParseSituation strictly decodes a situation file's JSON; name is used in
// errors. Every problem is reported, each with its field path.
func ParseSituation(name string, data []byte) (Situation, error) {
	var s Situation
	errs := strictjson.Decode(data, &s)
	if s.Time.IsZero() && !hasPath(errs, "time") {
		errs = append(errs, strictjson.Error{Path: "time", Message: "required: the moment the snapshot describes (RFC 3339, e.g. 2026-11-27T18:00:00Z)"})
	}
	for i, n := range s.Nodes {
		if n.Name == "" {
			errs = append(errs, strictjson.Error{Path: fmt.Sprintf("nodes[%d].name", i), Message: "required"})
		}
	}
	for i, op := range s.Operations {
		switch op.Kind {
		case OpProvision, OpRemove, OpRefill, OpRetire:
		default:
			errs = append(errs, strictjson.Error{Path: fmt.Sprintf("operations[%d].kind", i), Message: fmt.Sprintf("%q: expected provision, remove, refill or retire", op.Kind)})
		}
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("snapshot %s: %w", name, strictjson.Join(errs))
	}
	return s, nil
}

func hasPath(errs []strictjson.Error, p string) bool {
	for _, e := range errs {
		if e.Path == p {
			return true
		}
	}
	return false
}
