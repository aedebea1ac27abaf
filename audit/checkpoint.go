package audit

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Limits on checkpoints.
const (
	// MaxCheckpointSize bounds one signed checkpoint note (before base64).
	MaxCheckpointSize = 1024
	// MaxCheckpoints bounds the number of checkpoints in one log. At the
	// default CheckpointEvery that is ten million entries.
	MaxCheckpoints = 100_000
)

// DefaultOrigin is the origin line of checkpoints (and the signed-note key
// name) when Options.Origin is empty.
const DefaultOrigin = "airlock-audit"

// Checkpoint is a signed tree head: the log had Size entries whose Merkle
// tree root hash is Root, as of Time.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   [HashSize]byte
	Time   time.Time
}

// text returns the checkpoint body (C2SP tlog-checkpoint with a "time"
// extension line).
func (c *Checkpoint) text() string {
	return fmt.Sprintf("%s\n%d\n%s\ntime %s\n", c.Origin, c.Size,
		base64.StdEncoding.EncodeToString(c.Root[:]), c.Time.UTC().Format(timeFormat))
}

// parseCheckpointText parses the body of a checkpoint note strictly.
func parseCheckpointText(text string) (Checkpoint, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 5 || lines[4] != "" {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint does not have 4 lines", ErrMalformed)
	}
	var c Checkpoint
	c.Origin = lines[0]
	if !validOrigin(c.Origin) {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint origin %q", ErrMalformed, c.Origin)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint size %q", ErrMalformed, lines[1])
	}
	c.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	// The decoder skips CR and LF: compare with the one encoding.
	if err != nil || len(root) != HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint root hash %q", ErrMalformed, lines[2])
	}
	copy(c.Root[:], root)
	ts, ok := strings.CutPrefix(lines[3], "time ")
	if !ok {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint has no time line", ErrMalformed)
	}
	if c.Time, err = time.Parse(timeFormat, ts); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint time %q", ErrMalformed, ts)
	}
	c.Time = c.Time.UTC()
	if c.text() != text {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint is not in canonical form", ErrMalformed)
	}
	return c, nil
}

// validOrigin reports whether s can be both the origin line and the
// signed-note key name.
func validOrigin(s string) bool {
	if s == "" || len(s) > MaxFieldLen || !utf8Printable(s) {
		return false
	}
	return !strings.ContainsAny(s, " +\n")
}

func utf8Printable(s string) bool { return checkText("", s, len(s)) == nil }

// noteSigner adapts an Ed25519 crypto.Signer (file or HSM) to note.Signer.
type noteSigner struct {
	name   string
	hash   uint32
	signer crypto.Signer
}

func newNoteSigner(name string, s crypto.Signer) (*noteSigner, error) {
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: checkpoint key must be Ed25519, not %T", ErrUnsupportedKey, s.Public())
	}
	v, err := newNoteVerifier(name, pub)
	if err != nil {
		return nil, err
	}
	return &noteSigner{name: name, hash: v.KeyHash(), signer: s}, nil
}

func (s *noteSigner) Name() string    { return s.name }
func (s *noteSigner) KeyHash() uint32 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) {
	return s.signer.Sign(rand.Reader, msg, crypto.Hash(0))
}

func newNoteVerifier(name string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return nil, fmt.Errorf("failed to make checkpoint verifier: %w", err)
	}
	return note.NewVerifier(vkey)
}

// keyVerifiers knows one public key under whatever name a note uses; the
// origin is then required to equal that name.
type keyVerifiers struct{ pub ed25519.PublicKey }

func (k keyVerifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	if !validOrigin(name) {
		return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
	}
	v, err := newNoteVerifier(name, k.pub)
	if err != nil || v.KeyHash() != hash {
		return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
	}
	return v, nil
}

// signCheckpoint returns the signed note for c.
func signCheckpoint(c Checkpoint, s *noteSigner) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: c.text()}, s)
	if err != nil {
		return nil, fmt.Errorf("failed to sign checkpoint: %w", err)
	}
	return msg, nil
}

// OpenCheckpoint verifies a signed checkpoint note with pub and parses it.
// The note must carry exactly one signature, by pub, under the key name that
// equals the checkpoint origin, and be byte-for-byte in canonical form.
// Failures wrap [ErrCheckpointSignature] or [ErrMalformed].
func OpenCheckpoint(msg []byte, pub ed25519.PublicKey) (Checkpoint, error) {
	if len(msg) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint is larger than %d bytes", ErrMalformed, MaxCheckpointSize)
	}
	n, err := note.Open(msg, keyVerifiers{pub})
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return Checkpoint{}, fmt.Errorf("%w: not signed by the log's key (forged, or verifying with the wrong key)", ErrCheckpointSignature)
		case errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("%w: signature does not match the checkpoint (edited)", ErrCheckpointSignature)
		}
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 0 {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint must carry exactly one signature", ErrMalformed)
	}
	sig := n.Sigs[0]
	if want := n.Text + "\n— " + sig.Name + " " + sig.Base64 + "\n"; !bytes.Equal(msg, []byte(want)) {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint note is not in canonical form", ErrMalformed)
	}
	c, err := parseCheckpointText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != sig.Name {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint origin %q differs from its signer name %q", ErrMalformed, c.Origin, sig.Name)
	}
	return c, nil
}
