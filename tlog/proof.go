package tlog

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/internal/strictjson"
	"golang.org/x/mod/sumdb/tlog"
)

// Limits of a log proof.
const (
	// MaxProofSize bounds an encoded Proof (a bundle's log proof member).
	MaxProofSize = 2 << 20
	// MaxProofHashes bounds the hashes of one inclusion or consistency
	// proof (a tree of 2^63 entries needs fewer than 2*63).
	MaxProofHashes = 128
	// MaxConsistencyProofs bounds the consistency proofs a Proof carries
	// (one per earlier checkpoint in the log's history; a bundle writer
	// keeps the newest).
	MaxConsistencyProofs = 1024
)

// ErrProof is wrapped by every log proof parse error.
var ErrProof = errors.New("malformed log proof")

// Proof is what a device needs to check one release against the log
// without fetching anything: the checkpoint (with its cosignatures), the
// entry bytes, the entry's index, its inclusion proof under the
// checkpoint, and consistency proofs from earlier tree sizes to the
// checkpoint's size (a device uses the one from the size it holds). It is
// the "log proof" member of an offline bundle (docs/bundle-format.md).
type Proof struct {
	Checkpoint  []byte
	Entry       []byte
	Index       uint64
	Inclusion   tlog.RecordProof
	Consistency []Consistency

	// offline marks a proof read from a bundle (ParseProof): one that
	// cannot bring the device to its checkpoint is stale (ErrStale).
	offline bool
}

// Consistency is a consistency proof from the tree of Size entries to the
// checkpoint's tree.
type Consistency struct {
	Size   uint64
	Hashes tlog.TreeProof
}

// wireProof is the JSON encoding of a Proof: the note and the entry as
// strings (the entry is canonical JSON, the note UTF-8 text), hashes in
// standard base64.
type wireProof struct {
	Checkpoint  string            `json:"checkpoint"`
	Entry       string            `json:"entry"`
	Index       uint64            `json:"index"`
	Inclusion   []string          `json:"inclusion"`
	Consistency []wireConsistency `json:"consistency"`
}

type wireConsistency struct {
	Size  uint64   `json:"size"`
	Proof []string `json:"proof"`
}

// Marshal encodes p (the one encoding ParseProof accepts).
func (p *Proof) Marshal() ([]byte, error) {
	w := wireProof{Checkpoint: string(p.Checkpoint), Entry: string(p.Entry), Index: p.Index,
		Inclusion: hashStrings(p.Inclusion), Consistency: []wireConsistency{}}
	for _, c := range p.Consistency {
		w.Consistency = append(w.Consistency, wireConsistency{Size: c.Size, Proof: hashStrings(c.Hashes)})
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	if _, err := parseProof(b); err != nil {
		return nil, err
	}
	return b, nil
}

func hashStrings(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// ParseProof parses a log proof strictly: at most MaxProofSize bytes, the
// one encoding Marshal writes, every hash 32 bytes, the named limits on
// counts, consistency proofs from strictly increasing sizes. It verifies
// nothing: Verify does.
func ParseProof(data []byte) (*Proof, error) {
	p, err := parseProof(data)
	if err != nil {
		return nil, err
	}
	p.offline = true
	return p, nil
}

func parseProof(data []byte) (*Proof, error) {
	if len(data) > MaxProofSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrProof, len(data), MaxProofSize)
	}
	var w wireProof
	if err := (strictjson.Limits{Size: MaxProofSize, Depth: 5}).Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProof, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrProof, fmt.Sprintf(format, args...))
	}
	if w.Checkpoint == "" || len(w.Checkpoint) > MaxCheckpointSize {
		return nil, bad("checkpoint: empty or more than %d bytes", MaxCheckpointSize)
	}
	if w.Entry == "" || len(w.Entry) > MaxEntrySize {
		return nil, bad("entry: empty or more than %d bytes", MaxEntrySize)
	}
	if len(w.Consistency) > MaxConsistencyProofs {
		return nil, bad("%d consistency proofs, at most %d", len(w.Consistency), MaxConsistencyProofs)
	}
	p := &Proof{Checkpoint: []byte(w.Checkpoint), Entry: []byte(w.Entry), Index: w.Index}
	var err error
	if p.Inclusion, err = parseHashes("inclusion", w.Inclusion); err != nil {
		return nil, err
	}
	for i, c := range w.Consistency {
		if c.Size == 0 || (i > 0 && c.Size <= w.Consistency[i-1].Size) {
			return nil, bad("consistency proof %d: size %d: sizes must be positive and increase", i, c.Size)
		}
		h, err := parseHashes(fmt.Sprintf("consistency proof %d", i), c.Proof)
		if err != nil {
			return nil, err
		}
		p.Consistency = append(p.Consistency, Consistency{Size: c.Size, Hashes: h})
	}
	// One encoding: what Marshal writes (lists, never null).
	w.Inclusion = append([]string{}, w.Inclusion...)
	w.Consistency = append([]wireConsistency{}, w.Consistency...)
	for i := range w.Consistency {
		w.Consistency[i].Proof = append([]string{}, w.Consistency[i].Proof...)
	}
	if c, err := json.Marshal(w); err != nil || !bytes.Equal(c, data) {
		return nil, bad("not in canonical form")
	}
	return p, nil
}

func parseHashes(what string, ss []string) ([]tlog.Hash, error) {
	if len(ss) > MaxProofHashes {
		return nil, fmt.Errorf("%w: %s: %d hashes, at most %d", ErrProof, what, len(ss), MaxProofHashes)
	}
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			return nil, fmt.Errorf("%w: %s: hash %d is not the base64 of 32 bytes", ErrProof, what, i)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// Release is what a device is about to install, as the log entry must
// describe it.
type Release struct {
	Product, Version string
	// TargetSHA256 is TargetDigest of the verified target's file info.
	TargetSHA256 string
	// ProvenanceSHA256 is the release's provenance digest, "" for none.
	ProvenanceSHA256 string
}

// Verify runs the device's transparency check on p, in order: the
// checkpoint against the policy (VerifyCheckpoint); consistency with held,
// the checkpoint the device holds (nil or of another origin: none); the
// entry, parsed strictly, describing r; its inclusion at p.Index under the
// checkpoint. It returns the verified checkpoint, which the device stores
// when (and only when) the install it checked commits.
func (p *Proof) Verify(pol Policy, held *Checkpoint, r Release) (*Checkpoint, error) {
	cp, err := VerifyCheckpoint(p.Checkpoint, pol)
	if err != nil {
		return nil, err
	}
	if held != nil && held.Origin != cp.Origin {
		held = nil // a new log (its key rotated through the root): a new view
	}
	var proof tlog.TreeProof
	have := false
	if held != nil {
		for _, c := range p.Consistency {
			if c.Size == held.Size {
				proof, have = c.Hashes, true
			}
		}
	}
	if err := checkAdvance(held, cp, proof, have, p.offline); err != nil {
		return nil, err
	}
	e, err := ParseEntry(p.Entry)
	if err != nil {
		return nil, fmt.Errorf("%w: the entry at index %d: %w", ErrInclusion, p.Index, err)
	}
	if e.Product != r.Product || e.Version != r.Version || e.TargetSHA256 != r.TargetSHA256 || e.ProvenanceSHA256 != r.ProvenanceSHA256 {
		return nil, fmt.Errorf("%w: release %s@%s is not in the transparency log (the entry at index %d is for %s@%s, target digest %s, provenance %q; this release's target digest is %s, provenance %q)",
			ErrNotLogged, r.Product, r.Version, p.Index, e.Product, e.Version, e.TargetSHA256, e.ProvenanceSHA256, r.TargetSHA256, r.ProvenanceSHA256)
	}
	if p.Index >= cp.Size {
		return nil, fmt.Errorf("%w: release %s@%s is not in the transparency log (index %d is beyond the checkpoint's %d entries)",
			ErrNotLogged, r.Product, r.Version, p.Index, cp.Size)
	}
	if err := tlog.CheckRecord(p.Inclusion, int64(cp.Size), cp.Hash, int64(p.Index), tlog.RecordHash(p.Entry)); err != nil {
		return nil, fmt.Errorf("%w: the entry of %s@%s at index %d is not in the tree of size %d: %v", ErrInclusion, r.Product, r.Version, p.Index, cp.Size, err)
	}
	return cp, nil
}
