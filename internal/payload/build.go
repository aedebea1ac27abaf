package payload

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"

	"github.com/airlockfw/airlock/verity"
	"github.com/klauspost/compress/zstd"
)

// DefaultFrameSize is the installed bytes per zstd frame of an indexed
// payload that BuildIndexed writes when BuildOptions.FrameSize is zero.
const DefaultFrameSize = 1 << 20

// BuildOptions say how BuildIndexed lays out a payload.
type BuildOptions struct {
	Salt []byte // the tree's salt
	// FrameSize > 0 compresses the image with zstd in independent frames
	// of FrameSize installed bytes (a multiple of verity.BlockSize); 0
	// stores it uncompressed.
	FrameSize int64
	// Level is the zstd encoder level (0: zstd.SpeedBetterCompression).
	Level zstd.EncoderLevel
	// Progress, if not nil, receives the image bytes as they are read.
	Progress io.Writer
}

// Built describes an indexed payload BuildIndexed wrote: what the release
// metadata signs.
type Built struct {
	Length          int64 // of the payload file
	SHA256          [sha256.Size]byte
	InstalledLength int64
	InstalledSHA256 [sha256.Size]byte
	Root            [sha256.Size]byte
	TreeLength      int64
	FrameSize       int64
	Frames          int64
	FrameTable      [sha256.Size]byte
}

// Indexed returns what a device checks the payload against.
func (b *Built) Indexed(salt []byte) Indexed {
	e := Indexed{Length: b.Length, InstalledLength: b.InstalledLength, Salt: salt, Root: b.Root[:],
		TreeLength: b.TreeLength, FrameSize: b.FrameSize, Frames: b.Frames}
	if b.Frames > 0 {
		e.FrameTable = b.FrameTable[:]
	}
	return e
}

// BuildIndexed writes the indexed payload of the image read from in
// (exactly length bytes, then the end) to out, from offset 0: the tree,
// the frame table when compressing, the data. It reads the image once;
// the tree is hashed and the frames compressed on every core. out must
// not hold anything else (the caller commits or removes it). This is the
// vendor side: memory is the tree's upper levels and a few frames.
func BuildIndexed(out io.WriterAt, in io.Reader, length int64, o BuildOptions) (*Built, error) {
	if length <= 0 {
		return nil, fmt.Errorf("%w: an empty image", ErrInstalledLength)
	}
	if o.FrameSize < 0 || o.FrameSize%verity.BlockSize != 0 {
		return nil, fmt.Errorf("frame size %d is not a multiple of %d", o.FrameSize, verity.BlockSize)
	}
	p := verity.Params{DataBlockSize: verity.BlockSize, HashBlockSize: verity.BlockSize, Salt: o.Salt, DataBlocks: verity.BlocksFor(length)}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := &Built{InstalledLength: length, TreeLength: p.TreeSize(), FrameSize: o.FrameSize}
	if o.FrameSize > 0 {
		b.Frames = (length + o.FrameSize - 1) / o.FrameSize
		if b.Frames > MaxFrames {
			return nil, fmt.Errorf("%w: %d frames of %d bytes, the limit is MaxFrames %d: use larger frames", ErrFrameTable, b.Frames, o.FrameSize, MaxFrames)
		}
	}
	dataOff := b.TreeLength + b.Frames*FrameEntrySize
	ih := sha256.New()
	var sink frameSink
	if b.Frames > 0 {
		fw, err := newFrameWriter(out, dataOff, o)
		if err != nil {
			return nil, err
		}
		sink = fw
	} else {
		sink = &rawSink{out: out, off: dataOff}
	}
	tee := io.TeeReader(io.LimitReader(in, length), multiSink{ih, sink, o.Progress})
	root, err := verity.Build(tee, length, p, out)
	if ferr := sink.finish(); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	var one [1]byte
	if n, _ := in.Read(one[:]); n > 0 {
		return nil, fmt.Errorf("%w: the image is longer than %d bytes (it changed while it was read)", ErrInstalledLength, length)
	}
	copy(b.Root[:], root)
	copy(b.InstalledSHA256[:], ih.Sum(nil))
	b.Length = dataOff + sink.size()
	if fw, ok := sink.(*frameWriter); ok {
		if _, err := out.WriteAt(fw.table, b.TreeLength); err != nil {
			return nil, err
		}
		b.FrameTable = sha256.Sum256(fw.table)
	}
	return b, nil
}

// HashFile returns the SHA-256 of the first n bytes of r (the payload file
// BuildIndexed wrote, for the TUF target's digest).
func HashFile(r io.ReaderAt, n int64) ([sha256.Size]byte, error) {
	h := sha256.New()
	var sum [sha256.Size]byte
	if _, err := io.CopyBuffer(h, io.NewSectionReader(r, 0, n), make([]byte, BufferSize)); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

type frameSink interface {
	io.Writer
	finish() error
	size() int64
}

// multiSink writes to every writer that is not nil; only the frame sink
// can fail.
type multiSink struct {
	h        hash.Hash
	sink     frameSink
	progress io.Writer
}

func (m multiSink) Write(p []byte) (int, error) {
	m.h.Write(p)
	if m.progress != nil {
		m.progress.Write(p)
	}
	return m.sink.Write(p)
}

// rawSink writes the image as it is.
type rawSink struct {
	out io.WriterAt
	off int64
	n   int64
}

func (r *rawSink) Write(p []byte) (int, error) {
	n, err := r.out.WriteAt(p, r.off+r.n)
	r.n += int64(n)
	return n, err
}
func (r *rawSink) finish() error { return nil }
func (r *rawSink) size() int64   { return r.n }

// frameWriter cuts the image into frames, compresses them on every core
// and writes them in order.
type frameWriter struct {
	out   io.WriterAt
	off   int64 // where the next compressed frame goes
	total int64
	cur   []byte
	table []byte
	jobs  chan *frameJob
	order chan *frameJob
	done  chan error
	err   error
}

type frameJob struct {
	raw  []byte
	out  []byte
	err  error
	done chan struct{}
}

func newFrameWriter(out io.WriterAt, off int64, o BuildOptions) (*frameWriter, error) {
	level := o.Level
	if level == 0 {
		level = zstd.SpeedBetterCompression
	}
	workers := runtime.GOMAXPROCS(0)
	fw := &frameWriter{out: out, off: off, cur: make([]byte, 0, o.FrameSize),
		jobs: make(chan *frameJob, workers), order: make(chan *frameJob, workers+1), done: make(chan error, 1)}
	for range workers {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(int(min(max(o.FrameSize, 1<<20), int64(MaxZstdWindow)))), zstd.WithZeroFrames(true))
		if err != nil {
			return nil, fmt.Errorf("failed to start zstd: %w", err)
		}
		go func() {
			for j := range fw.jobs {
				j.out = enc.EncodeAll(j.raw, nil)
				if int64(len(j.out)) > MaxCompressedFrame(int64(cap(j.raw))) {
					j.err = errors.New("zstd made a frame larger than MaxCompressedFrame")
				}
				close(j.done)
			}
			enc.Close()
		}()
	}
	go func() {
		var err error
		for j := range fw.order {
			<-j.done
			if err == nil {
				err = j.err
			}
			if err == nil {
				_, err = out.WriteAt(j.out, fw.off)
				fw.off += int64(len(j.out))
				fw.total += int64(len(j.out))
				var ent [FrameEntrySize]byte
				binary.BigEndian.PutUint64(ent[:], uint64(len(j.out)))
				sum := sha256.Sum256(j.out)
				copy(ent[8:], sum[:])
				fw.table = append(fw.table, ent[:]...)
			}
		}
		fw.done <- err
	}()
	return fw, nil
}

func (fw *frameWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := copy(fw.cur[len(fw.cur):cap(fw.cur)], p)
		fw.cur = fw.cur[:len(fw.cur)+k]
		p = p[k:]
		if len(fw.cur) == cap(fw.cur) {
			fw.flush()
		}
	}
	return n, nil
}

func (fw *frameWriter) flush() {
	j := &frameJob{raw: fw.cur, done: make(chan struct{})}
	fw.order <- j
	fw.jobs <- j
	fw.cur = make([]byte, 0, cap(fw.cur))
}

func (fw *frameWriter) finish() error {
	if len(fw.cur) > 0 {
		fw.flush()
	}
	close(fw.jobs)
	close(fw.order)
	return <-fw.done
}

func (fw *frameWriter) size() int64 { return fw.total }
