// Package deltaenc makes deltas in the format of package delta: the vendor
// side, kept out of package delta so that the device binary links only the
// decoder (this package uses the zstd encoder and a lot of memory).
//
// [Create] finds, for every 4 KiB block of the new image, the cheapest way
// to send it: a zero block, a block copied from the old image (the block at
// the same offset, the continuation of the previous copy, or any old block
// with the same bytes), or a literal block. Literal blocks are grouped, in
// order, into windows of at most delta.MaxWindowSize bytes, each compressed
// independently with zstd at its best level, with a raw dictionary made of
// the old-image blocks most similar to the window's data (at most
// delta.MaxDictSize bytes), so that a rebuilt library or an inode table whose
// timestamps changed costs little more than its differences. Similar old
// blocks are found with content-defined anchors: a gear rolling hash over
// the old image picks, on average, one position in 32 whose preceding 64
// bytes index the old offset; the window's anchors vote for the old blocks
// they were seen in, and the old blocks at the same offset as the window's
// blocks and those continuing the neighbouring copies get votes too. The
// best-voted blocks, and then their neighbours, fill the dictionary.
//
// Threat model: the vendor's own images, on the vendor's machine; nothing
// here parses untrusted input. The encoder uses a lot of memory: both
// images, an index of the old image's anchors, and a zstd encoder (about
// 100 MiB) per concurrent window; for bench/delta's 192 MiB images the peak
// RSS is about 0.9 GiB, 1.8 GiB against a random new image.
package deltaenc

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash/maphash"
	"io"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/airlockfw/airlock/delta"
	"github.com/klauspost/compress/zstd"
)

const bs = delta.BlockSize

// Options tunes Create. The zero value is the default.
type Options struct {
	// WindowSize is the new data per compressed window, a multiple of
	// delta.BlockSize; 0 means delta.MaxWindowSize.
	WindowSize int
	// DictSize bounds each window's dictionary; 0 means delta.MaxDictSize.
	DictSize int
	// Concurrency is the number of windows compressed at once; 0 means
	// GOMAXPROCS.
	Concurrency int
	// NoDict compresses windows without a dictionary (plain block reuse plus
	// zstd: for comparison).
	NoDict bool
}

// Stats says what Create made.
type Stats struct {
	OldLength, NewLength int64
	NewBlocks            int64 // blocks of the new image
	CopiedBlocks         int64 // of them, copied from the old image
	ZeroBlocks           int64 // of them, zeros
	LiteralBlocks        int64 // of them, sent in windows
	Ops                  int64 // runs in the header
	Windows              int64
	StoredWindows        int64 // windows zstd did not shrink
	DictBytes            int64 // dictionary bytes, all windows together
	WindowBytes          int64 // compressed bytes of all windows
	HeaderBytes          int64
	Bytes                int64 // the whole delta: header and windows
	HeaderSHA256         [32]byte
	Duration             time.Duration
}

// String prints s as "name value" lines, for `airlock delta stats`.
func (s *Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "old length      %d\n", s.OldLength)
	fmt.Fprintf(&b, "new length      %d\n", s.NewLength)
	fmt.Fprintf(&b, "new blocks      %d\n", s.NewBlocks)
	fmt.Fprintf(&b, "copied blocks   %d\n", s.CopiedBlocks)
	fmt.Fprintf(&b, "zero blocks     %d\n", s.ZeroBlocks)
	fmt.Fprintf(&b, "literal blocks  %d\n", s.LiteralBlocks)
	fmt.Fprintf(&b, "operations      %d\n", s.Ops)
	fmt.Fprintf(&b, "windows         %d (%d stored)\n", s.Windows, s.StoredWindows)
	fmt.Fprintf(&b, "dictionary      %d bytes of the old image\n", s.DictBytes)
	fmt.Fprintf(&b, "window bytes    %d\n", s.WindowBytes)
	fmt.Fprintf(&b, "header bytes    %d\n", s.HeaderBytes)
	fmt.Fprintf(&b, "delta bytes     %d\n", s.Bytes)
	fmt.Fprintf(&b, "header sha256   %x\n", s.HeaderSHA256)
	return b.String()
}

// Create writes to w a delta that rebuilds new (newLen bytes) from old
// (oldLen bytes).
func Create(w io.Writer, old io.ReaderAt, oldLen int64, new io.ReaderAt, newLen int64, opt Options) (*Stats, error) {
	start := time.Now()
	if opt.WindowSize == 0 {
		opt.WindowSize = delta.MaxWindowSize
	}
	if opt.DictSize == 0 {
		opt.DictSize = delta.MaxDictSize
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = runtime.GOMAXPROCS(0)
	}
	if opt.WindowSize < bs || opt.WindowSize%bs != 0 || opt.WindowSize > delta.MaxWindowSize {
		return nil, fmt.Errorf("window size %d: want a multiple of %d up to %d", opt.WindowSize, bs, delta.MaxWindowSize)
	}
	if opt.DictSize < 0 || opt.DictSize > delta.MaxDictSize {
		return nil, fmt.Errorf("dictionary size %d: want at most %d", opt.DictSize, delta.MaxDictSize)
	}
	for _, n := range []int64{oldLen, newLen} {
		if n < 0 || n > delta.MaxImageSize {
			return nil, fmt.Errorf("image of %d bytes: over the limit of %d (delta.MaxImageSize)", n, int64(delta.MaxImageSize))
		}
	}
	oldImg, err := readAll(old, oldLen, "old")
	if err != nil {
		return nil, err
	}
	newImg, err := readAll(new, newLen, "new")
	if err != nil {
		return nil, err
	}
	e := &encoder{old: oldImg, new: newImg, opt: opt}
	e.classify()
	h := &delta.Header{OldLength: oldLen, NewLength: newLen, Ops: e.ops}
	if len(h.Ops) > delta.MaxOps {
		return nil, fmt.Errorf("the delta needs %d runs, over the format's limit of %d (delta.MaxOps)", len(h.Ops), delta.MaxOps)
	}
	wins, err := e.windows()
	if err != nil {
		return nil, err
	}
	st := &Stats{OldLength: oldLen, NewLength: newLen, NewBlocks: int64(len(e.kind)), Ops: int64(len(e.ops))}
	for _, k := range e.kind {
		switch k {
		case delta.OpCopy:
			st.CopiedBlocks++
		case delta.OpZero:
			st.ZeroBlocks++
		default:
			st.LiteralBlocks++
		}
	}
	for _, win := range wins {
		h.Windows = append(h.Windows, win.w)
		st.Windows++
		if win.w.Method == delta.MethodStored {
			st.StoredWindows++
		}
		st.DictBytes += win.w.DictLen()
		st.WindowBytes += int64(len(win.data))
	}
	hdr, err := h.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("internal error: the delta made does not pass its own checks: %w", err)
	}
	st.HeaderBytes = int64(len(hdr))
	st.HeaderSHA256 = sha256.Sum256(hdr)
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	for _, win := range wins {
		if _, err := w.Write(win.data); err != nil {
			return nil, err
		}
	}
	st.Bytes = st.HeaderBytes + st.WindowBytes
	st.Duration = time.Since(start)
	return st, nil
}

func readAll(r io.ReaderAt, n int64, name string) ([]byte, error) {
	b := make([]byte, n)
	if m, err := r.ReadAt(b, 0); int64(m) != n {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("failed to read the %s image: %w", name, err)
	}
	return b, nil
}

type encoder struct {
	old, new []byte
	opt      Options
	kind     []uint8 // per new block
	src      []int64 // per new block: the old block copied (OpCopy)
	ops      []delta.Op
	literal  []int64 // new blocks sent as literals, in order
	anchors  map[uint64]int64
}

// block returns block i of img, zero-padded to bs.
func block(img []byte, i int64, pad []byte) []byte {
	off := i * bs
	if off+bs <= int64(len(img)) {
		return img[off : off+bs]
	}
	clear(pad)
	if off < int64(len(img)) {
		copy(pad, img[off:])
	}
	return pad
}

var zeroBlock [bs]byte

// classify decides each new block's kind and builds the runs.
func (e *encoder) classify() {
	oldBlocks := delta.Blocks(int64(len(e.old)))
	newBlocks := delta.Blocks(int64(len(e.new)))
	seed := maphash.MakeSeed()
	index := make(map[uint64]int64, oldBlocks)
	for j := int64(0); j < oldBlocks; j++ {
		if (j+1)*bs > int64(len(e.old)) {
			break // the partial last block is matched at its own offset only
		}
		b := e.old[j*bs : (j+1)*bs]
		if bytes.Equal(b, zeroBlock[:]) {
			continue
		}
		k := maphash.Bytes(seed, b)
		if _, ok := index[k]; !ok {
			index[k] = j
		}
	}
	e.kind = make([]uint8, newBlocks)
	e.src = make([]int64, newBlocks)
	padN, padO := make([]byte, bs), make([]byte, bs)
	prev := int64(-2) // old block copied for the previous new block
	for i := range newBlocks {
		nb := block(e.new, i, padN)
		matches := func(j int64) bool {
			return j >= 0 && j < oldBlocks && bytes.Equal(block(e.old, j, padO), nb)
		}
		switch {
		case bytes.Equal(nb, zeroBlock[:]):
			e.kind[i] = delta.OpZero
			prev = -2
			continue
		case matches(prev + 1):
			e.src[i] = prev + 1
		case matches(i):
			e.src[i] = i
		default:
			j, ok := index[maphash.Bytes(seed, nb)]
			if !ok || !matches(j) {
				e.kind[i] = delta.OpLiteral
				e.literal = append(e.literal, i)
				prev = -2
				continue
			}
			e.src[i] = j
		}
		e.kind[i] = delta.OpCopy
		prev = e.src[i]
	}
	for i := range newBlocks {
		k := e.kind[i]
		if n := len(e.ops); n > 0 {
			p := &e.ops[n-1]
			if p.Kind == k && (k != delta.OpCopy || int64(p.OldBlock)+int64(p.Blocks) == e.src[i]) && p.Blocks < 1<<31 {
				p.Blocks++
				continue
			}
		}
		op := delta.Op{Kind: k, Blocks: 1}
		if k == delta.OpCopy {
			op.OldBlock = uint64(e.src[i])
		}
		e.ops = append(e.ops, op)
	}
}

type window struct {
	blocks []int64 // new blocks, in order
	w      delta.Window
	data   []byte
}

// windows groups the literal blocks and compresses each group.
func (e *encoder) windows() ([]*window, error) {
	per := e.opt.WindowSize / bs
	var wins []*window
	for i := 0; i < len(e.literal); i += per {
		wins = append(wins, &window{blocks: e.literal[i:min(i+per, len(e.literal))]})
	}
	if len(wins) > delta.MaxWindows {
		return nil, fmt.Errorf("the delta needs %d windows, over the format's limit of %d (delta.MaxWindows)", len(wins), delta.MaxWindows)
	}
	if len(wins) == 0 {
		return nil, nil
	}
	if !e.opt.NoDict {
		e.anchors = indexAnchors(e.old)
	}
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		next  = make(chan *window)
	)
	for range min(e.opt.Concurrency, len(wins)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc, err := zstd.NewWriter(nil,
				zstd.WithEncoderLevel(zstd.SpeedBestCompression),
				zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderCRC(false), // the header's SHA-256 covers the window
				zstd.WithWindowSize(encoderWindow))
			if err != nil {
				panic("deltaenc: internal error: zstd encoder: " + err.Error())
			}
			defer enc.Close()
			for win := range next {
				if err := e.compress(enc, win); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, win := range wins {
		next <- win
	}
	close(next)
	wg.Wait()
	return wins, first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// encoderWindow is the zstd window of the encoder, reaching from the end of
// the largest window back to the start of the largest dictionary. (A
// window's frame is one segment: the frame header states no window, and the
// decoder needs none beyond the window's own data.)
const encoderWindow = 8 << 20

func (e *encoder) compress(enc *zstd.Encoder, win *window) error {
	raw := make([]byte, 0, len(win.blocks)*bs)
	pad := make([]byte, bs)
	for _, i := range win.blocks {
		raw = append(raw, block(e.new, i, pad)...)
	}
	var ranges []delta.Range
	var dict []byte
	if !e.opt.NoDict {
		ranges = e.chooseDict(win.blocks, raw)
		for _, r := range ranges {
			dict = append(dict, e.old[r.Offset:r.Offset+uint64(r.Length)]...)
		}
	}
	dictOpt := zstd.WithEncoderDictDelete()
	if len(dict) > 0 {
		dictOpt = zstd.WithEncoderDictRaw(0, dict)
	}
	if err := enc.ResetWithOptions(nil, dictOpt); err != nil {
		return fmt.Errorf("internal error: zstd encoder: %w", err)
	}
	comp := enc.EncodeAll(raw, nil)
	win.w.RawLen = uint32(len(raw))
	if len(comp) >= len(raw) {
		win.w.Method = delta.MethodStored
		win.data = raw
	} else {
		win.w.Method = delta.MethodZstd
		win.w.Dict = ranges
		win.data = comp
	}
	win.w.CompLen = uint32(len(win.data))
	win.w.SHA256 = sha256.Sum256(win.data)
	return nil
}

// The gear rolling hash: h = h<<1 + gear[b] depends on the last 64 bytes;
// a position is an anchor when its hash's low anchorBits bits are zero (one
// position in 32 on average), and the hash is the anchor's key.
const anchorBits = 5

var gear = func() (g [256]uint64) {
	x := uint64(0x9e3779b97f4a7c15)
	for i := range g {
		// splitmix64
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		g[i] = z ^ z>>31
	}
	return g
}()

// anchors calls f with the key and the end offset of every anchor of b.
func anchors(b []byte, f func(key uint64, end int)) {
	var h uint64
	const mask = 1<<anchorBits - 1
	for i, c := range b {
		h = h<<1 + gear[c]
		if i >= 63 && h&mask == 0 {
			f(h, i)
		}
	}
}

// indexAnchors maps the anchors of the old image's non-zero blocks to the
// offset of their first occurrence.
func indexAnchors(old []byte) map[uint64]int64 {
	m := make(map[uint64]int64, len(old)>>anchorBits/2)
	for off := 0; off < len(old); {
		// Runs of non-zero blocks, so zeros do not flood the index.
		for off < len(old) && isZero(old[off:min(off+bs, len(old))]) {
			off += bs
		}
		off = min(off, len(old)) // a zero partial last block
		end := off
		for end < len(old) && !isZero(old[end:min(end+bs, len(old))]) {
			end += bs
		}
		end = min(end, len(old))
		base := off
		anchors(old[off:end], func(k uint64, i int) {
			if _, ok := m[k]; !ok {
				m[k] = int64(base + i)
			}
		})
		off = end
	}
	return m
}

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

// chooseDict picks the old-image ranges most similar to a window's data.
func (e *encoder) chooseDict(blocks []int64, raw []byte) []delta.Range {
	oldBlocks := delta.Blocks(int64(len(e.old)))
	votes := map[int64]int{}
	vote := func(j int64, n int) {
		if j >= 0 && j < oldBlocks && !isZero(e.old[j*bs:min((j+1)*bs, int64(len(e.old)))]) {
			votes[j] += n
		}
	}
	anchors(raw, func(k uint64, i int) {
		if o, ok := e.anchors[k]; ok {
			vote(o/bs, 2)
			if first := o - 63; first/bs != o/bs && first >= 0 {
				vote(first/bs, 1) // the anchor's bytes began in the block before
			}
		}
	})
	for _, i := range blocks {
		vote(i, 3) // the same offset: inode tables, bitmaps, files rewritten in place
		if i > 0 && e.kind[i-1] == delta.OpCopy {
			vote(e.src[i-1]+1, 3)
		}
		if i+1 < int64(len(e.kind)) && e.kind[i+1] == delta.OpCopy {
			vote(e.src[i+1]-1, 3)
		}
	}
	type cand struct {
		j int64
		v int
	}
	cands := make([]cand, 0, len(votes))
	for j, v := range votes {
		cands = append(cands, cand{j, v})
	}
	sort.Slice(cands, func(a, b int) bool {
		if cands[a].v != cands[b].v {
			return cands[a].v > cands[b].v
		}
		return cands[a].j < cands[b].j
	})
	budget := e.opt.DictSize / bs
	chosen := map[int64]bool{}
	for _, c := range cands {
		if len(chosen) >= budget {
			break
		}
		chosen[c.j] = true
	}
	// Then the neighbours of the chosen blocks, best first.
	for _, c := range cands {
		for _, j := range []int64{c.j - 1, c.j + 1} {
			if len(chosen) >= budget {
				break
			}
			if j >= 0 && j < oldBlocks && !chosen[j] {
				chosen[j] = true
			}
		}
	}
	list := make([]int64, 0, len(chosen))
	for j := range chosen {
		list = append(list, j)
	}
	slices.Sort(list)
	type run struct {
		first, n int64
		v        int
	}
	var runs []run
	for _, j := range list {
		if n := len(runs); n > 0 && runs[n-1].first+runs[n-1].n == j {
			runs[n-1].n++
			runs[n-1].v += votes[j]
			continue
		}
		runs = append(runs, run{first: j, n: 1, v: votes[j]})
	}
	// Too many ranges: drop the least voted.
	for len(runs) > delta.MaxWindowDictRanges {
		k := 0
		for i := range runs {
			if runs[i].v < runs[k].v {
				k = i
			}
		}
		runs = slices.Delete(runs, k, k+1)
	}
	ranges := make([]delta.Range, 0, len(runs))
	for _, r := range runs {
		off := r.first * bs
		n := min(r.n*bs, int64(len(e.old))-off)
		ranges = append(ranges, delta.Range{Offset: uint64(off), Length: uint32(n)})
	}
	return ranges
}

func init() {
	if encoderWindow < delta.MaxDictSize+delta.MaxWindowSize {
		panic("deltaenc: encoderWindow does not reach the start of the largest dictionary")
	}
}
