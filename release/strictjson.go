package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"
)

// MaxCustomDepth is the deepest nesting of JSON objects and arrays accepted
// in a TUF target's custom field (the airlock schema itself needs 4).
const MaxCustomDepth = 16

// checkStrictJSON checks that raw is exactly one JSON object, valid UTF-8,
// nested at most MaxCustomDepth deep, with no duplicate key in any object,
// no null anywhere inside the top-level "airlock" member, and nothing but
// whitespace after it. encoding/json alone keeps the last of duplicate keys
// and ignores invalid UTF-8 and trailing values, so two parsers could read
// different metadata from the same signed bytes; this closes that gap.
func checkStrictJSON(raw []byte) error {
	if !utf8.Valid(raw) {
		return errors.New("not valid UTF-8")
	}
	type frame struct {
		object   bool
		keys     map[string]bool
		wantKey  bool
		lastKey  string
		inAirloc bool // inside the value of the top-level "airlock" member
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var stack []*frame
	started := false
	for {
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return errors.New("truncated JSON")
			}
			return fmt.Errorf("malformed JSON: %w", err)
		}
		if !started {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return errors.New("not a JSON object")
			}
			started = true
			stack = append(stack, &frame{object: true, keys: map[string]bool{}, wantKey: true})
			continue
		}
		top := stack[len(stack)-1]
		if top.object && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
			} else {
				k, _ := tok.(string) // the decoder only returns strings here
				if top.keys[k] {
					return fmt.Errorf("duplicate key %q", k)
				}
				top.keys[k] = true
				top.lastKey = k
				top.wantKey = false
				continue
			}
		} else {
			inside := top.inAirloc || len(stack) == 1 && top.lastKey == "airlock"
			switch t := tok.(type) {
			case json.Delim:
				switch t {
				case '{', '[':
					if len(stack) >= MaxCustomDepth {
						return fmt.Errorf("nested deeper than %d", MaxCustomDepth)
					}
					f := &frame{object: t == '{', inAirloc: inside}
					if f.object {
						f.keys = map[string]bool{}
						f.wantKey = true
					}
					stack = append(stack, f)
					continue
				default: // ']'
					stack = stack[:len(stack)-1]
				}
			case nil:
				if inside {
					return fmt.Errorf("null value in %q", "airlock")
				}
			}
		}
		// A value (scalar or a just-closed container) is complete.
		if len(stack) == 0 {
			break
		}
		if p := stack[len(stack)-1]; p.object {
			p.wantKey = true
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// objectKeys decodes raw as a JSON object and checks that its keys are
// exactly drawn from required and optional, and that all of required are
// present. Exact matching matters: encoding/json matches struct fields
// case-insensitively (even "ſchema" matches "schema").
func objectKeys(raw json.RawMessage, prefix string, required, optional []string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, &FieldError{Field: trimDot(prefix), Err: errors.New("want a JSON object")}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(required, k) && !slices.Contains(optional, k) {
			return nil, &FieldError{Field: prefix + k, Err: ErrUnknownField}
		}
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			return nil, &FieldError{Field: prefix + k, Err: ErrMissingField}
		}
	}
	return m, nil
}

func trimDot(s string) string {
	if s == "" {
		return "airlock"
	}
	return s[:len(s)-1]
}
