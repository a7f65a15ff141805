// Package strictjson is a strict JSON decoder that reports every problem at
// once, each with the path of the field it concerns ("policy.cpu.scale_up_at"),
// instead of stopping at the first one as encoding/json does. Config files
// (YAML, converted to JSON first) and snapshot files go through it.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Error is one problem at one path, and where it is in the file when
// that is known (Line and Column from 1; 0 when unknown).
type Error struct {
	Path         string
	Message      string
	Line, Column int
}

func (e Error) Error() string {
	where := e.Path
	if e.Line > 0 {
		at := fmt.Sprintf("line %d", e.Line)
		if e.Column > 0 {
			at += fmt.Sprintf(":%d", e.Column)
		}
		if where == "" {
			where = at
		} else {
			where += " (" + at + ")"
		}
	}
	if where == "" {
		return e.Message
	}
	return where + ": " + e.Message
}

// Decode decodes data (JSON) into v, a non-nil pointer. Keys that match no
// field are errors, with a suggestion when a field's name is close. Fields
// absent from data keep the values v already holds (the defaults). The
// errors come sorted by path.
func Decode(data []byte, v any) []Error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return []Error{{Message: "strictjson: need a non-nil pointer"}}
	}
	var errs []Error
	decodeValue(bytes.TrimSpace(data), rv.Elem(), "", &errs)
	slices.SortStableFunc(errs, func(a, b Error) int { return strings.Compare(a.Path, b.Path) })
	return errs
}

// Join returns the errors as one error, one per line, or nil.
func Join(errs []Error) error {
	if len(errs) == 0 {
		return nil
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func decodeValue(raw json.RawMessage, v reflect.Value, path string, errs *[]Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		leaf(raw, v, path, errs)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		decodeValue(raw, v.Elem(), path, errs)
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			*errs = append(*errs, Error{Path: path, Message: "expected a mapping of fields, got " + describeJSON(raw)})
			return
		}
		fields := fieldsOf(v.Type())
		for k, val := range obj {
			idx, ok := fields[k]
			if !ok {
				msg := "unknown field"
				if s := closest(k, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				*errs = append(*errs, Error{Path: join(path, k), Message: msg})
				continue
			}
			decodeValue(val, v.FieldByIndex(idx), join(path, k), errs)
		}
	case reflect.Slice:
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			*errs = append(*errs, Error{Path: path, Message: "expected a list, got " + describeJSON(raw)})
			return
		}
		s := reflect.MakeSlice(v.Type(), len(arr), len(arr))
		for i, item := range arr {
			decodeValue(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), errs)
		}
		v.Set(s)
	case reflect.Map:
		var obj map[string]json.RawMessage
		if v.Type().Key().Kind() != reflect.String || json.Unmarshal(raw, &obj) != nil {
			leaf(raw, v, path, errs)
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(obj))
		for k, item := range obj {
			e := reflect.New(v.Type().Elem()).Elem()
			decodeValue(item, e, join(path, k), errs)
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	default:
		leaf(raw, v, path, errs)
	}
}

func leaf(raw json.RawMessage, v reflect.Value, path string, errs *[]Error) {
	p := reflect.New(v.Type())
	if err := json.Unmarshal(raw, p.Interface()); err != nil {
		*errs = append(*errs, Error{Path: path, Message: leafMessage(err, v.Type(), raw)})
		return
	}
	v.Set(p.Elem())
}

func leafMessage(err error, t reflect.Type, raw json.RawMessage) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	if errors.As(err, &te) || errors.As(err, &se) {
		return fmt.Sprintf("expected %s, got %s", expected(t), describeJSON(raw))
	}
	// A type's own UnmarshalJSON says what it expects.
	return err.Error()
}

func expected(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func describeJSON(raw json.RawMessage) string {
	s := string(raw)
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	switch {
	case len(raw) == 0:
		return "nothing"
	case raw[0] == '{':
		return "a mapping"
	case raw[0] == '[':
		return "a list"
	case raw[0] == '"':
		return "the string " + s
	case s == "true" || s == "false":
		return s
	}
	return s
}

func join(path, k string) string {
	if k == "" {
		k = `""` // an empty key still names a place
	}
	if path == "" {
		return k
	}
	return path + "." + k
}

// fieldsOf maps JSON names to field indexes; embedded structs without a
// name of their own contribute their fields.
func fieldsOf(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			// Promoted fields, as encoding/json does, even from an unexported type.
			for k, idx := range fieldsOf(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = []int{i}
	}
	return out
}

// closest returns the known name nearest to k, if it is near enough to be
// a typo: within a third of the longer name's length (at least 2 edits).
func closest(k string, fields map[string][]int) string {
	best, bestD := "", -1
	for name := range fields {
		d := distance(strings.ToLower(k), name)
		if d > max(2, max(len(k), len(name))/3) {
			continue
		}
		if bestD < 0 || d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
