package delta

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Sizes of the header's fixed parts (docs/delta-format.md).
const (
	fixedSize  = len(Magic) + 4 + 4 + 8 + 8 + 4 + 4 // 40
	opSize     = 1 + 4 + 8
	windowSize = 1 + 4 + 4 + 2 + 32 // before its dictionary ranges
	rangeSize  = 8 + 4
)

// MarshalBinary encodes h in the format's one encoding, after checking it
// as NewReader would.
func (h *Header) MarshalBinary() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, h.size())
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint32(b, Version)
	b = binary.LittleEndian.AppendUint32(b, BlockSize)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.OldLength))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.NewLength))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(h.Ops)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(h.Windows)))
	for _, op := range h.Ops {
		b = append(b, op.Kind)
		b = binary.LittleEndian.AppendUint32(b, op.Blocks)
		b = binary.LittleEndian.AppendUint64(b, op.OldBlock)
	}
	for _, w := range h.Windows {
		b = append(b, w.Method)
		b = binary.LittleEndian.AppendUint32(b, w.RawLen)
		b = binary.LittleEndian.AppendUint32(b, w.CompLen)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(w.Dict)))
		b = append(b, w.SHA256[:]...)
		for _, r := range w.Dict {
			b = binary.LittleEndian.AppendUint64(b, r.Offset)
			b = binary.LittleEndian.AppendUint32(b, r.Length)
		}
	}
	return b, nil
}

func (h *Header) size() int {
	n := fixedSize + len(h.Ops)*opSize + len(h.Windows)*windowSize
	for _, w := range h.Windows {
		n += len(w.Dict) * rangeSize
	}
	return n
}

// check applies every rule of the format to a header (parsed or about to be
// written), naming the rule broken.
func (h *Header) check() error {
	if h.OldLength < 0 || h.OldLength > MaxImageSize {
		return fmt.Errorf("%w: old image length %d (limit MaxImageSize %d)", ErrLimit, h.OldLength, int64(MaxImageSize))
	}
	if h.NewLength < 0 || h.NewLength > MaxImageSize {
		return fmt.Errorf("%w: new image length %d (limit MaxImageSize %d)", ErrLimit, h.NewLength, int64(MaxImageSize))
	}
	if len(h.Ops) > MaxOps {
		return fmt.Errorf("%w: %d operations (limit MaxOps %d)", ErrLimit, len(h.Ops), MaxOps)
	}
	if len(h.Windows) > MaxWindows {
		return fmt.Errorf("%w: %d windows (limit MaxWindows %d)", ErrLimit, len(h.Windows), MaxWindows)
	}
	if s := h.size(); s > MaxHeaderSize {
		return fmt.Errorf("%w: header of %d bytes (limit MaxHeaderSize %d)", ErrLimit, s, MaxHeaderSize)
	}
	oldBlocks := uint64(Blocks(h.OldLength))
	var blocks, literal int64
	for i, op := range h.Ops {
		if op.Blocks == 0 {
			return fmt.Errorf("%w: operation %d has no blocks", ErrFormat, i)
		}
		switch op.Kind {
		case OpCopy:
			if op.OldBlock >= oldBlocks || uint64(op.Blocks) > oldBlocks-op.OldBlock {
				return fmt.Errorf("%w: operation %d copies old blocks %d+%d, past the old image's %d blocks", ErrFormat, i, op.OldBlock, op.Blocks, oldBlocks)
			}
		case OpLiteral, OpZero:
			if op.OldBlock != 0 {
				return fmt.Errorf("%w: operation %d (kind %d) has an old block", ErrFormat, i, op.Kind)
			}
			if op.Kind == OpLiteral {
				literal += int64(op.Blocks)
			}
		default:
			return fmt.Errorf("%w: operation %d has unknown kind %d", ErrFormat, i, op.Kind)
		}
		// One encoding: a run that continues the previous one is part of it.
		if i > 0 {
			p := h.Ops[i-1]
			if p.Kind == op.Kind && (op.Kind != OpCopy || p.OldBlock+uint64(p.Blocks) == op.OldBlock) {
				return fmt.Errorf("%w: operation %d continues operation %d (they must be one run)", ErrFormat, i, i-1)
			}
		}
		blocks += int64(op.Blocks)
	}
	if want := Blocks(h.NewLength); blocks != want {
		return fmt.Errorf("%w: operations produce %d blocks, the new image has %d", ErrFormat, blocks, want)
	}
	var windowBlocks int64
	ranges := 0
	for i, w := range h.Windows {
		if w.RawLen == 0 || w.RawLen%BlockSize != 0 || w.RawLen > MaxWindowSize {
			return fmt.Errorf("%w: window %d holds %d bytes (a multiple of %d, limit MaxWindowSize %d)", ErrFormat, i, w.RawLen, BlockSize, MaxWindowSize)
		}
		switch w.Method {
		case MethodStored:
			if w.CompLen != w.RawLen || len(w.Dict) != 0 {
				return fmt.Errorf("%w: stored window %d has %d bytes for %d, or a dictionary", ErrFormat, i, w.CompLen, w.RawLen)
			}
		case MethodZstd:
			// A window zstd does not shrink is stored.
			if w.CompLen == 0 || w.CompLen >= w.RawLen {
				return fmt.Errorf("%w: compressed window %d has %d bytes for %d", ErrFormat, i, w.CompLen, w.RawLen)
			}
		default:
			return fmt.Errorf("%w: window %d has unknown method %d", ErrFormat, i, w.Method)
		}
		if len(w.Dict) > MaxWindowDictRanges {
			return fmt.Errorf("%w: window %d has %d dictionary ranges (limit MaxWindowDictRanges %d)", ErrLimit, i, len(w.Dict), MaxWindowDictRanges)
		}
		ranges += len(w.Dict)
		if ranges > MaxDictRanges {
			return fmt.Errorf("%w: %d dictionary ranges (limit MaxDictRanges %d)", ErrLimit, ranges, MaxDictRanges)
		}
		var dict uint64
		for j, r := range w.Dict {
			if r.Length == 0 || r.Offset >= uint64(h.OldLength) || uint64(r.Length) > uint64(h.OldLength)-r.Offset {
				return fmt.Errorf("%w: window %d dictionary range %d (%d+%d) is empty or past the old image (%d bytes)", ErrFormat, i, j, r.Offset, r.Length, h.OldLength)
			}
			dict += uint64(r.Length)
			if dict > MaxDictSize {
				return fmt.Errorf("%w: window %d has a dictionary of more than %d bytes (MaxDictSize)", ErrLimit, i, MaxDictSize)
			}
		}
		windowBlocks += int64(w.RawLen / BlockSize)
	}
	if windowBlocks != literal {
		return fmt.Errorf("%w: windows hold %d blocks, the operations take %d literal blocks", ErrFormat, windowBlocks, literal)
	}
	return nil
}

// headerReader reads the header's bytes, hashing and counting them.
type headerReader struct {
	r   io.Reader
	h   hash.Hash
	n   int
	buf []byte
}

// next returns the next n bytes of the header (valid until the next call).
func (hr *headerReader) next(n int) ([]byte, error) {
	if n > MaxHeaderSize-hr.n {
		return nil, fmt.Errorf("%w: header of more than %d bytes (MaxHeaderSize)", ErrLimit, MaxHeaderSize)
	}
	if cap(hr.buf) < n {
		hr.buf = make([]byte, n)
	}
	b := hr.buf[:n]
	if _, err := io.ReadFull(hr.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated at byte %d", ErrFormat, hr.n)
		}
		return nil, fmt.Errorf("failed to read the delta header: %w", err)
	}
	hr.h.Write(b)
	hr.n += n
	return b, nil
}

// parseHeader reads exactly one header from r (no byte past it).
func parseHeader(r io.Reader) (*Header, [32]byte, int, error) {
	hr := &headerReader{r: r, h: sha256.New()}
	h, err := readHeader(hr)
	if err != nil {
		return nil, [32]byte{}, 0, err
	}
	if err := h.check(); err != nil {
		return nil, [32]byte{}, 0, err
	}
	var sum [32]byte
	hr.h.Sum(sum[:0])
	return h, sum, hr.n, nil
}

func readHeader(hr *headerReader) (*Header, error) {
	b, err := hr.next(fixedSize)
	if err != nil {
		return nil, err
	}
	if string(b[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: not a delta (magic %q)", ErrFormat, b[:len(Magic)])
	}
	le := binary.LittleEndian
	b = b[len(Magic):]
	if v := le.Uint32(b); v != Version {
		return nil, fmt.Errorf("%w: format version %d, this reader knows only %d", ErrFormat, v, Version)
	}
	if bs := le.Uint32(b[4:]); bs != BlockSize {
		return nil, fmt.Errorf("%w: block size %d, the format's is %d", ErrFormat, bs, BlockSize)
	}
	// The counts bound what is allocated here (the header's size); every
	// other rule, limits included, is check's.
	nops, nwin := le.Uint32(b[24:]), le.Uint32(b[28:])
	if s := int64(fixedSize) + int64(nops)*opSize + int64(nwin)*windowSize; s > MaxHeaderSize {
		return nil, fmt.Errorf("%w: %d operations and %d windows take more than MaxHeaderSize (%d bytes)", ErrLimit, nops, nwin, MaxHeaderSize)
	}
	h := &Header{OldLength: int64(le.Uint64(b[8:])), NewLength: int64(le.Uint64(b[16:])), Ops: make([]Op, nops), Windows: make([]Window, nwin)}
	if nops > 0 {
		if b, err = hr.next(int(nops) * opSize); err != nil {
			return nil, err
		}
		for i := range h.Ops {
			h.Ops[i] = Op{Kind: b[0], Blocks: le.Uint32(b[1:]), OldBlock: le.Uint64(b[5:])}
			b = b[opSize:]
		}
	}
	for i := range h.Windows {
		if b, err = hr.next(windowSize); err != nil {
			return nil, err
		}
		w := &h.Windows[i]
		w.Method, w.RawLen, w.CompLen = b[0], le.Uint32(b[1:]), le.Uint32(b[5:])
		nd := int(le.Uint16(b[9:]))
		copy(w.SHA256[:], b[11:])
		if nd == 0 {
			continue
		}
		if b, err = hr.next(nd * rangeSize); err != nil {
			return nil, err
		}
		w.Dict = make([]Range, nd)
		for j := range w.Dict {
			w.Dict[j] = Range{Offset: le.Uint64(b), Length: le.Uint32(b[8:])}
			b = b[rangeSize:]
		}
	}
	return h, nil
}
