package payload

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/airlockfw/airlock/delta"
	"github.com/airlockfw/airlock/verity"
	"github.com/klauspost/compress/zstd"
)

// Indexed payloads (release metadata schema 2): the payload file is the
// dm-verity hash tree of the installed image, then for a zstd payload the
// frame table, then the data. Every block is verified against the signed
// root hash BEFORE it is written (verify before write), every compressed
// frame against the signed frame table BEFORE the decoder sees it, so no
// unauthenticated byte reaches the slot or the decoder. There is no
// whole-file digest on the critical path: blocks are hashed on every core.

// Limits of indexed payloads.
const (
	// ChunkBlocks is how many blocks one pipeline stage holds
	// (uncompressed payloads): 1 MiB.
	ChunkBlocks = 256
	// FrameEntrySize is one frame table entry: the compressed length (8
	// bytes, big endian) and the SHA-256 of the compressed frame.
	FrameEntrySize = 8 + sha256.Size
	// MaxFrames bounds the frame table (held in memory: 640 KiB).
	MaxFrames = 16384
	// pipelineBuffers is how many chunks circulate between the reader,
	// the checker and the writer.
	pipelineBuffers = 3
)

var (
	// ErrFrame means a compressed frame does not match the signed frame
	// table, or does not decompress to its signed size.
	ErrFrame = errors.New("compressed frame does not match the signed frame table")
	// ErrFrameTable means the frame table does not match its signed digest
	// or does not add up to the signed payload length.
	ErrFrameTable = errors.New("frame table does not match the signed release")
)

// Indexed is what the signed release metadata says about a schema 2
// payload.
type Indexed struct {
	Length          int64  // of the payload file (the TUF target)
	InstalledLength int64  // of the image
	Salt            []byte // of the tree
	Root            []byte // the signed root hash
	TreeLength      int64  // bytes of tree at the start of the payload
	// FrameSize and Frames describe a zstd payload (zero: uncompressed);
	// FrameTable is the SHA-256 of its frame table.
	FrameSize, Frames int64
	FrameTable        []byte
}

func (e *Indexed) params() verity.Params {
	return verity.Params{DataBlockSize: verity.BlockSize, HashBlockSize: verity.BlockSize, Salt: e.Salt, DataBlocks: verity.BlocksFor(e.InstalledLength)}
}

// MaxFrameSize bounds the installed bytes of one frame (a device holds a
// few frames in memory): release.MaxFrameSize.
const MaxFrameSize = 4 << 20

// check validates the signed geometry of e, which every indexed install and
// the boot check rely on: the tree's parameters and length, and the frames.
func (e *Indexed) check() (verity.Params, error) {
	p := e.params()
	if err := p.Validate(); err != nil {
		return p, err
	}
	switch {
	case e.TreeLength != p.TreeSize():
		return p, fmt.Errorf("%w: the signed tree length %d is not the %d bytes of a tree over %d blocks", verity.ErrParams, e.TreeLength, p.TreeSize(), p.DataBlocks)
	case e.Frames < 0 || e.Frames > MaxFrames:
		return p, fmt.Errorf("%w: %d frames, the limit is MaxFrames %d", ErrFrameTable, e.Frames, MaxFrames)
	case e.Frames > 0 && (e.FrameSize <= 0 || e.FrameSize > MaxFrameSize || e.FrameSize%verity.BlockSize != 0 || (e.InstalledLength+e.FrameSize-1)/e.FrameSize != e.Frames):
		return p, fmt.Errorf("%w: %d frames of %d bytes do not hold %d bytes (or over MaxFrameSize %d)", ErrFrameTable, e.Frames, e.FrameSize, e.InstalledLength, MaxFrameSize)
	}
	return p, nil
}

// checkLength checks the payload file's signed length against its parts.
func (e *Indexed) checkLength() error {
	switch {
	case e.Frames == 0 && e.Length != e.TreeLength+e.InstalledLength:
		return fmt.Errorf("%w: the signed payload is %d bytes, the tree and image are %d", ErrLength, e.Length, e.TreeLength+e.InstalledLength)
	case e.Frames > 0 && e.Length < e.TreeLength+e.Frames*FrameEntrySize:
		return fmt.Errorf("%w: the signed payload is %d bytes, shorter than its tree and frame table", ErrLength, e.Length)
	}
	return nil
}

// HashOffset is where the tree is stored in the slot: after the image's
// last (zero-padded) block.
func (e *Indexed) HashOffset() int64 { return verity.BlocksFor(e.InstalledLength) * verity.BlockSize }

// Slot is where an indexed payload is installed: the image's blocks at 0,
// the tree at HashOffset. Blocks are written with WriteAt; the tree is read
// back (ReadAt) and verified again each time a block is checked. ReadAt and
// WriteAt are called concurrently (a writer goroutine writes while the
// checker reads the tree back), as *os.File allows.
type Slot interface {
	io.WriterAt
	io.ReaderAt
}

// CopyOptions are optional hooks of CopyIndexed.
type CopyOptions struct {
	// Written, if not nil, is called from the writer goroutine after each
	// chunk of image is written (to start the kernel's writeback early).
	Written func(off, n int64)
	// Progress, if not nil, receives the verified image bytes.
	Progress io.Writer
	// ChunkBlocks is the blocks of one read, check and write of an
	// uncompressed image (0: ChunkBlocks; a device's write_chunk).
	ChunkBlocks int
}

// CopyIndexed installs the indexed payload read from src into dst: it
// reads the tree and verifies every hash block against e.Root before
// writing it at e.HashOffset(), reads and verifies the frame table, then
// streams the data: each compressed frame is checked against its signed
// SHA-256 before it is decompressed, and every block is checked against the
// tree before it is written, on every core, while the next chunk is read
// and the previous one written. A bad block stops the copy: nothing of its
// chunk or after it reaches dst. It reads exactly e.Length bytes and then
// expects the end of src. Memory is a few 1 MiB chunks (or frames) and the
// upper tree levels, whatever the image size.
func CopyIndexed(dst Slot, src io.Reader, e Indexed, o CopyOptions) (Result, error) {
	var res Result
	p, err := e.check()
	if err != nil {
		return res, err
	}
	if err := e.checkLength(); err != nil {
		return res, err
	}
	tableLen := e.Frames * FrameEntrySize
	counted := &countingReader{r: io.LimitReader(src, e.Length)}
	tree, err := verity.ReadTree(counted, p, e.Root, dst, e.HashOffset())
	if err != nil {
		return res, mismatch(sourceErr(counted, e.Length, err))
	}
	pl := &pipeline{dst: dst, tree: tree, e: &e, o: o}
	if e.Frames == 0 {
		err = pl.raw(counted)
	} else {
		err = pl.frames(counted, tableLen)
	}
	res.TransportBytes, res.InstalledBytes = counted.n, pl.written
	if err != nil {
		return res, mismatch(sourceErr(counted, e.Length, err))
	}
	return res, expectEnd(src, e.Length)
}

// expectEnd checks that src, which gave the signed length's bytes, ends.
func expectEnd(src io.Reader, length int64) error {
	var one [1]byte
	switch n, err := io.ReadFull(src, one[:]); {
	case n > 0:
		return tooLong(length)
	case err != io.EOF:
		return err
	}
	return nil
}

// mismatch makes a tree, block or frame mismatch an ErrHash too: the
// payload does not match the signed release, whichever check saw it.
func mismatch(err error) error {
	for _, s := range []error{verity.ErrTree, verity.ErrBlock, ErrFrame, ErrFrameTable, ErrDelta, delta.ErrWindow, delta.ErrFormat} {
		if errors.Is(err, s) && !errors.Is(err, ErrHash) {
			return fmt.Errorf("%w: %w", ErrHash, err)
		}
	}
	return err
}

// sourceErr says why a check of the payload failed when the source is the
// cause: the source's own error (a dropped connection, a bundle's framing)
// when the check failed on it, or, when the source ended before length
// bytes, a truncated payload. A check that failed on bytes it read whole
// keeps its verdict (a mismatch), whatever the source did afterwards.
func sourceErr(c *countingReader, length int64, err error) error {
	switch {
	case c.err != nil && errors.Is(err, c.err):
		return c.err
	case c.eof && c.n < length && c.err == nil:
		return fmt.Errorf("%w: the payload does not match the signed target: it ends after %d of its %d bytes (truncated)", ErrLength, c.n, length)
	}
	return err
}

// chunk is a run of whole blocks of the image, verified or not yet.
type chunk struct {
	first int64  // block number
	data  []byte // whole blocks
	n     int64  // image bytes in data (the last block may be padding)
	err   error  // the stage before failed; the last chunk sent
}

type pipeline struct {
	dst     Slot
	tree    *verity.Tree
	e       *Indexed
	o       CopyOptions
	written int64
}

// run checks the chunks arriving on in, in order, and hands them to a
// writer goroutine; a checked chunk's buffer goes back to free once
// written. It returns at the first error (of a chunk, the check or a
// write) without taking more chunks: the caller then stops the producers.
func (pl *pipeline) run(in <-chan *chunk, free chan<- []byte) error {
	out := make(chan *chunk, pipelineBuffers)
	werr := make(chan error, 1)
	failed := make(chan struct{}) // closed at the first failed write
	go func() {
		var err error
		for c := range out {
			if err == nil {
				off := c.first * verity.BlockSize
				if _, err = pl.dst.WriteAt(c.data, off); err == nil {
					pl.written += c.n
					if pl.o.Written != nil {
						pl.o.Written(off, int64(len(c.data)))
					}
					if pl.o.Progress != nil {
						pl.o.Progress.Write(c.data[:c.n])
					}
				} else {
					err = writeError{err}
					close(failed)
				}
			}
			free <- c.data
		}
		werr <- err
	}()
	var err error
loop:
	for c := range in {
		if err = c.err; err == nil {
			err = pl.tree.Check(pl.dst, c.first, c.data)
		}
		if err != nil {
			break
		}
		select {
		case <-failed: // the slot failed: stop reading the source
			free <- c.data
			break loop
		default:
		}
		select {
		case out <- c:
		case <-failed:
			free <- c.data
			break loop
		}
	}
	close(out)
	if w := <-werr; err == nil && w != nil {
		err = w
	}
	return err
}

// stages runs producer goroutines that stop when stop is closed; wait
// closes it and waits for them, so that no goroutine still reads the
// source when CopyIndexed returns.
type stages struct {
	stop chan struct{}
	done chan struct{}
	n    int
}

func newStages() *stages { return &stages{stop: make(chan struct{}), done: make(chan struct{}, 2)} }

func (s *stages) goRun(f func()) {
	s.n++
	go func() {
		defer func() { s.done <- struct{}{} }()
		f()
	}()
}

// send zero-pads the last block of c's c.n bytes in buf, makes them c's
// data and sends c; false when the stages are stopped.
func (s *stages) send(in chan<- *chunk, c *chunk, buf []byte) bool {
	end := (c.n + verity.BlockSize - 1) / verity.BlockSize * verity.BlockSize
	clear(buf[c.n:end])
	c.data = buf[:end]
	select {
	case in <- c:
		return true
	case <-s.stop:
		return false
	}
}

func (s *stages) wait() {
	close(s.stop)
	for range s.n {
		<-s.done
	}
}

// raw streams an uncompressed image: CopyOptions.ChunkBlocks blocks at a
// time.
func (pl *pipeline) raw(src io.Reader) error {
	chunkBlocks := pl.o.ChunkBlocks
	if chunkBlocks <= 0 {
		chunkBlocks = ChunkBlocks
	}
	free := make(chan []byte, pipelineBuffers)
	for range pipelineBuffers - 1 {
		free <- make([]byte, chunkBlocks*verity.BlockSize)
	}
	in := make(chan *chunk)
	st := newStages()
	st.goRun(func() {
		for off := int64(0); off < pl.e.InstalledLength; {
			var buf []byte
			select {
			case buf = <-free:
			case <-st.stop:
				return
			}
			n := min(int64(len(buf)), pl.e.InstalledLength-off)
			c := &chunk{first: off / verity.BlockSize, n: n}
			_, c.err = io.ReadFull(src, buf[:n])
			if !st.send(in, c, buf) || c.err != nil {
				return
			}
			off += n
		}
		close(in)
	})
	err := pl.run(in, free)
	st.wait()
	return err
}

// frames streams a zstd image: the frame table, then each frame verified,
// decompressed and checked.
func (pl *pipeline) frames(src io.Reader, tableLen int64) error {
	e := pl.e
	table, err := e.readFrameTable(src, tableLen)
	if err != nil {
		return err
	}
	maxFrame := MaxCompressedFrame(e.FrameSize)
	dec, err := e.frameDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()

	// The reader goroutine reads and verifies compressed frames; this
	// goroutine decompresses and checks them; the writer writes them.
	type frame struct {
		k   int64
		buf []byte
		err error
	}
	cfree := make(chan []byte, 2)
	for range 2 {
		cfree <- make([]byte, maxFrame)
	}
	frames := make(chan frame)
	st := newStages()
	st.goRun(func() {
		defer close(frames)
		for k := int64(0); k < e.Frames; k++ {
			var buf []byte
			select {
			case buf = <-cfree:
			case <-st.stop:
				return
			}
			ent := table[k*FrameEntrySize : (k+1)*FrameEntrySize]
			f := frame{k: k, buf: buf[:binary.BigEndian.Uint64(ent)]}
			if _, f.err = io.ReadFull(src, f.buf); f.err == nil {
				f.err = e.checkFrame(ent, f.buf, k)
			}
			select {
			case frames <- f:
			case <-st.stop:
				return
			}
			if f.err != nil {
				return
			}
		}
	})
	free := make(chan []byte, pipelineBuffers)
	for range pipelineBuffers - 1 {
		free <- make([]byte, e.FrameSize)
	}
	in := make(chan *chunk)
	st.goRun(func() {
		for f := range frames {
			var buf []byte
			select {
			case buf = <-free:
			case <-st.stop:
				return
			}
			want := min(e.FrameSize, e.InstalledLength-f.k*e.FrameSize)
			c := &chunk{first: f.k * e.FrameSize / verity.BlockSize, n: want, err: f.err}
			if c.err == nil {
				c.err = decodeFrame(dec, f.buf, buf, f.k, want)
			}
			cfree <- f.buf[:cap(f.buf)]
			if !st.send(in, c, buf) || c.err != nil {
				return
			}
		}
		close(in)
	})
	err = pl.run(in, free)
	st.wait()
	return err
}

// readFrameTable reads the frame table (tableLen bytes) from r and checks
// it against the signed digest, each frame's length against
// MaxCompressedFrame, and their sum against the signed payload length.
func (e *Indexed) readFrameTable(r io.Reader, tableLen int64) ([]byte, error) {
	table := make([]byte, tableLen)
	if _, err := io.ReadFull(r, table); err != nil {
		return nil, fmt.Errorf("%w: reading it: %w", ErrFrameTable, err)
	}
	if sum := sha256.Sum256(table); subtle.ConstantTimeCompare(sum[:], e.FrameTable) != 1 {
		return nil, fmt.Errorf("%w: its SHA-256 is not the signed one", ErrFrameTable)
	}
	maxFrame := MaxCompressedFrame(e.FrameSize)
	total := e.TreeLength + tableLen
	for k := int64(0); k < e.Frames; k++ {
		n := binary.BigEndian.Uint64(table[k*FrameEntrySize:])
		if n == 0 || n > uint64(maxFrame) {
			return nil, fmt.Errorf("%w: frame %d is %d bytes compressed, want 1 to %d", ErrFrameTable, k, n, maxFrame)
		}
		total += int64(n)
	}
	if total != e.Length {
		return nil, fmt.Errorf("%w: the frames add up to a %d-byte payload, the signed one is %d bytes", ErrFrameTable, total, e.Length)
	}
	return table, nil
}

// frameDecoder is the zstd decoder of e's frames: one goroutine, memory
// bounded by the frame size.
func (e *Indexed) frameDecoder() (*zstd.Decoder, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(max(e.FrameSize, 1<<20))), zstd.WithDecoderMaxMemory(uint64(e.FrameSize)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCompression, err)
	}
	return dec, nil
}

// checkFrame checks compressed frame k against its entry of the verified
// frame table, before the decoder sees it.
func (e *Indexed) checkFrame(ent, comp []byte, k int64) error {
	if sum := sha256.Sum256(comp); subtle.ConstantTimeCompare(sum[:], ent[8:]) != 1 {
		return fmt.Errorf("%w: frame %d (installed bytes %d to %d)", ErrFrame, k, k*e.FrameSize, min((k+1)*e.FrameSize, e.InstalledLength))
	}
	return nil
}

// decodeFrame decompresses verified frame k into buf, which must receive
// exactly want bytes (in place: buf's capacity is a whole frame).
func decodeFrame(dec *zstd.Decoder, comp, buf []byte, k, want int64) error {
	out, err := dec.DecodeAll(comp, buf[:0])
	switch {
	case err != nil:
		return fmt.Errorf("%w: frame %d matches the signed table but does not decompress (a broken release): %v", ErrCompression, k, err)
	case int64(len(out)) != want || len(out) > 0 && &out[0] != &buf[0]:
		return fmt.Errorf("%w: frame %d decompresses to %d bytes, the release signs %d", ErrFrame, k, len(out), want)
	}
	return nil
}

// MaxCompressedFrame is the largest compressed frame accepted for frames
// of frameSize installed bytes: zstd's worst-case bound with room to spare.
func MaxCompressedFrame(frameSize int64) int64 { return frameSize + frameSize>>7 + 4096 }

// CheckSlot verifies an installed indexed image in place (the boot-time
// check): the tree at e.HashOffset() against e.Root, then, unless treeOnly,
// every block of the image against the tree, hashed on every core. With
// treeOnly the kernel's dm-verity target is trusted to check each block
// when it is read. Memory is one chunk and the upper tree levels.
func CheckSlot(slot io.ReaderAt, e Indexed, treeOnly bool) error {
	p, err := e.check()
	if err != nil {
		return err
	}
	tree, err := verity.ReadTree(io.NewSectionReader(slot, e.HashOffset(), e.TreeLength), p, e.Root, discardAt{}, e.HashOffset())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInstalledHash, err)
	}
	if treeOnly {
		return nil
	}
	buf := make([]byte, ChunkBlocks*verity.BlockSize)
	for first := int64(0); first < p.DataBlocks; first += ChunkBlocks {
		n := min(ChunkBlocks, p.DataBlocks-first) * verity.BlockSize
		if k, err := slot.ReadAt(buf[:n], first*verity.BlockSize); k < int(n) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: reading block %d: %w", ErrInstalledLength, first, err)
		}
		// The padding of the last block must be zero too: dm-verity reads it.
		if err := tree.Check(slot, first, buf[:n]); err != nil {
			return fmt.Errorf("%w: %w", ErrInstalledHash, err)
		}
	}
	return nil
}

// discardAt is the tree "destination" of a boot check: the tree is read
// from the slot, so there is nothing to write; Tree.Check reads level 0
// back from the slot and verifies it again.
type discardAt struct{}

func (discardAt) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }
