package tlog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/airlockfw/airlock/internal/strictjson"
)

// EntryType is the "_type" of a log entry.
const EntryType = "airlock/log-entry/v1"

// Limits of an entry.
const (
	// MaxEntrySize bounds an entry's bytes (what the device reads from a
	// tile or a bundle before parsing it).
	MaxEntrySize = 16 << 10
	// MaxSigners bounds the key IDs an entry lists.
	MaxSigners = 64
	maxField   = 1024
)

// ErrEntry is wrapped by every entry parse error.
var ErrEntry = errors.New("malformed log entry")

// Entry is one leaf of the log: a release that became installable. It is
// encoded as canonical JSON; the leaf hash is RFC 6962's over those bytes.
type Entry struct {
	Type    string `json:"_type"`
	Product string `json:"product"`
	Version string `json:"version"`
	// Target is the TUF target path.
	Target string `json:"target"`
	// TargetSHA256 is TargetDigest of the target's signed file-info object.
	TargetSHA256 string `json:"target_sha256"`
	// ProvenanceSHA256 is the release's provenance digest (hex), or "".
	ProvenanceSHA256 string `json:"provenance_sha256"`
	// Role and RoleVersion name the signed role metadata that listed the
	// target when it was logged; Signers are the key IDs whose signatures
	// on it counted.
	Role        string   `json:"role"`
	RoleVersion int64    `json:"role_version"`
	Signers     []string `json:"signers"`
	// Logged is when the entry was appended (UTC, seconds).
	Logged string `json:"logged"`
}

// TargetDigest returns the lowercase hex SHA-256 of the canonical JSON of
// a target's file-info object ({"custom":…,"hashes":…,"length":…}) as
// signed in the role metadata. info may be in any JSON encoding: it is
// canonicalized first, so the vendor and the device agree on the digest.
func TargetDigest(info []byte) (string, error) {
	c, err := canonjson.Canonicalize(info, canonjson.MaxDepth)
	if err != nil {
		return "", fmt.Errorf("target file info: %w", err)
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// Marshal returns e's canonical encoding (the leaf data), after checking it.
func (e Entry) Marshal() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	signers := make([]any, len(e.Signers))
	for i, s := range e.Signers {
		signers[i] = s
	}
	b, err := canonjson.Marshal(map[string]any{
		"_type": e.Type, "product": e.Product, "version": e.Version, "target": e.Target,
		"target_sha256": e.TargetSHA256, "provenance_sha256": e.ProvenanceSHA256,
		"role": e.Role, "role_version": e.RoleVersion, "signers": signers, "logged": e.Logged,
	})
	if err != nil {
		return nil, err
	}
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrEntry, len(b), MaxEntrySize)
	}
	return b, nil
}

// ParseEntry parses leaf data strictly: at most MaxEntrySize bytes, canonical
// JSON (the one encoding Marshal writes), every field present and valid.
func ParseEntry(data []byte) (Entry, error) {
	if len(data) > MaxEntrySize {
		return Entry{}, fmt.Errorf("%w: %d bytes, more than %d", ErrEntry, len(data), MaxEntrySize)
	}
	var e Entry
	if err := (strictjson.Limits{Size: MaxEntrySize, Depth: 4}).Unmarshal(data, &e); err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrEntry, err)
	}
	if err := e.check(); err != nil {
		return Entry{}, err
	}
	// One encoding only: an entry whose bytes are not what Marshal writes
	// (key order, spacing, escapes) would have two leaf hashes.
	c, err := e.Marshal()
	if err != nil {
		return Entry{}, err
	}
	if string(c) != string(data) {
		return Entry{}, fmt.Errorf("%w: not in canonical form", ErrEntry)
	}
	return e, nil
}

func (e Entry) check() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrEntry, field, fmt.Sprintf(format, args...))
	}
	if e.Type != EntryType {
		return bad("_type", "%q, want %q", e.Type, EntryType)
	}
	for _, f := range []struct{ name, v string }{
		{"product", e.Product}, {"version", e.Version}, {"target", e.Target}, {"role", e.Role},
	} {
		if f.v == "" || len(f.v) > maxField {
			return bad(f.name, "empty or longer than %d bytes", maxField)
		}
	}
	if !isHex(e.TargetSHA256, 64) {
		return bad("target_sha256", "not 64 lowercase hex digits")
	}
	if e.ProvenanceSHA256 != "" && !isHex(e.ProvenanceSHA256, 64) {
		return bad("provenance_sha256", "not empty or 64 lowercase hex digits")
	}
	if e.RoleVersion < 1 {
		return bad("role_version", "%d, must be at least 1", e.RoleVersion)
	}
	if len(e.Signers) == 0 || len(e.Signers) > MaxSigners {
		return bad("signers", "%d key IDs, want 1 to %d", len(e.Signers), MaxSigners)
	}
	for _, s := range e.Signers {
		if !isHex(s, 64) {
			return bad("signers", "key ID %q is not 64 lowercase hex digits", s)
		}
	}
	t, err := time.Parse(time.RFC3339, e.Logged)
	if err != nil || t.Location() != time.UTC || t.Format(time.RFC3339) != e.Logged {
		return bad("logged", "%q is not an RFC 3339 UTC time in seconds", e.Logged)
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
