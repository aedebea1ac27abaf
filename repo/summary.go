package repo

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/airlockfw/airlock/release"
)

// Release states of a ReleaseSummary.
const (
	StatePublished = "published" // in the published metadata of its role
	StatePending   = "pending"   // only in the staged metadata (or changed there)
	StateCarried   = "carried"   // read from a carried pending file, unchecked
)

// ReleaseSummary is everything an approver should see before signing a
// release: what devices will download and install, which devices it is
// for, and what changed since the previous release of the product.
// Values come from the signed metadata; for a carried file nothing is
// checked against the repository.
type ReleaseSummary struct {
	Product     string `json:"product"`
	Version     string `json:"version"`
	Environment string `json:"environment"` // trust environment signed into the release ("" if absent)
	State       string `json:"state"`       // StatePublished, StatePending or StateCarried
	TargetPath  string `json:"target"`
	// Length and Hashes are the file devices download (compressed when
	// Compression is zstd); Hashes maps algorithm to hex digest, as
	// recorded in the TUF target (sha256, and sha512 when present).
	Length          int64             `json:"length"`
	Hashes          map[string]string `json:"hashes"`
	InstalledLength int64             `json:"installed_length"`
	InstalledSHA256 string            `json:"installed_sha256"`
	Compression     string            `json:"compression"`
	Models          []string          `json:"models"`
	HWRev           string            `json:"hw_rev"` // "*" for any revision
	Channel         string            `json:"channel"`
	SecurityVersion uint32            `json:"security_version"`
	Depends         []string          `json:"depends"`
	AllowDowngrade  bool              `json:"allow_downgrade"`
	Notes           string            `json:"notes,omitempty"`
	// Provenance is the SHA-256 of the build provenance envelope the
	// release metadata binds ("" for none): targets/PRODUCT/VERSION/<it>.provenance.json.
	Provenance string `json:"provenance,omitempty"`
	// Created is when 'release add' ran (zero if not recorded). Who added
	// it is in the repository's audit log, not in the metadata.
	Created time.Time `json:"created,omitzero"`
	// MetadataVersion, SignedBy, Signatures and Threshold describe the
	// product role metadata holding the release: SignedBy lists the key
	// IDs of its valid signatures (for a carried file: the key IDs its
	// signatures claim, unchecked, and Threshold is 0).
	MetadataVersion int64    `json:"metadata_version"`
	SignedBy        []string `json:"signed_by"`
	Signatures      int      `json:"signatures"`
	Threshold       int      `json:"threshold"`
	// Deltas are the deltas the release signs: devices running From may
	// install it from a delta bundle.
	Deltas []DeltaSummary `json:"deltas,omitempty"`
	// ReplacesPublished is set for a pending release whose version is
	// already published with different content: approving it changes a
	// release devices may have installed.
	ReplacesPublished bool `json:"replaces_published,omitempty"`
	// DeltasAdded lists, for a pending release whose only change from the
	// published one is new deltas (AddDelta), the versions they start
	// from; ReplacesPublished is then false.
	DeltasAdded []string `json:"deltas_added,omitempty"`
	// Invalid is set when the target's Airlock metadata does not parse;
	// the fields from it are then empty.
	Invalid string `json:"invalid,omitempty"`
	// Changes compares the release with the previous one (the highest
	// lower version in the same metadata); nil for the first release.
	Changes *ReleaseChanges `json:"changes,omitempty"`
}

// DeltaSummary describes one signed delta of a release.
type DeltaSummary struct {
	From   string `json:"from"`
	Length int64  `json:"length"` // a delta bundle's payload: tree and data streams
	// TreeLength and DataLength are the streams' lengths, TreeHeaderSHA256
	// and DataHeaderSHA256 their headers' signed digests (hex).
	TreeLength       int64  `json:"tree_length"`
	DataLength       int64  `json:"data_length"`
	TreeHeaderSHA256 string `json:"tree_header_sha256"`
	DataHeaderSHA256 string `json:"data_header_sha256"`
}

// ReleaseChanges is what changed from the previous release to this one.
// The Previous* fields hold the previous value whatever changed; the
// Added/Removed lists are empty when nothing changed.
type ReleaseChanges struct {
	PreviousVersion         string   `json:"previous_version"`
	PreviousSecurityVersion uint32   `json:"previous_security_version"`
	SecurityVersionDelta    int64    `json:"security_version_delta"`
	ModelsAdded             []string `json:"models_added,omitempty"`
	ModelsRemoved           []string `json:"models_removed,omitempty"`
	PreviousHWRev           string   `json:"previous_hw_rev"`
	PreviousChannel         string   `json:"previous_channel"`
	PreviousCompression     string   `json:"previous_compression"`
	PreviousEnvironment     string   `json:"previous_environment"`
	DependsAdded            []string `json:"depends_added,omitempty"`
	DependsRemoved          []string `json:"depends_removed,omitempty"`
	LengthDelta             int64    `json:"length_delta"`
	InstalledLengthDelta    int64    `json:"installed_length_delta"`
}

// PendingSummary describes what signing a product role's pending metadata
// approves.
type PendingSummary struct {
	Role            string   `json:"role"`
	Type            string   `json:"type"` // "targets" or "root"
	MetadataVersion int64    `json:"metadata_version"`
	Expires         string   `json:"expires"`
	SignedBy        []string `json:"signed_by"`
	Signatures      int      `json:"signatures"`
	Threshold       int      `json:"threshold"` // 0 when unknown (a carried file)
	// SignedSHA256 is the SHA-256 of the canonical signed bytes, what a
	// signature covers. Passing it to SignPending or SignPendingFile makes
	// them refuse (ErrChanged) metadata that changed since it was shown.
	SignedSHA256 string `json:"signed_sha256"`
	// Releases are the releases the signature approves: added or changed
	// since the published metadata (every release for a carried file,
	// which has nothing to compare with), oldest version first.
	Releases []ReleaseSummary `json:"releases"`
	// Removed lists the target paths published but absent from the
	// pending metadata.
	Removed []string `json:"removed,omitempty"`
	// Unchanged counts the published releases the pending metadata keeps
	// as they are.
	Unchanged int `json:"unchanged"`
}

// summarize returns a summary of every release in md, oldest version
// first, each compared with the one before it.
func summarize(md *metadata.Metadata[metadata.TargetsType], state string) []ReleaseSummary {
	type entry struct {
		v release.Version
		s ReleaseSummary
		m *release.Metadata
	}
	var list []entry
	for tp, tf := range md.Signed.Targets {
		p, v, _, err := release.ParseTargetPath(tp)
		if err != nil {
			continue
		}
		s := ReleaseSummary{TargetPath: tp, Version: v.String(), State: state, Length: tf.Length,
			Hashes: make(map[string]string), MetadataVersion: md.Signed.Version}
		for alg, h := range tf.Hashes {
			s.Hashes[alg] = hex.EncodeToString(h)
		}
		var m *release.Metadata
		if tf.Custom == nil {
			s.Invalid = "no airlock metadata"
		} else if m, err = release.ParseCustom(*tf.Custom); err != nil {
			s.Invalid = err.Error()
			m = nil
		}
		if m != nil {
			fill(&s, m)
		} else {
			s.Product = p.String()
		}
		list = append(list, entry{v, s, m})
	}
	sort.Slice(list, func(i, j int) bool { return release.Compare(list[i].v, list[j].v) < 0 })
	out := make([]ReleaseSummary, len(list))
	for i := range list {
		out[i] = list[i].s
		if i > 0 {
			out[i].Changes = changes(&list[i-1].s, &out[i])
		}
	}
	return out
}

func fill(s *ReleaseSummary, m *release.Metadata) {
	s.Product = m.Product.String()
	s.Environment = m.Environment
	s.InstalledLength = m.Installed.Length
	s.InstalledSHA256 = hex.EncodeToString(m.Installed.SHA256[:])
	s.Compression = string(m.Install.Compression)
	s.Models = slices.Clone(m.Models)
	s.HWRev = m.HWRev.String()
	if s.HWRev == "" {
		s.HWRev = "*"
	}
	s.Channel = m.ChannelOrDefault()
	s.SecurityVersion = m.SecurityVersion
	if p := m.Provenance; p != nil {
		s.Provenance = hex.EncodeToString(p.SHA256[:])
	}
	s.Depends = []string{}
	for _, d := range m.Depends {
		s.Depends = append(s.Depends, d.String())
	}
	s.AllowDowngrade = m.AllowDowngrade
	for _, d := range m.Deltas {
		s.Deltas = append(s.Deltas, DeltaSummary{From: d.From.String(), Length: d.Length(), TreeLength: d.Tree.Length, DataLength: d.Data.Length,
			TreeHeaderSHA256: hex.EncodeToString(d.Tree.HeaderSHA256[:]), DataHeaderSHA256: hex.EncodeToString(d.Data.HeaderSHA256[:])})
	}
	s.Notes = m.Notes
	s.Created = m.Created
}

func changes(prev, cur *ReleaseSummary) *ReleaseChanges {
	return &ReleaseChanges{
		PreviousVersion:         prev.Version,
		PreviousSecurityVersion: prev.SecurityVersion,
		SecurityVersionDelta:    int64(cur.SecurityVersion) - int64(prev.SecurityVersion),
		ModelsAdded:             minus(cur.Models, prev.Models),
		ModelsRemoved:           minus(prev.Models, cur.Models),
		PreviousHWRev:           prev.HWRev,
		PreviousChannel:         prev.Channel,
		PreviousCompression:     prev.Compression,
		PreviousEnvironment:     prev.Environment,
		DependsAdded:            minus(cur.Depends, prev.Depends),
		DependsRemoved:          minus(prev.Depends, cur.Depends),
		LengthDelta:             cur.Length - prev.Length,
		InstalledLengthDelta:    cur.InstalledLength - prev.InstalledLength,
	}
}

// minus returns the elements of a not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func signedBy(sigs []metadata.Signature) []string {
	ids := []string{}
	for _, s := range sigs {
		ids = append(ids, s.KeyID)
	}
	sort.Strings(ids)
	return ids
}

// markReplaced records how the pending target staged of s differs from
// the published one, pub (nil: a new release): only by added deltas
// (DeltasAdded), or otherwise (ReplacesPublished).
func (s *ReleaseSummary) markReplaced(pub, staged *metadata.TargetFiles) {
	if pub == nil {
		return
	}
	if added := deltasAdded(pub, staged); added != nil {
		s.DeltasAdded = added
		return
	}
	s.ReplacesPublished = true
}

// deltasAdded returns the bases of the deltas staged adds to pub, if that
// is the only difference between the two targets; nil otherwise.
func deltasAdded(pub, staged *metadata.TargetFiles) []string {
	if pub.Custom == nil || staged.Custom == nil || pub.Length != staged.Length || pub.Path != staged.Path {
		return nil
	}
	ph, err1 := json.Marshal(pub.Hashes)
	sh, err2 := json.Marshal(staged.Hashes)
	if err1 != nil || err2 != nil || !bytes.Equal(ph, sh) {
		return nil
	}
	pm, err1 := release.ParseCustom(*pub.Custom)
	sm, err2 := release.ParseCustom(*staged.Custom)
	if err1 != nil || err2 != nil || len(sm.Deltas) <= len(pm.Deltas) || !slices.Equal(pm.Deltas, sm.Deltas[:len(pm.Deltas)]) {
		return nil
	}
	var added []string
	for _, d := range sm.Deltas[len(pm.Deltas):] {
		added = append(added, d.From.String())
	}
	sm.Deltas = sm.Deltas[:len(pm.Deltas)]
	pc, err1 := release.MarshalCustom(pm)
	sc, err2 := release.MarshalCustom(sm)
	if err1 != nil || err2 != nil || !bytes.Equal(pc, sc) {
		return nil
	}
	return added
}

func sameTarget(a, b *metadata.TargetFiles) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// roleState returns the valid signers and threshold of md for role.
func (r *Repo) roleState(md *metadata.Metadata[metadata.TargetsType], role string) (ids []string, have, need int, err error) {
	rk, err := r.keysForTargetsRole(role)
	if err != nil {
		return nil, 0, 0, err
	}
	valid, err := validSignatures(md, rk)
	if err != nil {
		return nil, 0, 0, err
	}
	have, err = countValid(md, rk)
	return signedBy(valid), have, rk.threshold, err
}

// DescribeRelease returns the summary of one release of product: the
// pending one when the staged metadata adds or changes that version, the
// published one otherwise. Changes compare it with the previous version in
// the same metadata.
func (r *Repo) DescribeRelease(product, version string) (*ReleaseSummary, error) {
	p, role, err := productRole(product)
	if err != nil {
		return nil, err
	}
	if _, err := release.ParseVersion(version); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if _, err := r.delegation(p); err != nil {
		return nil, err
	}
	pub, err := r.PublishedRole(role)
	if err != nil {
		return nil, err
	}
	staged, err := r.stagedTargetsRole(role)
	if err != nil {
		return nil, err
	}
	if staged != nil {
		if tp := findVersion(staged, version); tp != "" {
			var pubTF *metadata.TargetFiles
			if pub != nil {
				pubTF = pub.Signed.Targets[findVersion(pub, version)]
			}
			if pubTF == nil || !sameTarget(pubTF, staged.Signed.Targets[tp]) {
				s, err := r.describeIn(staged, role, StatePending, version)
				if err == nil {
					s.markReplaced(pubTF, staged.Signed.Targets[tp])
				}
				return s, err
			}
		}
	}
	if pub != nil && findVersion(pub, version) != "" {
		return r.describeIn(pub, role, StatePublished, version)
	}
	return nil, fmt.Errorf("%w: release %s %s", ErrNotFound, p, version)
}

func (r *Repo) describeIn(md *metadata.Metadata[metadata.TargetsType], role, state, version string) (*ReleaseSummary, error) {
	ids, have, need, err := r.roleState(md, role)
	if err != nil {
		return nil, err
	}
	for _, s := range summarize(md, state) {
		if s.Version == version {
			s.SignedBy, s.Signatures, s.Threshold = ids, have, need
			return &s, nil
		}
	}
	return nil, fmt.Errorf("internal error: %s not in the metadata of %s", version, role)
}

// DescribePending returns what signing the product role's pending
// (staged) metadata approves: the releases it adds or changes compared
// with the published metadata, and the published ones it drops. It
// returns ErrNotFound when nothing is staged for the product.
func (r *Repo) DescribePending(product string) (*PendingSummary, error) {
	p, role, err := productRole(product)
	if err != nil {
		return nil, err
	}
	if _, err := r.delegation(p); err != nil {
		return nil, err
	}
	staged, err := r.stagedTargetsRole(role)
	if err != nil {
		return nil, err
	}
	if staged == nil {
		return nil, fmt.Errorf("%w: nothing pending for %s", ErrNotFound, p)
	}
	pub, err := r.PublishedRole(role)
	if err != nil {
		return nil, err
	}
	ids, have, need, err := r.roleState(staged, role)
	if err != nil {
		return nil, err
	}
	digest, err := signedDigest(staged.Signed)
	if err != nil {
		return nil, err
	}
	ps := &PendingSummary{Role: role, Type: metadata.TARGETS, MetadataVersion: staged.Signed.Version, SignedSHA256: digest,
		Expires: staged.Signed.Expires.UTC().Format(time.RFC3339), SignedBy: ids, Signatures: have, Threshold: need,
		Releases: []ReleaseSummary{}}
	for _, s := range summarize(staged, StatePending) {
		var pubTF *metadata.TargetFiles
		if pub != nil {
			pubTF = pub.Signed.Targets[s.TargetPath]
			if pubTF == nil {
				pubTF = pub.Signed.Targets[findVersion(pub, s.Version)]
			}
		}
		if pubTF != nil && sameTarget(pubTF, staged.Signed.Targets[s.TargetPath]) {
			ps.Unchanged++
			continue
		}
		s.markReplaced(pubTF, staged.Signed.Targets[s.TargetPath])
		s.SignedBy, s.Signatures, s.Threshold = ids, have, need
		ps.Releases = append(ps.Releases, s)
	}
	if pub != nil {
		for tp := range pub.Signed.Targets {
			if _, ok := staged.Signed.Targets[tp]; !ok {
				ps.Removed = append(ps.Removed, tp)
			}
		}
		sort.Strings(ps.Removed)
	}
	return ps, nil
}

// DescribePendingFile returns what signing a carried pending file (see
// SignPendingFile) approves, read from the file alone: every release in
// it, each compared with the previous version in the same file. Nothing is
// checked against a repository (the signatures are listed as claimed, and
// the repository checks them at import), so Threshold is 0 and every
// release has State StateCarried. A root file has no releases.
func DescribePendingFile(path string) (*PendingSummary, error) {
	data, err := readLimited(path, MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	typ, err := metadataType(data)
	if err != nil {
		return nil, err
	}
	switch typ {
	case metadata.ROOT:
		md, err := parseMD[metadata.RootType](data)
		if err != nil {
			return nil, err
		}
		digest, err := signedDigest(md.Signed)
		if err != nil {
			return nil, err
		}
		return &PendingSummary{Role: metadata.ROOT, Type: typ, MetadataVersion: md.Signed.Version, SignedSHA256: digest,
			Expires: md.Signed.Expires.UTC().Format(time.RFC3339), SignedBy: signedBy(md.Signatures),
			Signatures: len(md.Signatures), Releases: []ReleaseSummary{}}, nil
	case metadata.TARGETS:
		md, err := parseMD[metadata.TargetsType](data)
		if err != nil {
			return nil, err
		}
		ids := signedBy(md.Signatures)
		digest, err := signedDigest(md.Signed)
		if err != nil {
			return nil, err
		}
		ps := &PendingSummary{Type: typ, MetadataVersion: md.Signed.Version, SignedSHA256: digest,
			Expires: md.Signed.Expires.UTC().Format(time.RFC3339), SignedBy: ids, Signatures: len(ids),
			Releases: summarize(md, StateCarried)}
		for i := range ps.Releases {
			ps.Releases[i].SignedBy, ps.Releases[i].Signatures = ids, len(ids)
			if ps.Role == "" && ps.Releases[i].Product != "" {
				if pr, err := release.ParseProduct(ps.Releases[i].Product); err == nil {
					ps.Role = pr.RoleName()
				}
			}
		}
		return ps, nil
	}
	return nil, fmt.Errorf("%w: %s metadata is signed by online keys at publish, not as a pending file", ErrInvalidMetadata, typ)
}

// ErrChanged: the metadata to sign is not what was shown to the approver
// (its signed bytes changed between DescribePending* and SignPending*).
var ErrChanged = errors.New("pending metadata changed since it was shown")

// signedDigest is the hex SHA-256 of the canonical JSON of signed: the
// bytes a signature covers.
func signedDigest(signed any) (string, error) {
	b, err := canonjson.Marshal(signed)
	if err != nil {
		return "", fmt.Errorf("failed to encode metadata: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// checkShown refuses signed if shown (a PendingSummary.SignedSHA256) is
// set and does not match it.
func checkShown(signed any, shown string) error {
	if shown == "" {
		return nil
	}
	d, err := signedDigest(signed)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(d), []byte(shown)) != 1 {
		return fmt.Errorf("%w: it was shown as sha256 %s and is now %s; review it again", ErrChanged, shown, d)
	}
	return nil
}
