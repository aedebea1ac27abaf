package trust

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// supportedSpecMajor is the TUF specification major version this client
// implements (spec_version "1.x" or "1.x.y" is accepted).
const supportedSpecMajor = "1"

var topLevelRoles = []string{RoleRoot, RoleTimestamp, RoleSnapshot, RoleTargets}

// parseMetadata strictly parses data as metadata of type T and returns it with
// the canonical signed bytes its signatures must cover. It checks _type,
// spec_version, version and role-specific structure, not signatures.
func parseMetadata[T Roles](data []byte) (*Metadata[T], []byte, error) {
	payload, err := signedPayload(data)
	if err != nil {
		return nil, nil, err
	}
	md, err := decodeMetadata[T](data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := checkDecoded(md); err != nil {
		return nil, nil, err
	}
	return md, payload, nil
}

// checkDecoded checks _type, spec_version, version and the role-specific
// structure of decoded metadata.
func checkDecoded[T Roles](md *Metadata[T]) error {
	var typ, spec, want string
	var version int64
	var check func() error
	switch s := any(&md.Signed).(type) {
	case *RootType:
		typ, spec, version, want = s.Type, s.SpecVersion, s.Version, RoleRoot
		check = func() error { return validateRoot(s) }
	case *TimestampType:
		typ, spec, version, want = s.Type, s.SpecVersion, s.Version, RoleTimestamp
		check = func() error { return validateTimestamp(s) }
	case *SnapshotType:
		typ, spec, version, want = s.Type, s.SpecVersion, s.Version, RoleSnapshot
		check = func() error { return validateSnapshot(s) }
	case *TargetsType:
		typ, spec, version, want = s.Type, s.SpecVersion, s.Version, RoleTargets
		check = func() error { return validateTargets(s) }
	default:
		return fmt.Errorf("internal error: unexpected metadata type %T", s)
	}
	if typ != want {
		return fmt.Errorf("%w: _type %q, want %q", ErrMalformed, typ, want)
	}
	if err := checkSpecVersion(spec); err != nil {
		return err
	}
	if version < 1 {
		return fmt.Errorf("%w: %s version %d < 1", ErrMalformed, want, version)
	}
	return check()
}

// checkSpecVersion accepts "1.x" and "1.x.y" (python-tuf's rule).
func checkSpecVersion(v string) error {
	parts := strings.Split(v, ".")
	if len(parts) != 2 && len(parts) != 3 {
		return fmt.Errorf("%w: spec_version %q", ErrMalformed, v)
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return fmt.Errorf("%w: spec_version %q", ErrMalformed, v)
		}
	}
	if parts[0] != supportedSpecMajor {
		return fmt.Errorf("%w: unsupported spec_version %q (this client implements %s.x)", ErrMalformed, v, supportedSpecMajor)
	}
	return nil
}

func checkKeyIDs(what string, ids []string, threshold int) error {
	if threshold < 1 {
		return fmt.Errorf("%w: %s threshold %d < 1", ErrMalformed, what, threshold)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return fmt.Errorf("%w: %s lists key ID %q twice", ErrMalformed, what, id)
		}
		seen[id] = true
	}
	return nil
}

func validateRoot(r *RootType) error {
	if len(r.Roles) != len(topLevelRoles) {
		return fmt.Errorf("%w: root must define exactly the roles %v", ErrMalformed, topLevelRoles)
	}
	for _, name := range topLevelRoles {
		role, ok := r.Roles[name]
		if !ok || role == nil {
			return fmt.Errorf("%w: root does not define role %q", ErrMalformed, name)
		}
		if err := checkKeyIDs("root role "+name, role.KeyIDs, role.Threshold); err != nil {
			return err
		}
	}
	return nil
}

func validateMetaFile(name string, mf *MetaFiles) error {
	if mf == nil {
		return fmt.Errorf("%w: meta %q is null", ErrMalformed, name)
	}
	if mf.Version < 1 || mf.Length < 0 {
		return fmt.Errorf("%w: meta %q has version %d, length %d", ErrMalformed, name, mf.Version, mf.Length)
	}
	return nil
}

func validateTimestamp(t *TimestampType) error {
	mf, ok := t.Meta["snapshot.json"]
	if !ok {
		return fmt.Errorf("%w: timestamp does not list snapshot.json", ErrMalformed)
	}
	return validateMetaFile("snapshot.json", mf)
}

func validateSnapshot(s *SnapshotType) error {
	if _, ok := s.Meta["targets.json"]; !ok {
		return fmt.Errorf("%w: snapshot does not list targets.json", ErrMalformed)
	}
	for name, mf := range s.Meta {
		if err := validateMetaFile(name, mf); err != nil {
			return err
		}
	}
	return nil
}

func validateTargets(t *TargetsType) error {
	for p, tf := range t.Targets {
		if tf == nil || tf.Length < 0 || len(tf.Hashes) == 0 {
			return fmt.Errorf("%w: target %q has no hashes or a negative length", ErrMalformed, p)
		}
	}
	d := t.Delegations
	if d == nil {
		return nil
	}
	if len(d.Roles) > 0 && d.SuccinctRoles != nil {
		return fmt.Errorf("%w: delegations use both roles and succinct_roles", ErrMalformed)
	}
	names := map[string]bool{}
	for _, r := range d.Roles {
		if err := checkRoleName(r.Name); err != nil {
			return err
		}
		if names[r.Name] {
			return fmt.Errorf("%w: delegated role %q listed twice", ErrMalformed, r.Name)
		}
		names[r.Name] = true
		if len(r.Paths) > 0 && len(r.PathHashPrefixes) > 0 {
			return fmt.Errorf("%w: delegated role %q has both paths and path_hash_prefixes", ErrMalformed, r.Name)
		}
		if err := checkKeyIDs("delegated role "+strconv.Quote(r.Name), r.KeyIDs, r.Threshold); err != nil {
			return err
		}
	}
	if s := d.SuccinctRoles; s != nil {
		if s.BitLength < 1 || s.BitLength > 32 || s.NamePrefix == "" || len(s.NamePrefix) > MaxRoleNameLength-9 {
			return fmt.Errorf("%w: succinct_roles bit_length %d, name_prefix %q", ErrMalformed, s.BitLength, s.NamePrefix)
		}
		if err := checkKeyIDs("succinct_roles", s.KeyIDs, s.Threshold); err != nil {
			return err
		}
	}
	return nil
}

// checkRoleName rejects empty, overlong and top-level names for delegated roles.
func checkRoleName(name string) error {
	if name == "" || len(name) > MaxRoleNameLength {
		return fmt.Errorf("%w: delegated role name %q (empty or longer than %d bytes)", ErrInvalidName, name, MaxRoleNameLength)
	}
	for _, top := range topLevelRoles {
		if name == top {
			return fmt.Errorf("%w: delegated role uses top-level name %q", ErrInvalidName, name)
		}
	}
	return nil
}

// expired reports whether metadata expiring at exp is expired at ref (python-tuf:
// expired when ref >= expires).
func expired(exp, ref time.Time) bool { return !ref.Before(exp) }

// newHash returns a hash for a supported algorithm name, or nil.
func newHash(alg string) hash.Hash {
	switch alg {
	case "sha256":
		return sha256.New()
	case "sha512":
		return sha512.New()
	}
	return nil
}

// checkMetaFile checks data against the length and hashes that the
// timestamp or snapshot pins for it (5.5.2, 5.6.2). Length and hashes are
// optional in MetaFiles; listed hashes must include a supported algorithm.
func checkMetaFile(name string, mf *MetaFiles, data []byte) error {
	if mf.Length != 0 && int64(len(data)) != mf.Length {
		return fmt.Errorf("%s: %w: %d bytes, pinned length %d", name, ErrLength, len(data), mf.Length)
	}
	if len(mf.Hashes) == 0 {
		return nil
	}
	checked := 0
	for alg, want := range mf.Hashes {
		h := newHash(alg)
		if h == nil {
			continue
		}
		h.Write(data)
		if subtle.ConstantTimeCompare(h.Sum(nil), want) != 1 {
			return fmt.Errorf("%s: %w: %s differs from the pinned hash", name, ErrHash, alg)
		}
		checked++
	}
	if checked == 0 {
		return fmt.Errorf("%s: %w", name, ErrUnsupportedHash)
	}
	return nil
}

// minLimit returns the pinned length when set and below the limit.
func minLimit(limit, pinned int64) int64 {
	if pinned > 0 && pinned < limit {
		return pinned
	}
	return limit
}

// quoteName escapes s like Python's urllib.parse.quote(s, safe=""): every
// byte except ASCII letters, digits and "_.-~" becomes %XX. The conformance
// suite and python-tuf repositories name role files this way.
func quoteName(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '_' || c == '.' || c == '-' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// roleFileName is the store name of a role's metadata: "<quoted role>.json".
func roleFileName(role string) string { return quoteName(role) + ".json" }
