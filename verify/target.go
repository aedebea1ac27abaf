package verify

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"slices"

	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
)

// Target is a release that passed the target, release and policy stages of
// one Session for one set of Facts: holding one is the proof. Its payload
// has not been read yet.
type Target struct {
	Path    string
	File    *trust.TargetFiles // the verified TUF target: length, hashes, custom
	Release *release.Metadata  // the parsed Airlock release metadata
	Custom  []byte             // the target's custom field as signed
	// The verified bytes a device keeps beside the slot for its boot-time
	// re-verification (trust.VerifyBootChain).
	RootChain [][]byte
	Targets   []byte
	Delegated []trust.DelegatedRole
	// LogCheckpoint is the transparency log checkpoint the release was
	// verified under (nil when the trusted root requires no log) and
	// LogIndex its entry's index: a device stores the checkpoint as its
	// view of the log when, and only when, the install commits
	// (trust.LogCheckpointFile).
	LogCheckpoint []byte
	LogIndex      uint64

	session *Session
	facts   Facts
}

// Session returns the session t was checked in.
func (t *Target) Session() *Session { return t.session }

// Facts returns the device facts t passed the policy stage with.
func (t *Target) Facts() Facts { return t.facts }

// Check runs the target, release and policy stages for targetPath: the
// lookup through the delegations (a target listed only by a role whose
// delegation does not cover its path is refused with
// trust.ErrOutsideDelegation), the hash policy (KnownHashes), the chain from
// the anchor as the boot stage will verify it, the release metadata, the
// device policy for f, and the transparency log when the trusted root
// requires it (checkLog). Failures are *Error.
func (s *Session) Check(ctx context.Context, targetPath string, f Facts) (*Target, error) {
	tf, err := s.client.Target(ctx, targetPath)
	if err != nil {
		// A delegated role that fails its checks on the way is a metadata
		// refusal; a path no trusted role lists is a target refusal.
		check := CheckMetadata
		if errors.Is(err, trust.ErrTargetNotFound) || errors.Is(err, trust.ErrInvalidName) {
			check = CheckTarget
		}
		return nil, fail(check, s.explainBundle(targetPath, s.explainLookup(ctx, targetPath, err)))
	}
	if err := CheckHashes(tf.Hashes); err != nil {
		return nil, fail(CheckTarget, fmt.Errorf("%q: %w", targetPath, err))
	}
	chain, targets, delegated, err := s.client.Chain(targetPath)
	if err != nil {
		return nil, fail(CheckTarget, err)
	}
	// What is installed must be bootable: verify the chain exactly as the
	// boot stage will, from the anchor.
	if _, err := trust.VerifyBootChain(s.root, chain, targets, delegated, targetPath); err != nil {
		return nil, fail(CheckMetadata, fmt.Errorf("release does not verify from the factory root: %w", err))
	}
	t := &Target{Path: targetPath, File: tf, RootChain: chain, Targets: targets, Delegated: delegated, session: s, facts: f}
	if tf.Custom == nil {
		return nil, fail(CheckRelease, release.ErrNoMetadata)
	}
	t.Custom = slices.Clone([]byte(*tf.Custom))
	if t.Release, err = release.ParseCustom(t.Custom); err != nil {
		return nil, fail(CheckRelease, err)
	}
	if err := release.CheckTargetPath(t.Release, targetPath); err != nil {
		return nil, fail(CheckRelease, err)
	}
	if t.Release.Install.Kind != release.InstallRaw {
		return nil, fail(CheckRelease, fmt.Errorf("%w: install kind %q", ErrUnsupported, t.Release.Install.Kind))
	}
	if err := f.check(t.Release, tf.Length, s.env); err != nil {
		return nil, err
	}
	if err := s.checkLog(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}

// KnownHashes are the target hash algorithms the pipeline verifies, with
// their digest sizes. Every hash a target lists must be one of them, and
// sha256 or sha512 must be listed: an unknown algorithm is refused rather
// than ignored, so that no listed digest goes unchecked.
var KnownHashes = map[string]int{"sha256": sha256.Size, "sha512": sha512.Size}

// CheckHashes applies the hash policy to a target's hashes.
func CheckHashes(h trust.Hashes) error {
	for _, alg := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}) {
		size, ok := KnownHashes[alg]
		if !ok {
			return fmt.Errorf("%w: hash algorithm %q is not one this device verifies (sha256, sha512)", ErrHashPolicy, alg)
		}
		if len(h[alg]) != size {
			return fmt.Errorf("%w: %s digest is %d bytes, want %d", ErrHashPolicy, alg, len(h[alg]), size)
		}
	}
	if len(h["sha256"]) == 0 && len(h["sha512"]) == 0 {
		return fmt.Errorf("%w: neither sha256 nor sha512 is listed", ErrHashPolicy)
	}
	return nil
}

// explainLookup turns a failed lookup into the most precise refusal: the
// environment the offered metadata claims, or the role that lists the path
// outside its delegation.
func (s *Session) explainLookup(ctx context.Context, targetPath string, err error) error {
	if !errors.Is(err, trust.ErrTargetNotFound) {
		return err
	}
	if env := s.diagnoseEnvironment(ctx, targetPath, err); env != err {
		return env
	}
	names, derr := s.client.DelegatedRoles()
	if derr != nil {
		return err
	}
	var patterns []string
	for i, name := range names {
		if i >= trust.MaxDelegations {
			break
		}
		role, rerr := s.client.Role(ctx, name)
		if rerr != nil {
			continue
		}
		if _, listed := role.Signed.Targets[targetPath]; !listed {
			continue
		}
		covered := false
		if d := s.client.Trusted().Targets.Signed.Delegations; d != nil {
			for _, r := range d.Roles {
				if r.Name == name {
					patterns = r.Paths
					covered, _ = r.IsDelegatedPath(targetPath)
				}
			}
		}
		if covered {
			continue // listed inside its delegation, yet not found: not an escape
		}
		return fmt.Errorf("%w: %q is signed by role %q, whose delegation covers only %q: a key signed outside its namespace, which is never trusted",
			trust.ErrOutsideDelegation, targetPath, name, patterns)
	}
	return err
}
