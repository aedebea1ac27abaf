package trust

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Rollback floors
//
// The rollback checks of the client workflow (5.3.5 root, 5.4.3.1
// timestamp, 5.4.3.2 snapshot version pinned by the timestamp, 5.5.5
// versions of every role the snapshot lists, and no role removed from it)
// compare new metadata with the trusted metadata. If that reference were
// only the metadata files, losing or corrupting one file would lower a
// floor: without timestamp.json, an older timestamp and the older snapshot
// it pins would be accepted again. So the client keeps every floor twice:
// in the metadata files and in a second, crash-safe record (floorsFile).
// The effective floor is the higher of the two, and the record is written
// before the metadata file it covers (so it is never behind a trusted file,
// and a record lost or left behind is rebuilt upward from the files on the
// next Refresh).
//
// A floor is bound to the keys that vouched for it: the record keeps the
// fingerprints of the role keys whose signatures on the trusted timestamp
// (or snapshot) were valid. A floor holds while those keys still meet the
// role's threshold in the current root, that is while the trusted file
// would still verify; once the root rotated them out (fast-forward
// recovery, 5.3.11) the floor no longer holds, exactly as a stored file
// that no longer verifies is ignored. The root version floor never lapses.

// floorsFile is the store name of the rollback floor record. It is not TUF
// metadata and has no ".json" suffix (so it cannot clash with a role file,
// and tools listing "*.json" role files, like the conformance suite, ignore
// it, as they ignore the "root.<version>" copies).
const floorsFile = "floors"

// ErrCorruptFloors means the rollback floor record is present but unreadable
// (bad format or checksum, over its size limit). The client refuses to
// refresh rather than forget floors; see docs/device.md ("Trusted metadata
// and rollback floors") for the recovery.
var ErrCorruptFloors = errors.New("rollback floor record is corrupt")

// floorsHeader and floorsSumPrefix frame the record. The format, one entry
// per line, fields separated by one space, every line ending in "\n":
//
//	airlock rollback floors v1
//	root <version>
//	timestamp <version> <pinned snapshot version> <fingerprint>[,<fingerprint>...]
//	snapshot <version> <fingerprint>[,<fingerprint>...]
//	meta <quoted name> <version>
//	sha256 <hex SHA-256 of every byte before this line>
//
// The timestamp and snapshot lines are optional; meta lines (the versions
// the trusted snapshot lists, 5.5.5) need the snapshot line and are sorted
// by quoted name, without repeats. Versions are decimal without leading
// zeros, at least 1. Fingerprints are lowercase hex SHA-256 of the PKIX
// public key, sorted, without repeats. Names are escaped like store names
// (quoteName). Exactly one encoding is accepted: parse then marshal gives
// back the same bytes, and the checksum rejects truncated or altered
// records.
const (
	floorsHeader    = "airlock rollback floors v1"
	floorsSumPrefix = "sha256 "
)

type fingerprint = [32]byte

// floors is the content of the floor record. A zero version means no floor.
type floors struct {
	root int64
	// timestamp is the version of the trusted timestamp, tsSnapshot the
	// snapshot version it pins (5.4.3), both vouched for by tsSigners.
	timestamp, tsSnapshot int64
	tsSigners             []fingerprint
	// snapshot is the version of the trusted snapshot and meta the
	// versions it lists (5.5.5), vouched for by snapSigners.
	snapshot    int64
	snapSigners []fingerprint
	meta        map[string]int64
}

func (f *floors) clone() *floors {
	out := *f
	out.tsSigners = slices.Clone(f.tsSigners)
	out.snapSigners = slices.Clone(f.snapSigners)
	out.meta = maps.Clone(f.meta)
	return &out
}

// marshal returns the record's only encoding. It fails when the record
// would exceed MaxFloorsSize (a snapshot listing more roles than fit).
func (f *floors) marshal() ([]byte, error) {
	if f.root < 1 {
		return nil, errors.New("internal error: rollback floor record without a root version")
	}
	if _, ok := f.meta[""]; ok {
		return nil, fmt.Errorf("%w: snapshot lists a file with an empty name", ErrMalformed)
	}
	var b bytes.Buffer
	b.WriteString(floorsHeader + "\n")
	fmt.Fprintf(&b, "root %d\n", f.root)
	if f.timestamp > 0 {
		fmt.Fprintf(&b, "timestamp %d %d %s\n", f.timestamp, f.tsSnapshot, joinFingerprints(f.tsSigners))
	}
	if f.snapshot > 0 {
		fmt.Fprintf(&b, "snapshot %d %s\n", f.snapshot, joinFingerprints(f.snapSigners))
		quoted := make(map[string]int64, len(f.meta))
		for name, v := range f.meta {
			quoted[quoteName(name)] = v
		}
		for _, q := range slices.Sorted(maps.Keys(quoted)) {
			fmt.Fprintf(&b, "meta %s %d\n", q, quoted[q])
		}
	}
	sum := sha256.Sum256(b.Bytes())
	b.WriteString(floorsSumPrefix + hex.EncodeToString(sum[:]) + "\n")
	if b.Len() > MaxFloorsSize {
		return nil, fmt.Errorf("rollback floor record: %w: %d > %d bytes", ErrTooLarge, b.Len(), MaxFloorsSize)
	}
	// Never write a record that would not be read back.
	if _, err := parseFloorsLines(b.Bytes()); err != nil {
		return nil, fmt.Errorf("internal error: rollback floor record does not parse back: %w", err)
	}
	return b.Bytes(), nil
}

func joinFingerprints(fps []fingerprint) string {
	s := make([]string, len(fps))
	for i, fp := range fps {
		s[i] = hex.EncodeToString(fp[:])
	}
	return strings.Join(s, ",")
}

// parseFloors strictly parses a record written by marshal. Errors wrap
// ErrCorruptFloors.
func parseFloors(data []byte) (*floors, error) {
	f, err := parseFloorsLines(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptFloors, err)
	}
	return f, nil
}

func parseFloorsLines(data []byte) (*floors, error) {
	if len(data) > MaxFloorsSize {
		return nil, fmt.Errorf("%d bytes, limit %d", len(data), MaxFloorsSize)
	}
	// The checksum line ends the record and covers every byte before it.
	body, last, ok := cutLastLine(data)
	if !ok || !strings.HasPrefix(last, floorsSumPrefix) {
		return nil, errors.New("no checksum line at the end")
	}
	want, err := hex.DecodeString(last[len(floorsSumPrefix):])
	if err != nil || len(want) != sha256.Size || hex.EncodeToString(want) != last[len(floorsSumPrefix):] {
		return nil, fmt.Errorf("bad checksum line %q", last)
	}
	sum := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return nil, errors.New("checksum mismatch")
	}
	lines := strings.Split(string(body), "\n")
	if len(lines) < 3 || lines[len(lines)-1] != "" {
		return nil, errors.New("truncated")
	}
	lines = lines[:len(lines)-1]
	if lines[0] != floorsHeader {
		return nil, fmt.Errorf("header %q, want %q", lines[0], floorsHeader)
	}
	f := &floors{}
	rest := lines[1:]
	fields := strings.Split(rest[0], " ")
	if len(fields) != 2 || fields[0] != "root" {
		return nil, fmt.Errorf("line 2: %q is not a root line", rest[0])
	}
	if f.root, err = parseFloorVersion(fields[1]); err != nil {
		return nil, fmt.Errorf("line 2: %w", err)
	}
	rest = rest[1:]
	if len(rest) > 0 && strings.HasPrefix(rest[0], "timestamp ") {
		fields := strings.Split(rest[0], " ")
		if len(fields) != 4 {
			return nil, fmt.Errorf("timestamp line %q: want 4 fields", rest[0])
		}
		if f.timestamp, err = parseFloorVersion(fields[1]); err != nil {
			return nil, fmt.Errorf("timestamp line: %w", err)
		}
		if f.tsSnapshot, err = parseFloorVersion(fields[2]); err != nil {
			return nil, fmt.Errorf("timestamp line: %w", err)
		}
		if f.tsSigners, err = parseFingerprints(fields[3]); err != nil {
			return nil, fmt.Errorf("timestamp line: %w", err)
		}
		rest = rest[1:]
	}
	if len(rest) > 0 && strings.HasPrefix(rest[0], "snapshot ") {
		fields := strings.Split(rest[0], " ")
		if len(fields) != 3 {
			return nil, fmt.Errorf("snapshot line %q: want 3 fields", rest[0])
		}
		if f.snapshot, err = parseFloorVersion(fields[1]); err != nil {
			return nil, fmt.Errorf("snapshot line: %w", err)
		}
		if f.snapSigners, err = parseFingerprints(fields[2]); err != nil {
			return nil, fmt.Errorf("snapshot line: %w", err)
		}
		rest = rest[1:]
		f.meta = map[string]int64{}
		prev := ""
		for len(rest) > 0 && strings.HasPrefix(rest[0], "meta ") {
			fields := strings.Split(rest[0], " ")
			if len(fields) != 3 {
				return nil, fmt.Errorf("meta line %q: want 3 fields", rest[0])
			}
			if prev != "" && fields[1] <= prev {
				return nil, fmt.Errorf("meta line %q: names not sorted or repeated", rest[0])
			}
			prev = fields[1]
			name, err := unquoteName(fields[1])
			if err != nil {
				return nil, fmt.Errorf("meta line: %w", err)
			}
			if f.meta[name], err = parseFloorVersion(fields[2]); err != nil {
				return nil, fmt.Errorf("meta line: %w", err)
			}
			rest = rest[1:]
		}
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("unexpected line %q", rest[0])
	}
	return f, nil
}

// cutLastLine splits data into everything up to and including the
// second-to-last "\n" and the last line (without its "\n").
func cutLastLine(data []byte) (body []byte, last string, ok bool) {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, "", false
	}
	i := bytes.LastIndexByte(data[:len(data)-1], '\n')
	if i < 0 {
		return nil, "", false
	}
	return data[:i+1], string(data[i+1 : len(data)-1]), true
}

func parseFloorVersion(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 || strconv.FormatInt(v, 10) != s {
		return 0, fmt.Errorf("version %q is not a decimal number from 1 without leading zeros", s)
	}
	return v, nil
}

func parseFingerprints(s string) ([]fingerprint, error) {
	parts := strings.Split(s, ",")
	if len(parts) > MaxFloorSigners {
		return nil, fmt.Errorf("%d key fingerprints, limit %d", len(parts), MaxFloorSigners)
	}
	out := make([]fingerprint, len(parts))
	for i, p := range parts {
		raw, err := hex.DecodeString(p)
		if err != nil || len(raw) != sha256.Size || hex.EncodeToString(raw) != p {
			return nil, fmt.Errorf("key fingerprint %q is not lowercase hex SHA-256", p)
		}
		copy(out[i][:], raw)
		if i > 0 && bytes.Compare(out[i-1][:], out[i][:]) >= 0 {
			return nil, errors.New("key fingerprints not sorted or repeated")
		}
	}
	return out, nil
}

// unquoteName inverts quoteName and accepts only its output.
func unquoteName(q string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if q[i] != '%' {
			b.WriteByte(q[i])
			continue
		}
		if i+2 >= len(q) {
			return "", fmt.Errorf("name %q: truncated escape", q)
		}
		v, err := strconv.ParseUint(q[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("name %q: bad escape", q)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	name := b.String()
	if name == "" || quoteName(name) != q {
		return "", fmt.Errorf("name %q is not in its only escaped form", q)
	}
	return name, nil
}

// loadFloors reads the record and returns it with its stored bytes; a
// missing record is an empty one (a store before its first Refresh, or
// written by a version without floors).
func loadFloors(s Store) (*floors, []byte, error) {
	data, err := getOptional(s, floorsFile)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to read rollback floor record %q: %w", floorsFile, err)
	}
	if data == nil {
		return &floors{}, nil, nil
	}
	f, err := parseFloors(data)
	if err != nil {
		return nil, nil, fmt.Errorf("stored %q: %w (refusing to update rather than forget rollback floors; see \"Trusted metadata and rollback floors\" in docs/device.md)", floorsFile, err)
	}
	return f, data, nil
}

// signersOf returns the sorted fingerprints of the keys of rk whose
// signature over payload is valid (each checked with verifySignatures, as
// a role of that one key), at most MaxFloorSigners.
func signersOf(rk roleKeys, sigs []Signature, payload []byte) []fingerprint {
	set := map[fingerprint]bool{}
	for _, id := range rk.keyIDs {
		one := roleKeys{keyIDs: []string{id}, threshold: 1, keys: rk.keys}
		if verifySignatures("", one, sigs, payload) != nil {
			continue
		}
		if v, err := newVerifier(rk.keys[id]); err == nil {
			set[v.fingerprint] = true
		}
	}
	out := make([]fingerprint, 0, len(set))
	for fp := range set {
		out = append(out, fp)
	}
	// sort.Slice, not slices.SortFunc: a generic sort instantiated for
	// [32]byte alone costs the device binary ~15 KB.
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	if len(out) > MaxFloorSigners {
		out = out[:MaxFloorSigners]
	}
	return out
}

// signersHold reports whether the keys of role in root with one of the
// fingerprints meet the role's threshold: whether metadata those keys
// signed would still verify under root (5.3.11: a floor set by keys the
// root has since rotated out no longer holds).
func signersHold(root *Metadata[RootType], role string, signers []fingerprint) bool {
	if len(signers) == 0 {
		return false
	}
	rk := rootRole(root, role)
	held := map[fingerprint]bool{}
	for _, id := range rk.keyIDs {
		v, err := newVerifier(rk.keys[id])
		if err == nil && slices.Contains(signers, v.fingerprint) {
			held[v.fingerprint] = true
		}
	}
	return rk.threshold >= 1 && len(held) >= rk.threshold
}

// saveFloors writes f as the record if it differs from the stored one. The
// caller does this BEFORE storing the metadata f covers.
func (c *Client) saveFloors(f *floors) error {
	data, err := f.marshal()
	if err != nil {
		return err
	}
	if bytes.Equal(data, c.floorsRaw) {
		return nil
	}
	if err := c.store.Put(floorsFile, data); err != nil {
		return fmt.Errorf("failed to store rollback floor record: %w", err)
	}
	c.floors, c.floorsRaw = f, data
	return nil
}
