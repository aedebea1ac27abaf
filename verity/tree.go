package verity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Tree is a hash tree verified against its root hash, ready to check data
// blocks. It holds the digests of the level-0 hash blocks and one cached
// level-0 block; the level-0 blocks themselves are read back from where
// ReadTree wrote them, and verified again on every read. A Tree is not
// safe for concurrent use.
type Tree struct {
	salt    []byte
	root    [DigestSize]byte
	blocks  int64  // data blocks
	levels  int    // 0: one data block, checked against the root
	off     int64  // where level 0 starts in the destination
	up      []byte // digest of each level-0 hash block (the root if it is the top)
	cached  int64  // the level-0 block held in blk, or -1
	blk     []byte // BlockSize
	h       hash.Hash
	sums    []byte // scratch: digests of the blocks being checked
	workers int
}

// ReadTree reads exactly p.TreeSize() bytes of tree from r, in storage
// order (top level first), verifies every hash block against its parent
// (the top block against root) BEFORE writing it to dst at dstOff+pos, and
// returns a Tree that verifies data blocks. It keeps the digests of levels
// >= 1 only: at most about 4 MiB, for MaxDataBlocks. Any mismatch, or a
// short read, is an error wrapping ErrTree naming the level and block;
// nothing of that block or after it is written.
func ReadTree(r io.Reader, p Params, root []byte, dst io.WriterAt, dstOff int64) (*Tree, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(root) != DigestSize {
		return nil, fmt.Errorf("%w: root hash %d bytes, want %d", ErrParams, len(root), DigestSize)
	}
	g := layout(p.DataBlocks)
	t := &Tree{
		salt: append([]byte(nil), p.Salt...), blocks: p.DataBlocks, levels: g.levels,
		off: dstOff + g.start[0]*BlockSize, cached: -1, h: sha256.New(), workers: cores(),
	}
	copy(t.root[:], root)
	want := t.root[:] // digests of the blocks of the level being read
	var sum [DigestSize]byte
	buf := make([]byte, BlockSize)
	for lvl := g.levels - 1; lvl >= 0; lvl-- {
		var keep []byte // this level's blocks: the digests of the level below
		if lvl > 0 {
			keep = make([]byte, g.count[lvl]*BlockSize)
		} else {
			t.up = want
		}
		for i := int64(0); i < g.count[lvl]; i++ {
			blk := buf
			if keep != nil {
				blk = keep[i*BlockSize : (i+1)*BlockSize]
			}
			if _, err := io.ReadFull(r, blk); err != nil {
				return nil, treeErr(lvl, i, err)
			}
			digest(t.h, t.salt, blk, sum[:])
			if !bytes.Equal(sum[:], want[i*DigestSize:(i+1)*DigestSize]) {
				return nil, treeErr(lvl, i, nil)
			}
			if err := writeBlock(dst, blk, dstOff+(g.start[lvl]+i)*BlockSize); err != nil {
				return nil, err
			}
		}
		want = keep
	}
	return t, nil
}

// Root returns the verified root hash.
func (t *Tree) Root() []byte { return append([]byte(nil), t.root[:]...) }

// Check verifies consecutive data blocks starting at block index first.
// blocks is a whole number of blocks (the last data block zero-padded by
// the caller). Level-0 hash blocks are read back through ra (the tree as
// ReadTree wrote it, at the same dstOff) and verified again against the
// digests held in memory; a bad or missing one is an error wrapping
// ErrTree, a failed read of ra (other than a short one) is returned as it
// is, not as a mismatch. Batches
// of 64 blocks or more are hashed on every core. A data mismatch is an
// error wrapping ErrBlock naming the first bad block.
func (t *Tree) Check(ra io.ReaderAt, first int64, blocks []byte) error {
	n := int64(len(blocks) / BlockSize)
	if len(blocks)%BlockSize != 0 || first < 0 || first > t.blocks || n > t.blocks-first {
		return fmt.Errorf("%w: %d bytes at block %d: not whole blocks within the image's %d", ErrParams, len(blocks), first, t.blocks)
	}
	if int64(cap(t.sums)) < n*DigestSize {
		t.sums = make([]byte, n*DigestSize)
	}
	sums := t.sums[:n*DigestSize]
	hashAll(t.workers, t.salt, blocks, sums)
	for k := int64(0); k < n; k++ {
		want, err := t.leaf(ra, first+k)
		if err != nil {
			return err
		}
		if !bytes.Equal(sums[k*DigestSize:(k+1)*DigestSize], want) {
			return fmt.Errorf("%w: block %d", ErrBlock, first+k)
		}
	}
	return nil
}

// Blocks is the number of data blocks the tree covers.
func (t *Tree) Blocks() int64 { return t.blocks }

// Digest returns the digest of data block i as the verified tree records
// it, reading the level-0 hash block that holds it through ra (verified
// again against the level above; consecutive blocks share one read). The
// slice is valid until the next call.
func (t *Tree) Digest(ra io.ReaderAt, i int64) ([]byte, error) {
	if i < 0 || i >= t.blocks {
		return nil, fmt.Errorf("%w: block %d outside the image's %d", ErrParams, i, t.blocks)
	}
	return t.leaf(ra, i)
}

// leaf returns the expected digest of data block i.
func (t *Tree) leaf(ra io.ReaderAt, i int64) ([]byte, error) {
	if t.levels == 0 {
		return t.root[:], nil
	}
	b := i >> perBits
	if b != t.cached {
		t.cached = -1
		if t.blk == nil {
			t.blk = make([]byte, BlockSize)
		}
		if n, err := ra.ReadAt(t.blk, t.off+b*BlockSize); n < BlockSize {
			if err != nil && !errors.Is(err, io.EOF) {
				// The storage failed (a disk fault): not a mismatch.
				return nil, fmt.Errorf("verity: reading back level-0 hash block %d: %w", b, err)
			}
			return nil, treeErr(0, b, io.ErrUnexpectedEOF) // the tree is not all there
		}
		var sum [DigestSize]byte
		digest(t.h, t.salt, t.blk, sum[:])
		if !bytes.Equal(sum[:], t.up[b*DigestSize:(b+1)*DigestSize]) {
			return nil, treeErr(0, b, nil)
		}
		t.cached = b
	}
	o := (i % perBlock) * DigestSize
	return t.blk[o : o+DigestSize], nil
}

// treeErr names the hash block that failed, and why if not a mismatch.
func treeErr(level int, block int64, cause error) error {
	if cause == nil {
		return fmt.Errorf("%w: level %d block %d", ErrTree, level, block)
	}
	return fmt.Errorf("%w: level %d block %d: %w", ErrTree, level, block, cause)
}

func writeBlock(w io.WriterAt, b []byte, off int64) error {
	if _, err := w.WriteAt(b, off); err != nil {
		return fmt.Errorf("verity: writing tree: %w", err)
	}
	return nil
}
