package deviceapi

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/airlockfw/airlock/internal/strictjson"
)

// DecodeResponse decodes a device API response strictly: exactly one JSON
// object within MaxResponseSize, keys lowercase [a-z0-9_] words of at most
// MaxKeyLength bytes and unique within their object (Go's case-insensitive
// field matching cannot alias two spellings), nesting within MaxDepth, no
// unknown fields, nothing but whitespace after it. Errors wrap ErrInvalid.
func DecodeResponse(data []byte, v any) error {
	if len(data) > MaxResponseSize {
		return invalid("body is %d bytes, larger than MaxResponseSize %d", len(data), MaxResponseSize)
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return invalid("body must be a JSON object")
	}
	if err := responseLimits.Unmarshal(data, v); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// responseLimits are the device API's strict JSON rules (internal/strictjson)
// with its key rule.
var responseLimits = strictjson.Limits{Size: MaxResponseSize, Depth: MaxDepth, Key: checkKey}

func checkKey(key string) error {
	if !isKey(key) {
		return fmt.Errorf("key %q: keys are lowercase [a-z0-9_] of at most %d bytes", truncate(key), MaxKeyLength)
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
