package payload

import (
	"bytes"
	"encoding/binary"
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
// installs the whole payload. Memory is a few chunks plus 12 bytes per block of the base (its digest index).
func CopyReuse(dst Slot, e Indexed, base Base, fetch Fetch, o CopyOptions) (ReuseResult, error) {
	var res ReuseResult
	p := e.params()
	if err := p.Validate(); err != nil {
		return res, err
	}
	if e.TreeLength != p.TreeSize() {
		return res, fmt.Errorf("%w: the signed tree length %d is not the %d bytes of a tree over %d blocks", verity.ErrParams, e.TreeLength, p.TreeSize(), p.DataBlocks)
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
		return res, mismatch(err)
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
		return res, mismatch(err)
	}
	return res, nil
}

// digestIndex maps a digest prefix to a block of the base: 12 bytes per
// block, sorted. A false match is caught by verifying against the new tree.
type digestIndex []indexEntry

type indexEntry struct {
	prefix uint64
	block  int32
}

func buildIndex(t *verity.Tree, slot io.ReaderAt) (digestIndex, error) {
	ix := make(digestIndex, 0, t.Blocks())
	for j := int64(0); j < t.Blocks(); j++ {
		d, err := t.Digest(slot, j)
		if err != nil {
			return nil, err
		}
		ix = append(ix, indexEntry{binary.BigEndian.Uint64(d), int32(j)})
	}
	sort.Sort(ix) // by prefix, then block: the lowest block of equal prefixes first
	return ix, nil
}

// sort.Interface: not slices.SortFunc, whose instantiation costs the device
// binary several KB.
func (ix digestIndex) Len() int      { return len(ix) }
func (ix digestIndex) Swap(i, j int) { ix[i], ix[j] = ix[j], ix[i] }
func (ix digestIndex) Less(i, j int) bool {
	a, b := ix[i], ix[j]
	return a.prefix < b.prefix || a.prefix == b.prefix && a.block < b.block
}

func (ix digestIndex) find(d []byte) int32 {
	p := binary.BigEndian.Uint64(d)
	lo, hi := 0, len(ix) // the first entry with prefix >= p is in [lo, hi]
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ix[m].prefix < p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(ix) || ix[lo].prefix != p {
		return -1
	}
	return ix[lo].block
}

// fetcher reads the payload file forward through coalesced range requests.
type fetcher struct {
	fetch Fetch
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
	return &countingCloser{r: io.LimitReader(rc, n), c: rc, n: &f.res.TransportBytes}, nil
}

type countingCloser struct {
	r io.Reader
	c io.Closer
	n *int64
}

func (c *countingCloser) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
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
	want := min(r.rangeFor(i)*verity.BlockSize, r.e.InstalledLength-off)
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
		// Coalesce the following frames that are needed too.
		last := k
		for last+1 < e.Frames && needed(last+1) && offs[last+2]-offs[k] <= MaxFetchRange {
			last++
		}
		comp := cbuf[:offs[k+1]-offs[k]]
		if err := r.fc.read(comp, offs[k], offs[last+1]-offs[k]); err != nil {
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
