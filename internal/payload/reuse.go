package payload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/airlockfw/airlock/verity"
)

// Online delta: a device running a schema 2 release installs a newer one
// from an unchanged repository by copying the blocks its active slot
// already holds and fetching only the others with HTTP range requests. The
// base's tree (verified against its signed root) says which blocks the
// active slot holds; the new tree (fetched first, verified against the new
// signed root) says which blocks the new image needs. A block found in the
// active slot is still verified against the new tree before it is written;
// a chunk that fails is fetched again from the repository.

// Fetch opens exactly n bytes of the payload file from offset off.
type Fetch func(off, n int64) (io.ReadCloser, error)

// Reuse limits.
const (
	// MaxFetchGap is how many unneeded blocks between two needed ones are
	// fetched anyway to save a request.
	MaxFetchGap = 16
	// MaxFetchRange bounds one range request, in bytes.
	MaxFetchRange = 64 << 20
)

// ReuseResult reports an online delta install.
type ReuseResult struct {
	Result
	ReusedBlocks  int64 // copied from the active slot
	FetchedBlocks int64 // or frames' worth, for a compressed payload
	Requests      int64 // range requests made
}

// CopyReuse installs the indexed payload e into dst, reusing the base's
// blocks: see the comment above. It fails with ErrNoBase, before writing
// any image block, when the base cannot serve (no tree, another salt, its
// tree does not verify, it holds none of the new blocks); the caller then
// installs the whole payload. Memory is a few chunks plus 12 bytes per
// block of the base (its digest index, dropped once planned) and 4 bytes
// per block of the new image (the plan): 4 MiB per GiB of image, the one
// part of an install that grows with the image (a delta bundle's does not).
func CopyReuse(dst Slot, e Indexed, base Base, fetch Fetch, o CopyOptions) (ReuseResult, error) {
	var res ReuseResult
	p, err := e.check()
	if err != nil {
		return res, err
	}
	if err := e.checkLength(); err != nil {
		return res, err
	}
	if !bytes.Equal(base.Salt, e.Salt) || len(base.Root) != verity.DigestSize {
		return res, fmt.Errorf("%w: its tree has another salt", ErrNoBase)
	}
	bp := base.params()
	if err := bp.Validate(); err != nil || base.TreeLength != bp.TreeSize() {
		return res, fmt.Errorf("%w: its tree's parameters are not valid", ErrNoBase)
	}
	old, err := verity.ReadTree(io.NewSectionReader(base.Slot, base.HashOffset(), base.TreeLength), bp, base.Root, discardAt{}, base.HashOffset())
	if err != nil {
		return res, fmt.Errorf("%w: its tree in the active slot does not verify: %w", ErrNoBase, err)
	}
	// The new tree, verified against the signed root before it is written.
	fc := &fetcher{fetch: fetch, res: &res}
	rc, err := fc.open(0, e.TreeLength)
	if err != nil {
		return res, err
	}
	tree, err := verity.ReadTree(rc, p, e.Root, dst, e.HashOffset())
	rc.Close()
	if err != nil {
		return res, fc.failed(err)
	}
	index, err := buildIndex(old, base.Slot)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrNoBase, err)
	}
	// The plan: where each new block comes from (-1: fetched).
	from := make([]int32, p.DataBlocks)
	for i := range from {
		d, err := tree.Digest(dst, int64(i))
		if err != nil {
			return res, mismatch(err)
		}
		from[i] = index.find(d)
	}
	index = nil
	if !slices.ContainsFunc(from, func(j int32) bool { return j >= 0 }) {
		return res, fmt.Errorf("%w: it holds none of the new release's blocks", ErrNoBase)
	}
	r := &reuse{dst: dst, tree: tree, e: &e, base: base, from: from, fc: fc, o: o, res: &res}
	if e.Frames == 0 {
		err = r.raw()
	} else {
		err = r.frames()
	}
	fc.close()
	res.InstalledBytes = r.written
	if err != nil {
		return res, fc.failed(err)
	}
	return res, nil
}

// digestIndex maps a digest prefix to a block of the base, sorted: 12
// bytes per block (two slices, no padding). A false match is caught by
// verifying against the new tree.
type digestIndex struct {
	prefix []uint64
	block  []int32
}

func buildIndex(t *verity.Tree, slot io.ReaderAt) (*digestIndex, error) {
	n := t.Blocks()
	ix := &digestIndex{prefix: make([]uint64, n), block: make([]int32, n)}
	for j := int64(0); j < n; j++ {
		d, err := t.Digest(slot, j)
		if err != nil {
			return nil, err
		}
		ix.prefix[j], ix.block[j] = binary.BigEndian.Uint64(d), int32(j)
	}
	sort.Sort(ix) // by prefix, then block: the lowest block of equal prefixes first
	return ix, nil
}

// sort.Interface: not slices.SortFunc, whose instantiation costs the device
// binary several KB.
func (ix *digestIndex) Len() int { return len(ix.prefix) }
func (ix *digestIndex) Swap(i, j int) {
	ix.prefix[i], ix.prefix[j] = ix.prefix[j], ix.prefix[i]
	ix.block[i], ix.block[j] = ix.block[j], ix.block[i]
}
func (ix *digestIndex) Less(i, j int) bool {
	return ix.prefix[i] < ix.prefix[j] || ix.prefix[i] == ix.prefix[j] && ix.block[i] < ix.block[j]
}

func (ix *digestIndex) find(d []byte) int32 {
	p := binary.BigEndian.Uint64(d)
	lo, hi := 0, len(ix.prefix) // the first entry with prefix >= p is in [lo, hi]
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ix.prefix[m] < p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(ix.prefix) || ix.prefix[lo] != p {
		return -1
	}
	return ix.block[lo]
}

// fetcher reads the payload file forward through coalesced range requests.
type fetcher struct {
	fetch Fetch
	err   error // the first error of a fetched body (not io.EOF)
	res   *ReuseResult
	rc    io.ReadCloser
	pos   int64 // file offset rc is at
	end   int64 // of rc's range
}

func (f *fetcher) open(off, n int64) (io.ReadCloser, error) {
	if n == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	f.res.Requests++
	rc, err := f.fetch(off, n)
	if err != nil {
		return nil, err
	}
	return &countingCloser{r: io.LimitReader(rc, n), c: rc, f: f}, nil
}

// countingCloser counts a fetched body's bytes and records its error.
type countingCloser struct {
	r io.Reader
	c io.Closer
	f *fetcher
}

func (c *countingCloser) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.f.res.TransportBytes += int64(n)
	if err != nil && err != io.EOF && c.f.err == nil {
		c.f.err = err
	}
	return n, err
}

// covers reports whether the open range holds [off, off+n) ahead.
func (f *fetcher) covers(off, n int64) bool {
	return f.rc != nil && off >= f.pos && off+n <= f.end
}

// failed is err, or the fetch's own failure when err is its effect (a
// dropped connection is not a mismatch).
func (f *fetcher) failed(err error) error {
	if f.err != nil && errors.Is(err, f.err) {
		return f.err
	}
	return mismatch(err)
}

func (c *countingCloser) Close() error { return c.c.Close() }

// read fills b from file offset off, reusing the open range when off is at
// or ahead of it within it, else opening [off, off+want) (want >= len(b)).
func (f *fetcher) read(b []byte, off, want int64) error {
	if f.rc != nil && (off < f.pos || off+int64(len(b)) > f.end) {
		f.close()
	}
	if f.rc == nil {
		rc, err := f.open(off, want)
		if err != nil {
			return err
		}
		f.rc, f.pos, f.end = rc, off, off+want
	}
	if skip := off - f.pos; skip > 0 {
		if _, err := io.CopyN(io.Discard, f.rc, skip); err != nil {
			return fmt.Errorf("%w: reading a range of the payload: %w", ErrLength, err)
		}
	}
	if _, err := io.ReadFull(f.rc, b); err != nil {
		return fmt.Errorf("%w: reading a range of the payload: %w", ErrLength, err)
	}
	f.pos = off + int64(len(b))
	return nil
}

func (f *fetcher) close() {
	if f.rc != nil {
		f.rc.Close()
		f.rc = nil
	}
}

type reuse struct {
	dst     Slot
	tree    *verity.Tree
	e       *Indexed
	base    Base
	from    []int32
	fc      *fetcher
	o       CopyOptions
	res     *ReuseResult
	written int64
}

// fill copies the base's blocks of chunk [first, first+len(buf)/BlockSize)
// into buf and reports whether some block must be fetched.
func (r *reuse) fill(buf []byte, first int64) (missing bool, err error) {
	n := int64(len(buf) / verity.BlockSize)
	for k := int64(0); k < n; {
		j := r.from[first+k]
		if j < 0 {
			missing = true
			k++
			continue
		}
		// A run of consecutive base blocks: one read.
		run := int64(1)
		for k+run < n && r.from[first+k+run] == j+int32(run) {
			run++
		}
		if _, err := r.base.Slot.ReadAt(buf[k*verity.BlockSize:(k+run)*verity.BlockSize], int64(j)*verity.BlockSize); err != nil {
			return true, fmt.Errorf("%w: reading the active slot: %w", ErrNoBase, err)
		}
		r.res.ReusedBlocks += run
		k += run
	}
	return missing, nil
}

// rangeFor is the coalesced fetch that starts at block i: up to
// MaxFetchGap unneeded blocks between needed ones, at most MaxFetchRange.
func (r *reuse) rangeFor(i int64) (blocks int64) {
	last := i
	for k := i + 1; k < int64(len(r.from)) && (k-i+1)*verity.BlockSize <= MaxFetchRange; k++ {
		if r.from[k] < 0 {
			last = k
		} else if k-last > MaxFetchGap {
			break
		}
	}
	return last - i + 1
}

func (r *reuse) write(buf []byte, first int64) error {
	off := first * verity.BlockSize
	if _, err := r.dst.WriteAt(buf, off); err != nil {
		return writeError{err}
	}
	n := min(int64(len(buf)), r.e.InstalledLength-off)
	r.written += n
	if r.o.Written != nil {
		r.o.Written(off, int64(len(buf)))
	}
	if r.o.Progress != nil {
		r.o.Progress.Write(buf[:n])
	}
	return nil
}

// raw installs an uncompressed payload chunk by chunk.
func (r *reuse) raw() error {
	blocks := int64(len(r.from))
	buf := make([]byte, ChunkBlocks*verity.BlockSize)
	dataOff := r.e.TreeLength
	for first := int64(0); first < blocks; first += ChunkBlocks {
		n := min(ChunkBlocks, blocks-first)
		c := buf[:n*verity.BlockSize]
		missing, err := r.fill(c, first)
		if err != nil {
			return err
		}
		for k := int64(0); missing && k < n; k++ {
			i := first + k
			if r.from[i] >= 0 {
				continue
			}
			if err := r.fetchBlocks(c[k*verity.BlockSize:(k+1)*verity.BlockSize], i, dataOff); err != nil {
				return err
			}
			r.res.FetchedBlocks++
		}
		if err := r.tree.Check(r.dst, first, c); err != nil {
			// A base block did not match (a damaged active slot, or a
			// digest prefix that matched by chance): fetch the chunk.
			off := first * verity.BlockSize
			m := min(int64(len(c)), r.e.InstalledLength-off)
			if err := r.fc.read(c[:m], dataOff+off, m); err != nil {
				return err
			}
			clear(c[m:])
			r.res.FetchedBlocks += n
			if err := r.tree.Check(r.dst, first, c); err != nil {
				return err
			}
		}
		if err := r.write(c, first); err != nil {
			return err
		}
	}
	return nil
}

// fetchBlocks reads new block i (the last one short in the file, padded
// here) from the payload's data at dataOff.
func (r *reuse) fetchBlocks(b []byte, i, dataOff int64) error {
	off := i * verity.BlockSize
	n := min(verity.BlockSize, r.e.InstalledLength-off)
	want := n
	if !r.fc.covers(dataOff+off, n) {
		want = min(r.rangeFor(i)*verity.BlockSize, r.e.InstalledLength-off)
	}
	if err := r.fc.read(b[:n], dataOff+off, want); err != nil {
		return err
	}
	clear(b[n:])
	return nil
}

// frames installs a zstd payload frame by frame: a frame with a block the
// base lacks is fetched whole, checked against the signed frame table,
// decompressed, and all its blocks taken from it.
func (r *reuse) frames() error {
	e := r.e
	tableLen := e.Frames * FrameEntrySize
	rc, err := r.fc.open(e.TreeLength, tableLen)
	if err != nil {
		return err
	}
	table, err := e.readFrameTable(rc, tableLen)
	rc.Close()
	if err != nil {
		return err
	}
	offs := make([]int64, e.Frames+1)
	offs[0] = e.TreeLength + tableLen
	for k := int64(0); k < e.Frames; k++ {
		offs[k+1] = offs[k] + int64(binary.BigEndian.Uint64(table[k*FrameEntrySize:]))
	}
	maxFrame := MaxCompressedFrame(e.FrameSize)
	dec, err := e.frameDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	per := e.FrameSize / verity.BlockSize
	buf := make([]byte, e.FrameSize)
	cbuf := make([]byte, maxFrame)
	blocks := int64(len(r.from))
	needed := func(k int64) bool {
		for i := k * per; i < min((k+1)*per, blocks); i++ {
			if r.from[i] < 0 {
				return true
			}
		}
		return false
	}
	fetchFrame := func(k int64, c []byte) error {
		comp := cbuf[:offs[k+1]-offs[k]]
		span := int64(len(comp))
		if !r.fc.covers(offs[k], span) {
			// A new range: coalesce the following frames needed too.
			last := k
			for last+1 < e.Frames && needed(last+1) && offs[last+2]-offs[k] <= MaxFetchRange {
				last++
			}
			span = offs[last+1] - offs[k]
		}
		if err := r.fc.read(comp, offs[k], span); err != nil {
			return err
		}
		if err := e.checkFrame(table[k*FrameEntrySize:(k+1)*FrameEntrySize], comp, k); err != nil {
			return err
		}
		want := min(e.FrameSize, e.InstalledLength-k*e.FrameSize)
		if err := decodeFrame(dec, comp, c, k, want); err != nil {
			return err
		}
		clear(c[want:])
		r.res.FetchedBlocks += int64(len(c) / verity.BlockSize)
		return nil
	}
	for k := int64(0); k < e.Frames; k++ {
		first := k * per
		n := min(per, blocks-first)
		c := buf[:n*verity.BlockSize]
		missing, err := r.fill(c, first)
		if err != nil {
			return err
		}
		if missing {
			if err := fetchFrame(k, c); err != nil {
				return err
			}
		}
		if err := r.tree.Check(r.dst, first, c); err != nil {
			if missing {
				return err
			}
			if err := fetchFrame(k, c); err != nil {
				return err
			}
			if err := r.tree.Check(r.dst, first, c); err != nil {
				return err
			}
		}
		if err := r.write(c, first); err != nil {
			return err
		}
	}
	return nil
}
