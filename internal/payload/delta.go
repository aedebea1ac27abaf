package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/airlockfw/airlock/delta"
	"github.com/airlockfw/airlock/verity"
)

// Delta installs (release metadata schema 2): a device running an older
// release rebuilds the new one from its active slot, which it only reads,
// and writes the inactive slot only. Every block written is verified
// against the NEW release's signed tree first, whatever its origin (the
// active slot, a delta stream, a range of the payload file): a damaged or
// foreign active slot can make a delta install fail, never install wrong
// bytes.

var (
	// ErrDelta means a delta stream does not match what the release signs
	// (its header digest, lengths, or the images it is for).
	ErrDelta = errors.New("delta does not match the signed release")
	// ErrNoBase means the running release cannot serve as the base of a
	// delta (no signed tree, another salt, its tree in the active slot
	// does not verify): the caller installs the whole payload instead.
	ErrNoBase = errors.New("the running release cannot be the base of a delta")
)

// Base is the running release in the active slot: the old image and, after
// it at HashOffset, its tree (as CopyIndexed left them).
type Base struct {
	Slot       io.ReaderAt // the active slot, read only
	Length     int64       // of the old image
	Salt, Root []byte      // of its signed tree
	TreeLength int64
}

// HashOffset is where the base's tree lies in its slot.
func (b *Base) HashOffset() int64 { return verity.BlocksFor(b.Length) * verity.BlockSize }

func (b *Base) params() verity.Params {
	return verity.Params{DataBlockSize: verity.BlockSize, HashBlockSize: verity.BlockSize, Salt: b.Salt, DataBlocks: verity.BlocksFor(b.Length)}
}

// Stream is what the release signs about one delta stream.
type Stream struct {
	Length, HeaderLength int64
	HeaderSHA256         []byte
}

// DeltaStreams are a delta bundle's two streams: Tree rebuilds the new
// tree from the base's tree, Data the new image from the base's image.
type DeltaStreams struct{ Tree, Data Stream }

// open reads a stream's header from r, checks it against s (its signed
// length and SHA-256) BEFORE parsing it, then checks the parsed header
// against the lengths of the images it must be for.
func (s Stream) open(r io.Reader, what string, oldLen, newLen int64) (*delta.Reader, error) {
	if s.HeaderLength <= 0 || s.HeaderLength > delta.MaxHeaderSize {
		return nil, fmt.Errorf("%w: the %s stream's signed header length %d is outside 1 to %d", ErrDelta, what, s.HeaderLength, delta.MaxHeaderSize)
	}
	hdr := make([]byte, s.HeaderLength)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("%w: reading the %s stream's header: %w", ErrDelta, what, err)
	}
	if sum := sha256.Sum256(hdr); subtle.ConstantTimeCompare(sum[:], s.HeaderSHA256) != 1 {
		return nil, fmt.Errorf("%w: the %s stream's header is not the signed one", ErrDelta, what)
	}
	// Signed bytes from here on.
	dr, err := delta.NewReader(io.MultiReader(bytes.NewReader(hdr), r))
	if err != nil {
		return nil, fmt.Errorf("%w: the %s stream's header: %w", ErrDelta, what, err)
	}
	switch {
	case dr.HeaderLength() != s.HeaderLength:
		return nil, fmt.Errorf("%w: the %s stream's header is %d bytes, the release signs %d", ErrDelta, what, dr.HeaderLength(), s.HeaderLength)
	case dr.StreamLength() != s.Length:
		return nil, fmt.Errorf("%w: the %s stream is %d bytes, the release signs %d", ErrDelta, what, dr.StreamLength(), s.Length)
	case oldLen >= 0 && dr.OldLength() != oldLen || dr.NewLength() != newLen:
		return nil, fmt.Errorf("%w: the %s stream turns %d bytes into %d, this install needs %d into %d (another base release?)", ErrDelta, what, dr.OldLength(), dr.NewLength(), oldLen, newLen)
	}
	return dr, nil
}

// CopyDelta installs a delta bundle's payload read from src (exactly
// d.Tree.Length + d.Data.Length bytes, then the end) into dst: the tree
// stream is applied to the base's tree and the rebuilt tree verified
// against the signed root (each hash block before it is written), then the
// data stream is applied to the base's image and every block verified
// against the new tree before it is written. Each stream's header must be
// the signed one; it carries the SHA-256 of every window, checked before
// the decoder sees the window. Memory is bounded by the delta format's
// limits (windows, dictionaries), not the image size.
func CopyDelta(dst Slot, src io.Reader, e Indexed, d DeltaStreams, base Base, o CopyOptions) (Result, error) {
	var res Result
	p, err := e.check()
	if err != nil {
		return res, err
	}
	if e.Length != d.Tree.Length+d.Data.Length {
		return res, fmt.Errorf("%w: the payload is %d bytes, the signed streams %d", ErrDelta, e.Length, d.Tree.Length+d.Data.Length)
	}
	counted := &countingReader{r: io.LimitReader(src, e.Length)}
	tr, err := d.Tree.open(io.LimitReader(counted, d.Tree.Length), "tree", base.TreeLength, e.TreeLength)
	if err != nil {
		return res, sourceErr(counted, e.Length, err)
	}
	// The rebuilt tree flows through a pipe into ReadTree, which verifies
	// each hash block against its parent before it is written.
	pr, pw := io.Pipe()
	applied := make(chan error, 1)
	go func() {
		err := tr.Apply(context.Background(), io.NewSectionReader(base.Slot, base.HashOffset(), base.TreeLength), func(_ int64, b []byte) error {
			_, err := pw.Write(b)
			return err
		})
		pw.CloseWithError(err)
		applied <- err
	}()
	tree, err := verity.ReadTree(pr, p, e.Root, dst, e.HashOffset())
	if err == nil {
		// The whole stream must have been used, and nothing more made.
		if n, _ := io.Copy(io.Discard, pr); n > 0 {
			err = fmt.Errorf("%w: the tree stream makes %d bytes more than the tree", ErrDelta, n)
		}
	}
	pr.CloseWithError(errors.New("tree read"))
	if aerr := <-applied; err == nil && aerr != nil {
		err = aerr
	}
	if err != nil {
		if errors.Is(err, verity.ErrTree) {
			err = fmt.Errorf("%w (the delta was applied to the tree in the active slot: if that slot is damaged, install the whole release)", err)
		}
		return res, mismatch(sourceErr(counted, e.Length, err))
	}
	dr, err := d.Data.open(io.LimitReader(counted, d.Data.Length), "data", base.Length, e.InstalledLength)
	if err != nil {
		return res, sourceErr(counted, e.Length, err)
	}
	// Each run of blocks Apply emits is checked against the tree and
	// written at once, from Apply's own buffer: no copy, no more memory.
	var written int64
	err = dr.Apply(context.Background(), io.NewSectionReader(base.Slot, 0, base.Length), func(first int64, b []byte) error {
		if err := tree.Check(dst, first, b); err != nil {
			return err
		}
		off := first * verity.BlockSize
		if _, err := dst.WriteAt(b, off); err != nil {
			return writeError{err}
		}
		n := min(int64(len(b)), e.InstalledLength-off)
		written += n
		if o.Written != nil {
			o.Written(off, int64(len(b)))
		}
		if o.Progress != nil {
			o.Progress.Write(b[:n])
		}
		return nil
	})
	res.TransportBytes, res.InstalledBytes = counted.n, written
	if err != nil {
		if errors.Is(err, verity.ErrBlock) {
			err = fmt.Errorf("%w (the delta was applied to the image in the active slot: if that slot is damaged, install the whole release)", err)
		}
		return res, mismatch(sourceErr(counted, e.Length, err))
	}
	if written != e.InstalledLength {
		return res, fmt.Errorf("%w: the delta made %d bytes, the release signs %d", ErrDelta, written, e.InstalledLength)
	}
	return res, expectEnd(src, e.Length)
}

// CheckDelta verifies a delta bundle's payload without a base (`airlock
// verify` of a delta bundle): each stream's header against the signed one
// and every window against its header's SHA-256; oldTree and oldLen, the
// base's tree and image lengths, are checked unless negative. The blocks themselves are
// verified when a device running the base release applies it.
func CheckDelta(src io.Reader, d DeltaStreams, oldTree, newTree, oldLen, newLen int64) (Result, error) {
	var res Result
	counted := &countingReader{r: src}
	for _, s := range []struct {
		what           string
		st             Stream
		oldLen, newLen int64
	}{{"tree", d.Tree, oldTree, newTree}, {"data", d.Data, oldLen, newLen}} {
		lr := io.LimitReader(counted, s.st.Length)
		dr, err := s.st.open(lr, s.what, s.oldLen, s.newLen)
		if err != nil {
			return res, sourceErr(counted, d.Tree.Length+d.Data.Length, err)
		}
		buf := make([]byte, 0, 1<<20)
		for k, w := range dr.Header().Windows {
			buf = buf[:0]
			if int(w.CompLen) > cap(buf) {
				buf = make([]byte, 0, w.CompLen)
			}
			buf = buf[:w.CompLen]
			if _, err := io.ReadFull(lr, buf); err != nil {
				return res, sourceErr(counted, d.Tree.Length+d.Data.Length, fmt.Errorf("%w: %s window %d: %w", ErrDelta, s.what, k, err))
			}
			if sum := sha256.Sum256(buf); sum != w.SHA256 {
				return res, fmt.Errorf("%w: %s window %d: %w", ErrHash, s.what, k, delta.ErrWindow)
			}
		}
	}
	res.TransportBytes = counted.n
	return res, nil
}
