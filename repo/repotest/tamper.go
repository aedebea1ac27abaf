package repotest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/keys/tufsign"
)

// What an attacker can do to a bundle, for tests named after attacks: parse
// it, change its metadata or payload, re-sign with the keys it holds and
// write it again with a valid framing.

// ParseBundle splits a bundle into its metadata section and payload.
func ParseBundle(t testing.TB, b []byte) (*bundle.Metadata, []byte) {
	t.Helper()
	br, err := bundle.NewReader(bytes.NewReader(b), bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	m := *br.Metadata()
	var p bytes.Buffer
	if _, err := p.ReadFrom(br.Payload()); err != nil {
		t.Fatal(err)
	}
	return &m, p.Bytes()
}

// BuildBundle writes a bundle (with a valid header digest and trailer).
func BuildBundle(t testing.TB, m *bundle.Metadata, p []byte) []byte {
	t.Helper()
	m.PayloadLength = int64(len(p))
	var b bytes.Buffer
	if err := bundle.Write(&b, m, bytes.NewReader(p)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Resign re-signs metadata of type T in raw with signers (an attacker
// holding those keys), after applying edit.
func Resign[T metadata.Roles](t testing.TB, raw []byte, edit func(*metadata.Metadata[T]), signers ...crypto.Signer) []byte {
	t.Helper()
	md, err := (&metadata.Metadata[T]{}).FromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(md)
	}
	md.Signatures = nil
	for _, s := range signers {
		if err := tufsign.Sign(md, s); err != nil {
			t.Fatal(err)
		}
	}
	out, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// MetaFile describes metadata bytes as a snapshot or timestamp pins them.
func MetaFile(version int64, data []byte) *metadata.MetaFiles {
	h := sha256.Sum256(data)
	return &metadata.MetaFiles{Version: version, Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": h[:]}}
}

// SignedVersion returns signed.version of metadata bytes.
func SignedVersion(t testing.TB, raw []byte) int64 {
	t.Helper()
	var v struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.Signed.Version
}

// Repin is what an attacker holding the online snapshot and timestamp keys
// does: new snapshot and timestamp versions pinning whatever targets and
// delegated role bytes the bundle carries.
func (v *Vendor) Repin(t testing.TB, m *bundle.Metadata) {
	t.Helper()
	m.Snapshot = Resign(t, m.Snapshot, func(md *metadata.Metadata[metadata.SnapshotType]) {
		md.Signed.Version++
		md.Signed.Meta["targets.json"] = MetaFile(SignedVersion(t, m.Targets), m.Targets)
		for _, d := range m.Delegated {
			md.Signed.Meta[d.Name+".json"] = MetaFile(SignedVersion(t, d.Data), d.Data)
		}
	}, v.Snapshot)
	m.Timestamp = Resign(t, m.Timestamp, func(md *metadata.Metadata[metadata.TimestampType]) {
		md.Signed.Version++
		md.Signed.Meta["snapshot.json"] = MetaFile(SignedVersion(t, m.Snapshot), m.Snapshot)
	}, v.Timestamp)
}

// EditRole changes the bundle's first delegated role (the product role) with
// edit, bumps its version, re-signs it with signers (a product key holder)
// and repins it with the online keys.
func (v *Vendor) EditRole(t testing.TB, m *bundle.Metadata, edit func(*metadata.Metadata[metadata.TargetsType]), signers ...crypto.Signer) {
	t.Helper()
	m.Delegated[0].Data = Resign(t, m.Delegated[0].Data, func(md *metadata.Metadata[metadata.TargetsType]) {
		edit(md)
		md.Signed.Version++
	}, signers...)
	v.Repin(t, m)
}
