package delta_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/airlockfw/airlock/delta"
	"github.com/airlockfw/airlock/delta/deltaenc"
)

const bs = delta.BlockSize

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n:n]
}

// text is compressible but varied data, like program code or configuration.
func text(rng *rand.Rand, n int) []byte {
	words := []string{"open", "close", "read", "write", "slot", "block", "verify", "image", "=", "{", "}", ";", "\n", "0x", "return", "err"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
		if rng.IntN(8) == 0 {
			fmt.Fprintf(&b, "%d", rng.Uint32())
		}
	}
	return b.Bytes()[:n]
}

func makeDelta(t testing.TB, old, new []byte, opt deltaenc.Options) ([]byte, *deltaenc.Stats) {
	t.Helper()
	var d bytes.Buffer
	st, err := deltaenc.Create(&d, bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), opt)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != int64(d.Len()) {
		t.Errorf("Stats.Bytes = %d, the delta is %d bytes", st.Bytes, d.Len())
	}
	return d.Bytes(), st
}

// apply runs the delta d against old, checking how blocks are emitted, and
// returns the new image (NewLength bytes) and how many blocks were emitted.
func apply(old, d []byte) ([]byte, int64, error) {
	r, err := delta.NewReader(bytes.NewReader(d))
	if err != nil {
		return nil, 0, err
	}
	var out []byte
	var next int64
	err = r.Apply(context.Background(), bytes.NewReader(old), func(first int64, blocks []byte) error {
		if first != next || len(blocks) == 0 || len(blocks)%bs != 0 || len(blocks) > delta.EmitBlocks*bs {
			return fmt.Errorf("%w: emit(%d, %d bytes) after %d blocks: not in order or not whole blocks", errBadEmit, first, len(blocks), next)
		}
		if last := first + int64(len(blocks)/bs); last == r.NewBlocks() {
			if tail := r.NewLength() % bs; tail != 0 && !allZero(blocks[len(blocks)-bs+int(tail):]) {
				return fmt.Errorf("%w: last block not zero-padded", errBadEmit)
			}
		}
		next += int64(len(blocks) / bs)
		out = append(out, blocks...)
		return nil
	})
	if err != nil {
		return nil, next, err
	}
	if next != r.NewBlocks() {
		return nil, next, fmt.Errorf("%w: emitted %d blocks of %d", errBadEmit, next, r.NewBlocks())
	}
	return out[:r.NewLength()], next, nil
}

// errBadEmit: Apply broke its contract with emit.
var errBadEmit = errors.New("Apply broke its emit contract")

func allZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

// firmware builds an image of n blocks shaped like a filesystem: metadata
// blocks (inode-table-like records), files of text and of random bytes
// (compressed data), and free (zero) blocks.
func firmware(rng *rand.Rand, n int) []byte {
	img := make([]byte, 0, n*bs)
	for len(img) < n*bs {
		switch rng.IntN(4) {
		case 0:
			img = append(img, inodes(rng, 1+rng.IntN(4), 1000)...)
		case 1:
			img = append(img, text(rng, bs*(1+rng.IntN(16)))...)
		case 2:
			img = append(img, randomBytes(rng, bs*(1+rng.IntN(8)))...)
		case 3:
			img = append(img, make([]byte, bs*(1+rng.IntN(8)))...)
		}
	}
	return img[:n*bs]
}

// inodes are blocks of 256-byte records, each with a timestamp field.
func inodes(rng *rand.Rand, blocks int, ctime uint32) []byte {
	b := make([]byte, blocks*bs)
	for i := 0; i < len(b); i += 256 {
		binary.LittleEndian.PutUint32(b[i:], uint32(i/256)) // inode number
		binary.LittleEndian.PutUint32(b[i+4:], 0o100644)
		binary.LittleEndian.PutUint64(b[i+8:], rng.Uint64()%100000) // size
		binary.LittleEndian.PutUint32(b[i+16:], ctime)
		binary.LittleEndian.PutUint32(b[i+20:], rng.Uint32()) // block pointer
	}
	return b
}

// retime changes every inode-like record's timestamp, as a rebuild does.
func retime(img []byte, ctime uint32) []byte {
	out := bytes.Clone(img)
	for i := 0; i+256 <= len(out); i += 256 {
		if binary.LittleEndian.Uint32(out[i+4:]) == 0o100644 {
			binary.LittleEndian.PutUint32(out[i+16:], ctime)
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	old := firmware(rng, 256)
	lib := text(rng, 64*bs)
	oldWithLib := append(bytes.Clone(old), lib...)
	// A rebuilt library: small edits spread over it, and 100 bytes inserted
	// near the start, so every block after that is shifted.
	newLib := bytes.Clone(lib)
	for i := 0; i < 40; i++ {
		newLib[rng.IntN(len(newLib))] ^= 0x5a
	}
	newLib = append(append(bytes.Clone(newLib[:1000]), text(rng, 100)...), newLib[1000:len(newLib)-100]...)
	for _, tc := range []struct {
		name     string
		old, new []byte
	}{
		{"identical", old, old},
		{"shifted blocks", old, append(bytes.Clone(old[100*bs:]), old[:100*bs]...)},
		{"modified in place", old, func() []byte {
			n := bytes.Clone(old)
			for i := 0; i < 30; i++ {
				n[rng.IntN(len(n))]++
			}
			return n
		}()},
		{"inode tables retimed", old, retime(old, 2000)},
		{"rebuilt library", oldWithLib, append(bytes.Clone(old), newLib...)},
		{"grown", old, append(bytes.Clone(old), firmware(rng, 40)...)},
		{"shrunk", old, old[:100*bs]},
		{"unaligned new length", old, old[:100*bs+123]},
		{"unaligned old length", old[:50*bs+7], old[:80*bs]},
		{"random", old, randomBytes(rng, 100*bs)},
		{"all zero", old, make([]byte, 64*bs)},
		{"empty new image", old, nil},
		{"empty old image", nil, old[:20*bs]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, opt := range []deltaenc.Options{{}, {NoDict: true}, {WindowSize: 4 * bs, DictSize: 8 * bs}} {
				d, st := makeDelta(t, tc.old, tc.new, opt)
				got, _, err := apply(tc.old, d)
				if err != nil {
					t.Fatalf("%+v: %v", opt, err)
				}
				if !bytes.Equal(got, tc.new) {
					t.Fatalf("%+v: the applied delta gives %d bytes that differ from the new image (%d bytes)", opt, len(got), len(tc.new))
				}
				if st.CopiedBlocks+st.ZeroBlocks+st.LiteralBlocks != st.NewBlocks {
					t.Errorf("stats do not add up: %+v", st)
				}
			}
		})
	}
}

// TestDictionaryFindsSimilarOldData: the dictionary must make small
// changes cheap where plain block reuse sends whole blocks.
func TestDictionaryFindsSimilarOldData(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	old := firmware(rng, 256)
	lib := randomBytes(rng, 128*bs) // incompressible on its own
	oldImg := append(bytes.Clone(old), lib...)
	// The library, rebuilt: shifted by 100 bytes and with 20 bytes patched,
	// and placed elsewhere.
	newLib := append(randomBytes(rng, 100), lib[:len(lib)-100]...)
	for i := 0; i < 20; i++ {
		newLib[rng.IntN(len(newLib))]++
	}
	for _, tc := range []struct {
		name     string
		old, new []byte
		maxRatio float64 // delta with dictionary / without
	}{
		{"inode tables retimed", old, retime(old, 2000), 0.5},
		{"shifted and patched library", oldImg, append(newLib, old...), 0.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			with, st := makeDelta(t, tc.old, tc.new, deltaenc.Options{})
			without, st0 := makeDelta(t, tc.old, tc.new, deltaenc.Options{NoDict: true})
			if st.LiteralBlocks == 0 || st.LiteralBlocks != st0.LiteralBlocks {
				t.Fatalf("literal blocks %d with a dictionary, %d without: want the same, some", st.LiteralBlocks, st0.LiteralBlocks)
			}
			r := float64(len(with)) / float64(len(without))
			t.Logf("%d bytes with a dictionary, %d without (%.3f)", len(with), len(without), r)
			if r > tc.maxRatio {
				t.Errorf("delta is %d bytes with a dictionary, %d without (ratio %.3f, want <= %.2f)", len(with), len(without), r, tc.maxRatio)
			}
			if got, _, err := apply(tc.old, with); err != nil || !bytes.Equal(got, tc.new) {
				t.Fatalf("apply: %v (equal %v)", err, bytes.Equal(got, tc.new))
			}
		})
	}
}

// TestRandomImageCostsItsSize: the worst case is stored, not expanded.
func TestRandomImageCostsItsSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	old := firmware(rng, 64)
	new := randomBytes(rng, 512*bs)
	d, st := makeDelta(t, old, new, deltaenc.Options{})
	if st.StoredWindows != st.Windows || st.Windows != 2 {
		t.Errorf("%d of %d windows stored, want 2 of 2", st.StoredWindows, st.Windows)
	}
	if over := len(d) - len(new); over < 0 || over > 200 {
		t.Errorf("delta of a random image of %d bytes is %d bytes (%+d), want at most 200 bytes over", len(new), len(d), over)
	}
}

// smallDelta is a delta with a copy run, a zero run and two compressed
// windows with dictionaries, for the refusal tests.
func smallDelta(t testing.TB) (old, new, d []byte) {
	rng := rand.New(rand.NewPCG(7, 8))
	old = firmware(rng, 32)
	new = retime(old, 3000)
	new = append(new, make([]byte, 3*bs)...)
	new = append(new, old[:4*bs]...)
	new = append(new, text(rng, 8*bs+100)...)
	d, _ = makeDelta(t, old, new, deltaenc.Options{WindowSize: 8 * bs})
	return old, new, d
}

func TestTamperedWindowIsRefusedBeforeDecoding(t *testing.T) {
	old, _, d := smallDelta(t)
	r, err := delta.NewReader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	if len(h.Windows) < 2 {
		t.Fatalf("want at least 2 windows, got %d", len(h.Windows))
	}
	// The first literal block of the second window.
	var secondStart int64
	var lit, pos int64
	for _, op := range h.Ops {
		if op.Kind == delta.OpLiteral {
			if n := int64(h.Windows[0].RawLen / bs); lit < n && lit+int64(op.Blocks) >= n {
				secondStart = pos + n - lit
			}
			lit += int64(op.Blocks)
		}
		pos += int64(op.Blocks)
	}
	second := r.HeaderLength() + int64(h.Windows[0].CompLen)
	for _, at := range []int64{second, second + int64(h.Windows[1].CompLen)/2, second + int64(h.Windows[1].CompLen) - 1} {
		bad := bytes.Clone(d)
		bad[at] ^= 1
		_, emitted, err := apply(old, bad)
		if !errors.Is(err, delta.ErrWindow) {
			t.Fatalf("byte %d flipped: err = %v, want ErrWindow", at, err)
		}
		if emitted > secondStart {
			t.Errorf("byte %d flipped: %d blocks emitted, but the tampered window starts at block %d", at, emitted, secondStart)
		}
	}
}

// TestEveryPrefixIsRefused: a truncated stream never passes.
func TestEveryPrefixIsRefused(t *testing.T) {
	old, _, d := smallDelta(t)
	r, err := delta.NewReader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	// Every prefix of the header, and of the windows every prefix near a
	// window's boundaries and 300 others.
	near := map[int]bool{}
	at := int(r.HeaderLength())
	for _, w := range r.Header().Windows {
		for k := -2; k <= 2; k++ {
			near[at+k] = true
		}
		at += int(w.CompLen)
	}
	step := max(1, (len(d)-int(r.HeaderLength()))/300)
	for n := range len(d) {
		if n > int(r.HeaderLength()) && !near[n] && n%step != 0 {
			continue
		}
		_, _, err := apply(old, d[:n])
		if err == nil {
			t.Fatalf("prefix of %d of %d bytes accepted", n, len(d))
		}
		if !errors.Is(err, delta.ErrFormat) && !errors.Is(err, delta.ErrWindow) {
			t.Fatalf("prefix of %d bytes: %v, want ErrFormat or ErrWindow", n, err)
		}
	}
}

func TestTrailingBytesAreRefused(t *testing.T) {
	old, _, d := smallDelta(t)
	r, err := delta.NewReader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]byte{{0}, []byte("more"), d} {
		_, emitted, err := apply(old, append(bytes.Clone(d), extra...))
		if !errors.Is(err, delta.ErrTrailingData) {
			t.Errorf("%d extra bytes: err = %v, want ErrTrailingData", len(extra), err)
		}
		// The last blocks are literal: refused before the last window's blocks are emitted.
		if emitted >= r.NewBlocks() {
			t.Errorf("%d extra bytes: all %d blocks emitted before the refusal", len(extra), emitted)
		}
	}
	// A delta without windows (a pure copy) is checked for trailing bytes too.
	d2, _ := makeDelta(t, old, old[:4*bs], deltaenc.Options{})
	if _, emitted, err := apply(old, append(d2, 1)); !errors.Is(err, delta.ErrTrailingData) || emitted != 0 {
		t.Errorf("copy-only delta with a trailing byte: err = %v after %d blocks, want ErrTrailingData before any", err, emitted)
	}
}

// TestWrongOldImage: a delta applied to another old image completes (the
// caller's hash-tree check refuses the blocks), and a short old image is
// refused with ErrOldImage.
func TestWrongOldImage(t *testing.T) {
	old, new, d := smallDelta(t)
	other := bytes.Clone(old)
	for i := range other {
		other[i] ^= 0xff
	}
	got, _, err := apply(other, d)
	if err != nil {
		t.Fatalf("another old image: %v, want the delta to apply (blocks that differ)", err)
	}
	if bytes.Equal(got, new) {
		t.Fatal("another old image gave the new image")
	}
	if _, _, err := apply(old[:len(old)/2], d); !errors.Is(err, delta.ErrOldImage) {
		t.Fatalf("short old image: err = %v, want ErrOldImage", err)
	}
}

// TestHeaderDigestCoversEveryByte: changing any header byte either makes
// the header invalid or changes HeaderSHA256.
func TestHeaderDigestCoversEveryByte(t *testing.T) {
	_, _, d := smallDelta(t)
	r, err := delta.NewReader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	want := r.HeaderSHA256()
	hdr := d[:r.HeaderLength()]
	if sha256.Sum256(hdr) != want {
		t.Fatal("HeaderSHA256 is not the SHA-256 of the header's bytes")
	}
	for i := range hdr {
		for _, x := range []byte{1, 0x80} {
			bad := bytes.Clone(d)
			bad[i] ^= x
			r, err := delta.NewReader(bytes.NewReader(bad))
			if err == nil && r.HeaderSHA256() == want {
				t.Fatalf("header byte %d ^ %#x: same digest", i, x)
			}
		}
	}
}

func TestHeaderOverLimitsIsRefused(t *testing.T) {
	valid := func() *delta.Header {
		return &delta.Header{
			OldLength: 8 * bs, NewLength: 8 * bs,
			Ops:     []delta.Op{{Kind: delta.OpCopy, Blocks: 4}, {Kind: delta.OpLiteral, Blocks: 4}},
			Windows: []delta.Window{{Method: delta.MethodZstd, RawLen: 4 * bs, CompLen: 100, Dict: []delta.Range{{Offset: 0, Length: 100}}}},
		}
	}
	if _, err := valid().MarshalBinary(); err != nil {
		t.Fatalf("the valid header: %v", err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(h *delta.Header)
		limit bool // ErrLimit, not only ErrFormat
	}{
		{"old image over MaxImageSize", func(h *delta.Header) { h.OldLength = delta.MaxImageSize + 1 }, true},
		{"new image over MaxImageSize", func(h *delta.Header) { h.NewLength = delta.MaxImageSize + 1 }, true},
		{"ops over MaxOps", func(h *delta.Header) {
			h.Ops = nil
			for i := range delta.MaxOps + 1 {
				h.Ops = append(h.Ops, delta.Op{Kind: uint8(delta.OpLiteral + i%2)})
			}
		}, true},
		{"windows over MaxWindows", func(h *delta.Header) { h.Windows = make([]delta.Window, delta.MaxWindows+1) }, true},
		{"dictionary over MaxDictSize", func(h *delta.Header) {
			h.OldLength = 2 * delta.MaxDictSize
			h.Windows[0].Dict = []delta.Range{{0, delta.MaxDictSize}, {delta.MaxDictSize, 1}}
		}, true},
		{"ranges over MaxWindowDictRanges", func(h *delta.Header) {
			h.Windows[0].Dict = make([]delta.Range, delta.MaxWindowDictRanges+1)
			for i := range h.Windows[0].Dict {
				h.Windows[0].Dict[i] = delta.Range{Offset: uint64(i), Length: 1}
			}
		}, true},
		{"window over MaxWindowSize", func(h *delta.Header) { h.Windows[0].RawLen = delta.MaxWindowSize + bs }, false},
		{"window not whole blocks", func(h *delta.Header) { h.Windows[0].RawLen = 4*bs + 1 }, false},
		{"compressed window not smaller", func(h *delta.Header) { h.Windows[0].CompLen = 4 * bs }, false},
		{"stored window with a dictionary", func(h *delta.Header) { h.Windows[0].Method, h.Windows[0].CompLen = delta.MethodStored, 4*bs }, false},
		{"unknown method", func(h *delta.Header) { h.Windows[0].Method = 7 }, false},
		{"unknown op", func(h *delta.Header) { h.Ops[0].Kind = 9 }, false},
		{"copy past the old image", func(h *delta.Header) { h.Ops[0].OldBlock = 5 }, false},
		{"empty run", func(h *delta.Header) { h.Ops = append(h.Ops, delta.Op{Kind: delta.OpZero}) }, false},
		{"runs that are one run", func(h *delta.Header) {
			h.Ops = []delta.Op{{Kind: delta.OpCopy, Blocks: 2}, {Kind: delta.OpCopy, Blocks: 2, OldBlock: 2}, {Kind: delta.OpLiteral, Blocks: 4}}
		}, false},
		{"too few blocks", func(h *delta.Header) { h.NewLength += bs }, false},
		{"windows do not match literals", func(h *delta.Header) { h.Windows[0].RawLen = 3 * bs }, false},
		{"dictionary past the old image", func(h *delta.Header) { h.Windows[0].Dict[0].Offset = 8*bs - 50 }, false},
		{"literal op with an old block", func(h *delta.Header) { h.Ops[1].OldBlock = 1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := valid()
			tc.edit(h)
			if _, err := h.MarshalBinary(); !errors.Is(err, delta.ErrFormat) || (tc.limit && !errors.Is(err, delta.ErrLimit)) {
				t.Fatalf("MarshalBinary: err = %v, want ErrFormat (ErrLimit %v)", err, tc.limit)
			}
			// The same header as bytes, past MarshalBinary's check.
			b := marshalUnchecked(h)
			_, err := delta.NewReader(bytes.NewReader(b))
			if !errors.Is(err, delta.ErrFormat) || (tc.limit && !errors.Is(err, delta.ErrLimit)) {
				t.Fatalf("NewReader: err = %v, want ErrFormat (ErrLimit %v)", err, tc.limit)
			}
		})
	}
	for name, b := range map[string][]byte{
		"bad magic":      append([]byte("ALDELTA\x01"), make([]byte, 32)...),
		"bad version":    append([]byte(delta.Magic+"\x02\x00\x00\x00"), make([]byte, 28)...),
		"bad block size": append([]byte(delta.Magic+"\x01\x00\x00\x00\x00\x02\x00\x00"), make([]byte, 24)...),
		"empty":          nil,
	} {
		if _, err := delta.NewReader(bytes.NewReader(b)); !errors.Is(err, delta.ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
}

// marshalUnchecked encodes h as MarshalBinary would, without its checks.
func marshalUnchecked(h *delta.Header) []byte {
	le := binary.LittleEndian
	b := []byte(delta.Magic)
	b = le.AppendUint32(b, delta.Version)
	b = le.AppendUint32(b, bs)
	b = le.AppendUint64(b, uint64(h.OldLength))
	b = le.AppendUint64(b, uint64(h.NewLength))
	b = le.AppendUint32(b, uint32(len(h.Ops)))
	b = le.AppendUint32(b, uint32(len(h.Windows)))
	for _, op := range h.Ops {
		b = append(b, op.Kind)
		b = le.AppendUint32(b, op.Blocks)
		b = le.AppendUint64(b, op.OldBlock)
	}
	for _, w := range h.Windows {
		b = append(b, w.Method)
		b = le.AppendUint32(b, w.RawLen)
		b = le.AppendUint32(b, w.CompLen)
		b = le.AppendUint16(b, uint16(len(w.Dict)))
		b = append(b, w.SHA256[:]...)
		for _, r := range w.Dict {
			b = le.AppendUint64(b, r.Offset)
			b = le.AppendUint32(b, r.Length)
		}
	}
	return b
}

func TestApplyStopsOnCancelAndEmitError(t *testing.T) {
	old, _, d := smallDelta(t)
	r, err := delta.NewReader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Apply(ctx, bytes.NewReader(old), func(int64, []byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: err = %v", err)
	}
	if err := r.Apply(context.Background(), bytes.NewReader(old), func(int64, []byte) error { return nil }); err == nil {
		t.Error("a second Apply on one Reader succeeded")
	}
	r, _ = delta.NewReader(bytes.NewReader(d))
	boom := errors.New("disk full")
	if err := r.Apply(context.Background(), bytes.NewReader(old), func(int64, []byte) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("emit error: err = %v", err)
	}
}

// BenchmarkApplyPerWindow: the cost of a window with its own dictionary
// (the decoder is reset with each window's dictionary, not rebuilt).
func BenchmarkApplyPerWindow(b *testing.B) {
	rng := rand.New(rand.NewPCG(13, 14))
	old := firmware(rng, 512)
	new := retime(old, 4000)
	d, st := makeDelta(b, old, new, deltaenc.Options{WindowSize: 8 * bs, DictSize: 64 * bs})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, _, err := apply(old, d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*st.Windows), "ns/window")
}
