package verify

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
)

// Expect converts a checked target into what the payload stage verifies.
func (t *Target) Expect() payload.Expect {
	e := payload.Expect{
		Length: t.File.Length, Hashes: map[string][]byte{}, Compression: string(t.Release.Install.Compression),
		InstalledLength: t.Release.Installed.Length, InstalledSHA256: t.Release.Installed.SHA256[:],
	}
	for alg, h := range t.File.Hashes {
		e.Hashes[alg] = []byte(h)
	}
	return e
}

// Indexed converts a checked schema 2 target into what the payload stage
// verifies; ok is false for a schema 1 target.
func (t *Target) Indexed() (e payload.Indexed, ok bool) {
	return IndexedOf(t.Release, t.File.Length)
}

// IndexedOf converts verified schema 2 release metadata, whose payload is
// length bytes, into what the payload stage and the boot check verify; ok
// is false for schema 1.
func IndexedOf(m *release.Metadata, length int64) (e payload.Indexed, ok bool) {
	x := m.Index
	if x == nil {
		return e, false
	}
	e = payload.Indexed{Length: length, InstalledLength: m.Installed.Length, Salt: x.Salt, Root: x.Root[:],
		TreeLength: x.TreeLength, FrameSize: x.FrameSize, Frames: x.Frames}
	if x.Frames > 0 {
		e.FrameTable = x.FrameTable[:]
	}
	return e, true
}

// Payload is an opened payload stream of a checked target. Its bytes are
// untrusted until CopyPayload returned nil.
type Payload struct {
	t     *Target
	rc    io.ReadCloser
	bs    *BundleSource  // nil unless the source is a bundle
	delta *release.Delta // the signed delta a delta bundle carries
}

// Delta returns the signed delta a delta bundle carries (nil for a whole
// payload).
func (p *Payload) Delta() *release.Delta { return p.delta }

// Target returns the checked target whose payload this is.
func (p *Payload) Target() *Target { return p.t }

// Close closes the stream.
func (p *Payload) Close() error { return p.rc.Close() }

// hashPrefix is the consistent-snapshot prefix of t's file name when the
// root asks for it (TUF 5.7.3), else "".
func (t *Target) hashPrefix() string {
	if root := t.session.client.Trusted().Root; root != nil && root.Signed.ConsistentSnapshot {
		for _, alg := range []string{"sha256", "sha512"} {
			if h, ok := t.File.Hashes[alg]; ok {
				return hex.EncodeToString(h)
			}
		}
	}
	return ""
}

// OpenPayload opens the payload of t from its session's source, under its
// consistent-snapshot name when the root asks for it (TUF 5.7.3). A bundle
// must carry exactly the signed length. Failures are *Error.
func OpenPayload(ctx context.Context, t *Target) (*Payload, error) {
	s := t.session
	prefix := t.hashPrefix()
	p := &Payload{t: t}
	if bs, ok := s.src.(*BundleSource); ok && bs.DeltaFrom() != "" {
		// A delta bundle: its payload is the signed delta's two streams;
		// the bundle reader checks the trailer's digest itself.
		from := bs.DeltaFrom()
		d := t.Release.DeltaFrom(from)
		if d == nil {
			return nil, fail(CheckRelease, fmt.Errorf("%w: the bundle is a delta from %s, but release %s signs deltas from %s only", ErrNoDelta, from, t.Release.Version, deltaBases(t.Release)))
		}
		if n := bs.PayloadLength(); n != d.Length() {
			return nil, fail(CheckPayload, fmt.Errorf("%w: the bundle carries %d payload bytes, the signed delta from %s is %d bytes", payload.ErrLength, n, from, d.Length()))
		}
		// A delta rebuilds the release from the base only: the running
		// version is the base (a fact left unstated skips the check, as
		// the downgrade check it belongs with).
		if t.facts.States(release.CheckDowngrade) {
			running := "no release"
			if cur := t.facts.Device.Current; cur != nil {
				running = cur.String()
			}
			if running != from {
				return nil, fail(CheckPolicy, fmt.Errorf("%w: the bundle is a delta from %s, this device runs %s: install the whole release's bundle", ErrDeltaBase, from, running))
			}
		}
		p := &Payload{t: t, bs: bs, delta: d}
		rc, err := s.src.OpenTarget(ctx, t.Path, prefix)
		if err != nil {
			return nil, fail(CheckPayload, fmt.Errorf("failed to open payload: %w", err))
		}
		p.rc = rc
		return p, nil
	}
	if bs, ok := s.src.(*BundleSource); ok {
		if n := bs.PayloadLength(); n != t.File.Length {
			return nil, fail(CheckPayload, fmt.Errorf("%w: the bundle carries %d payload bytes, the signed target is %d bytes", payload.ErrLength, n, t.File.Length))
		}
		if len(t.File.Hashes["sha256"]) > 0 {
			// The payload is checked against the signed sha256; the
			// trailer's copy is compared with it after the payload
			// passed, instead of hashing the payload twice.
			bs.br.SkipPayloadDigest()
		}
		p.bs = bs
	}
	rc, err := s.src.OpenTarget(ctx, t.Path, prefix)
	if err != nil {
		return nil, fail(CheckPayload, fmt.Errorf("failed to open payload: %w", err))
	}
	p.rc = rc
	return p, nil
}

// CopyPayload runs the payload stage without a slot (`airlock verify`):
// it streams p, verifying it as InstallPayload does, and writes the
// installed bytes to dst (a progress display, or io.Discard). A schema 2
// payload's hash tree is kept in a temporary file meanwhile, so memory
// stays constant. Failures are as InstallPayload's.
func CopyPayload(dst io.Writer, p *Payload) (payload.Result, error) {
	e, ok := p.t.Indexed()
	if !ok {
		res, err := payload.Copy(dst, p.rc, p.t.Expect())
		if err != nil {
			return res, classify(err)
		}
		return res, p.finish()
	}
	if p.delta != nil {
		// Without the base release there is nothing to apply the delta
		// to: its headers and every window are checked against the
		// signed digests; the blocks are checked by the device.
		res, err := payload.CheckDelta(p.rc, deltaStreams(p.delta), -1, e.TreeLength, -1, e.InstalledLength)
		if err != nil {
			return res, classify(err)
		}
		return res, p.finish()
	}
	tmp, err := os.CreateTemp("", "airlock-verify-tree-*")
	if err != nil {
		return payload.Result{}, fail(CheckPayload, fmt.Errorf("failed to create a file for the hash tree: %w", err))
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	return p.install(treeFile{f: tmp, hashOff: e.HashOffset()}, e, payload.CopyOptions{Progress: dst})
}

// InstallPayload runs the payload stage of a schema 2 target into slot,
// the inactive slot: every block is verified against the signed tree before
// it is written (payload.CopyIndexed; the tree goes to the slot after the
// image), then the source is read to its end: a bundle's trailer (magic,
// length, payload digest) must be right and nothing may follow it. Memory
// is constant. On any error the slot is untrusted. Failures are *Error:
// CheckFormat for a bundle's framing, CheckPayload for everything else
// (errors of the slot are wrapped unchanged, for the caller to classify).
// A schema 1 payload, verified only at its end, is streamed with
// CopyPayload instead.
func InstallPayload(slot payload.Slot, p *Payload, o payload.CopyOptions) (payload.Result, error) {
	e, ok := p.t.Indexed()
	if !ok {
		return payload.Result{}, fail(CheckPayload, errors.New("internal error: a schema 1 payload is streamed with CopyPayload"))
	}
	return p.install(slot, e, o)
}

func (p *Payload) install(slot payload.Slot, e payload.Indexed, o payload.CopyOptions) (payload.Result, error) {
	res, err := payload.CopyIndexed(slot, p.rc, e, o)
	if err != nil {
		return res, classify(err)
	}
	return res, p.finish()
}

// finish reads the source to its end and checks a bundle's trailer digest
// against the signed target digest (a comparison: the payload itself was
// verified already).
func (p *Payload) finish() error {
	if err := expectEOF(p.rc); err != nil {
		return classify(err)
	}
	if p.bs != nil && p.delta == nil {
		if want := p.t.File.Hashes["sha256"]; len(want) > 0 {
			got, ok := p.bs.br.TrailerDigest()
			if !ok || subtle.ConstantTimeCompare(got, want) != 1 {
				return fail(CheckFormat, fmt.Errorf("bundle: the trailer's payload SHA-256 does not match the payload; the trailer is damaged: %w", bundle.ErrTrailer))
			}
		}
	}
	return nil
}

// treeFile is the slot of a verification without one: image blocks are
// dropped (after CopyIndexed verified them), the tree is kept in a file.
type treeFile struct {
	f       *os.File
	hashOff int64
}

func (t treeFile) WriteAt(b []byte, off int64) (int, error) {
	if off < t.hashOff {
		return len(b), nil
	}
	return t.f.WriteAt(b, off-t.hashOff)
}

func (t treeFile) ReadAt(b []byte, off int64) (int, error) {
	if off < t.hashOff {
		return 0, fmt.Errorf("internal error: image read at %d from a verification without a slot", off)
	}
	return t.f.ReadAt(b, off-t.hashOff)
}

// maxTrailingRead bounds what expectEOF reads.
const maxTrailingRead = 1

// expectEOF checks that r has nothing left (a bundle checks its trailer on
// this read).
func expectEOF(r io.Reader) error {
	var b [maxTrailingRead]byte
	n, err := io.ReadFull(r, b[:])
	switch {
	case n > 0:
		return fmt.Errorf("%w: the stream is longer than the signed length", payload.ErrLength)
	case err == io.EOF:
		return nil
	default:
		return err
	}
}

func classify(err error) error {
	if isFormat(err) {
		return fail(CheckFormat, err)
	}
	return fail(CheckPayload, err)
}
