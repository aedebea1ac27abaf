package verity

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is a three-level tree (16385 data blocks: level 2 has 1 block,
// level 1 has 2, level 0 has 129) over a sparse data file.
type fixture struct {
	data       string
	p          Params
	tree, root []byte
	g          geometry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	p := params(128*128+1, randBytes(11, 32))
	fx := &fixture{data: image(t, dir, p.DataBlocks*BlockSize, 5), p: p, g: layout(p.DataBlocks)}
	fx.tree, fx.root = buildFile(t, fx.data, p, cores())
	if fx.g.levels != 3 {
		t.Fatalf("fixture has %d levels", fx.g.levels)
	}
	return fx
}

// blocks reads data blocks [first, first+n) of the fixture.
func (fx *fixture) blocks(t *testing.T, first, n int64) []byte {
	t.Helper()
	f, err := os.Open(fx.data)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n*BlockSize)
	if _, err := f.ReadAt(b, first*BlockSize); err != nil {
		t.Fatal(err)
	}
	return b
}

const dstOff = 3 * BlockSize // the tree is written after other data in dst

// dst is a real file filled with a marker, so that writes show.
func markedDst(t *testing.T, size int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "dst"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(bytes.Repeat([]byte{0xAA}, int(dstOff+size))); err != nil {
		t.Fatal(err)
	}
	return f
}

// written checks that dst holds tree[:n] at dstOff and nothing after it.
func written(t *testing.T, f *os.File, tree []byte, n int64) {
	t.Helper()
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	got = got[dstOff:]
	if !bytes.Equal(got[:n], tree[:n]) {
		t.Errorf("dst does not hold the verified tree before byte %d", n)
	}
	for i, c := range got[n:] {
		if c != 0xAA {
			t.Errorf("dst written at tree byte %d, after the first refused byte %d", n+int64(i), n)
			break
		}
	}
}

// TestReadTreeRefuses: every attack on the tree is refused with ErrTree
// naming the level and block, and nothing of that block or after it
// reaches dst.
func TestReadTreeRefuses(t *testing.T) {
	fx := newFixture(t)
	pos := func(lvl int, b int64) int64 { return (fx.g.start[lvl] + b) * BlockSize }
	flip := func(at int64) []byte {
		b := append([]byte(nil), fx.tree...)
		b[at] ^= 0x01
		return b
	}
	other, otherRoot := buildFile(t, image(t, t.TempDir(), fx.p.DataBlocks*BlockSize, 6), fx.p, cores())
	if bytes.Equal(otherRoot, fx.root) {
		t.Fatal("two images, one root")
	}
	wrongRoot := append([]byte(nil), fx.root...)
	wrongRoot[31] ^= 0x80
	wrongSalt := fx.p
	wrongSalt.Salt = append([]byte{1}, fx.p.Salt[1:]...)
	for _, c := range []struct {
		name   string
		tree   []byte
		p      Params
		root   []byte
		want   string // the block named
		refuse int64  // where the refused block starts in the tree
	}{
		{"flipped top level", flip(pos(2, 0) + 100), fx.p, fx.root, "level 2 block 0", pos(2, 0)},
		{"flipped level 1", flip(pos(1, 0) + 64), fx.p, fx.root, "level 1 block 0", pos(1, 0)},
		{"flipped level 1 padding", flip(pos(1, 1) + 4000), fx.p, fx.root, "level 1 block 1", pos(1, 1)},
		{"flipped level 0", flip(pos(0, 77) + 7), fx.p, fx.root, "level 0 block 77", pos(0, 77)},
		{"flipped level 0 padding", flip(pos(0, 128) + 4095), fx.p, fx.root, "level 0 block 128", pos(0, 128)},
		{"truncated by a byte", fx.tree[:len(fx.tree)-1], fx.p, fx.root, "level 0 block 128", pos(0, 128)},
		{"truncated by a block", fx.tree[:len(fx.tree)-BlockSize], fx.p, fx.root, "level 0 block 128", pos(0, 128)},
		{"empty", nil, fx.p, fx.root, "level 2 block 0", 0},
		{"tree of another image", other, fx.p, fx.root, "level 2 block 0", 0},
		{"wrong salt", fx.tree, wrongSalt, fx.root, "level 2 block 0", 0},
		{"wrong root", fx.tree, fx.p, wrongRoot, "level 2 block 0", 0},
		{"another image's root", fx.tree, fx.p, otherRoot, "level 2 block 0", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := markedDst(t, int64(len(fx.tree)))
			tr, err := ReadTree(bytes.NewReader(c.tree), c.p, c.root, dst, dstOff)
			if tr != nil || !errors.Is(err, ErrTree) {
				t.Fatalf("got %v, want ErrTree", err)
			}
			if !strings.Contains(err.Error(), c.want+":") && !strings.HasSuffix(err.Error(), c.want) {
				t.Errorf("error %q does not name %s", err, c.want)
			}
			written(t, dst, fx.tree, c.refuse)
		})
	}
}

// TestReadTreeAccepts: the real tree is written whole, and ReadTree reads
// exactly TreeSize bytes of its reader.
func TestReadTreeAccepts(t *testing.T) {
	fx := newFixture(t)
	dst := markedDst(t, int64(len(fx.tree)))
	r := bytes.NewReader(append(append([]byte(nil), fx.tree...), "next"...))
	tr, err := ReadTree(r, fx.p, fx.root, dst, dstOff)
	if err != nil {
		t.Fatal(err)
	}
	written(t, dst, fx.tree, int64(len(fx.tree)))
	if rest, _ := io.ReadAll(r); string(rest) != "next" {
		t.Errorf("ReadTree left %q of the reader, want %q", rest, "next")
	}
	if !bytes.Equal(tr.Root(), fx.root) {
		t.Error("Root() is not the root hash")
	}
	tr.Root()[0] ^= 1
	if !bytes.Equal(tr.Root(), fx.root) {
		t.Error("Root() shares the tree's memory")
	}
}

// TestCheck: data blocks pass or are refused by index; a level-0 hash
// block tampered in storage after ReadTree is refused; the range is
// checked.
func TestCheck(t *testing.T) {
	fx := newFixture(t)
	dst := markedDst(t, int64(len(fx.tree)))
	tr, err := ReadTree(bytes.NewReader(fx.tree), fx.p, fx.root, dst, dstOff)
	if err != nil {
		t.Fatal(err)
	}
	last := fx.p.DataBlocks - 1
	for _, r := range [][2]int64{{0, 1}, {120, 20}, {0, 300}, {16000, 385}, {last, 1}, {127, 2}} {
		if err := tr.Check(dst, r[0], fx.blocks(t, r[0], r[1])); err != nil {
			t.Errorf("blocks %d+%d: %v", r[0], r[1], err)
		}
	}
	for _, c := range [][3]int64{{120, 20, 130}, {0, 300, 0}, {0, 300, 299}, {16000, 385, last}, {16000, 385, 16200}} {
		b := fx.blocks(t, c[0], c[1])
		b[(c[2]-c[0])*BlockSize+BlockSize/2] ^= 0x10
		b[(c[1]-1)*BlockSize] ^= 0x10 // and a later one: the first is named
		err := tr.Check(dst, c[0], b)
		if !errors.Is(err, ErrBlock) || !strings.HasSuffix(err.Error(), fmt.Sprintf(": block %d", c[2])) {
			t.Errorf("tampered block %d in %d+%d: %v", c[2], c[0], c[1], err)
		}
	}
	for _, c := range []struct {
		first int64
		n     int
	}{{-1, BlockSize}, {last, 2 * BlockSize}, {last + 1, BlockSize}, {0, BlockSize + 1}, {0, 100}} {
		if err := tr.Check(dst, c.first, make([]byte, c.n)); !errors.Is(err, ErrParams) {
			t.Errorf("Check(%d, %d bytes): %v, want ErrParams", c.first, c.n, err)
		}
	}

	// Level-0 block 1 (data blocks 128..255) tampered in storage, while
	// block 0 is cached: Check reads block 1 again and refuses it.
	if err := tr.Check(dst, 0, fx.blocks(t, 0, 1)); err != nil {
		t.Fatal(err)
	}
	at := dstOff + (fx.g.start[0]+1)*BlockSize + 40
	if _, err := dst.WriteAt([]byte{fx.tree[at-dstOff] ^ 1}, at); err != nil {
		t.Fatal(err)
	}
	err = tr.Check(dst, 130, fx.blocks(t, 130, 1))
	if !errors.Is(err, ErrTree) || !strings.HasSuffix(err.Error(), "level 0 block 1") {
		t.Errorf("tampered level-0 block in storage: %v, want ErrTree naming level 0 block 1", err)
	}
	// Storage cut short: the level-0 block cannot be read.
	if err := dst.Truncate(dstOff + int64(len(fx.tree)) - 10); err != nil {
		t.Fatal(err)
	}
	if err := tr.Check(dst, last, fx.blocks(t, last, 1)); !errors.Is(err, ErrTree) {
		t.Errorf("truncated storage: %v, want ErrTree", err)
	}
}

// TestCheckSmallImages: one data block (no tree: checked against the
// root) and two (one level).
func TestCheckSmallImages(t *testing.T) {
	for _, blocks := range []int64{1, 2} {
		data := randBytes(uint64(blocks), int(blocks*BlockSize))
		p := params(blocks, []byte("salt"))
		var tree mem
		root, err := Build(bytes.NewReader(data), int64(len(data)), p, &tree)
		if err != nil {
			t.Fatal(err)
		}
		var dst mem
		tr, err := ReadTree(bytes.NewReader(tree.b), p, root, &dst, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Check(&dst, 0, data); err != nil {
			t.Errorf("blocks=%d: %v", blocks, err)
		}
		data[len(data)-1] ^= 1
		if err := tr.Check(&dst, 0, data); !errors.Is(err, ErrBlock) || !strings.HasSuffix(err.Error(), fmt.Sprintf("block %d", blocks-1)) {
			t.Errorf("blocks=%d: tampered last block: %v", blocks, err)
		}
		root[0] ^= 1
		if _, err := ReadTree(bytes.NewReader(tree.b), p, root, &mem{}, 0); blocks > 1 && !errors.Is(err, ErrTree) {
			t.Errorf("blocks=%d: wrong root: %v", blocks, err)
		}
		if blocks == 1 { // no tree to refuse: the data block is checked against the root
			tr, _ := ReadTree(bytes.NewReader(nil), p, root, &mem{}, 0)
			data[len(data)-1] ^= 1
			if err := tr.Check(&dst, 0, data); !errors.Is(err, ErrBlock) {
				t.Errorf("one block, wrong root: %v", err)
			}
		}
	}
}

var fuzzData = randBytes(99, 300*BlockSize)

// FuzzReadTree: with arbitrary tree bytes (a patched, cut, extended or
// replaced real tree) or an arbitrary root, ReadTree accepts exactly when
// the tree read is the real one under the real root, writes to dst only a
// prefix of the real tree, and never panics; an accepted tree checks the
// real data and refuses a tampered block or a tampered level-0 block in
// storage. Memory depends on the parameters only (at most 300 blocks here).
func FuzzReadTree(f *testing.F) {
	f.Add(uint16(200), []byte("salt"), []byte{}, uint32(0), uint8(0))
	f.Add(uint16(200), []byte("salt"), []byte{1}, uint32(5000), uint8(0))
	f.Add(uint16(0), []byte{}, []byte{}, uint32(0), uint8(1))
	f.Add(uint16(130), []byte("s"), []byte("xx"), uint32(4096), uint8(2))
	f.Add(uint16(299), []byte("s"), []byte("tail"), uint32(7), uint8(3))
	f.Add(uint16(129), []byte("s"), make([]byte, 32), uint32(9), uint8(4))
	f.Add(uint16(129), []byte("s"), []byte{}, uint32(9000), uint8(8))
	f.Fuzz(func(t *testing.T, n uint16, salt, patch []byte, at uint32, mode uint8) {
		blocks := int64(n%300) + 1
		if len(salt) > MaxSaltSize {
			salt = salt[:MaxSaltSize]
		}
		data := fuzzData[:blocks*BlockSize]
		p := params(blocks, salt)
		var real mem
		realRoot, err := build(bytes.NewReader(data), int64(len(data)), p, &real, 1)
		if err != nil {
			t.Fatal(err)
		}
		root := realRoot
		tree := append([]byte(nil), real.b...)
		switch mode % 5 {
		case 0: // patch bytes in place
			if len(tree) > 0 {
				o := int(at) % len(tree)
				copy(tree[o:], patch)
			}
		case 1: // arbitrary bytes
			tree = patch
		case 2: // cut
			tree = tree[:int(at)%(len(tree)+1)]
		case 3: // extend
			tree = append(tree, patch...)
		case 4: // arbitrary root
			root = append(patch, make([]byte, DigestSize)...)[:DigestSize]
		}
		var dst mem
		tr, err := ReadTree(bytes.NewReader(tree), p, root, &dst, 0)
		genuineRoot := bytes.Equal(root, realRoot)
		genuine := len(tree) >= len(real.b) && bytes.Equal(tree[:len(real.b)], real.b) && genuineRoot
		if blocks == 1 { // no tree: ReadTree has nothing to refuse, Check compares with the root
			if err != nil {
				t.Fatalf("one block: %v", err)
			}
			if err := tr.Check(&dst, 0, data); (err == nil) != genuineRoot || err != nil && !errors.Is(err, ErrBlock) {
				t.Fatalf("one block, genuine root %v: Check: %v", genuineRoot, err)
			}
			return
		}
		if (err == nil) != genuine {
			t.Fatalf("genuine=%v, ReadTree: %v", genuine, err)
		}
		if err != nil && !errors.Is(err, ErrTree) {
			t.Fatalf("refusal does not wrap ErrTree: %v", err)
		}
		if len(dst.b) > len(real.b) || !bytes.Equal(dst.b, real.b[:len(dst.b)]) {
			t.Fatal("dst holds bytes that are not the verified tree")
		}
		if err != nil {
			return
		}
		if err := tr.Check(&dst, 0, data); err != nil {
			t.Fatalf("genuine data: %v", err)
		}
		k := int64(at) % blocks
		bad := append([]byte(nil), data[k*BlockSize:(k+1)*BlockSize]...)
		bad[int(at)%BlockSize] ^= 1
		if err := tr.Check(&dst, k, bad); !errors.Is(err, ErrBlock) {
			t.Fatalf("tampered block %d: %v", k, err)
		}
		if mode&8 != 0 && len(dst.b) > 0 {
			l0 := layout(blocks).start[0] * BlockSize
			o := l0 + int64(at)%(int64(len(dst.b))-l0)
			dst.b[o] ^= 1
			tr2, err := ReadTree(bytes.NewReader(real.b), p, root, &mem{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := tr2.Check(&dst, 0, data); !errors.Is(err, ErrTree) {
				t.Fatalf("tampered level-0 block in storage at byte %d: %v", o, err)
			}
		}
	})
}
