package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest config file read: a real one is a few KiB,
// and a larger file is refused before it is parsed.
const MaxFileSize = 1 << 20

// MaxListLen bounds every list in the file (lists with a tighter bound of
// their own are in listLimits), so a hostile file cannot make the decoder
// build millions of values.
const MaxListLen = 4096

// listLimits are the lists with a bound tighter than MaxListLen; each is
// documented in config.example.yaml.
var listLimits = map[string]int{
	"proxmox.hosts":             256,
	"proxmox.dhcp_reservations": MaxListLen,
	"proxmox.mac_ip_pool":       MaxListLen, // dhcp_reservations' old name
	"talos.patch_files":         64,
	"policy.schedules":          64,
	"policy.standby.hosts":      256,
	"pools":                     MaxPools,
}

// Pos is a line and column in the config file, both from 1.
type Pos struct{ Line, Column int }

// shape checks what YAML itself cannot say about the file: one document,
// a mapping at the top, no key twice in a mapping, no list past its bound,
// no non-finite number. It returns the position of every field path (for
// the problems found later) and the problems found here; a problem here
// means the file is not decoded further.
func shape(data []byte) (map[string]Pos, []Problem) {
	dec := yaml3.NewDecoder(bytes.NewReader(data))
	var doc yaml3.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, []Problem{{Message: "the file is empty: expected the sections cluster, proxmox, talos, kubernetes, policy, daemon (see config.example.yaml)"}}
		}
		return nil, []Problem{yamlProblem(err)}
	}
	var next yaml3.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, []Problem{{Line: next.Line, Column: next.Column, Message: "a second YAML document starts here: only one is read, put everything in one document"}}
	case !errors.Is(err, io.EOF):
		return nil, []Problem{yamlProblem(err)}
	}
	if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml3.ScalarNode && doc.Content[0].Tag == "!!null") {
		return nil, []Problem{{Message: "the file holds no settings (only comments or null): expected the sections cluster, proxmox, talos, kubernetes, policy, daemon (see config.example.yaml)"}}
	}
	root := doc.Content[0]
	if root.Kind != yaml3.MappingNode {
		return nil, []Problem{{Line: root.Line, Column: root.Column, Message: "expected a mapping of sections (cluster, proxmox, talos, kubernetes, policy, daemon), got " + kindOf(root)}}
	}
	s := &shaper{pos: map[string]Pos{}}
	s.walk(root, "")
	return s.pos, s.problems
}

type shaper struct {
	pos      map[string]Pos
	problems []Problem
}

func (s *shaper) fail(n *yaml3.Node, path, format string, args ...any) {
	s.problems = append(s.problems, Problem{Path: path, Line: n.Line, Column: n.Column, Message: fmt.Sprintf(format, args...)})
}

// walk records the position of every key (and of every list item) under
// its path, and checks what it meets.
func (s *shaper) walk(n *yaml3.Node, path string) {
	switch n.Kind {
	case yaml3.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml3.ScalarNode {
				s.fail(k, path, "a key must be a plain name, got %s", kindOf(k))
				continue
			}
			if k.Value == "<<" && k.Tag == "!!merge" {
				continue // a merge key: its mapping's keys land here, decoded later
			}
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if line, ok := seen[k.Value]; ok {
				s.fail(k, p, "appears twice in one mapping (first at line %d): the second would silently replace the first", line)
				continue
			}
			seen[k.Value] = k.Line
			s.pos[p] = Pos{k.Line, k.Column}
			s.walk(v, p)
		}
	case yaml3.SequenceNode:
		limit, ok := listLimits[path]
		if !ok {
			limit = MaxListLen
		}
		if len(n.Content) > limit {
			s.fail(n, path, "%d entries: at most %d", len(n.Content), limit)
			return
		}
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			s.pos[p] = Pos{item.Line, item.Column}
			s.walk(item, p)
		}
	case yaml3.ScalarNode:
		if n.Tag == "!!float" {
			if f, err := strconv.ParseFloat(strings.TrimPrefix(strings.ToLower(n.Value), "+"), 64); (err == nil && (math.IsInf(f, 0) || math.IsNaN(f))) || isYAMLSpecial(n.Value) {
				s.fail(n, path, "%s: expected a finite number", n.Value)
			}
		}
	}
}

func isYAMLSpecial(v string) bool {
	switch strings.ToLower(strings.TrimPrefix(v, "+")) {
	case ".inf", "-.inf", ".nan":
		return true
	}
	return false
}

func kindOf(n *yaml3.Node) string {
	switch n.Kind {
	case yaml3.MappingNode:
		return "a mapping"
	case yaml3.SequenceNode:
		return "a list"
	case yaml3.AliasNode:
		return "an alias"
	}
	return "the value " + strconv.Quote(shorten(n.Value, 40))
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// yamlProblem turns a YAML syntax error into a problem; its text names
// the line ("yaml: line 3: ...").
func yamlProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := Problem{Message: "not valid YAML: " + msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if line, err := strconv.Atoi(rest[:i]); err == nil {
				p.Line = line
				p.Message = "not valid YAML:" + rest[i+1:]
			}
		}
	}
	return p
}

// locate gives each problem without a position the position of its path,
// or of the nearest enclosing path the file has (a required field that is
// missing points at its section).
func locate(pos map[string]Pos, problems []Problem) {
	for i := range problems {
		p := &problems[i]
		if p.Line > 0 || pos == nil {
			continue
		}
		for path := p.Path; ; {
			if at, ok := pos[path]; ok && path != "" {
				p.Line, p.Column = at.Line, at.Column
				break
			}
			j := strings.LastIndexAny(path, ".[")
			if j < 0 {
				break
			}
			path = path[:j]
		}
	}
}
