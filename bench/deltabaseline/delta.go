package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// The baseline's delta file, for this benchmark only (not a format Airlock
// ships): a header, then one zstd stream holding a reference for every block
// of the new image followed by the literal blocks in order. A reference is a
// uint32, little endian: 0 for a literal block; for a reused block, 1 +
// zigzag(k - (p+1)) where k is the old block reused and p the old block of
// the previous reference (-1 at first), so runs of consecutive old blocks
// are runs of 1 that compress to almost nothing.
//
//	magic     8 bytes  "ALBLKD01"
//	blockSize uint32   always BlockSize
//	newSize   uint64   bytes of the new image
//	zstd stream: refs, then literals
const (
	magic = "ALBLKD01"
	// BlockSize is the unit of reuse: a block of the new image is reused when
	// it equals a block of the old image at any offset that is a multiple of
	// BlockSize.
	BlockSize = 4096
	// MaxImageSize bounds the new image a delta may describe (and so the
	// number of references read): 16 GiB.
	MaxImageSize = 16 << 30
	// MaxOldBlocks bounds the old image indexed by create (4 Mi blocks, 16 GiB).
	MaxOldBlocks = 4 << 20
	// DecoderMaxWindow bounds the zstd window apply accepts, and so its memory.
	DecoderMaxWindow = 8 << 20
	headerSize       = len(magic) + 4 + 8
)

// Stats says what create found.
type Stats struct {
	Blocks   int64 // blocks of the new image
	Reused   int64 // of them, found in the old image
	Literal  int64 // of them, carried in the delta
	NewSize  int64
	Download int64 // bytes of the delta file
}

// Create writes to dst a delta that rebuilds newImg from oldImg.
func Create(dst io.Writer, oldImg, newImg *os.File) (Stats, error) {
	var st Stats
	index, err := indexBlocks(oldImg)
	if err != nil {
		return st, err
	}
	fi, err := newImg.Stat()
	if err != nil {
		return st, err
	}
	st.NewSize = fi.Size()
	if st.NewSize > MaxImageSize {
		return st, fmt.Errorf("new image is %d bytes, over the limit of %d", st.NewSize, int64(MaxImageSize))
	}
	st.Blocks = (st.NewSize + BlockSize - 1) / BlockSize
	refs := make([]uint32, st.Blocks)
	buf := make([]byte, BlockSize)
	r := bufio.NewReaderSize(io.NewSectionReader(newImg, 0, st.NewSize), 1<<20)
	for i := range refs {
		n, err := io.ReadFull(r, buf)
		if err != nil && !(errors.Is(err, io.ErrUnexpectedEOF) && int64(i) == st.Blocks-1) {
			return st, fmt.Errorf("failed to read the new image: %w", err)
		}
		if n == BlockSize {
			if k, ok := index[sha256.Sum256(buf)]; ok {
				refs[i] = k + 1
				st.Reused++
				continue
			}
		}
		st.Literal++
	}

	cw := &countWriter{w: dst}
	hdr := make([]byte, 0, headerSize)
	hdr = append(hdr, magic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, BlockSize)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(st.NewSize))
	if _, err := cw.Write(hdr); err != nil {
		return st, err
	}
	enc, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		return st, err
	}
	bw := bufio.NewWriterSize(enc, 1<<20)
	prev := int64(-1)
	for _, ref := range refs {
		v := uint32(0)
		if ref != 0 {
			k := int64(ref - 1)
			v = 1 + zigzag(k-(prev+1))
			prev = k
		}
		if err := binary.Write(bw, binary.LittleEndian, v); err != nil {
			return st, err
		}
	}
	for i, ref := range refs {
		if ref != 0 {
			continue
		}
		off := int64(i) * BlockSize
		n := min(BlockSize, st.NewSize-off)
		if _, err := newImg.ReadAt(buf[:n], off); err != nil {
			return st, fmt.Errorf("failed to read the new image: %w", err)
		}
		if _, err := bw.Write(buf[:n]); err != nil {
			return st, err
		}
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	if err := enc.Close(); err != nil {
		return st, err
	}
	st.Download = cw.n
	return st, nil
}

// indexBlocks maps the SHA-256 of every full block of img to its first
// block number.
func indexBlocks(img *os.File) (map[[32]byte]uint32, error) {
	fi, err := img.Stat()
	if err != nil {
		return nil, err
	}
	blocks := fi.Size() / BlockSize
	if blocks > MaxOldBlocks {
		return nil, fmt.Errorf("old image has %d blocks, over the limit of %d", blocks, MaxOldBlocks)
	}
	index := make(map[[32]byte]uint32, blocks)
	r := bufio.NewReaderSize(io.NewSectionReader(img, 0, blocks*BlockSize), 1<<20)
	buf := make([]byte, BlockSize)
	for k := range uint32(blocks) {
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("failed to read the old image: %w", err)
		}
		h := sha256.Sum256(buf)
		if _, ok := index[h]; !ok {
			index[h] = k
		}
	}
	return index, nil
}

// Apply rebuilds the new image into dst from oldImg and the delta (size
// bytes), in constant memory: the references are read one at a time from a
// first decoder of the stream, the literals from a second decoder of the
// same stream that skipped past the references.
func Apply(dst io.Writer, oldImg io.ReaderAt, delta io.ReaderAt, size int64) error {
	hdr := make([]byte, headerSize)
	if _, err := delta.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("failed to read the delta header: %w", err)
	}
	if string(hdr[:len(magic)]) != magic {
		return errors.New("not a block-reuse delta (bad magic)")
	}
	if bs := binary.LittleEndian.Uint32(hdr[len(magic):]); bs != BlockSize {
		return fmt.Errorf("block size %d, want %d", bs, BlockSize)
	}
	newSize := binary.LittleEndian.Uint64(hdr[len(magic)+4:])
	if newSize > MaxImageSize {
		return fmt.Errorf("new image of %d bytes is over the limit of %d", newSize, int64(MaxImageSize))
	}
	blocks := (int64(newSize) + BlockSize - 1) / BlockSize
	refsDec, err := newDecoder(io.NewSectionReader(delta, int64(headerSize), size-int64(headerSize)))
	if err != nil {
		return err
	}
	defer refsDec.Close()
	litDec, err := newDecoder(io.NewSectionReader(delta, int64(headerSize), size-int64(headerSize)))
	if err != nil {
		return err
	}
	defer litDec.Close()
	if _, err := io.CopyN(io.Discard, litDec, 4*blocks); err != nil {
		return fmt.Errorf("delta too short for %d references: %w", blocks, err)
	}
	refs := bufio.NewReaderSize(refsDec, 64<<10)
	lits := bufio.NewReaderSize(litDec, 64<<10)
	buf := make([]byte, BlockSize)
	var rb [4]byte
	prev := int64(-1)
	for i := range blocks {
		n := min(BlockSize, int64(newSize)-i*BlockSize)
		if _, err := io.ReadFull(refs, rb[:]); err != nil {
			return fmt.Errorf("failed to read reference %d: %w", i, err)
		}
		if v := binary.LittleEndian.Uint32(rb[:]); v != 0 {
			if n != BlockSize {
				return fmt.Errorf("reference for the partial last block %d", i)
			}
			k := prev + 1 + unzigzag(v-1)
			if k < 0 || k >= MaxOldBlocks {
				return fmt.Errorf("block %d refers to old block %d, out of range", i, k)
			}
			if _, err := oldImg.ReadAt(buf, k*BlockSize); err != nil {
				return fmt.Errorf("block %d refers to old block %d: %w", i, k, err)
			}
			prev = k
		} else if _, err := io.ReadFull(lits, buf[:n]); err != nil {
			return fmt.Errorf("failed to read literal block %d: %w", i, err)
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return err
		}
	}
	// The literals end exactly where the stream ends.
	if _, err := lits.ReadByte(); err != io.EOF {
		if err == nil {
			return errors.New("trailing data after the last literal block")
		}
		return err
	}
	return nil
}

func newDecoder(r io.Reader) (*zstd.Decoder, error) {
	return zstd.NewReader(bufio.NewReaderSize(r, 64<<10), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(DecoderMaxWindow))
}

func zigzag(d int64) uint32 { return uint32(d<<1) ^ uint32(d>>63) }

func unzigzag(v uint32) int64 { return int64(v>>1) ^ -int64(v&1) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
