package server

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"slices"

	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/provenance"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/server/dashboard"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// releaseProvenance reads the provenance of the published release
// product@version from the served repository for the dashboard: it
// follows timestamp.json to the snapshot and the product role, takes the
// envelope digest the release's signed metadata binds, reads the envelope
// (targets/PRODUCT/VERSION/<sha256>.provenance.json), checks its digest,
// length and subject, and finds the keys whose signatures on the role
// version are valid. Signatures on metadata are checked by devices, not
// here: this shows what the repository serves. nil and no error: the
// release binds no provenance.
func (s *Server) releaseProvenance(ctx context.Context, product, version string) (*dashboard.Provenance, error) {
	read := func(fsys fs.FS, name string, max int64) ([]byte, error) {
		f, err := fsys.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, max+1))
		if err != nil {
			return nil, err
		}
		if int64(len(data)) > max {
			return nil, fmt.Errorf("%s is larger than %d bytes", name, max)
		}
		return data, nil
	}
	p, err := release.ParseProduct(product)
	if err != nil {
		return nil, err
	}
	data, err := read(s.metaFS, "timestamp.json", repo.MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	ts, err := metadata.Timestamp().FromBytes(data)
	if err != nil {
		return nil, err
	}
	sm := ts.Signed.Meta["snapshot.json"]
	if sm == nil {
		return nil, fmt.Errorf("timestamp.json names no snapshot")
	}
	if data, err = read(s.metaFS, fmt.Sprintf("%d.snapshot.json", sm.Version), repo.MaxMetadataSize); err != nil {
		return nil, err
	}
	snap, err := metadata.Snapshot().FromBytes(data)
	if err != nil {
		return nil, err
	}
	role := p.RoleName()
	rm, tm := snap.Signed.Meta[role+".json"], snap.Signed.Meta["targets.json"]
	if rm == nil || tm == nil {
		return nil, fmt.Errorf("the snapshot lists no %s", role)
	}
	roleData, err := read(s.metaFS, fmt.Sprintf("%d.%s.json", rm.Version, role), repo.MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	targetsData, err := read(s.metaFS, fmt.Sprintf("%d.targets.json", tm.Version), repo.MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	md, err := metadata.Targets().FromBytes(roleData)
	if err != nil {
		return nil, err
	}
	var meta *release.Metadata
	for tp, tf := range md.Signed.Targets {
		tprod, tv, _, err := release.ParseTargetPath(tp)
		if err != nil || tprod != p || tv.String() != version || tf.Custom == nil {
			continue
		}
		if meta, err = release.ParseCustom(*tf.Custom); err != nil {
			return nil, fmt.Errorf("release metadata of %s: %w", tp, err)
		}
	}
	if meta == nil {
		return nil, fmt.Errorf("%s@%s is not in %s version %d", product, version, role, rm.Version)
	}
	if meta.Provenance == nil {
		return nil, nil
	}
	sha := hex.EncodeToString(meta.Provenance.SHA256[:])
	targets := objstore.FS(ctx, s.repo, "targets", s.cfg.RepoTimeout)
	env, err := read(targets, p.String()+"/"+meta.Version.String()+"/"+sha+"."+repo.ProvenanceFileName, provenance.MaxEnvelopeSize)
	if err != nil {
		return nil, err
	}
	if got, n := provenance.Digest(env); got != sha || n != meta.Provenance.Length {
		return nil, fmt.Errorf("%w: the served envelope (sha256 %s, %d bytes) is not the one the signed release metadata binds", provenance.ErrProvenance, got, n)
	}
	a, err := provenance.Check(env, product, hex.EncodeToString(meta.Installed.SHA256[:]), nil)
	if err != nil {
		return nil, err
	}
	out := &dashboard.Provenance{SHA256: sha, Length: a.Length, Builder: a.BuilderID(), BuildType: a.BuildType(),
		Source: a.Source.URI, Commit: a.Source.Commit, Role: role, RoleVersion: rm.Version}
	if m := a.Statement.Predicate.RunDetails.Metadata; m != nil {
		out.InvocationID = m.InvocationID
	}
	for _, sig := range a.Envelope.Signatures {
		if sig.KeyID != "" && !slices.Contains(out.DSSESigners, sig.KeyID) {
			out.DSSESigners = append(out.DSSESigners, sig.KeyID)
		}
	}
	if out.Approvers, err = repo.RoleApprovers(targetsData, roleData, role); err != nil {
		return nil, err
	}
	return out, nil
}
