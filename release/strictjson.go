package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/airlockfw/airlock/internal/strictjson"
)

// MaxCustomDepth is the deepest nesting of JSON objects and arrays accepted
// in a TUF target's custom field (the airlock schema itself needs 4).
const MaxCustomDepth = 16

// checkStrictJSON checks that raw is exactly one JSON object within
// MaxCustomSize, valid UTF-8, nested at most MaxCustomDepth deep, with no
// duplicate key in any object and nothing but whitespace after it
// (internal/strictjson), and with no null anywhere inside the top-level
// "airlock" member. encoding/json alone keeps the last of duplicate keys
// and ignores invalid UTF-8 and trailing values, so two parsers could read
// different metadata from the same signed bytes; this closes that gap.
func checkStrictJSON(raw []byte) error {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) > 0 && t[0] != '{' {
		return errors.New("not a JSON object")
	}
	if err := (strictjson.Limits{Size: MaxCustomSize, Depth: MaxCustomDepth}).Check(raw); err != nil {
		return err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return err
	}
	body, ok := top[CustomKey]
	if !ok {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if hasNull(v) {
		return fmt.Errorf("null value in %q", CustomKey)
	}
	return nil
}

// hasNull reports whether v, as encoding/json decodes into any, is or
// holds a null.
func hasNull(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		for _, e := range t {
			if hasNull(e) {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if hasNull(e) {
				return true
			}
		}
	}
	return false
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
