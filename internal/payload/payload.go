// Package payload streams a firmware payload from an untrusted source to its
// destination (an inactive slot, or nowhere when only verifying) while
// checking it against what signed metadata says about it.
//
// Threat model: every byte of the source is attacker-controlled until the
// whole stream has been hashed. The reader is length-limited to the declared
// transport length (endless-data attack), hashed with every hash the TUF
// target lists that we support, decompressed when the release says so with a
// bounded decoder window (decompression bomb), and the decompressed bytes are
// length-limited and hashed against the installed digest. Bytes written to
// dst before an error are untrusted: the caller must treat the destination as
// invalid unless Copy returns nil. Memory use is constant in the image size.
package payload

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Limits.
const (
	// BufferSize is the copy buffer size.
	BufferSize = 1 << 20
	// MaxZstdWindow bounds the zstd decoder window (and so its memory).
	MaxZstdWindow = 8 << 20
)

// Errors; every failure wraps one of them.
var (
	ErrLength          = errors.New("payload length mismatch")
	ErrHash            = errors.New("payload hash mismatch")
	ErrInstalledLength = errors.New("installed image length mismatch")
	ErrInstalledHash   = errors.New("installed image hash mismatch")
	ErrNoHash          = errors.New("no supported hash for payload")
	ErrCompression     = errors.New("payload decompression failed")
)

// Expect is what the signed metadata says about a payload.
type Expect struct {
	// Length and Hashes describe the transport file (the TUF target):
	// hash algorithm name ("sha256", "sha512") to digest.
	Length int64
	Hashes map[string][]byte
	// Compression is "" or "none" (installed == transport) or "zstd".
	Compression string
	// InstalledLength and InstalledSHA256 describe the bytes that land in
	// the slot.
	InstalledLength int64
	InstalledSHA256 []byte
}

// Result reports what was checked.
type Result struct {
	TransportBytes int64
	InstalledBytes int64
}

// Copy streams src into dst and verifies e. It reads at most e.Length+1
// bytes from src. dst receives the installed (decompressed) bytes.
func Copy(dst io.Writer, src io.Reader, e Expect) (Result, error) {
	var res Result
	if e.Length < 0 || e.InstalledLength < 0 {
		return res, fmt.Errorf("%w: negative length in metadata", ErrLength)
	}
	hashers := map[string]hash.Hash{}
	for alg := range e.Hashes {
		switch alg {
		case "sha256":
			hashers[alg] = sha256.New()
		case "sha512":
			hashers[alg] = sha512.New()
		default:
			return res, fmt.Errorf("%w: unknown hash algorithm %q (every listed hash must be verified)", ErrNoHash, alg)
		}
	}
	if len(hashers) == 0 {
		return res, ErrNoHash
	}
	if len(e.InstalledSHA256) != sha256.Size {
		return res, fmt.Errorf("%w: installed sha256 missing from metadata", ErrNoHash)
	}
	tw := make([]io.Writer, 0, len(hashers))
	for _, h := range hashers {
		tw = append(tw, h)
	}
	// Transport: limit to Length+1 so that an over-long stream is detected
	// without reading it all.
	counted := &countingReader{r: io.LimitReader(src, e.Length+1)}
	transport := io.TeeReader(counted, io.MultiWriter(tw...))

	// Uncompressed, the installed bytes are the transport bytes: one SHA-256
	// pass serves both checks when the target lists sha256.
	var ih hash.Hash
	iw := &limitedWriter{w: dst, n: e.InstalledLength}
	if sameBytes := e.Compression == "" || e.Compression == "none"; !sameBytes || hashers["sha256"] == nil {
		ih = sha256.New()
		iw.w = io.MultiWriter(dst, ih)
	}
	buf := make([]byte, BufferSize)

	switch e.Compression {
	case "", "none":
		if e.InstalledLength != e.Length {
			return res, fmt.Errorf("%w: uncompressed release declares installed length %d but transport length %d", ErrInstalledLength, e.InstalledLength, e.Length)
		}
		if rf, ok := dst.(io.ReaderFrom); ok && ih == nil {
			// The destination reads into its own buffers (an asynchronous
			// slot writer): no intermediate copy. Exactly the signed
			// length is handed over; a byte more is endless data.
			n, err := rf.ReadFrom(io.LimitReader(transport, e.Length))
			iw.written = n
			if err != nil {
				return res, err
			}
			var one [1]byte
			switch m, err := io.ReadFull(transport, one[:]); {
			case m > 0:
				return res, tooLong(e.Length)
			case err != io.EOF:
				return res, err // the source failed at its end (a bundle's trailer)
			}
		} else if _, err := io.CopyBuffer(iw, transport, buf); err != nil {
			if counted.n > e.Length {
				return res, tooLong(e.Length)
			}
			return res, err
		}
	case "zstd":
		dec, err := zstd.NewReader(transport,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxZstdWindow))
		if err != nil {
			return res, fmt.Errorf("%w: %v", ErrCompression, err)
		}
		_, err = io.CopyBuffer(iw, dec, buf)
		dec.Close()
		if err != nil {
			if isWriteErr(err) {
				return res, err
			}
			if counted.err != nil {
				// The source failed (a deadline, a dropped connection, a
				// bundle's framing): report that, not its effect on the
				// decoder.
				return res, counted.err
			}
			// The signed transport digest is the authority on unverified
			// bytes: read the rest of the signed length and judge the
			// payload before repeating the decoder's complaint.
			if _, rerr := io.CopyBuffer(io.Discard, transport, buf); rerr != nil {
				return res, rerr
			}
			switch {
			case counted.n > e.Length:
				return res, tooLong(e.Length)
			case counted.n < e.Length:
				return res, tooShort(counted.n, e.Length)
			case !hashesMatch(hashers, e.Hashes):
				return res, fmt.Errorf("%w: the payload does not match the signed target (tampered or corrupted payload; it also failed to decompress)", ErrHash)
			}
			// The bytes are the signed ones: the release itself is broken.
			if errors.Is(err, ErrInstalledLength) {
				return res, err
			}
			return res, fmt.Errorf("%w: the signed payload does not decompress (a broken release): %v", ErrCompression, err)
		}
		// Drain trailing transport bytes (they are hashed and counted).
		if _, err := io.CopyBuffer(io.Discard, transport, buf); err != nil {
			return res, err
		}
	default:
		return res, fmt.Errorf("%w: unsupported compression %q", ErrCompression, e.Compression)
	}
	res.TransportBytes = counted.n
	res.InstalledBytes = iw.written
	if counted.n != e.Length {
		if counted.n > e.Length {
			return res, tooLong(e.Length)
		}
		return res, tooShort(counted.n, e.Length)
	}
	if !hashesMatch(hashers, e.Hashes) {
		return res, fmt.Errorf("%w: the payload does not match the signed target (tampered or corrupted payload)", ErrHash)
	}
	if iw.written != e.InstalledLength {
		return res, fmt.Errorf("%w: got %d bytes, signed installed length is %d", ErrInstalledLength, iw.written, e.InstalledLength)
	}
	installedSum := e.Hashes["sha256"]
	if ih != nil {
		installedSum = ih.Sum(nil)
	}
	if subtle.ConstantTimeCompare(installedSum, e.InstalledSHA256) != 1 {
		return res, fmt.Errorf("%w: sha256 of the installed image does not match the release metadata", ErrInstalledHash)
	}
	return res, nil
}

func tooLong(signed int64) error {
	return fmt.Errorf("%w: the payload does not match the signed target: the stream is longer than the %d bytes signed", ErrLength, signed)
}

func tooShort(got, signed int64) error {
	return fmt.Errorf("%w: the payload does not match the signed target: got %d bytes, signed length is %d (truncated)", ErrLength, got, signed)
}

// HashInstalled hashes the first length bytes of r (a slot may be larger
// than its image) and checks them against the signed SHA-256: the boot-time
// re-check of a slot.
func HashInstalled(r io.Reader, length int64, sum []byte) error {
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(r, length), make([]byte, BufferSize))
	if err != nil {
		return err
	}
	if n != length {
		return fmt.Errorf("%w: slot holds %d bytes, signed installed length is %d", ErrInstalledLength, n, length)
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), sum) != 1 {
		return fmt.Errorf("%w: sha256 of the slot does not match the signed release", ErrInstalledHash)
	}
	return nil
}

// DecodeHex decodes a lowercase hex digest.
func DecodeHex(s string) ([]byte, error) { return hex.DecodeString(s) }

// countingReader counts the bytes read and records the first error other
// than io.EOF.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
	eof bool // r returned io.EOF
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err == io.EOF {
		c.eof = true
	} else if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

type writeError struct{ err error }

func (w writeError) Error() string { return "write failed: " + w.err.Error() }
func (w writeError) Unwrap() error { return w.err }

func isWriteErr(err error) bool {
	_, ok := errors.AsType[writeError](err)
	return ok
}

// limitedWriter fails once more than n bytes would be written.
type limitedWriter struct {
	w       io.Writer
	n       int64
	written int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n-l.written {
		return 0, fmt.Errorf("%w: installed image is longer than the %d bytes signed", ErrInstalledLength, l.n)
	}
	n, err := l.w.Write(p)
	l.written += int64(n)
	if err != nil {
		return n, writeError{err}
	}
	return n, nil
}

// hashesMatch reports whether every computed hash equals its signed value.
func hashesMatch(hashers map[string]hash.Hash, want map[string][]byte) bool {
	for alg, h := range hashers {
		if subtle.ConstantTimeCompare(h.Sum(nil), want[alg]) != 1 {
			return false
		}
	}
	return true
}
