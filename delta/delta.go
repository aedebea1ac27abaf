// Package delta is the offline delta format: a stream that rebuilds a new
// firmware image, block by block, from the old image a device runs (its
// active slot, read-only) plus only what changed, compressed against similar
// data of the old image, in bounded memory.
//
// This package is the device side: [NewReader] reads and strictly parses
// the header, [Reader.Apply] emits the new image's blocks in order. The
// vendor side, which makes deltas, is [github.com/airlockfw/airlock/delta/deltaenc]
// (kept apart so that the device links no zstd encoder).
//
// Threat model: the delta stream comes from an untrusted source (a bundle on
// a USB stick, a download). Its header's SHA-256 and length are signed in the
// new release's metadata; the caller compares [Reader.HeaderSHA256] and
// [Reader.HeaderLength] with the signed values before calling Apply. The
// header carries the SHA-256 of every compressed window, and Apply verifies
// each window's bytes against it before the zstd decoder sees them: the
// decoder never parses unauthenticated input. The old image is trusted to
// be readable, not to be right: every block Apply emits must be checked by
// the caller against the new release's signed hash tree (package verity)
// before it is written, so a wrong or corrupt old image, like any other
// mistake, yields blocks that fail that check and never reach the slot.
//
// Every count and size in the header is bounded by a named limit (MaxOps,
// MaxWindows, MaxWindowSize, MaxDictSize, ...), and Apply's memory is bounded
// by them: about MaxDictSize + 3 MiB of buffers, reused for every window.
//
// The byte format is described in docs/delta-format.md.
package delta

import (
	"errors"
	"fmt"
)

const (
	// Magic starts every delta stream.
	Magic = "ALDELTA\x00"
	// Version is the only format version this package reads and writes.
	Version = 1
	// BlockSize is the unit of the format: the new image is rebuilt in blocks
	// of 4 KiB (verity.BlockSize), the last one zero-padded.
	BlockSize = 4096
	// EmitBlocks is the most blocks Apply hands to its emit function at once
	// (1 MiB).
	EmitBlocks = 256

	// MaxImageSize bounds the old and new image lengths a header may state:
	// 64 GiB (verity.MaxDataBlocks blocks).
	MaxImageSize = 1 << 36
	// MaxHeaderSize bounds the header's bytes, and so the memory its parsed
	// form takes: 1 MiB.
	MaxHeaderSize = 1 << 20
	// MaxOps bounds the operations (runs of blocks) of a header.
	MaxOps = 1 << 16
	// MaxWindows bounds the compressed windows of a delta: MaxWindows
	// windows of MaxWindowSize cover 16 GiB of changed blocks.
	MaxWindows = 1 << 14
	// MaxWindowSize bounds the new data (uncompressed bytes) of one window,
	// and so Apply's window buffers: 1 MiB.
	MaxWindowSize = 1 << 20
	// MaxDictSize bounds the old-image bytes one window's dictionary
	// gathers, the largest buffer Apply holds: 2 MiB (4 MiB made the real
	// pair of bench/delta.sh 188 bytes smaller and cost a device 2 MiB of
	// memory).
	MaxDictSize = 2 << 20
	// MaxWindowDictRanges bounds the old-image ranges of one window's
	// dictionary.
	MaxWindowDictRanges = 256
	// MaxDictRanges bounds the dictionary ranges of all windows together.
	MaxDictRanges = 1 << 16
	// DecoderMaxWindow is the largest zstd window Apply's decoder accepts
	// (the dictionary is referenced outside it).
	DecoderMaxWindow = MaxWindowSize
)

// Operation kinds.
const (
	// OpCopy: Blocks blocks copied from the old image, starting at old block
	// OldBlock.
	OpCopy = 1
	// OpLiteral: Blocks blocks taken, in order, from the windows' data.
	OpLiteral = 2
	// OpZero: Blocks blocks of zeros.
	OpZero = 3
)

// Window methods.
const (
	// MethodStored: the window's bytes are its data (zstd did not help).
	MethodStored = 0
	// MethodZstd: the window is one zstd frame, decoded with the
	// dictionary's bytes as a raw-content dictionary (ID 0).
	MethodZstd = 1
)

var (
	// ErrFormat: the header is malformed, over a limit, or not in this
	// format's one encoding.
	ErrFormat = errors.New("delta: malformed delta header")
	// ErrLimit: the header states more than a named limit allows (it also
	// matches ErrFormat).
	ErrLimit = fmt.Errorf("%w: over a limit", ErrFormat)
	// ErrWindow: a compressed window does not match the SHA-256 the header
	// gives for it, is truncated, or does not decode to its stated length.
	// The stream was corrupted or tampered with after the header was made.
	ErrWindow = errors.New("delta: window does not match the header")
	// ErrTrailingData: the stream goes on after its last window.
	ErrTrailingData = errors.New("delta: data after the last window")
	// ErrOldImage: the old image could not be read where an operation
	// copies from (it is shorter than the header says, or unreadable).
	ErrOldImage = errors.New("delta: cannot read the old image")
)

// Op is one run of new blocks.
type Op struct {
	Kind     uint8
	Blocks   uint32 // blocks of the new image this run produces, >= 1
	OldBlock uint64 // first old block copied (OpCopy only; 0 otherwise)
}

// Range is a byte range of the old image.
type Range struct {
	Offset uint64
	Length uint32
}

// Window is one independently compressed group of literal blocks.
type Window struct {
	Method  uint8
	RawLen  uint32   // bytes of new data, a multiple of BlockSize
	CompLen uint32   // bytes in the stream
	Dict    []Range  // old-image ranges whose concatenation is the dictionary
	SHA256  [32]byte // of the CompLen bytes in the stream
}

// DictLen is the number of bytes of w's dictionary.
func (w *Window) DictLen() int64 {
	var n int64
	for _, r := range w.Dict {
		n += int64(r.Length)
	}
	return n
}

// Header is the parsed header of a delta.
type Header struct {
	OldLength int64 // bytes of the old image the delta was made against
	NewLength int64 // bytes of the new image
	Ops       []Op
	Windows   []Window
}

// Blocks returns the number of blocks of an image of n bytes.
func Blocks(n int64) int64 { return (n + BlockSize - 1) / BlockSize }
