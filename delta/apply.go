package delta

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Reader applies one delta stream.
type Reader struct {
	r       io.Reader
	h       *Header
	sum     [32]byte
	hlen    int
	applied bool
}

// NewReader reads and strictly parses the header of the delta stream r (and
// no byte past it), and computes its SHA-256. Before calling Apply, the
// caller compares HeaderSHA256 and HeaderLength with the values signed in
// the new release's metadata. Errors wrap ErrFormat (ErrLimit for a named
// limit) or the reading error.
func NewReader(r io.Reader) (*Reader, error) {
	h, sum, n, err := parseHeader(r)
	if err != nil {
		return nil, err
	}
	return &Reader{r: r, h: h, sum: sum, hlen: n}, nil
}

// HeaderSHA256 is the SHA-256 of the header's bytes.
func (r *Reader) HeaderSHA256() [32]byte { return r.sum }

// HeaderLength is the number of bytes of the header.
func (r *Reader) HeaderLength() int64 { return int64(r.hlen) }

// OldLength is the length of the old image the delta was made against.
func (r *Reader) OldLength() int64 { return r.h.OldLength }

// NewLength is the length of the image the delta rebuilds.
func (r *Reader) NewLength() int64 { return r.h.NewLength }

// NewBlocks is the number of blocks Apply emits.
func (r *Reader) NewBlocks() int64 { return Blocks(r.h.NewLength) }

// Header returns the parsed header (for statistics; do not modify it).
func (r *Reader) Header() *Header { return r.h }

// StreamLength is the number of bytes of the whole delta stream: the header
// and every window.
func (r *Reader) StreamLength() int64 {
	n := int64(r.hlen)
	for _, w := range r.h.Windows {
		n += int64(w.CompLen)
	}
	return n
}

// Apply rebuilds the new image from old (the image the delta was made
// against) and the rest of the stream, calling emit with runs of at most
// EmitBlocks blocks, strictly in order: first is the index of the run's
// first block, blocks a multiple of BlockSize bytes, the last block padded
// with zeros (the caller writes only up to NewLength). blocks is valid only
// during the call. The caller must verify every block against the new
// image's signed hash tree before writing it.
//
// Every window's bytes are checked against the header's SHA-256 before
// they are decompressed (ErrWindow); a stream that goes on after its last
// window fails with ErrTrailingData as soon as the last window has been read,
// before any of that window's blocks is emitted. An old image
// that cannot be read where the delta copies from fails with ErrOldImage.
// Apply may be called once.
func (r *Reader) Apply(ctx context.Context, old io.ReaderAt, emit func(first int64, blocks []byte) error) error {
	if r.applied {
		return errors.New("delta: Apply called twice on one Reader")
	}
	r.applied = true
	a := applier{r: r, old: old, emit: emit, ctx: ctx}
	defer a.close()
	// Buffers as large as this delta needs, at most the named limits.
	a.out = make([]byte, 0, min(EmitBlocks, max(r.NewBlocks(), 1))*BlockSize)
	var comp, raw, dict int64
	for i := range r.h.Windows {
		w := &r.h.Windows[i]
		comp = max(comp, int64(w.CompLen))
		if w.Method == MethodZstd {
			raw, dict = max(raw, int64(w.RawLen)), max(dict, w.DictLen())
		}
	}
	a.comp, a.data, a.dict = make([]byte, comp), make([]byte, 0, raw), make([]byte, 0, dict)
	if len(r.h.Windows) == 0 {
		if err := a.end(); err != nil {
			return err
		}
	}
	for _, op := range r.h.Ops {
		if err := a.op(op); err != nil {
			return err
		}
	}
	if err := a.flush(); err != nil {
		return err
	}
	if a.win != len(r.h.Windows) || len(a.raw) != 0 {
		// check() makes this impossible.
		panic("delta: internal error: windows left after the last operation")
	}
	return nil
}

// end checks that the stream ends after the last window.
func (a *applier) end() error {
	var b [1]byte
	switch n, err := io.ReadFull(a.r.r, b[:]); {
	case n != 0:
		return ErrTrailingData
	case err != io.EOF:
		return fmt.Errorf("failed to read the end of the delta: %w", err)
	}
	return nil
}

type applier struct {
	r    *Reader
	old  io.ReaderAt
	emit func(int64, []byte) error
	ctx  context.Context

	out  []byte // blocks not yet emitted
	next int64  // index of out's first block
	win  int    // next window to read
	raw  []byte // unused literal data of the current window
	comp []byte // compressed window buffer
	data []byte // decoded window buffer
	dict []byte // dictionary buffer
	dec  *zstd.Decoder
}

func (a *applier) close() {
	if a.dec != nil {
		a.dec.Close()
	}
}

func (a *applier) op(op Op) error {
	for left := int64(op.Blocks); left > 0; {
		room := int64(cap(a.out)-len(a.out)) / BlockSize
		if room == 0 {
			if err := a.flush(); err != nil {
				return err
			}
			continue
		}
		n := min(left, room)
		dst := a.out[len(a.out) : len(a.out)+int(n)*BlockSize]
		switch op.Kind {
		case OpCopy:
			from := int64(op.OldBlock) + int64(op.Blocks) - left
			if err := a.readOld(dst, from*BlockSize); err != nil {
				return err
			}
		case OpZero:
			clear(dst)
		case OpLiteral:
			if len(a.raw) == 0 {
				if err := a.nextWindow(); err != nil {
					return err
				}
			}
			n = min(n, int64(len(a.raw))/BlockSize)
			dst = dst[:n*BlockSize]
			copy(dst, a.raw)
			a.raw = a.raw[len(dst):]
		}
		a.out = a.out[:len(a.out)+len(dst)]
		left -= n
	}
	return nil
}

// readOld fills dst from the old image at off, zero-padding past the old
// image's stated length.
func (a *applier) readOld(dst []byte, off int64) error {
	n := min(int64(len(dst)), a.r.h.OldLength-off)
	if n > 0 {
		if m, err := a.old.ReadAt(dst[:n], off); int64(m) != n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: %d bytes at offset %d: %w", ErrOldImage, n, off, err)
		}
	}
	clear(dst[max(n, 0):])
	return nil
}

func (a *applier) flush() error {
	if len(a.out) == 0 {
		return nil
	}
	if err := a.ctx.Err(); err != nil {
		return err
	}
	blocks := int64(len(a.out) / BlockSize)
	if a.next+blocks == a.r.NewBlocks() {
		// The last block: zeros past the new image's end.
		if tail := a.r.h.NewLength % BlockSize; tail != 0 {
			clear(a.out[len(a.out)-BlockSize+int(tail):])
		}
	}
	if err := a.emit(a.next, a.out); err != nil {
		return err
	}
	a.next += blocks
	a.out = a.out[:0]
	return nil
}

// nextWindow reads, verifies and decodes the next window into a.raw.
func (a *applier) nextWindow() error {
	if err := a.ctx.Err(); err != nil {
		return err
	}
	i := a.win
	w := &a.r.h.Windows[i]
	a.win++
	c := a.comp[:w.CompLen]
	if _, err := io.ReadFull(a.r.r, c); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: window %d is truncated", ErrWindow, i)
		}
		return fmt.Errorf("failed to read window %d of the delta: %w", i, err)
	}
	if sha256.Sum256(c) != w.SHA256 {
		return fmt.Errorf("%w: window %d does not match its SHA-256 in the header: the delta was corrupted or tampered with", ErrWindow, i)
	}
	if w.Method == MethodStored {
		a.raw = c
		if a.win == len(a.r.h.Windows) {
			return a.end()
		}
		return nil
	}
	a.dict = a.dict[:0]
	for _, r := range w.Dict {
		n := len(a.dict)
		a.dict = a.dict[:n+int(r.Length)]
		if err := a.readOld(a.dict[n:], int64(r.Offset)); err != nil {
			return fmt.Errorf("window %d dictionary: %w", i, err)
		}
	}
	var err error
	if a.dec == nil {
		a.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(DecoderMaxWindow), zstd.WithDecoderMaxMemory(MaxWindowSize),
			zstd.WithDecoderDictRaw(0, a.dict))
	} else {
		err = a.dec.ResetWithOptions(nil, zstd.WithDecoderDictRaw(0, a.dict))
	}
	if err != nil {
		return fmt.Errorf("delta: internal error: zstd decoder: %w", err)
	}
	out, err := a.dec.DecodeAll(c, a.data[:0])
	if err != nil {
		return fmt.Errorf("%w: window %d does not decode (the header matched: the delta's maker is broken): %w", ErrWindow, i, err)
	}
	if len(out) != int(w.RawLen) {
		return fmt.Errorf("%w: window %d decodes to %d bytes, the header says %d", ErrWindow, i, len(out), w.RawLen)
	}
	a.raw = out
	if a.win == len(a.r.h.Windows) {
		return a.end()
	}
	return nil
}
