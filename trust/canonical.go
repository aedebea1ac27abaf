package trust

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// integerLiteral is the only number form canonical JSON allows.
var integerLiteral = regexp.MustCompile(`^(0|-?[1-9][0-9]*)$`)

// decodeStrict parses data as exactly one JSON value: valid UTF-8, no
// duplicate object keys, integers only, nesting at most MaxJSONDepth, nothing
// but whitespace after the value. Objects become map[string]any, arrays
// []any, numbers json.Number.
func decodeStrict(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after JSON value", ErrMalformed)
	}
	return v, nil
}

func readValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= MaxJSONDepth {
			return nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformed, MaxJSONDepth)
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
				v, err := readValue(dec, depth+1)
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
				v, err := readValue(dec, depth+1)
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
		if !integerLiteral.MatchString(string(t)) {
			return nil, fmt.Errorf("%w: non-integer number %q", ErrMalformed, string(t))
		}
		return t, nil
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("%w: unexpected token %T", ErrMalformed, tok)
}

// encodeCanonical writes v in the OLPC canonical JSON form TUF signs
// (securesystemslib encode_canonical): sorted keys, no whitespace, strings
// with only '\' and '"' escaped, integers only.
func encodeCanonical(buf *bytes.Buffer, v any) error {
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
		buf.WriteString(string(t))
	case string:
		writeCanonicalString(buf, t)
	case []any:
		buf.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeCanonical(buf, e); err != nil {
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
			writeCanonicalString(buf, k)
			buf.WriteByte(':')
			if err := encodeCanonical(buf, t[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("internal error: cannot canonicalize %T", v)
	}
	return nil
}

var canonicalEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func writeCanonicalString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	canonicalEscaper.WriteString(buf, s)
	buf.WriteByte('"')
}

// signedPayload strictly parses a metadata document and returns the
// canonical bytes of its "signed" object: the exact bytes signatures cover.
func signedPayload(data []byte) ([]byte, error) {
	v, err := decodeStrict(data)
	if err != nil {
		return nil, err
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: metadata is not a JSON object", ErrMalformed)
	}
	signed, ok := top["signed"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: missing \"signed\" object", ErrMalformed)
	}
	if _, ok := top["signatures"].([]any); !ok {
		return nil, fmt.Errorf("%w: missing \"signatures\" array", ErrMalformed)
	}
	var buf bytes.Buffer
	if err := encodeCanonical(&buf, signed); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
