package payload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/airlockfw/airlock/delta"
	"github.com/airlockfw/airlock/delta/deltaenc"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/verity"
)

// evolve makes a new release's image from old the way a rebuilt root
// filesystem changes: a run of blocks shifted, some blocks patched in
// place, a new region appended.
func evolve(old []byte, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	n := bytes.Clone(old)
	// Shift the second half by three blocks.
	half := len(n) / 2 / 4096 * 4096
	n = append(n[:half:half], append(make([]byte, 3*4096), n[half:]...)...)
	for range 20 {
		i := r.IntN(len(n) - 64)
		n[i] ^= byte(1 + r.IntN(255))
	}
	return append(n, testImage(200<<10+77, seed)...)
}

type pair struct {
	old, new *built
	base     *memFile // the active slot holding old
	payload  []byte   // the delta bundle's payload
	streams  DeltaStreams
}

func makePair(t *testing.T, frameSize int64) *pair {
	t.Helper()
	salt := []byte("acme")
	oldImg := testImage(3<<20+1234, 21)
	pr := &pair{old: build(t, oldImg, frameSize, salt), new: build(t, evolve(oldImg, 22), frameSize, salt)}
	var err error
	if pr.base, err = pr.old.install(t, pr.old.payload); err != nil {
		t.Fatal(err)
	}
	stream := func(oldB, newB []byte) ([]byte, Stream) {
		var buf bytes.Buffer
		if _, err := deltaenc.Create(&buf, bytes.NewReader(oldB), int64(len(oldB)), bytes.NewReader(newB), int64(len(newB)), deltaenc.Options{}); err != nil {
			t.Fatal(err)
		}
		dr, err := delta.NewReader(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		sum := dr.HeaderSHA256()
		return buf.Bytes(), Stream{Length: int64(buf.Len()), HeaderLength: dr.HeaderLength(), HeaderSHA256: sum[:]}
	}
	treeS, treeSpec := stream(pr.old.payload[:pr.old.b.TreeLength], pr.new.payload[:pr.new.b.TreeLength])
	dataS, dataSpec := stream(pr.old.img, pr.new.img)
	pr.payload = append(treeS, dataS...)
	pr.streams = DeltaStreams{Tree: treeSpec, Data: dataSpec}
	return pr
}

func (pr *pair) baseOf() Base {
	return Base{Slot: pr.base, Length: int64(len(pr.old.img)), Salt: pr.old.e.Salt, Root: pr.old.e.Root, TreeLength: pr.old.e.TreeLength}
}

func (pr *pair) deltaIndexed() Indexed {
	e := pr.new.e
	e.Length = int64(len(pr.payload))
	return e
}

// wantSlot checks that slot holds exactly what a full install writes.
func (pr *pair) wantSlot(t *testing.T, slot *memFile) {
	t.Helper()
	full, err := pr.new.install(t, pr.new.payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(slot.b, full.b) {
		t.Fatalf("the delta install's slot differs from a full install's (%d vs %d bytes)", len(slot.b), len(full.b))
	}
}

func TestCopyDelta(t *testing.T) {
	pr := makePair(t, 0)
	var slot memFile
	res, err := CopyDelta(&slot, bytes.NewReader(pr.payload), pr.deltaIndexed(), pr.streams, pr.baseOf(), CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pr.wantSlot(t, &slot)
	if res.TransportBytes != int64(len(pr.payload)) || res.InstalledBytes != int64(len(pr.new.img)) {
		t.Errorf("result %+v", res)
	}
	if int64(len(pr.payload)) > pr.new.b.Length/4 {
		t.Errorf("the delta is %d bytes, the full payload %d", len(pr.payload), pr.new.b.Length)
	}
	if err := CheckSlot(&slot, pr.new.e, false); err != nil {
		t.Error(err)
	}
	if _, err := CheckDelta(bytes.NewReader(pr.payload), pr.streams, pr.old.e.TreeLength, pr.new.e.TreeLength, int64(len(pr.old.img)), int64(len(pr.new.img))); err != nil {
		t.Errorf("CheckDelta: %v", err)
	}
}

func TestCopyDeltaRefusals(t *testing.T) {
	pr := makePair(t, 0)
	treeLen := pr.streams.Tree.Length
	hdr := pr.streams.Data.HeaderLength
	flip := func(b []byte, i int64) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }
	damagedBase := func(off int64) Base {
		b := pr.baseOf()
		m := &memFile{b: bytes.Clone(pr.base.b)}
		m.b[off] ^= 1
		b.Slot = m
		return b
	}
	otherSpec := pr.streams
	otherSpec.Data.HeaderSHA256 = bytes.Repeat([]byte{1}, 32)
	for _, c := range []struct {
		name    string
		payload []byte
		spec    DeltaStreams
		base    Base
		want    []error
	}{
		{"window tampered", flip(pr.payload, treeLen+hdr+10), pr.streams, pr.baseOf(), []error{ErrHash, delta.ErrWindow}},
		{"tree window tampered", flip(pr.payload, pr.streams.Tree.HeaderLength+3), pr.streams, pr.baseOf(), []error{delta.ErrWindow}},
		{"data header tampered", flip(pr.payload, treeLen+20), pr.streams, pr.baseOf(), []error{ErrDelta}},
		{"header not the signed one", pr.payload, otherSpec, pr.baseOf(), []error{ErrDelta}},
		{"truncated", pr.payload[:len(pr.payload)-1], pr.streams, pr.baseOf(), []error{ErrLength}},
		{"damaged base image", pr.payload, pr.streams, damagedBase(4096 * 7), []error{ErrHash, verity.ErrBlock}},
		{"damaged base tree", pr.payload, pr.streams, damagedBase(pr.old.e.HashOffset() + pr.old.e.TreeLength - 100), []error{ErrHash, verity.ErrTree}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var slot memFile
			e := pr.deltaIndexed()
			_, err := CopyDelta(&slot, bytes.NewReader(c.payload), e, c.spec, c.base, CopyOptions{})
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Fatalf("err = %v, want %v", err, w)
				}
			}
			if len(slot.b) > int(e.HashOffset()) && c.name != "damaged base image" {
				// Image blocks are only written after the tree verified.
				if img := slot.b[:e.HashOffset()]; !bytes.Equal(img, make([]byte, len(img))) && errors.Is(err, verity.ErrTree) {
					t.Fatal("image blocks written although the tree was refused")
				}
			}
		})
	}
	// One byte too many.
	var slot memFile
	if _, err := CopyDelta(&slot, bytes.NewReader(append(bytes.Clone(pr.payload), 0)), pr.deltaIndexed(), pr.streams, pr.baseOf(), CopyOptions{}); !errors.Is(err, ErrLength) {
		t.Errorf("trailing byte: %v", err)
	}
	if _, err := CheckDelta(bytes.NewReader(flip(pr.payload, treeLen+hdr+10)), pr.streams, pr.old.e.TreeLength, pr.new.e.TreeLength, int64(len(pr.old.img)), int64(len(pr.new.img))); !errors.Is(err, delta.ErrWindow) {
		t.Errorf("CheckDelta of a tampered window: %v", err)
	}
}

// rangeFile serves ranges of a payload and counts them; lie, if not nil,
// changes what it serves.
type rangeFile struct {
	b        []byte
	requests int
	bytes    int64
	lie      func(off int64, b []byte) []byte
}

func (f *rangeFile) fetch(off, n int64) (io.ReadCloser, error) {
	if off < 0 || n <= 0 || off+n > int64(len(f.b)) {
		return nil, fmt.Errorf("range %d+%d outside the file", off, n)
	}
	f.requests++
	f.bytes += n
	b := f.b[off : off+n]
	if f.lie != nil {
		b = f.lie(off, bytes.Clone(b))
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestCopyReuse(t *testing.T) {
	for _, frameSize := range []int64{0, 256 << 10} {
		t.Run(fmt.Sprint("frames ", frameSize), func(t *testing.T) {
			pr := makePair(t, frameSize)
			rf := &rangeFile{b: pr.new.payload}
			var slot memFile
			res, err := CopyReuse(&slot, pr.new.e, pr.baseOf(), rf.fetch, CopyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pr.wantSlot(t, &slot)
			if res.ReusedBlocks == 0 || res.TransportBytes != rf.bytes || res.Requests != int64(rf.requests) {
				t.Errorf("result %+v, served %d bytes in %d requests", res, rf.bytes, rf.requests)
			}
			// Raw: only changed blocks are fetched; zstd: whole frames, and
			// the test's scattered changes touch most 256 KiB frames.
			if frameSize == 0 && rf.bytes > pr.new.b.Length/2 || rf.bytes >= pr.new.b.Length {
				t.Errorf("fetched %d bytes of a %d-byte payload", rf.bytes, pr.new.b.Length)
			}
			t.Logf("reused %d blocks, fetched %d bytes of %d in %d requests", res.ReusedBlocks, rf.bytes, pr.new.b.Length, rf.requests)
		})
	}
}

func TestCopyReuseNeverTrustsTheBase(t *testing.T) {
	pr := makePair(t, 0)
	// A damaged block in the base's image: the chunk is fetched instead.
	b := pr.baseOf()
	m := &memFile{b: bytes.Clone(pr.base.b)}
	m.b[4096*5+9] ^= 1
	b.Slot = m
	rf := &rangeFile{b: pr.new.payload}
	var slot memFile
	if _, err := CopyReuse(&slot, pr.new.e, b, rf.fetch, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	pr.wantSlot(t, &slot)

	// A damaged base tree, another salt, no tree: ErrNoBase before any
	// image block is written.
	bt := pr.baseOf()
	mt := &memFile{b: bytes.Clone(pr.base.b)}
	mt.b[pr.old.e.HashOffset()+5] ^= 1
	bt.Slot = mt
	salted := pr.baseOf()
	salted.Salt = []byte("other")
	for name, base := range map[string]Base{"damaged tree": bt, "other salt": salted} {
		var slot memFile
		rf := &rangeFile{b: pr.new.payload}
		if _, err := CopyReuse(&slot, pr.new.e, base, rf.fetch, CopyOptions{}); !errors.Is(err, ErrNoBase) {
			t.Errorf("%s: %v, want ErrNoBase", name, err)
		}
		if rf.requests != 0 || len(slot.b) != 0 {
			t.Errorf("%s: %d requests, %d bytes written before the refusal", name, rf.requests, len(slot.b))
		}
	}

	// A server that lies about a range's content: refused, never written.
	lying := &rangeFile{b: pr.new.payload, lie: func(off int64, b []byte) []byte {
		if off >= pr.new.b.TreeLength {
			b[0] ^= 1
		}
		return b
	}}
	var slot2 memFile
	if _, err := CopyReuse(&slot2, pr.new.e, pr.baseOf(), lying.fetch, CopyOptions{}); !errors.Is(err, verity.ErrBlock) {
		t.Errorf("a lying range server: %v", err)
	}
	// Lying about the tree: refused before any image block.
	lyingTree := &rangeFile{b: pr.new.payload, lie: func(off int64, b []byte) []byte { b[len(b)-1] ^= 1; return b }}
	var slot3 memFile
	if _, err := CopyReuse(&slot3, pr.new.e, pr.baseOf(), lyingTree.fetch, CopyOptions{}); !errors.Is(err, verity.ErrTree) {
		t.Errorf("a lying tree: %v", err)
	}
	if img := slot3.b[:min(len(slot3.b), int(pr.new.e.HashOffset()))]; !bytes.Equal(img, make([]byte, len(img))) {
		t.Error("image blocks written although the tree was refused")
	}
}

// dropAfter is a source that fails after n bytes, as a dropped connection.
type dropAfter struct {
	r io.Reader
	n int64
}

var errReset = errors.New("connection reset by peer")

func (d *dropAfter) Read(p []byte) (int, error) {
	if d.n <= 0 {
		return 0, errReset
	}
	if int64(len(p)) > d.n {
		p = p[:d.n]
	}
	n, err := d.r.Read(p)
	d.n -= int64(n)
	return n, err
}

func (d *dropAfter) Close() error { return nil }

// TestSourceFailuresAreNotMismatches: a dropped connection is reported as
// such (the agent retries), not as a tampered payload; a tampered chunk
// stays a mismatch even when the connection drops after it.
func TestSourceFailuresAreNotMismatches(t *testing.T) {
	pr := makePair(t, 0)
	for _, at := range []int64{100, pr.new.b.TreeLength + 5000, int64(len(pr.new.payload)) - 10} {
		var slot memFile
		_, err := CopyIndexed(&slot, &dropAfter{r: bytes.NewReader(pr.new.payload), n: at}, pr.new.e, CopyOptions{})
		if !errors.Is(err, errReset) || errors.Is(err, ErrHash) {
			t.Errorf("CopyIndexed, dropped after %d: %v", at, err)
		}
	}
	// Tampered in the first chunk, dropped much later.
	bad := bytes.Clone(pr.new.payload)
	bad[pr.new.b.TreeLength+10] ^= 1
	var slot memFile
	if _, err := CopyIndexed(&slot, &dropAfter{r: bytes.NewReader(bad), n: int64(len(bad)) - 10}, pr.new.e, CopyOptions{}); !errors.Is(err, ErrHash) {
		t.Errorf("tampered then dropped: %v, want a mismatch", err)
	}
	// Online: a range that drops.
	for _, at := range []int64{10, 5000} {
		rf := &rangeFile{b: pr.new.payload}
		fetch := func(off, n int64) (io.ReadCloser, error) {
			rc, err := rf.fetch(off, n)
			return &dropAfter{r: rc, n: at}, err
		}
		var slot memFile
		_, err := CopyReuse(&slot, pr.new.e, pr.baseOf(), fetch, CopyOptions{})
		if !errors.Is(err, errReset) || errors.Is(err, ErrHash) {
			t.Errorf("CopyReuse, ranges dropped after %d bytes: %v", at, err)
		}
	}
}

// TestLimitsAgree: the limits the release metadata signs within are the
// ones a device installs within.
func TestLimitsAgree(t *testing.T) {
	for _, c := range []struct {
		name        string
		got, signed int64
	}{
		{"MaxFrames", MaxFrames, release.MaxFrames},
		{"MaxFrameSize", MaxFrameSize, release.MaxFrameSize},
		{"FrameEntrySize", FrameEntrySize, release.FrameEntrySize},
		{"delta.MaxHeaderSize", delta.MaxHeaderSize, release.MaxDeltaHeaderSize},
	} {
		if c.got != c.signed {
			t.Errorf("%s: %d on the device, %d in release", c.name, c.got, c.signed)
		}
	}
}
