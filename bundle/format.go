package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/airlockfw/airlock/internal/bytesize"
)

// Format constants of bundle format version 1. See docs/bundle-format.md.
const (
	// Magic starts every bundle.
	Magic = "\x89AIRLOCK"
	// TrailerMagic starts the trailer that follows the payload.
	TrailerMagic = "\x89AIRLEND"
	// FormatVersion is the format of a bundle with a whole payload (the
	// TUF target file). Writers use it unless the bundle is a delta.
	FormatVersion = 1
	// FormatVersionDelta is the format of a delta bundle: format 1 with one
	// more header field, the version of the release the delta applies to
	// (Metadata.DeltaFrom), after the target path. Its payload is the
	// release's hash tree, then the delta (docs/delta-format.md).
	FormatVersionDelta = 2
	// FormatVersionLog is a bundle that carries a transparency log proof:
	// after the target path, the delta base version as a one-byte length
	// (0 for a whole payload) and its bytes, then the log proof as a
	// four-byte length (at least 1) and its bytes. Writers use it only when
	// Metadata.LogProof is set, so bundles without a log are as before.
	FormatVersionLog = 3
	// MaxLogProofSize bounds Metadata.LogProof (tlog.MaxProofSize).
	MaxLogProofSize = 2 << 20
	// MaxDeltaFromLen bounds Metadata.DeltaFrom, in bytes (a SemVer
	// version, release.MaxVersionLength).
	MaxDeltaFromLen = 128

	// DigestSize is the size of the header digest and of the payload digest
	// in the trailer (SHA-256).
	DigestSize = 32
	// TrailerSize is the size of the trailer: TrailerMagic, the payload
	// length (uint64) and the payload's SHA-256.
	TrailerSize = len(TrailerMagic) + 8 + DigestSize
)

// Limits of format version 1. Every length and count in a bundle is checked
// against these (or the lower values of a [Limits]) before anything is
// allocated. The writer refuses to produce bundles that exceed them.
const (
	// MaxMetadataSize bounds each TUF metadata file in a bundle. It is above
	// go-tuf's largest default (TargetsMaxLength, 5,000,000 bytes), so the
	// bundle is never the narrower constraint.
	MaxMetadataSize int64 = 8 << 20
	// MaxHeaderSize bounds the whole header: every byte before the payload,
	// including framing and the header digest. It bounds the memory a reader
	// needs for the metadata section.
	MaxHeaderSize int64 = 32 << 20
	// MaxRootChain bounds the number of root metadata files in the root chain.
	MaxRootChain = 64
	// MaxDelegations bounds the number of delegated role metadata files.
	MaxDelegations = 8
	// MaxRoleNameLen bounds a delegated role name, in bytes.
	MaxRoleNameLen = 128
	// MaxTargetPathLen bounds the TUF target path, in bytes.
	MaxTargetPathLen = 512
	// MaxPayloadSize bounds the payload length.
	MaxPayloadSize int64 = 64 << 30
)

// Sentinel errors. Every error returned by this package for a bad bundle
// wraps exactly one of them, with a message that names the field and the
// check that failed.
var (
	// ErrMagic: the input does not start with [Magic]; it is not a bundle.
	ErrMagic = errors.New("not an airlock bundle")
	// ErrVersion: the format version is not [FormatVersion].
	ErrVersion = errors.New("unsupported bundle format version")
	// ErrLimit: a length or count exceeds a limit.
	ErrLimit = errors.New("bundle limit exceeded")
	// ErrTruncated: the input ended early (header, payload or trailer).
	ErrTruncated = errors.New("bundle truncated")
	// ErrMalformed: a field has a value the format does not allow.
	ErrMalformed = errors.New("malformed bundle")
	// ErrHeaderDigest: the header does not match its SHA-256 digest.
	ErrHeaderDigest = errors.New("bundle header digest mismatch")
	// ErrTrailer: the trailer is wrong (magic, length, payload digest) or is
	// followed by extra bytes.
	ErrTrailer = errors.New("bad bundle trailer")
	// ErrPayloadLength: [Write] was given a payload whose length differs
	// from Metadata.PayloadLength.
	ErrPayloadLength = errors.New("payload length mismatch")
)

// Metadata is the metadata section of a bundle: everything before the payload.
//
// All metadata files are carried as opaque bytes, exactly as signed; the
// bundle only checks that each is a JSON object whose signed._type and
// signed.version fit its position (the device's TUF client verifies them).
type Metadata struct {
	// RootChain holds signed root metadata files, oldest first, with
	// versions strictly consecutive (v, v+1, …). It may be empty. A device
	// skips the versions it already trusts.
	RootChain [][]byte
	// Timestamp, Snapshot and Targets are the signed top-level metadata files.
	Timestamp, Snapshot, Targets []byte
	// Delegated holds the delegated targets roles in delegation order, from
	// the one targets delegates to, down to the product role that lists the
	// target. It may be empty when targets lists the target itself.
	Delegated []Role
	// TargetPath is the TUF target path of the payload, e.g.
	// "acme/router-x1/1.1.0/firmware.img". It is never used as a file name.
	TargetPath string
	// PayloadLength is the exact length of the payload in bytes.
	PayloadLength int64
	// DeltaFrom is, for a delta bundle (format 2), the version of the
	// release the delta applies to: the release a device must be running.
	// Empty for a whole payload (format 1). 1 to MaxDeltaFromLen bytes of
	// printable ASCII.
	DeltaFrom string
	// LogProof is the transparency log proof of the release (package
	// tlog's Proof, docs/transparency.md), nil when the repository has no
	// log. Opaque here: the device parses and verifies it. At most
	// MaxLogProofSize bytes; a bundle with one is format 3.
	LogProof []byte
}

// Role is a delegated targets role's signed metadata file.
type Role struct {
	// Name is the role name, e.g. "acme.router-x1": 1 to MaxRoleNameLen bytes
	// of [A-Za-z0-9._-], starting with a letter or digit, without "..".
	Name string
	// Data is the signed metadata file.
	Data []byte
}

// Limits lowers the format limits for a reader that knows better (a tight
// memory or transport budget). MaxPayloadSize bounds the payload as carried,
// which may be compressed: it is never the size of a slot, which bounds the
// installed image (verify.Facts.SlotSize). The zero value of each field
// means the format limit of the same name (MaxMetadataSize, MaxHeaderSize,
// MaxRootChain, MaxDelegations, MaxPayloadSize). Negative values and values
// above the format limit are rejected by [NewReader].
type Limits struct {
	MaxMetadataSize int64 // per metadata file
	MaxHeaderSize   int64 // all bytes before the payload
	MaxRootChain    int   // root metadata files
	MaxDelegations  int   // delegated role metadata files
	MaxPayloadSize  int64 // payload bytes
}

// limit is a resolved limit and the name an error message reports for it.
type limit struct {
	v    int64
	name string
}

type limits struct {
	metadata, header, roots, delegations, payload limit
}

// formatLimits are the limits of the format itself, which Write enforces.
var formatLimits = limits{
	metadata:    limit{MaxMetadataSize, "MaxMetadataSize"},
	header:      limit{MaxHeaderSize, "MaxHeaderSize"},
	roots:       limit{MaxRootChain, "MaxRootChain"},
	delegations: limit{MaxDelegations, "MaxDelegations"},
	payload:     limit{MaxPayloadSize, "MaxPayloadSize"},
}

func (l Limits) resolve() (limits, error) {
	r := formatLimits
	for _, f := range []struct {
		v   int64
		dst *limit
	}{
		{l.MaxMetadataSize, &r.metadata},
		{l.MaxHeaderSize, &r.header},
		{int64(l.MaxRootChain), &r.roots},
		{int64(l.MaxDelegations), &r.delegations},
		{l.MaxPayloadSize, &r.payload},
	} {
		switch {
		case f.v == 0:
		case f.v < 0 || f.v > f.dst.v:
			return limits{}, fmt.Errorf("bundle: invalid Limits.%s %d: must be between 1 and %d (%s)", f.dst.name, f.v, f.dst.v, f.dst.name)
		default:
			*f.dst = limit{f.v, "Limits." + f.dst.name}
		}
	}
	return r, nil
}

func (l limit) String() string { return fmt.Sprintf("%d (%s)", l.v, l.name) }

// payloadTooLarge says, in a user's terms, that a payload of n bytes is over
// the payload limit (the format's, or the lower one a reader was given).
func (l limits) payloadTooLarge(n uint64) string {
	got, lim := bytesize.Pair(int64(min(n, 1<<63-1)), l.payload.v)
	if n >= 1<<63 {
		got = "over 8.0 EiB"
	}
	return fmt.Sprintf("bundle: the payload is %s, more than the %s a bundle may carry", got, lim)
}

// headerSize returns the encoded size of m's header, digest included.
func headerSize(m *Metadata) int64 {
	n := int64(len(Magic) + 2 + 1)
	for _, r := range m.RootChain {
		n += 4 + int64(len(r))
	}
	n += 3*4 + int64(len(m.Timestamp)+len(m.Snapshot)+len(m.Targets))
	n++
	for _, d := range m.Delegated {
		n += 1 + int64(len(d.Name)) + 4 + int64(len(d.Data))
	}
	n += 2 + int64(len(m.TargetPath)) + 8 + DigestSize
	if m.DeltaFrom != "" || m.LogProof != nil {
		n += 1 + int64(len(m.DeltaFrom))
	}
	if m.LogProof != nil {
		n += 4 + int64(len(m.LogProof))
	}
	return n
}

// validate checks everything about m against lim: the checks the reader
// makes while reading (sizes, counts) and the content checks it makes after
// the header digest matched (names, path, metadata types and versions).
// Write and NewReader share it, so whatever one accepts the other does too.
func (m *Metadata) validate(lim limits) error {
	if n := len(m.RootChain); int64(n) > lim.roots.v {
		return fmt.Errorf("bundle: root chain has %d entries, limit is %s: %w", n, lim.roots, ErrLimit)
	}
	if n := len(m.Delegated); int64(n) > lim.delegations.v {
		return fmt.Errorf("bundle: %d delegated roles, limit is %s: %w", n, lim.delegations, ErrLimit)
	}
	for i, r := range m.RootChain {
		if err := checkBlob(fmt.Sprintf("root chain entry %d", i), int64(len(r)), lim); err != nil {
			return err
		}
	}
	for _, b := range []struct {
		what string
		data []byte
	}{{"timestamp", m.Timestamp}, {"snapshot", m.Snapshot}, {"targets", m.Targets}} {
		if err := checkBlob(b.what, int64(len(b.data)), lim); err != nil {
			return err
		}
	}
	for i, d := range m.Delegated {
		if err := checkRoleName(i, d.Name); err != nil {
			return err
		}
		if err := checkBlob(fmt.Sprintf("delegated role %d (%q)", i, d.Name), int64(len(d.Data)), lim); err != nil {
			return err
		}
	}
	if err := checkTargetPath(m.TargetPath); err != nil {
		return err
	}
	if err := checkDeltaFrom(m.DeltaFrom); err != nil {
		return err
	}
	if m.LogProof != nil && (len(m.LogProof) == 0 || len(m.LogProof) > MaxLogProofSize) {
		return fmt.Errorf("bundle: log proof is %d bytes, want 1 to %d (MaxLogProofSize): %w", len(m.LogProof), MaxLogProofSize, ErrLimit)
	}
	if m.PayloadLength < 0 {
		return fmt.Errorf("bundle: payload length %d is negative: %w", m.PayloadLength, ErrMalformed)
	}
	if m.PayloadLength > lim.payload.v {
		return fmt.Errorf("%s: %w", lim.payloadTooLarge(uint64(m.PayloadLength)), ErrLimit)
	}
	if n := headerSize(m); n > lim.header.v {
		return fmt.Errorf("bundle: header is %d bytes, limit is %s: %w", n, lim.header, ErrLimit)
	}

	// Content checks. These catch a mislabelled or misordered bundle early
	// with a clear message; they are not verification (the TUF client
	// verifies signatures, types and versions itself).
	var prev int64
	for i, r := range m.RootChain {
		v, err := checkEnvelope(fmt.Sprintf("root chain entry %d", i), r, "root")
		if err != nil {
			return err
		}
		if i > 0 && v != prev+1 {
			return fmt.Errorf("bundle: root chain entry %d has version %d, want %d (versions must increase by exactly 1): %w", i, v, prev+1, ErrMalformed)
		}
		prev = v
	}
	for _, b := range []struct {
		what string
		data []byte
	}{{"timestamp", m.Timestamp}, {"snapshot", m.Snapshot}, {"targets", m.Targets}} {
		if _, err := checkEnvelope(b.what, b.data, b.what); err != nil {
			return err
		}
	}
	seen := make(map[string]bool, len(m.Delegated))
	for i, d := range m.Delegated {
		if seen[d.Name] {
			return fmt.Errorf("bundle: delegated role %d name %q is a duplicate: %w", i, d.Name, ErrMalformed)
		}
		seen[d.Name] = true
		if _, err := checkEnvelope(fmt.Sprintf("delegated role %d (%q)", i, d.Name), d.Data, "targets"); err != nil {
			return err
		}
	}
	return nil
}

func checkBlob(what string, n int64, lim limits) error {
	if n == 0 {
		return fmt.Errorf("bundle: %s is empty: %w", what, ErrMalformed)
	}
	if n > lim.metadata.v {
		return fmt.Errorf("bundle: %s is %d bytes, limit is %s: %w", what, n, lim.metadata, ErrLimit)
	}
	return nil
}

// topLevelRoles may not be used as delegated role names (TUF 1.0, 4.5:
// delegated role names are distinct from the top-level roles).
var topLevelRoles = map[string]bool{"root": true, "timestamp": true, "snapshot": true, "targets": true}

// checkRoleName enforces ^[A-Za-z0-9][A-Za-z0-9._-]*$, no "..", length.
func checkRoleName(i int, name string) error {
	if len(name) == 0 {
		return fmt.Errorf("bundle: delegated role %d name is empty: %w", i, ErrMalformed)
	}
	if len(name) > MaxRoleNameLen {
		return fmt.Errorf("bundle: delegated role %d name is %d bytes, limit is %d (MaxRoleNameLen): %w", i, len(name), MaxRoleNameLen, ErrLimit)
	}
	for j := 0; j < len(name); j++ {
		c := name[j]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (j == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("bundle: delegated role %d name %q: byte %d is not allowed (want ^[A-Za-z0-9][A-Za-z0-9._-]*$): %w", i, name, j, ErrMalformed)
		}
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("bundle: delegated role %d name %q contains \"..\": %w", i, name, ErrMalformed)
	}
	if topLevelRoles[name] {
		return fmt.Errorf("bundle: delegated role %d name %q is a top-level role name: %w", i, name, ErrMalformed)
	}
	return nil
}

// checkDeltaFrom accepts "" (a whole payload) or 1 to MaxDeltaFromLen
// bytes of printable ASCII without spaces (a version; the release metadata
// judges it).
func checkDeltaFrom(v string) error {
	if len(v) > MaxDeltaFromLen {
		return fmt.Errorf("bundle: delta base version is %d bytes, limit is %d (MaxDeltaFromLen): %w", len(v), MaxDeltaFromLen, ErrLimit)
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return fmt.Errorf("bundle: delta base version has byte 0x%02x at %d, want printable ASCII: %w", v[i], i, ErrMalformed)
		}
	}
	return nil
}

// checkTargetPath accepts a relative, "/"-separated TUF target path of valid
// UTF-8 without control characters or backslashes, and without empty, "."
// or ".." segments. The path is never opened; the rules only keep tooling
// that prints or logs it honest.
func checkTargetPath(p string) error {
	if len(p) == 0 {
		return fmt.Errorf("bundle: target path is empty: %w", ErrMalformed)
	}
	if len(p) > MaxTargetPathLen {
		return fmt.Errorf("bundle: target path is %d bytes, limit is %d (MaxTargetPathLen): %w", len(p), MaxTargetPathLen, ErrLimit)
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("bundle: target path %q is not valid UTF-8: %w", p, ErrMalformed)
	}
	for _, r := range p {
		if unicode.IsControl(r) || r == '\\' {
			return fmt.Errorf("bundle: target path %q contains %q: %w", p, r, ErrMalformed)
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("bundle: target path %q has an empty, \".\" or \"..\" segment: %w", p, ErrMalformed)
		}
	}
	return nil
}

// envelope is the part of a TUF metadata file the bundle looks at.
type envelope struct {
	Signed *struct {
		Type    string `json:"_type"`
		Version int64  `json:"version"`
	} `json:"signed"`
}

// checkEnvelope checks that data is TUF metadata of type typ and returns
// its version. It parses with encoding/json like go-tuf does.
func checkEnvelope(what string, data []byte, typ string) (int64, error) {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return 0, fmt.Errorf("bundle: %s is not TUF metadata: %v: %w", what, err, ErrMalformed)
	}
	if e.Signed == nil {
		return 0, fmt.Errorf("bundle: %s has no \"signed\" object: %w", what, ErrMalformed)
	}
	if e.Signed.Type != typ {
		return 0, fmt.Errorf("bundle: %s has _type %q, want %q: %w", what, e.Signed.Type, typ, ErrMalformed)
	}
	if e.Signed.Version < 1 {
		return 0, fmt.Errorf("bundle: %s has version %d, want at least 1: %w", what, e.Signed.Version, ErrMalformed)
	}
	return e.Signed.Version, nil
}
