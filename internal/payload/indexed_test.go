package payload

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/airlockfw/airlock/verity"
)

// memFile is an in-memory WriterAt/ReaderAt that grows, safe for the
// pipeline's concurrent reads and writes.
type memFile struct {
	mu sync.Mutex
	b  []byte
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// testImage is compressible, not trivially: runs of text and random bytes.
func testImage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := 0; i < n; {
		k := min(n-i, 1+r.IntN(3000))
		if r.IntN(2) == 0 {
			for j := range k {
				b[i+j] = byte(r.Uint32())
			}
		} else {
			copy(b[i:i+k], bytes.Repeat([]byte(fmt.Sprintf("line %d of the image\n", i)), k/20+1))
		}
		i += k
	}
	return b
}

type built struct {
	img     []byte
	payload []byte
	b       *Built
	e       Indexed
}

func build(t testing.TB, img []byte, frameSize int64, salt []byte) *built {
	t.Helper()
	var out memFile
	b, err := BuildIndexed(&out, bytes.NewReader(img), int64(len(img)), BuildOptions{Salt: salt, FrameSize: frameSize})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(out.b)) != b.Length {
		t.Fatalf("payload is %d bytes, Built says %d", len(out.b), b.Length)
	}
	if b.InstalledSHA256 != sha256.Sum256(img) {
		t.Fatal("installed sha256 is wrong")
	}
	return &built{img: img, payload: out.b, b: b, e: b.Indexed(salt)}
}

func (bt *built) install(t testing.TB, payload []byte) (*memFile, error) {
	t.Helper()
	var slot memFile
	_, err := CopyIndexed(&slot, bytes.NewReader(payload), bt.e, CopyOptions{})
	return &slot, err
}

func TestIndexedRoundTrip(t *testing.T) {
	salt := []byte("product salt")
	for _, c := range []struct {
		name      string
		n         int
		frameSize int64
	}{
		{"raw one partial block", 100, 0},
		{"raw one block", 4096, 0},
		{"raw 129 blocks", 129*4096 - 7, 0},
		{"raw 3 MiB", 3<<20 + 5, 0},
		{"zstd one frame", 5000, 64 << 10},
		{"zstd 64 KiB frames", 1<<20 + 12345, 64 << 10},
		{"zstd 1 MiB frames", 3<<20 + 1, 1 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			bt := build(t, testImage(c.n, uint64(c.n)), c.frameSize, salt)
			slot, err := bt.install(t, bt.payload)
			if err != nil {
				t.Fatal(err)
			}
			hashOff := bt.e.HashOffset()
			if !bytes.Equal(slot.b[:c.n], bt.img) {
				t.Fatal("slot does not hold the image")
			}
			if pad := slot.b[c.n:hashOff]; !bytes.Equal(pad, make([]byte, len(pad))) {
				t.Fatal("the last block's padding is not zero")
			}
			if !bytes.Equal(slot.b[hashOff:], bt.payload[:bt.b.TreeLength]) {
				t.Fatal("slot does not hold the tree after the image")
			}
			if err := CheckSlot(slot, bt.e, false); err != nil {
				t.Fatalf("CheckSlot: %v", err)
			}
			if c.frameSize > 0 && c.n > 1<<20 && bt.b.Length-bt.b.TreeLength >= int64(c.n) {
				t.Errorf("compressed payload %d bytes, image %d", bt.b.Length, c.n)
			}
		})
	}
}

// TestIndexedSlotVeritysetup checks an installed slot with the real
// `veritysetup verify`, the tree at --hash-offset in the same file.
func TestIndexedSlotVeritysetup(t *testing.T) {
	vs := ""
	for _, p := range []string{"veritysetup", "/usr/sbin/veritysetup", "/sbin/veritysetup"} {
		if path, err := exec.LookPath(p); err == nil {
			vs = path
			break
		}
	}
	if vs == "" {
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "1" {
			t.Fatal("AIRLOCK_REQUIRE_TOOLS=1: veritysetup missing (apt-get install -y cryptsetup-bin)")
		}
		t.Skip("veritysetup missing (apt-get install cryptsetup-bin)")
	}
	salt := []byte{1, 2, 3}
	bt := build(t, testImage(1<<20+3000, 7), 64<<10, salt)
	slot, err := bt.install(t, bt.payload)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "slot")
	if err := os.WriteFile(f, slot.b, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"verify", "--no-superblock", "--format=1", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
		"--salt=" + hex.EncodeToString(salt), fmt.Sprintf("--data-blocks=%d", verity.BlocksFor(int64(len(bt.img)))),
		fmt.Sprintf("--hash-offset=%d", bt.e.HashOffset()), f, f, hex.EncodeToString(bt.b.Root[:])}
	if out, err := exec.Command(vs, args...).CombinedOutput(); err != nil {
		t.Fatalf("veritysetup verify: %v\n%s", err, out)
	}
	slot.b[4096*3] ^= 1
	os.WriteFile(f, slot.b, 0o600)
	if out, err := exec.Command(vs, args...).CombinedOutput(); err == nil {
		t.Fatalf("veritysetup verify accepted a changed block:\n%s", out)
	}
}

// TestIndexedVerifyBeforeWrite tampers one byte in the middle of the image:
// the install stops, and the slot holds nothing of the chunk with that
// block or after it.
func TestIndexedVerifyBeforeWrite(t *testing.T) {
	const n = 5 << 20
	for _, frameSize := range []int64{0, 1 << 20} {
		t.Run(fmt.Sprint("frames ", frameSize), func(t *testing.T) {
			bt := build(t, testImage(n, 3), frameSize, []byte("s"))
			bad := bytes.Clone(bt.payload)
			var badBlock int64
			if frameSize == 0 {
				pos := bt.b.TreeLength + n/2 + 17
				bad[pos] ^= 0x40
				badBlock = (n/2 + 17) / 4096
			} else {
				// A byte inside the third frame's compressed bytes.
				table := bad[bt.b.TreeLength:]
				off := bt.b.TreeLength + bt.b.Frames*FrameEntrySize
				for k := range 2 {
					off += int64(binary.BigEndian.Uint64(table[k*FrameEntrySize:]))
				}
				bad[off+100] ^= 0x40
				badBlock = 2 * frameSize / 4096
			}
			slot, err := bt.install(t, bad)
			want := verity.ErrBlock
			if frameSize > 0 {
				want = ErrFrame
			}
			if !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
			firstChunk := badBlock / ChunkBlocks * ChunkBlocks
			if frameSize > 0 {
				firstChunk = badBlock
			}
			if end := int64(len(slot.b)); end > bt.e.HashOffset() {
				// The tree was written; look at the data area only.
				end = bt.e.HashOffset()
				if data := slot.b[firstChunk*4096 : end]; !bytes.Equal(data, make([]byte, len(data))) {
					t.Fatalf("the slot holds bytes from block %d on (the bad block is %d)", firstChunk, badBlock)
				}
			}
			if !bytes.Equal(slot.b[:firstChunk*4096], bt.img[:firstChunk*4096]) {
				t.Error("the verified blocks before the bad one were not written")
			}
		})
	}
}

func TestIndexedRefusals(t *testing.T) {
	salt := []byte("salt")
	raw := build(t, testImage(2<<20+100, 11), 0, salt)
	z := build(t, testImage(2<<20+100, 11), 256<<10, salt)
	other := build(t, testImage(2<<20+100, 12), 0, salt)
	otherSalt := build(t, testImage(2<<20+100, 11), 0, []byte("pepper"))
	tableAt := z.b.TreeLength
	dataAt := z.b.TreeLength + z.b.Frames*FrameEntrySize
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	cases := []struct {
		name    string
		bt      *built
		payload []byte
		want    error
	}{
		{"truncated tree", raw, raw.payload[:raw.b.TreeLength-1], ErrLength},
		{"tree of another image", raw, append(bytes.Clone(other.payload[:other.b.TreeLength]), raw.payload[raw.b.TreeLength:]...), verity.ErrTree},
		{"tree with another salt", raw, otherSalt.payload, verity.ErrTree},
		{"tree byte flipped", raw, mod(raw.payload, func(b []byte) []byte { b[raw.b.TreeLength-5] ^= 1; return b }), verity.ErrTree},
		{"truncated data", raw, raw.payload[:len(raw.payload)-1], ErrLength},
		{"data one byte long", raw, append(bytes.Clone(raw.payload), 0), ErrLength},
		{"last block padding tampered", raw, mod(raw.payload, func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), verity.ErrBlock},
		{"frame table tampered", z, mod(z.payload, func(b []byte) []byte { b[tableAt+3] ^= 1; return b }), ErrFrameTable},
		{"frame table truncated", z, z.payload[:tableAt+10], ErrLength},
		{"frame tampered", z, mod(z.payload, func(b []byte) []byte { b[dataAt+5] ^= 1; return b }), ErrFrame},
		{"last frame truncated", z, z.payload[:len(z.payload)-1], ErrLength},
		{"frames one byte long", z, append(bytes.Clone(z.payload), 0), ErrLength},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			slot, err := c.bt.install(t, c.payload)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			// A refused tree or frame table: no image byte was written (the
			// other refusals come after verified blocks were written).
			if c.want == verity.ErrTree || c.want == ErrFrameTable {
				data := slot.b[:min(len(slot.b), int(c.bt.e.HashOffset()))]
				if !bytes.Equal(data, make([]byte, len(data))) {
					t.Fatal("image bytes were written although the tree or table was refused")
				}
			}
		})
	}
}

// TestCheckSlotRefuses is the boot check: a changed block, a changed tree
// block, a short slot.
func TestCheckSlotRefuses(t *testing.T) {
	bt := build(t, testImage(1<<20+9, 5), 0, nil)
	good, err := bt.install(t, bt.payload)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(off int64) *memFile { m := &memFile{b: bytes.Clone(good.b)}; m.b[off] ^= 1; return m }
	if err := CheckSlot(flip(4096*100+1), bt.e, false); !errors.Is(err, verity.ErrBlock) {
		t.Errorf("changed block: %v", err)
	}
	if err := CheckSlot(flip(4096*100+1), bt.e, true); err != nil {
		t.Errorf("tree-only check read the data: %v", err)
	}
	if err := CheckSlot(flip(bt.e.HashOffset()+10), bt.e, true); !errors.Is(err, verity.ErrTree) {
		t.Errorf("changed tree: %v", err)
	}
	if err := CheckSlot(&memFile{b: good.b[:len(good.b)-1]}, bt.e, true); !errors.Is(err, verity.ErrTree) {
		t.Errorf("short tree: %v", err)
	}
	pad := flip(int64(len(bt.img)) + 1)
	if err := CheckSlot(pad, bt.e, false); !errors.Is(err, verity.ErrBlock) {
		t.Errorf("changed padding: %v", err)
	}
}

func FuzzCopyIndexed(f *testing.F) {
	bt := build(f, testImage(300<<10, 9), 64<<10, []byte("fz"))
	f.Add(bt.payload[:bt.b.TreeLength+200], uint16(0))
	f.Fuzz(func(t *testing.T, head []byte, flip uint16) {
		p := bytes.Clone(bt.payload)
		copy(p, head)
		if len(head) > 0 {
			p[int(flip)%len(p)] ^= byte(flip >> 8)
		}
		slot, err := bt.install(t, p)
		if err == nil && !bytes.Equal(slot.b[:len(bt.img)], bt.img) {
			t.Fatal("a changed payload installed a different image")
		}
	})
}

// failingSlot fails every image write after the first.
type failingSlot struct {
	memFile
	hashOff int64
	writes  int
}

func (f *failingSlot) WriteAt(p []byte, off int64) (int, error) {
	if off < f.hashOff {
		f.writes++
		if f.writes > 1 {
			return 0, errors.New("EIO")
		}
	}
	return f.memFile.WriteAt(p, off)
}

// TestIndexedStopsAtAFailedWrite: a slot that fails stops the install
// soon, not after the whole source was read.
func TestIndexedStopsAtAFailedWrite(t *testing.T) {
	bt := build(t, testImage(16<<20, 4), 0, nil)
	src := &countingReader{r: bytes.NewReader(bt.payload)}
	_, err := CopyIndexed(&failingSlot{hashOff: bt.e.HashOffset()}, src, bt.e, CopyOptions{})
	if !isWriteErr(err) {
		t.Fatalf("err = %v, want the write error", err)
	}
	if src.n > int64(len(bt.payload))/2 {
		t.Errorf("read %d of %d bytes after the slot failed", src.n, len(bt.payload))
	}
}
