package deviceapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// DecodeResponse decodes a device API response strictly: exactly one JSON
// object within MaxResponseSize, keys lowercase [a-z0-9_] words of at most
// MaxKeyLength bytes and unique within their object (Go's case-insensitive
// field matching cannot alias two spellings), nesting within MaxDepth, no
// unknown fields, nothing but whitespace after it. Errors wrap ErrInvalid.
func DecodeResponse(data []byte, v any) error {
	if len(data) > MaxResponseSize {
		return invalid("body is larger than MaxResponseSize %d", MaxResponseSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return invalid("invalid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return invalid("body must be a JSON object")
	}
	if err := checkValue(dec, '{', 1); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("trailing data after the JSON object")
	}
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// checkValue walks the rest of an object or array whose opening delimiter
// open was read at nesting depth.
func checkValue(dec *json.Decoder, open json.Delim, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("nested deeper than %d (MaxDepth)", MaxDepth)
	}
	var seen map[string]bool
	if open == '{' {
		seen = map[string]bool{}
	}
	for dec.More() {
		if open == '{' {
			tok, err := dec.Token()
			if err != nil {
				return fmt.Errorf("invalid JSON: %w", err)
			}
			key := tok.(string) // object keys are always strings
			if !isKey(key) {
				return fmt.Errorf("key %q: keys are lowercase [a-z0-9_] of at most %d bytes", truncate(key), MaxKeyLength)
			}
			if seen[key] {
				return fmt.Errorf("duplicate key %q", key)
			}
			seen[key] = true
		}
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		if d, ok := tok.(json.Delim); ok {
			if err := checkValue(dec, d, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

func isKey(s string) bool {
	if s == "" || len(s) > MaxKeyLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ValidText reports whether s is text a device may send: valid UTF-8
// without control characters (C0, DEL, C1), except newline and tab when
// multiline.
func ValidText(s string, multiline bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if isControl(r) && !(multiline && (r == '\n' || r == '\t')) {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// checkText checks a text field: at most max bytes, ValidText, non-empty
// when required.
func checkText(field, s string, max int, required, multiline bool) error {
	if s == "" {
		if required {
			return invalid("%s is required", field)
		}
		return nil
	}
	if len(s) > max {
		return invalid("%s: %d bytes exceeds limit %d", field, len(s), max)
	}
	if !ValidText(s, multiline) {
		return invalid("%s: control or invalid character", field)
	}
	return nil
}

// CleanMessage makes free text (a status message, a last error) valid for
// the device API: invalid UTF-8 and control characters other than newline
// and tab become U+FFFD, and the text is cut at a character boundary to at
// most MaxMessageLength bytes.
func CleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if isControl(r) && r != '\n' && r != '\t' {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
	if len(s) <= MaxMessageLength {
		return s
	}
	cut := MaxMessageLength
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// truncate shortens untrusted values before they are quoted in errors.
func truncate(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
