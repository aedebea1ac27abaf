package trust

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The TUF metadata types (spec 4.2 to 4.6), read-only: this package parses
// them and never re-encodes them (signatures are checked over the canonical
// form of the received bytes, signedPayload). Field names follow the spec's
// JSON names exactly; keys are matched case-sensitively, unlike
// encoding/json's default. Fields this client does not know are ignored and
// kept in UnrecognizedFields (spec 4.2: implementations must accept them).

// Names of the top-level roles.
const (
	RoleRoot      = "root"
	RoleTimestamp = "timestamp"
	RoleSnapshot  = "snapshot"
	RoleTargets   = "targets"
)

// Roles is the set of top-level metadata types.
type Roles interface {
	RootType | TimestampType | SnapshotType | TargetsType
}

// Metadata is one signed metadata file.
type Metadata[T Roles] struct {
	Signed             T              `json:"signed"`
	Signatures         []Signature    `json:"signatures"`
	UnrecognizedFields map[string]any `json:"-"`
}

// Signature is one entry of "signatures".
type Signature struct {
	KeyID              string         `json:"keyid"`
	Signature          HexBytes       `json:"sig"`
	UnrecognizedFields map[string]any `json:"-"`
}

// RootType is the signed part of root metadata.
type RootType struct {
	Type               string           `json:"_type"`
	SpecVersion        string           `json:"spec_version"`
	ConsistentSnapshot bool             `json:"consistent_snapshot"`
	Version            int64            `json:"version"`
	Expires            time.Time        `json:"expires"`
	Keys               map[string]*Key  `json:"keys"`
	Roles              map[string]*Role `json:"roles"`
	UnrecognizedFields map[string]any   `json:"-"`
}

// TimestampType is the signed part of timestamp metadata.
type TimestampType struct {
	Type               string                `json:"_type"`
	SpecVersion        string                `json:"spec_version"`
	Version            int64                 `json:"version"`
	Expires            time.Time             `json:"expires"`
	Meta               map[string]*MetaFiles `json:"meta"`
	UnrecognizedFields map[string]any        `json:"-"`
}

// SnapshotType is the signed part of snapshot metadata.
type SnapshotType struct {
	Type               string                `json:"_type"`
	SpecVersion        string                `json:"spec_version"`
	Version            int64                 `json:"version"`
	Expires            time.Time             `json:"expires"`
	Meta               map[string]*MetaFiles `json:"meta"`
	UnrecognizedFields map[string]any        `json:"-"`
}

// TargetsType is the signed part of targets and delegated targets metadata.
type TargetsType struct {
	Type               string                  `json:"_type"`
	SpecVersion        string                  `json:"spec_version"`
	Version            int64                   `json:"version"`
	Expires            time.Time               `json:"expires"`
	Targets            map[string]*TargetFiles `json:"targets"`
	Delegations        *Delegations            `json:"delegations,omitempty"`
	UnrecognizedFields map[string]any          `json:"-"`
}

// Key is a public key (spec 4.2, KEY).
type Key struct {
	Type               string         `json:"keytype"`
	Scheme             string         `json:"scheme"`
	Value              KeyVal         `json:"keyval"`
	UnrecognizedFields map[string]any `json:"-"`
}

// KeyVal holds a key's public value.
type KeyVal struct {
	PublicKey          string         `json:"public"`
	UnrecognizedFields map[string]any `json:"-"`
}

// Role is a top-level role's keys and threshold in root metadata.
type Role struct {
	KeyIDs             []string       `json:"keyids"`
	Threshold          int            `json:"threshold"`
	UnrecognizedFields map[string]any `json:"-"`
}

// HexBytes is a byte string written as lowercase or uppercase hex.
type HexBytes []byte

// Hashes maps a hash algorithm name to a digest.
type Hashes map[string]HexBytes

// MetaFiles describes a metadata file in timestamp or snapshot metadata
// (METAFILES). Length and Hashes are optional.
type MetaFiles struct {
	Length             int64          `json:"length,omitempty"`
	Hashes             Hashes         `json:"hashes,omitempty"`
	Version            int64          `json:"version"`
	UnrecognizedFields map[string]any `json:"-"`
}

// TargetFiles describes a target file (TARGETS). Path is its target path,
// the key it is listed under.
type TargetFiles struct {
	Length             int64            `json:"length"`
	Hashes             Hashes           `json:"hashes"`
	Custom             *json.RawMessage `json:"custom,omitempty"`
	Path               string           `json:"-"`
	UnrecognizedFields map[string]any   `json:"-"`
}

// Delegations is the "delegations" object of targets metadata.
type Delegations struct {
	Keys               map[string]*Key `json:"keys"`
	Roles              []Delegation    `json:"roles,omitempty"`
	SuccinctRoles      *SuccinctRoles  `json:"succinct_roles,omitempty"`
	UnrecognizedFields map[string]any  `json:"-"`
}

// Delegation is one entry of "roles" in delegations: a delegated role's
// name, keys, threshold and paths (go-tuf's DelegatedRole; DelegatedRole
// in this package is a verified role's bytes).
type Delegation struct {
	Name               string         `json:"name"`
	KeyIDs             []string       `json:"keyids"`
	Threshold          int            `json:"threshold"`
	Terminating        bool           `json:"terminating"`
	PathHashPrefixes   []string       `json:"path_hash_prefixes,omitempty"`
	Paths              []string       `json:"paths,omitempty"`
	UnrecognizedFields map[string]any `json:"-"`
}

// SuccinctRoles is a succinct hash-bin delegation (TAP 15).
type SuccinctRoles struct {
	KeyIDs             []string       `json:"keyids"`
	Threshold          int            `json:"threshold"`
	BitLength          int            `json:"bit_length"`
	NamePrefix         string         `json:"name_prefix"`
	UnrecognizedFields map[string]any `json:"-"`
}

// RoleResult is a delegated role responsible for a target path.
type RoleResult struct {
	Name        string
	Terminating bool
}

// decodeMetadata decodes data as metadata of type T without checking it
// beyond its JSON shape: every signature key ID must be distinct. Callers
// verifying metadata use parseMetadata.
func decodeMetadata[T Roles](data []byte) (*Metadata[T], error) {
	md := &Metadata[T]{}
	if err := json.Unmarshal(data, md); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, s := range md.Signatures {
		if seen[s.KeyID] {
			return nil, fmt.Errorf("multiple signatures found for key ID %q", s.KeyID)
		}
		seen[s.KeyID] = true
	}
	return md, nil
}

// field is a JSON member by exact name: where to decode it.
type field struct {
	name string
	dst  any
}

// decodeObject decodes the JSON object data member by member: members named
// in fields into their destination, matched case-sensitively, every other
// member into *unknown. JSON null leaves everything unchanged, as
// encoding/json does for structs. Duplicate names are not detected here;
// parseMetadata refuses them before decoding.
func decodeObject(data []byte, unknown *map[string]any, fields ...field) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return err
	}
	if members == nil {
		return nil
	}
	rest := map[string]any{}
	for _, name := range sortedKeys(members) {
		raw := members[name]
		i := slices.IndexFunc(fields, func(f field) bool { return f.name == name })
		if i < 0 {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			rest[name] = v
			continue
		}
		if err := json.Unmarshal(raw, fields[i].dst); err != nil {
			return fmt.Errorf("%q: %w", name, err)
		}
	}
	*unknown = rest
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// UnmarshalJSON decodes a metadata file.
func (m *Metadata[T]) UnmarshalJSON(data []byte) error {
	var s T
	var sigs []Signature
	err := decodeObject(data, &m.UnrecognizedFields,
		field{"signed", &s}, field{"signatures", &sigs})
	if err != nil {
		return err
	}
	m.Signed, m.Signatures = s, sigs
	return nil
}

// UnmarshalJSON decodes a signature.
func (s *Signature) UnmarshalJSON(data []byte) error {
	return decodeObject(data, &s.UnrecognizedFields,
		field{"keyid", &s.KeyID}, field{"sig", &s.Signature})
}

// UnmarshalJSON decodes root metadata's signed part.
func (r *RootType) UnmarshalJSON(data []byte) error {
	return decodeObject(data, &r.UnrecognizedFields,
		field{"_type", &r.Type}, field{"spec_version", &r.SpecVersion},
		field{"consistent_snapshot", &r.ConsistentSnapshot}, field{"version", &r.Version},
		field{"expires", &r.Expires}, field{"keys", &r.Keys}, field{"roles", &r.Roles})
}

// UnmarshalJSON decodes timestamp metadata's signed part.
func (t *TimestampType) UnmarshalJSON(data []byte) error {
	return decodeObject(data, &t.UnrecognizedFields,
		field{"_type", &t.Type}, field{"spec_version", &t.SpecVersion}, field{"version", &t.Version},
		field{"expires", &t.Expires}, field{"meta", &t.Meta})
}

// UnmarshalJSON decodes snapshot metadata's signed part, which has the
// fields of timestamp's.
func (s *SnapshotType) UnmarshalJSON(data []byte) error {
	return (*TimestampType)(s).UnmarshalJSON(data)
}

// UnmarshalJSON decodes targets metadata's signed part and sets each
// target's Path.
func (t *TargetsType) UnmarshalJSON(data []byte) error {
	err := decodeObject(data, &t.UnrecognizedFields,
		field{"_type", &t.Type}, field{"spec_version", &t.SpecVersion}, field{"version", &t.Version},
		field{"expires", &t.Expires}, field{"targets", &t.Targets}, field{"delegations", &t.Delegations})
	if err != nil {
		return err
	}
	for p, tf := range t.Targets {
		if tf != nil {
			tf.Path = p
		}
	}
	return nil
}

// UnmarshalJSON decodes a key.
func (k *Key) UnmarshalJSON(data []byte) error {
	return decodeObject(data, &k.UnrecognizedFields,
		field{"keytype", &k.Type}, field{"scheme", &k.Scheme}, field{"keyval", &k.Value})
}

// UnmarshalJSON decodes a key value.
func (kv *KeyVal) UnmarshalJSON(data []byte) error {
	return decodeObject(data, &kv.UnrecognizedFields, field{"public", &kv.PublicKey})
}

// UnmarshalJSON decodes a role.
func (r *Role) UnmarshalJSON(data []byte) error {
	return decodeObject(data, &r.UnrecognizedFields,
		field{"keyids", &r.KeyIDs}, field{"threshold", &r.Threshold})
}

// UnmarshalJSON decodes a METAFILES entry.
func (m *MetaFiles) UnmarshalJSON(data []byte) error {
	return decodeObject(data, &m.UnrecognizedFields,
		field{"length", &m.Length}, field{"hashes", &m.Hashes}, field{"version", &m.Version})
}

// UnmarshalJSON decodes a TARGETS entry; hashes are mandatory (spec 4.5).
func (tf *TargetFiles) UnmarshalJSON(data []byte) error {
	err := decodeObject(data, &tf.UnrecognizedFields,
		field{"length", &tf.Length}, field{"hashes", &tf.Hashes}, field{"custom", &tf.Custom})
	if err != nil {
		return err
	}
	if len(tf.Hashes) == 0 {
		return errors.New("hashes must not be empty for target files")
	}
	return nil
}

// UnmarshalJSON decodes delegations.
func (d *Delegations) UnmarshalJSON(data []byte) error {
	return decodeObject(data, &d.UnrecognizedFields,
		field{"keys", &d.Keys}, field{"roles", &d.Roles}, field{"succinct_roles", &d.SuccinctRoles})
}

// UnmarshalJSON decodes a delegated role.
func (r *Delegation) UnmarshalJSON(data []byte) error {
	return decodeObject(data, &r.UnrecognizedFields,
		field{"name", &r.Name}, field{"keyids", &r.KeyIDs}, field{"threshold", &r.Threshold},
		field{"terminating", &r.Terminating}, field{"path_hash_prefixes", &r.PathHashPrefixes},
		field{"paths", &r.Paths})
}

// UnmarshalJSON decodes succinct roles; bit_length must be 1 to 32.
func (s *SuccinctRoles) UnmarshalJSON(data []byte) error {
	err := decodeObject(data, &s.UnrecognizedFields,
		field{"keyids", &s.KeyIDs}, field{"threshold", &s.Threshold},
		field{"bit_length", &s.BitLength}, field{"name_prefix", &s.NamePrefix})
	if err != nil {
		return err
	}
	if s.BitLength < 1 || s.BitLength > 32 {
		return fmt.Errorf("invalid bit_length: %d, must be between 1 and 32", s.BitLength)
	}
	return nil
}

// UnmarshalJSON decodes a JSON string of hex digits.
func (b *HexBytes) UnmarshalJSON(data []byte) error {
	if len(data) < 2 || len(data)%2 != 0 || data[0] != '"' || data[len(data)-1] != '"' {
		return errors.New("invalid JSON hex bytes")
	}
	res := make([]byte, hex.DecodedLen(len(data)-2))
	if _, err := hex.Decode(res, data[1:len(data)-1]); err != nil {
		return err
	}
	*b = res
	return nil
}

// MarshalJSON encodes b as a JSON string of lowercase hex digits.
func (b HexBytes) MarshalJSON() ([]byte, error) {
	return json.Marshal(hex.EncodeToString(b))
}

// String returns b in lowercase hex.
func (b HexBytes) String() string { return hex.EncodeToString(b) }

// IsDelegatedPath reports whether role is trusted for targetPath: a path
// pattern matches it (shell-style, segment by segment), or a path hash
// prefix prefixes the URL-safe base64 of its SHA-256 (spec 4.5).
func (r *Delegation) IsDelegatedPath(targetPath string) (bool, error) {
	if len(r.Paths) > 0 {
		for _, pattern := range r.Paths {
			if matchPathPattern(targetPath, pattern) {
				return true, nil
			}
		}
	} else if len(r.PathHashPrefixes) > 0 {
		sum := sha256.Sum256([]byte(targetPath))
		enc := base64.URLEncoding.EncodeToString(sum[:])
		for _, prefix := range r.PathHashPrefixes {
			if strings.HasPrefix(enc, prefix) {
				return true, nil
			}
		}
	}
	return false, nil
}

// matchPathPattern matches targetPath against pattern one "/"-separated
// segment at a time ("*" never matches "/").
func matchPathPattern(targetPath, pattern string) bool {
	tp := strings.Split(targetPath, "/")
	pp := strings.Split(pattern, "/")
	if len(tp) != len(pp) {
		return false
	}
	for i := range tp {
		if ok, _ := filepath.Match(pp[i], tp[i]); !ok {
			return false
		}
	}
	return true
}

// GetRolesForTarget returns the delegated roles responsible for targetPath,
// in the order the delegator lists them.
func (d *Delegations) GetRolesForTarget(targetPath string) []RoleResult {
	var res []RoleResult
	if d.Roles != nil {
		for _, r := range d.Roles {
			if ok, _ := r.IsDelegatedPath(targetPath); ok {
				res = append(res, RoleResult{Name: r.Name, Terminating: r.Terminating})
			}
		}
	} else if d.SuccinctRoles != nil {
		res = d.SuccinctRoles.GetRolesForTarget(targetPath)
	}
	return res
}

// suffixLen returns the hex digits of a bin number and the number of bins.
func (s *SuccinctRoles) suffixLen() (int, int) {
	bins := 1 << s.BitLength
	return len(strconv.FormatInt(int64(bins-1), 16)), bins
}

// GetRolesForTarget returns the one bin responsible for targetPath: the
// leftmost BitLength bits of the SHA-256 of the path (TAP 15). Succinct
// roles are terminating.
func (s *SuccinctRoles) GetRolesForTarget(targetPath string) []RoleResult {
	n, _ := s.suffixLen()
	sum := sha256.Sum256([]byte(targetPath))
	bin := binary.BigEndian.Uint32(sum[:4]) >> (32 - s.BitLength)
	return []RoleResult{{Name: fmt.Sprintf("%s-%0*x", s.NamePrefix, n, bin), Terminating: true}}
}

// IsDelegatedRole reports whether name is one of the bins s describes.
func (s *SuccinctRoles) IsDelegatedRole(name string) bool {
	n, bins := s.suffixLen()
	suffix, ok := strings.CutPrefix(name, s.NamePrefix+"-")
	if !ok || len(suffix) != n {
		return false
	}
	v, err := strconv.ParseInt(suffix, 16, 64)
	return err == nil && v >= 0 && v < int64(bins)
}
