package verity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// mem is an in-memory tree destination: io.WriterAt and io.ReaderAt over
// a growing byte slice.
type mem struct{ b []byte }

func (m *mem) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *mem) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, errors.New("read past end")
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, errors.New("short read")
	}
	return n, nil
}

func params(blocks int64, salt []byte) Params {
	return Params{DataBlockSize: BlockSize, HashBlockSize: BlockSize, Salt: salt, DataBlocks: blocks}
}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	r.Read(b)
	return b
}

// image writes a sparse data file of length bytes: zeros except random
// blocks at the edges of level-0 runs and at the end, so that every hash
// block has digests of both kinds.
func image(t testing.TB, dir string, length int64, seed uint64) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("data-%d-%d", length, seed))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(length); err != nil {
		t.Fatal(err)
	}
	blocks := BlocksFor(length)
	for i, b := range []int64{0, 1, 126, 127, 128, 129, blocks / 2, blocks - 2, blocks - 1} {
		if b < 0 || b >= blocks {
			continue
		}
		n := min(BlockSize, length-b*BlockSize)
		if _, err := f.WriteAt(randBytes(seed*100+uint64(i), int(n)), b*BlockSize); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// buildFile runs Build (with workers goroutines) over a data file.
func buildFile(t testing.TB, path string, p Params, workers int) (tree, root []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var m mem
	root, err = build(f, fi.Size(), p, &m, workers)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if int64(len(m.b)) != p.TreeSize() {
		t.Fatalf("tree is %d bytes, TreeSize says %d", len(m.b), p.TreeSize())
	}
	return m.b, root
}

func veritysetup(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"veritysetup", "/usr/sbin/veritysetup", "/sbin/veritysetup"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "1" {
		t.Fatal("AIRLOCK_REQUIRE_TOOLS=1: veritysetup missing (apt-get install -y cryptsetup-bin)")
	}
	t.Skip("veritysetup missing (apt-get install cryptsetup-bin)")
	return ""
}

func veritysetupArgs(action string, p Params) []string {
	salt := "-"
	if len(p.Salt) > 0 {
		salt = hex.EncodeToString(p.Salt)
	}
	return []string{action, "--no-superblock", "--format=1", "--hash=" + Algorithm,
		fmt.Sprintf("--data-block-size=%d", p.DataBlockSize), fmt.Sprintf("--hash-block-size=%d", p.HashBlockSize),
		"--salt=" + salt, fmt.Sprintf("--data-blocks=%d", p.DataBlocks)}
}

// veritysetupFormat returns the tree and root hash veritysetup makes.
func veritysetupFormat(t testing.TB, vs, data string, p Params) (tree, root []byte) {
	t.Helper()
	hashFile := data + ".vs-tree"
	if err := os.WriteFile(hashFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(vs, append(veritysetupArgs("format", p), data, hashFile)...).CombinedOutput()
	if err != nil {
		t.Fatalf("veritysetup format: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == "Root hash" {
			if root, err = hex.DecodeString(strings.TrimSpace(v)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(root) != DigestSize {
		t.Fatalf("no root hash in veritysetup's output:\n%s", out)
	}
	if tree, err = os.ReadFile(hashFile); err != nil {
		t.Fatal(err)
	}
	return tree, root
}

func veritysetupVerify(vs, data, tree string, p Params, root []byte) error {
	out, err := exec.Command(vs, append(veritysetupArgs("verify", p), data, tree, hex.EncodeToString(root))...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// TestBuildMatchesVeritysetup: byte for byte the tree and root hash that
// `veritysetup format --no-superblock --format=1` makes, and `veritysetup
// verify` accepts ours. Covers 0 levels (1 block), 1 level (2..128), 2
// levels (129..16384) and 3 levels (16385), with empty, usual and maximal
// salts.
func TestBuildMatchesVeritysetup(t *testing.T) {
	vs := veritysetup(t)
	dir := t.TempDir()
	salt32 := randBytes(7, 32)
	cases := []struct {
		blocks int64
		salt   []byte
	}{
		{1, salt32}, {1, nil}, {2, salt32}, {127, salt32}, {128, nil}, {128, salt32}, {129, salt32},
		{129, randBytes(8, MaxSaltSize)}, {128 * 128, salt32}, {128*128 + 1, salt32}, {128*128 + 1, nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("blocks=%d/salt=%d", c.blocks, len(c.salt)), func(t *testing.T) {
			p := params(c.blocks, c.salt)
			data := image(t, dir, c.blocks*BlockSize, uint64(c.blocks))
			wantTree, wantRoot := veritysetupFormat(t, vs, data, p)
			gotTree, gotRoot := buildFile(t, data, p, cores())
			if !bytes.Equal(gotRoot, wantRoot) {
				t.Errorf("root hash %x, veritysetup %x", gotRoot, wantRoot)
			}
			if !bytes.Equal(gotTree, wantTree) {
				t.Errorf("tree differs from veritysetup's (%d vs %d bytes) at byte %d", len(gotTree), len(wantTree), firstDiff(gotTree, wantTree))
			}
			ours := filepath.Join(dir, "ours")
			if err := os.WriteFile(ours, gotTree, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := veritysetupVerify(vs, data, ours, p, gotRoot); err != nil {
				t.Errorf("veritysetup verify refuses our tree: %v", err)
			}
			bad := append([]byte(nil), gotRoot...)
			bad[0] ^= 1
			if veritysetupVerify(vs, data, ours, p, bad) == nil {
				t.Error("veritysetup verify accepts a wrong root hash: the test cannot fail")
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestBuildShortLastBlock: a length that is not a whole number of blocks
// is hashed as veritysetup hashes the zero-padded device.
func TestBuildShortLastBlock(t *testing.T) {
	vs := veritysetup(t)
	dir := t.TempDir()
	for _, length := range []int64{1, 4095, 4097, 129*BlockSize - 1} {
		p := params(BlocksFor(length), randBytes(9, 32))
		data := image(t, dir, length, 3)
		padded := data + ".padded"
		b, err := os.ReadFile(data)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(padded, append(b, make([]byte, p.DataBlocks*BlockSize-length)...), 0o600); err != nil {
			t.Fatal(err)
		}
		wantTree, wantRoot := veritysetupFormat(t, vs, padded, p)
		gotTree, gotRoot := buildFile(t, data, p, cores())
		if !bytes.Equal(gotRoot, wantRoot) || !bytes.Equal(gotTree, wantTree) {
			t.Errorf("length %d: tree or root differ from veritysetup's over the padded data", length)
		}
	}
}

// TestBuildRefuses: wrong block count for the length, data shorter than
// the length, and failing tree writes.
func TestBuildRefuses(t *testing.T) {
	data := randBytes(1, 1300*BlockSize) // 11 runs: more than the runs in flight
	if _, err := Build(bytes.NewReader(data), int64(len(data)), params(1301, nil), &mem{}); !errors.Is(err, ErrParams) {
		t.Errorf("DataBlocks not matching the length: %v, want ErrParams", err)
	}
	for _, workers := range []int{1, 2} {
		_, err := build(bytes.NewReader(data[:len(data)-1]), int64(len(data)), params(1300, nil), &mem{}, workers)
		if err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
			t.Errorf("workers=%d: short data: %v, want unexpected EOF", workers, err)
		}
		_, err = build(bytes.NewReader(data), int64(len(data)), params(1300, nil), failWriter{}, workers)
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("workers=%d: failing tree writes: %v", workers, err)
		}
	}
}

type failWriter struct{}

func (failWriter) WriteAt([]byte, int64) (int, error) { return 0, errors.New("disk full") }

// TestSerialParallelIdentical (run with -race): Build and Check give the
// same results on one worker and on many.
func TestSerialParallelIdentical(t *testing.T) {
	salt := randBytes(4, 32)
	for _, blocks := range []int64{1, 2, 63, 64, 128, 129, 700, 1500} {
		data := randBytes(uint64(blocks), int(blocks*BlockSize))
		p := params(blocks, salt)
		var trees [][]byte
		var roots [][]byte
		for _, workers := range []int{1, 2, 3, 8} {
			var m mem
			root, err := build(bytes.NewReader(data), int64(len(data)), p, &m, workers)
			if err != nil {
				t.Fatal(err)
			}
			trees, roots = append(trees, m.b), append(roots, root)
		}
		for i := range trees {
			if !bytes.Equal(trees[i], trees[0]) || !bytes.Equal(roots[i], roots[0]) {
				t.Fatalf("blocks=%d: worker count %d gives another tree or root", blocks, i)
			}
		}
		for _, workers := range []int{1, 4} {
			var dst mem
			tr, err := ReadTree(bytes.NewReader(trees[0]), p, roots[0], &dst, 0)
			if err != nil {
				t.Fatal(err)
			}
			tr.workers = workers
			if err := tr.Check(&dst, 0, data); err != nil {
				t.Errorf("blocks=%d workers=%d: %v", blocks, workers, err)
			}
			bad := append([]byte(nil), data...)
			k := blocks - 1 - blocks/3
			bad[k*BlockSize+5] ^= 0x40
			err = tr.Check(&dst, 0, bad)
			if !errors.Is(err, ErrBlock) || !strings.HasSuffix(err.Error(), fmt.Sprintf("block %d", k)) {
				t.Errorf("blocks=%d workers=%d: tampered block %d: %v", blocks, workers, k, err)
			}
		}
	}
}

func TestParamsValidate(t *testing.T) {
	good := params(10, make([]byte, 32))
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field string
		p     Params
	}{
		{"DataBlockSize", Params{DataBlockSize: 512, HashBlockSize: BlockSize, DataBlocks: 1}},
		{"HashBlockSize", Params{DataBlockSize: BlockSize, HashBlockSize: 8192, DataBlocks: 1}},
		{"Salt", params(1, make([]byte, MaxSaltSize+1))},
		{"DataBlocks", params(0, nil)},
		{"DataBlocks", params(-1, nil)},
		{"DataBlocks", params(MaxDataBlocks+1, nil)},
	} {
		err := c.p.Validate()
		if !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: %v, want ErrParams naming %s", c.p, err, c.field)
		}
		if c.p.TreeSize() != 0 {
			t.Errorf("%+v: TreeSize %d for refused parameters", c.p, c.p.TreeSize())
		}
		if _, err := ReadTree(bytes.NewReader(nil), c.p, make([]byte, DigestSize), &mem{}, 0); !errors.Is(err, ErrParams) {
			t.Errorf("ReadTree %+v: %v", c.p, err)
		}
	}
	if _, err := ReadTree(bytes.NewReader(nil), good, make([]byte, 31), &mem{}, 0); !errors.Is(err, ErrParams) {
		t.Errorf("short root: %v", err)
	}
}

// TestLayout: level counts and sizes, including at the named limit, where
// the in-memory digests of ReadTree are 4 MiB.
func TestLayout(t *testing.T) {
	for _, c := range []struct {
		blocks, treeBlocks int64
		levels             int
	}{
		{1, 0, 0}, {2, 1, 1}, {128, 1, 1}, {129, 3, 2}, {16384, 129, 2}, {16385, 132, 3},
		{MaxDataBlocks, 131072 + 1024 + 8 + 1, 4},
	} {
		g := layout(c.blocks)
		if g.levels != c.levels || g.total != c.treeBlocks || params(c.blocks, nil).TreeSize() != c.treeBlocks*BlockSize {
			t.Errorf("blocks %d: %d levels, %d tree blocks; want %d, %d", c.blocks, g.levels, g.total, c.levels, c.treeBlocks)
		}
		if g.levels > 0 && (g.count[g.levels-1] != 1 || g.start[g.levels-1] != 0 || g.start[0]+g.count[0] != g.total) {
			t.Errorf("blocks %d: top level not first or level 0 not last: %+v", c.blocks, g)
		}
	}
	if g := layout(MaxDataBlocks); g.count[1]*BlockSize != 4<<20 {
		t.Errorf("level-1 blocks at the limit: %d bytes", g.count[1]*BlockSize)
	}
	for _, c := range [][2]int64{{0, 0}, {-5, 0}, {1, 1}, {4096, 1}, {4097, 2}, {1 << 62, 1 << 50}} {
		if got := BlocksFor(c[0]); got != c[1] {
			t.Errorf("BlocksFor(%d) = %d, want %d", c[0], got, c[1])
		}
	}
}

// zeros reads as an endless run of zero bytes, without memory.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// discard is a tree destination that keeps nothing.
type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestMemoryBounded: Build allocates its runs in flight and 32 bytes per
// level-0 hash block, whatever the image size; ReadTree the level-1 blocks
// and a block buffer.
func TestMemoryBounded(t *testing.T) {
	const slack = 64 << 10
	run := int64(perBlock*BlockSize + BlockSize)
	grown := map[int]uint64{}
	for _, mib := range []int64{32, 128} {
		blocks := mib << 20 / BlockSize
		p := params(blocks, randBytes(1, 32))
		for _, workers := range []int{1, 2} {
			var err error
			got := allocated(func() { _, err = build(zeros{}, blocks*BlockSize, p, discard{}, workers) })
			if err != nil {
				t.Fatal(err)
			}
			limit := uint64(int64(workers+2)*run + blocks/perBlock*DigestSize*2 + slack)
			if got > limit {
				t.Errorf("Build of %d MiB, %d workers: allocated %d bytes, limit %d", mib, workers, got, limit)
			}
			if mib == 32 {
				grown[workers] = got
			} else if growth := int64(got) - int64(grown[workers]); growth > 16<<10+(128-32)<<20/(perBlock*BlockSize)*DigestSize*2 {
				t.Errorf("Build, %d workers: 4x the image allocates %d bytes more", workers, growth)
			}
		}
		var tree mem
		root, err := build(zeros{}, blocks*BlockSize, p, &tree, 2)
		if err != nil {
			t.Fatal(err)
		}
		g := layout(blocks)
		got := allocated(func() { _, err = ReadTree(bytes.NewReader(tree.b), p, root, discard{}, 0) })
		if err != nil {
			t.Fatal(err)
		}
		if limit := uint64(g.count[1]*BlockSize + slack); got > limit {
			t.Errorf("ReadTree for %d MiB: allocated %d bytes, limit %d", mib, got, limit)
		}
	}
}
