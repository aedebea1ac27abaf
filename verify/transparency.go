package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/airlockfw/airlock/tlog"
	"github.com/airlockfw/airlock/trust"
)

// The transparency stage (docs/transparency.md, "Device checks"). When the
// trusted root carries a transparency policy (tlog.PolicyField), a release
// is installable only if the policy's log shows it under a checkpoint the
// log signed and enough witnesses cosigned, consistent with the checkpoint
// the device holds. The stage runs after policy, so that proofs are read
// only for a release the device would install; its checkpoint is stored
// by the device only when that install commits (Target.LogCheckpoint).

// policy returns the transparency policy of the trusted root, nil when it
// has none.
func (s *Session) policy() (*tlog.Policy, error) {
	raw, err := s.store.Get("root.json")
	if err != nil {
		return nil, err
	}
	var r struct {
		Signed map[string]json.RawMessage `json:"signed"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	field, ok := r.Signed[tlog.PolicyField]
	if !ok {
		return nil, nil
	}
	p, err := tlog.ParsePolicy(field)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// heldCheckpoint returns the checkpoint the device holds, nil for none.
func (s *Session) heldCheckpoint() (*tlog.Checkpoint, error) {
	raw, err := s.store.Get(trust.LogCheckpointFile)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return tlog.ParseHeld(raw)
}

// checkLog runs the transparency stage for t.
func (s *Session) checkLog(ctx context.Context, t *Target) error {
	pol, err := s.policy()
	if err != nil {
		return fail(CheckTransparency, fmt.Errorf("the trusted root's transparency policy: %w", err))
	}
	if pol == nil {
		return nil
	}
	rel, err := logRelease(t)
	if err != nil {
		return fail(CheckTransparency, err)
	}
	held, err := s.heldCheckpoint()
	if err != nil {
		return fail(CheckTransparency, fmt.Errorf("the log checkpoint this device holds: %w", err))
	}
	var proof *tlog.Proof
	switch f, online := s.src.(trust.LogSource); {
	case s.bundle != nil:
		raw := s.bundle.m.LogProof
		if raw == nil {
			return fail(CheckTransparency, fmt.Errorf("release %s@%s is not in the transparency log (%w: the bundle carries no log proof; make it with airlock bundle create from a repository with a log)",
				rel.Product, rel.Version, tlog.ErrNotLogged))
		}
		if proof, err = tlog.ParseProof(raw); err != nil {
			return fail(CheckTransparency, fmt.Errorf("%w: %w", tlog.ErrInclusion, err))
		}
	case online:
		if s.prover == nil {
			s.prover = tlog.NewProver(f)
		}
		// The checkpoint's signatures first: no tile is read for a
		// checkpoint the policy does not accept.
		raw, err := s.prover.Checkpoint(ctx)
		if err == nil {
			_, err = tlog.VerifyCheckpoint(raw, *pol)
		}
		if err != nil {
			if errors.Is(err, tlog.ErrNotLogged) {
				err = fmt.Errorf("release %s@%s is not in the transparency log (%w)", rel.Product, rel.Version, err)
			}
			return fail(CheckTransparency, err)
		}
		var from []uint64
		if held != nil {
			from = []uint64{held.Size}
		}
		if proof, err = s.prover.Prove(ctx, rel.TargetSHA256, from); err != nil {
			if errors.Is(err, tlog.ErrNotLogged) {
				err = fmt.Errorf("release %s@%s is not in the transparency log (%w)", rel.Product, rel.Version, err)
			}
			return fail(CheckTransparency, err)
		}
	default:
		return fail(CheckTransparency, fmt.Errorf("release %s@%s is not in the transparency log (%w: the source serves no log)", rel.Product, rel.Version, tlog.ErrNotLogged))
	}
	cp, err := proof.Verify(*pol, held, rel)
	if err != nil {
		return fail(CheckTransparency, err)
	}
	t.LogCheckpoint, t.LogIndex = cp.Note, proof.Index
	return nil
}

// logRelease returns what the log entry of t must say: its product and
// version, the digest of its file info exactly as signed in the role that
// lists it, and its provenance digest.
func logRelease(t *Target) (tlog.Release, error) {
	r := tlog.Release{Product: t.Release.Product.String(), Version: t.Release.Version.String()}
	roles := [][]byte{t.Targets}
	for _, d := range t.Delegated {
		roles = append(roles, d.Data)
	}
	var info json.RawMessage
	for i := len(roles) - 1; i >= 0 && info == nil; i-- {
		var m struct {
			Signed struct {
				Targets map[string]json.RawMessage `json:"targets"`
			} `json:"signed"`
		}
		if json.Unmarshal(roles[i], &m) == nil {
			info = m.Signed.Targets[t.Path]
		}
	}
	if info == nil {
		return r, fmt.Errorf("internal error: no verified role lists %q", t.Path)
	}
	d, err := tlog.TargetDigest(info)
	if err != nil {
		return r, err
	}
	r.TargetSHA256 = d
	// custom.airlock.provenance.sha256 of the verified custom field.
	var c struct {
		Airlock struct {
			Provenance struct {
				SHA256 string `json:"sha256"`
			} `json:"provenance"`
		} `json:"airlock"`
	}
	if json.Unmarshal(t.Custom, &c) == nil {
		r.ProvenanceSHA256 = c.Airlock.Provenance.SHA256
	}
	return r, nil
}
