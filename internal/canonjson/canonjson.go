// Package canonjson is the one canonical-JSON implementation for TUF
// metadata: the vendor side encodes what it signs with it, and the device
// side (package trust) computes the bytes it verifies with it.
//
// The form is OLPC canonical JSON as securesystemslib's encode_canonical
// writes it: object keys sorted by code point, no whitespace, strings with
// only '\' and '"' escaped (every other byte as is, UTF-8), integers only.
// It is a signing payload: a string holding a control character is written
// raw, so such a form is not itself valid JSON.
//
// Parse accepts exactly one encoding of a value: valid UTF-8, no duplicate
// object keys, integer literals only (no fraction, exponent or "-0"),
// bounded nesting and nothing but whitespace after the value. Whatever Parse
// accepts, Encode writes, and the output parses back to the same value.
package canonjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxDepth is the default bound on object and array nesting (Marshal).
const MaxDepth = 64

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("not canonical-JSON compatible")

// isIntegerLiteral reports whether s has the only number form canonical
// JSON allows: 0|-?[1-9][0-9]* (no fraction, exponent, leading zero or
// plus sign). It is written out rather than as a regexp so that the device
// build does not link package regexp for one pattern.
func isIntegerLiteral(s string) bool {
	if s == "0" {
		return true
	}
	s = strings.TrimPrefix(s, "-")
	if s == "" || s[0] == '0' {
		return false // "", "-", "-0", "01", "-01"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Parse parses data as exactly one JSON value: valid UTF-8, no duplicate
// object keys, integers only, nesting at most maxDepth, nothing but
// whitespace after the value. Objects become map[string]any, arrays []any,
// numbers json.Number.
func Parse(data []byte, maxDepth int) (any, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readValue(dec, 0, maxDepth)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after JSON value", ErrMalformed)
	}
	return v, nil
}

func readValue(dec *json.Decoder, depth, maxDepth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxDepth {
			return nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformed, maxDepth)
		}
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("%w: non-string object key", ErrMalformed)
				}
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("%w: duplicate object key %q", ErrMalformed, k)
				}
				v, err := readValue(dec, depth+1, maxDepth)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			return m, nil
		case '[':
			a := []any{}
			for dec.More() {
				v, err := readValue(dec, depth+1, maxDepth)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			return a, nil
		}
		return nil, fmt.Errorf("%w: unexpected delimiter %q", ErrMalformed, t)
	case json.Number:
		if !isIntegerLiteral(string(t)) {
			return nil, fmt.Errorf("%w: non-integer number %q", ErrMalformed, string(t))
		}
		return t, nil
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("%w: unexpected token %T", ErrMalformed, tok)
}

// Encode writes v, a value as Parse returns it, in canonical form.
func Encode(buf *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		if t {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case json.Number:
		if !isIntegerLiteral(string(t)) {
			return fmt.Errorf("%w: non-integer number %q", ErrMalformed, string(t))
		}
		buf.WriteString(string(t))
	case string:
		writeString(buf, t)
	case []any:
		buf.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := Encode(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys) // byte order of UTF-8 equals code point order
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, k)
			buf.WriteByte(':')
			if err := Encode(buf, t[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("internal error: cannot canonicalize %T", v)
	}
	return nil
}

var escaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func writeString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	escaper.WriteString(buf, s)
	buf.WriteByte('"')
}

// Canonicalize parses data (Parse, nesting at most maxDepth) and returns
// its canonical form.
func Canonicalize(data []byte, maxDepth int) ([]byte, error) {
	v, err := Parse(data, maxDepth)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := Encode(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Marshal returns the canonical form of v's encoding/json encoding (nesting
// at most MaxDepth). It is what a signer signs: the verifier computes the
// same bytes from the document it receives with Canonicalize. It fails on
// values the verifier would refuse (non-integer numbers); invalid UTF-8 in
// strings becomes U+FFFD, as encoding/json writes it.
func Marshal(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Canonicalize(data, MaxDepth)
}
