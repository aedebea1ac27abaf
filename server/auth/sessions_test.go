package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

func TestSessionHashAcceptsOnlyTheExactFormat(t *testing.T) {
	tok, _, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	good := SessionPrefix + tok
	h, err := SessionHash(good)
	if want := sha256.Sum256([]byte(good)); err != nil || string(h) != string(want[:]) {
		t.Fatalf("SessionHash(good) = %x, %v", h, err)
	}
	if !IsSessionCredential(good) || IsSessionCredential(tok) {
		t.Error("IsSessionCredential tells sessions and tokens apart by the prefix")
	}
	for name, bad := range map[string]string{
		"token without prefix": tok,
		"prefix only":          SessionPrefix,
		"one short":            good[:len(good)-1],
		"one long":             good + "A",
		"padding":              good[:len(good)-1] + "=",
		"standard base64":      SessionPrefix + strings.Repeat("+", 43),
		"upper-case prefix":    strings.ToUpper(SessionPrefix) + tok,
		"non-canonical tail":   SessionPrefix + tok[:42] + "B", // 256 bits: the last character's low 2 bits are zero
	} {
		if _, err := SessionHash(bad); err == nil {
			t.Errorf("%s: SessionHash(%q) accepted", name, bad)
		}
	}
}

// FuzzSessionHash: a credential is accepted only in its one encoding.
func FuzzSessionHash(f *testing.F) {
	f.Add(SessionPrefix + strings.Repeat("A", 43))
	f.Add(SessionPrefix + "x")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := SessionHash(s)
		if err != nil {
			return
		}
		raw, derr := base64.RawURLEncoding.Strict().DecodeString(strings.TrimPrefix(s, SessionPrefix))
		if !strings.HasPrefix(s, SessionPrefix) || derr != nil || len(raw) != TokenBytes || len(h) != sha256.Size {
			t.Fatalf("accepted %q", s)
		}
		if SessionPrefix+base64.RawURLEncoding.EncodeToString(raw) != s {
			t.Fatalf("accepted a second encoding %q", s)
		}
	})
}

// FuzzTokenHash: a token is accepted only in its one encoding (CR and LF,
// which the base64 decoder skips, are refused).
func FuzzTokenHash(f *testing.F) {
	f.Add(strings.Repeat("A", 43))
	f.Add(strings.Repeat("A", 20) + "\r\n" + strings.Repeat("A", 21))
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := TokenHash(s); err != nil {
			return
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil || len(raw) != TokenBytes || base64.RawURLEncoding.EncodeToString(raw) != s {
			t.Fatalf("accepted %q", s)
		}
	})
}
