package tlog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Limits of a checkpoint.
const (
	// MaxCheckpointSize bounds a checkpoint note: the body and the
	// signature lines of the log and up to MaxWitnesses witnesses, with
	// room for signatures of witnesses the policy does not list.
	MaxCheckpointSize = 16 << 10
)

// Refusals. Each names the check that failed; the messages that wrap
// them say why (docs/transparency.md, "Device checks").
var (
	// ErrCheckpoint: the checkpoint is malformed, not signed by the
	// policy's log key, or of another origin.
	ErrCheckpoint = errors.New("transparency: checkpoint signature")
	// ErrWitnesses: fewer than the policy's threshold of its witnesses
	// cosigned the checkpoint (cosignature/v1).
	ErrWitnesses = errors.New("transparency: witness cosignatures")
	// ErrConsistency: the checkpoint is not a consistent extension of the
	// one the device holds: older, a split view (same size, another root),
	// or a consistency proof that does not verify.
	ErrConsistency = errors.New("transparency: consistency")
	// ErrInclusion: the entry's inclusion proof does not verify, or the
	// entry bytes the log serves are malformed.
	ErrInclusion = errors.New("transparency: inclusion")
	// ErrNotLogged: the release is not in the log (no entry for it, or the
	// entry describes another release).
	ErrNotLogged = errors.New("transparency: not logged")
	// ErrStale: an offline bundle's log proof cannot bring the device from
	// the checkpoint it holds to the bundle's checkpoint.
	ErrStale = errors.New("transparency: stale log proof")
)

// Checkpoint is a C2SP tlog-checkpoint: the log's origin, its size and the
// RFC 6962 root hash of its first Size entries. Note is the signed note it
// was read from, exactly as received (what a device stores).
type Checkpoint struct {
	Origin string
	Size   uint64
	Hash   tlog.Hash
	Note   []byte
	// Cosigners are the names of the policy's witnesses whose
	// cosignatures verified, in policy order (VerifyCheckpoint).
	Cosigners []string
}

// VerifyCheckpoint verifies a checkpoint note against p (C2SP
// tlog-checkpoint, signed-note, tlog-cosignature): at most
// MaxCheckpointSize bytes; an Ed25519 signature by p's log key; the origin
// p's key names; a body of exactly origin, size and a 32-byte hash (no
// extension lines); and valid cosignature/v1 signatures over the body from
// at least p.Threshold of p's witnesses. Signatures of other keys are
// ignored; a witness signature that does not verify does not count.
func VerifyCheckpoint(raw []byte, p Policy) (*Checkpoint, error) {
	c, n, err := verifyLogSignature(raw, p)
	if err != nil {
		return nil, err
	}
	valid := 0
	for _, w := range p.Witnesses {
		v, err := fnote.NewVerifierForCosignatureV1(w.Key)
		if err != nil {
			continue // cannot count: the threshold check says how many did
		}
		for _, s := range n.UnverifiedSigs {
			if s.Name != v.Name() || s.Hash != v.KeyHash() {
				continue
			}
			sig, err := base64.StdEncoding.DecodeString(s.Base64)
			if err == nil && len(sig) > 4 && v.Verify([]byte(n.Text), sig[4:]) {
				valid++
				c.Cosigners = append(c.Cosigners, w.Name)
				break
			}
		}
	}
	if valid < p.Threshold {
		return nil, fmt.Errorf("%w (%d of %d valid, need %d): the checkpoint of size %d is not witnessed as the policy requires; a log that shows this view to this device only would look the same",
			ErrWitnesses, valid, len(p.Witnesses), p.Threshold, c.Size)
	}
	return c, nil
}

// VerifyLogSignature verifies only the log's part of a checkpoint note: at
// most MaxCheckpointSize bytes, an Ed25519 signature by p's log key, the
// origin p's key names and a strict body. Witness cosignatures are not
// counted: it is for a publisher reading back its own checkpoint, and for
// a monitor comparing a checkpoint seen elsewhere. Devices use
// VerifyCheckpoint.
func VerifyLogSignature(raw []byte, p Policy) (*Checkpoint, error) {
	c, _, err := verifyLogSignature(raw, p)
	return c, err
}

func verifyLogSignature(raw []byte, p Policy) (*Checkpoint, *note.Note, error) {
	if len(raw) > MaxCheckpointSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, more than %d", ErrCheckpoint, len(raw), MaxCheckpointSize)
	}
	lv, err := note.NewVerifier(p.Log)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the policy's log key: %v", ErrCheckpoint, err)
	}
	// Only the log's verifier: witness signatures stay unverified here, so
	// that one bad cosignature cannot hide the others (note.Open refuses a
	// note whose signature by a known key does not verify).
	n, err := note.Open(raw, note.VerifierList(lv))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	c, err := parseBody(n.Text)
	if err != nil {
		return nil, nil, err
	}
	if c.Origin != p.Origin() {
		return nil, nil, fmt.Errorf("%w: origin %q, the policy's log is %q", ErrCheckpoint, c.Origin, p.Origin())
	}
	c.Note = bytes.Clone(raw)
	return c, n, nil
}

// parseBody parses a checkpoint body strictly: exactly the three lines
// log.Checkpoint.Marshal writes for it.
func parseBody(text string) (*Checkpoint, error) {
	var cp log.Checkpoint
	rest, err := cp.Unmarshal([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: the checkpoint has extension lines", ErrCheckpoint)
	}
	if len(cp.Hash) != tlog.HashSize || string(cp.Marshal()) != text {
		return nil, fmt.Errorf("%w: the checkpoint body is not in canonical form (origin, decimal size, base64 of a 32-byte hash)", ErrCheckpoint)
	}
	c := &Checkpoint{Origin: cp.Origin, Size: cp.Size}
	copy(c.Hash[:], cp.Hash)
	return c, nil
}

// ParseHeld parses the checkpoint a device stored (after it verified it):
// the body of the note, without checking its signatures again (the policy
// may have been rotated since).
func ParseHeld(raw []byte) (*Checkpoint, error) {
	if len(raw) > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: stored checkpoint: %d bytes, more than %d", ErrCheckpoint, len(raw), MaxCheckpointSize)
	}
	i := bytes.Index(raw, []byte("\n\n"))
	if i < 0 {
		return nil, fmt.Errorf("%w: stored checkpoint: not a signed note", ErrCheckpoint)
	}
	c, err := parseBody(string(raw[:i+1]))
	if err != nil {
		return nil, err
	}
	c.Note = bytes.Clone(raw)
	return c, nil
}

// checkAdvance checks that next may replace held (nil: the device holds
// no checkpoint of this log) as the device's view of the log: never
// smaller, never another tree of the same size, and a larger tree only
// with a consistency proof from held's size. offline says the proof comes
// from a bundle: a checkpoint it cannot advance from is stale.
func checkAdvance(held, next *Checkpoint, proof tlog.TreeProof, haveProof, offline bool) error {
	if held == nil || held.Size == 0 {
		return nil
	}
	switch {
	case next.Size < held.Size:
		err := ErrConsistency
		if offline {
			err = ErrStale
		}
		return fmt.Errorf("%w: log checkpoint is older than the one this device holds (size %d, the device holds %d)", err, next.Size, held.Size)
	case next.Size == held.Size:
		if next.Hash != held.Hash {
			return fmt.Errorf("%w: split view: the log shows this device a tree of size %d with root %s, and showed it one with root %s before",
				ErrConsistency, next.Size, next.Hash, held.Hash)
		}
		return nil
	case !haveProof:
		err := ErrConsistency
		if offline {
			err = ErrStale
		}
		return fmt.Errorf("%w: cannot prove the log is consistent with the checkpoint this device holds (size %d)", err, held.Size)
	}
	if err := tlog.CheckTree(proof, int64(next.Size), next.Hash, int64(held.Size), held.Hash); err != nil {
		return fmt.Errorf("%w: the tree of size %d does not extend the one of size %d this device holds: %v", ErrConsistency, next.Size, held.Size, err)
	}
	return nil
}
