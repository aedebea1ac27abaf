package verify

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/payload"
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

// Payload is an opened payload stream of a checked target. Its bytes are
// untrusted until CopyPayload returned nil.
type Payload struct {
	t  *Target
	rc io.ReadCloser
	bs *BundleSource // nil unless the source is a bundle
}

// Close closes the stream.
func (p *Payload) Close() error { return p.rc.Close() }

// OpenPayload opens the payload of t from its session's source, under its
// consistent-snapshot name when the root asks for it (TUF 5.7.3). A bundle
// must carry exactly the signed length. Failures are *Error.
func OpenPayload(ctx context.Context, t *Target) (*Payload, error) {
	s := t.session
	prefix := ""
	if root := s.client.Trusted().Root; root != nil && root.Signed.ConsistentSnapshot {
		for _, alg := range []string{"sha256", "sha512"} {
			if h, ok := t.File.Hashes[alg]; ok {
				prefix = hex.EncodeToString(h)
				break
			}
		}
	}
	p := &Payload{t: t}
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

// CopyPayload runs the payload stage: it streams p into dst (the installed
// bytes: decompressed when the release says so) while checking the length
// and every listed digest of the transport bytes and the installed image's
// length and digest, then reads the source to its end: a bundle's trailer
// (magic, length, payload digest) must be right and nothing may follow it.
// Memory is constant. On any error the bytes written to dst are untrusted.
// Failures are *Error: CheckFormat for a bundle's framing, CheckPayload for
// everything else (errors of dst are wrapped unchanged, for the caller to
// classify).
func CopyPayload(dst io.Writer, p *Payload) (payload.Result, error) {
	res, err := payload.Copy(dst, p.rc, p.t.Expect())
	if err != nil {
		return res, classify(err)
	}
	if err := expectEOF(p.rc); err != nil {
		return res, classify(err)
	}
	if p.bs != nil {
		if want := p.t.File.Hashes["sha256"]; len(want) > 0 {
			got, ok := p.bs.br.TrailerDigest()
			if !ok || subtle.ConstantTimeCompare(got, want) != 1 {
				return res, fail(CheckFormat, fmt.Errorf("bundle: the trailer's payload SHA-256 does not match the payload; the trailer is damaged: %w", bundle.ErrTrailer))
			}
		}
	}
	return res, nil
}

// MaxTrailingRead bounds what expectEOF reads.
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
