// Package strictjson is the one strict JSON decoder for Airlock's own
// formats (device state, keyring, device API, release metadata, director
// custom fields, audit entries). It accepts exactly one encoding of a value:
//
//   - at most Limits.Size bytes (default MaxSize) of valid UTF-8;
//   - exactly one JSON value, nothing but white space after it;
//   - no duplicate key in any object (encoding/json keeps the last one, so
//     two readers could see different values in the same bytes);
//   - nesting at most Limits.Depth (default MaxDepth);
//   - decoding into structs refuses unknown fields.
//
// encoding/json still matches struct field names case-insensitively; a
// format that must refuse other spellings checks its keys with Limits.Key
// (package deviceapi does). Signed TUF metadata is parsed by package trust
// with internal/canonjson, which is stricter still (integers only).
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

const (
	// MaxSize is the default limit on the input size in bytes.
	MaxSize = 1 << 20
	// MaxDepth is the default limit on object and array nesting.
	MaxDepth = 32
)

// ErrInvalid matches (errors.Is) every error for input that is not strict
// JSON; not errors decoding a valid document into v, such as a type
// mismatch or an unknown field, which wrap encoding/json's errors. Its text
// is not repeated in the messages, which callers prefix with their own.
var ErrInvalid = errors.New("invalid strict JSON")

// invalidError is an error that matches ErrInvalid.
type invalidError struct{ err error }

func (e *invalidError) Error() string        { return e.err.Error() }
func (e *invalidError) Unwrap() error        { return e.err }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// invalid returns an error matching ErrInvalid with the message of
// fmt.Errorf(format, args...).
func invalid(format string, args ...any) error {
	return &invalidError{fmt.Errorf(format, args...)}
}

// Limits bound the input. The zero value means MaxSize and MaxDepth, and
// any key.
type Limits struct {
	Size  int64 // bytes; 0 means MaxSize
	Depth int   // nesting; 0 means MaxDepth
	// Key, if set, is called for every object key; an error refuses the
	// input.
	Key func(string) error
}

// Unmarshal decodes data into v with the default Limits.
func Unmarshal(data []byte, v any) error { return Limits{}.Unmarshal(data, v) }

// Unmarshal checks data (Check) and decodes it into v, refusing unknown
// struct fields.
func (l Limits) Unmarshal(data []byte, v any) error {
	if err := l.Check(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Check reports whether data is one strict JSON value within l.
func (l Limits) Check(data []byte) error {
	size, depth := l.Size, l.Depth
	if size == 0 {
		size = MaxSize
	}
	if depth == 0 {
		depth = MaxDepth
	}
	if int64(len(data)) > size {
		return invalid("%d bytes, limit %d", len(data), size)
	}
	if !utf8.Valid(data) {
		return invalid("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := l.value(dec, 0, depth); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("trailing data after the JSON value")
	}
	return nil
}

// syntaxError describes a json.Decoder error.
func syntaxError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return invalid("truncated JSON")
	}
	return invalid("malformed JSON: %v", err)
}

func (l Limits) value(dec *json.Decoder, depth, maxDepth int) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	open, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	if depth >= maxDepth {
		return invalid("nested deeper than %d", maxDepth)
	}
	var seen map[string]bool
	if open == '{' {
		seen = map[string]bool{}
	}
	for dec.More() {
		if open == '{' {
			kt, err := dec.Token()
			if err != nil {
				return syntaxError(err)
			}
			k, _ := kt.(string) // object keys are always strings
			if seen[k] {
				return invalid("duplicate key %q", truncate(k))
			}
			seen[k] = true
			if l.Key != nil {
				if err := l.Key(k); err != nil {
					return invalid("%w", err)
				}
			}
		}
		if err := l.value(dec, depth+1, maxDepth); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return syntaxError(err)
	}
	return nil
}

// truncate shortens untrusted values before they are quoted in errors.
func truncate(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
