package bundle

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Reader reads a bundle from a stream: the metadata section first, fully
// checked, then the payload.
type Reader struct {
	m Metadata
	p payloadReader
}

// NewReader reads and checks the magic, the format version and the whole
// metadata section of the bundle in r, within lim, and verifies the header
// digest. It returns before any payload byte is consumed: it never reads
// ahead of the header (wrap r in a bufio.Reader for speed if r is unbuffered;
// that buffer may of course read ahead).
//
// Errors wrap ErrMagic, ErrVersion, ErrLimit, ErrTruncated, ErrMalformed or
// ErrHeaderDigest, or are the error of r. Nothing in the metadata is
// authenticated: pass it to the TUF client.
func NewReader(r io.Reader, lim Limits) (*Reader, error) {
	l, err := lim.resolve()
	if err != nil {
		return nil, err
	}
	h := &headerReader{r: r, h: sha256.New(), lim: l}
	m, err := h.readHeader()
	if err != nil {
		return nil, err
	}
	return &Reader{
		m: *m,
		p: payloadReader{r: r, h: sha256.New(), length: m.PayloadLength, remaining: m.PayloadLength},
	}, nil
}

// Metadata returns the metadata section. It is owned by the Reader and must
// not be modified. It is not authenticated: verify it with the TUF client.
func (r *Reader) Metadata() *Metadata { return &r.m }

// Payload returns a reader over exactly Metadata().PayloadLength payload
// bytes. Reading past the end reads and checks the trailer (magic, payload
// length, payload SHA-256) and that nothing follows it, and returns io.EOF
// only if all is well. A bundle that ends early yields an error wrapping
// ErrTruncated, never a silent short read; a bad trailer or trailing bytes
// yield an error wrapping ErrTrailer. Errors are sticky.
//
// Every call returns the same reader. The trailer digest only detects
// damage; the device must check the payload against its TUF target hashes.
func (r *Reader) Payload() io.Reader { return &r.p }

// Inspect reads a whole bundle with the default limits, payload and trailer
// included, discarding the payload, and returns its metadata if the bundle is
// well-formed. It is a verify-only helper for tooling; it authenticates
// nothing.
func Inspect(r io.Reader) (*Metadata, error) {
	br, err := NewReader(r, Limits{})
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, br.Payload()); err != nil {
		return nil, err
	}
	return br.Metadata(), nil
}

// headerReader reads header fields exactly (no read-ahead), hashing them and
// enforcing the header size limit before every read.
type headerReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64 // header bytes read so far
	lim limits
}

// reserve checks that n more header bytes fit in the header limit.
func (h *headerReader) reserve(n int64, what string) error {
	if n > h.lim.header.v-h.n {
		return fmt.Errorf("bundle: header exceeds limit %s at %s: %w", h.lim.header, what, ErrLimit)
	}
	h.n += n
	return nil
}

func truncated(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("bundle: input ends inside %s: %w", what, ErrTruncated)
	}
	return fmt.Errorf("bundle: failed to read %s: %w", what, err)
}

// full reads exactly len(b) bytes into b.
func (h *headerReader) full(b []byte, what string) error {
	if err := h.reserve(int64(len(b)), what); err != nil {
		return err
	}
	if _, err := io.ReadFull(h.r, b); err != nil {
		return truncated(what, err)
	}
	h.h.Write(b)
	return nil
}

func (h *headerReader) u8(what string) (int, error) {
	var b [1]byte
	err := h.full(b[:], what)
	return int(b[0]), err
}

func (h *headerReader) u16(what string) (int, error) {
	var b [2]byte
	err := h.full(b[:], what)
	return int(binary.BigEndian.Uint16(b[:])), err
}

// readChunk is the allocation step of blob: a claimed length is only backed
// by memory as fast as the input actually delivers bytes.
const readChunk = 64 << 10

// blob reads a uint32 length and that many bytes, after checking the length
// against the metadata limit. Memory grows with the bytes actually read, so
// a lying length on a short input costs little.
func (h *headerReader) blob(what string) ([]byte, error) {
	var lb [4]byte
	if err := h.full(lb[:], what+" length"); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(lb[:]))
	if err := checkBlob(what, n, h.lim); err != nil {
		return nil, err
	}
	if err := h.reserve(n, what); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, min(n, readChunk))
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(n, 2*int64(cap(buf))))
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(h.r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, truncated(what, err)
		}
	}
	h.h.Write(buf)
	return buf, nil
}

func (h *headerReader) readHeader() (*Metadata, error) {
	var magic [len(Magic)]byte
	if err := h.full(magic[:], "magic"); err != nil {
		return nil, err
	}
	if string(magic[:]) != Magic {
		return nil, fmt.Errorf("bundle: magic is %q, want %q: %w", magic[:], Magic, ErrMagic)
	}
	v, err := h.u16("format version")
	if err != nil {
		return nil, err
	}
	if v != FormatVersion && v != FormatVersionDelta && v != FormatVersionLog {
		return nil, fmt.Errorf("bundle: format version is %d, this reader supports %d, %d and %d: %w", v, FormatVersion, FormatVersionDelta, FormatVersionLog, ErrVersion)
	}

	m := new(Metadata)
	nroots, err := h.u8("root chain count")
	if err != nil {
		return nil, err
	}
	if int64(nroots) > h.lim.roots.v {
		return nil, fmt.Errorf("bundle: root chain has %d entries, limit is %s: %w", nroots, h.lim.roots, ErrLimit)
	}
	if nroots > 0 {
		m.RootChain = make([][]byte, nroots)
	}
	for i := range m.RootChain {
		if m.RootChain[i], err = h.blob(fmt.Sprintf("root chain entry %d", i)); err != nil {
			return nil, err
		}
	}
	if m.Timestamp, err = h.blob("timestamp"); err != nil {
		return nil, err
	}
	if m.Snapshot, err = h.blob("snapshot"); err != nil {
		return nil, err
	}
	if m.Targets, err = h.blob("targets"); err != nil {
		return nil, err
	}

	ndel, err := h.u8("delegated role count")
	if err != nil {
		return nil, err
	}
	if int64(ndel) > h.lim.delegations.v {
		return nil, fmt.Errorf("bundle: %d delegated roles, limit is %s: %w", ndel, h.lim.delegations, ErrLimit)
	}
	if ndel > 0 {
		m.Delegated = make([]Role, ndel)
	}
	for i := range m.Delegated {
		n, err := h.u8(fmt.Sprintf("delegated role %d name length", i))
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("bundle: delegated role %d name is empty: %w", i, ErrMalformed)
		}
		if n > MaxRoleNameLen {
			return nil, fmt.Errorf("bundle: delegated role %d name is %d bytes, limit is %d (MaxRoleNameLen): %w", i, n, MaxRoleNameLen, ErrLimit)
		}
		name := make([]byte, n)
		if err := h.full(name, fmt.Sprintf("delegated role %d name", i)); err != nil {
			return nil, err
		}
		m.Delegated[i].Name = string(name)
		if m.Delegated[i].Data, err = h.blob(fmt.Sprintf("delegated role %d (%q)", i, name)); err != nil {
			return nil, err
		}
	}

	n, err := h.u16("target path length")
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("bundle: target path is empty: %w", ErrMalformed)
	}
	if n > MaxTargetPathLen {
		return nil, fmt.Errorf("bundle: target path is %d bytes, limit is %d (MaxTargetPathLen): %w", n, MaxTargetPathLen, ErrLimit)
	}
	path := make([]byte, n)
	if err := h.full(path, "target path"); err != nil {
		return nil, err
	}
	m.TargetPath = string(path)
	if v == FormatVersionDelta || v == FormatVersionLog {
		n, err := h.u8("delta base version length")
		if err != nil {
			return nil, err
		}
		if n == 0 && v == FormatVersionDelta {
			return nil, fmt.Errorf("bundle: a delta bundle's base version is empty: %w", ErrMalformed)
		}
		if n > MaxDeltaFromLen {
			return nil, fmt.Errorf("bundle: delta base version is %d bytes, limit is %d (MaxDeltaFromLen): %w", n, MaxDeltaFromLen, ErrLimit)
		}
		from := make([]byte, n)
		if err := h.full(from, "delta base version"); err != nil {
			return nil, err
		}
		m.DeltaFrom = string(from)
	}
	if v == FormatVersionLog {
		if m.LogProof, err = h.blob("log proof"); err != nil {
			return nil, err
		}
		if len(m.LogProof) > MaxLogProofSize {
			return nil, fmt.Errorf("bundle: log proof is %d bytes, limit is %d (MaxLogProofSize): %w", len(m.LogProof), MaxLogProofSize, ErrLimit)
		}
	}

	var lb [8]byte
	if err := h.full(lb[:], "payload length"); err != nil {
		return nil, err
	}
	if pl := binary.BigEndian.Uint64(lb[:]); pl > uint64(h.lim.payload.v) {
		return nil, fmt.Errorf("%s: %w", h.lim.payloadTooLarge(pl), ErrLimit)
	}
	m.PayloadLength = int64(binary.BigEndian.Uint64(lb[:]))

	want := h.h.Sum(nil)
	var got [DigestSize]byte
	if err := h.full(got[:], "header digest"); err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return nil, fmt.Errorf("bundle: header SHA-256 does not match its digest; the bundle is damaged: %w", ErrHeaderDigest)
	}

	if err := m.validate(h.lim); err != nil {
		return nil, err
	}
	return m, nil
}

// SkipPayloadDigest tells the reader not to hash the payload for the
// trailer's SHA-256. Call it before reading the payload, and only when the
// caller verifies the payload itself against signed metadata (a device and
// `airlock verify` check the TUF target hashes, which are the real
// authentication): it saves one SHA-256 pass over the image. The trailer's
// magic and length and the end of input are still checked.
func (r *Reader) SkipPayloadDigest() { r.p.h = nil }

// TrailerDigest returns the payload SHA-256 that the trailer carries, once
// the payload was read to its end and the trailer passed its checks (ok is
// false before). With SkipPayloadDigest the caller compares it with the
// payload digest it verified itself, so that a damaged trailer is still
// refused without hashing the payload twice.
func (r *Reader) TrailerDigest() (sum []byte, ok bool) {
	if r.p.err != io.EOF {
		return nil, false
	}
	return append([]byte(nil), r.p.trailer...), true
}

// payloadReader streams the payload, hashing it, then checks the trailer.
type payloadReader struct {
	r         io.Reader
	h         hash.Hash
	length    int64
	remaining int64
	err       error  // sticky; io.EOF after a good trailer
	trailer   []byte // the trailer's payload SHA-256, once read
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if p.remaining == 0 {
		p.err = p.finish()
		return 0, p.err
	}
	if int64(len(b)) > p.remaining {
		b = b[:p.remaining]
	}
	n, err := p.r.Read(b)
	if n < 0 || n > len(b) {
		p.err = fmt.Errorf("bundle: underlying reader returned invalid count %d", n)
		return 0, p.err
	}
	if p.h != nil {
		p.h.Write(b[:n])
	}
	p.remaining -= int64(n)
	switch {
	case errors.Is(err, io.EOF):
		p.err = fmt.Errorf("bundle: input ends after %d of %d payload bytes: %w", p.length-p.remaining, p.length, ErrTruncated)
		if p.remaining == 0 {
			p.err = fmt.Errorf("bundle: input ends before the trailer: %w", ErrTruncated)
		}
		return n, p.err
	case err != nil:
		p.err = fmt.Errorf("bundle: failed to read payload: %w", err)
		return n, p.err
	}
	return n, nil
}

// finish reads and checks the trailer and that the input ends right after it.
func (p *payloadReader) finish() error {
	var t [TrailerSize]byte
	if _, err := io.ReadFull(p.r, t[:]); err != nil {
		return truncated("trailer", err)
	}
	if string(t[:len(TrailerMagic)]) != TrailerMagic {
		return fmt.Errorf("bundle: trailer magic is %q, want %q: %w", t[:len(TrailerMagic)], TrailerMagic, ErrTrailer)
	}
	if n := binary.BigEndian.Uint64(t[len(TrailerMagic):]); n != uint64(p.length) {
		return fmt.Errorf("bundle: trailer payload length is %d, header says %d: %w", n, p.length, ErrTrailer)
	}
	p.trailer = append([]byte(nil), t[len(TrailerMagic)+8:]...)
	if p.h != nil && subtle.ConstantTimeCompare(t[len(TrailerMagic)+8:], p.h.Sum(nil)) != 1 {
		return fmt.Errorf("bundle: payload SHA-256 does not match the trailer; the payload is damaged: %w", ErrTrailer)
	}
	var one [1]byte
	switch _, err := io.ReadFull(p.r, one[:]); {
	case err == nil:
		return fmt.Errorf("bundle: unexpected bytes after the trailer: %w", ErrTrailer)
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("bundle: failed to read after the trailer: %w", err)
	}
	return io.EOF
}
