package verity

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// benchFile is the benchmarks' image: $VERITY_BENCH_FILE (bench/verity.sh
// sets it), or $VERITY_BENCH_MB (default 64) MiB of random bytes in a temp
// file. Data is read from the file (page cache) as openssl reads it.
func benchFile(b *testing.B) (*os.File, int64) {
	b.Helper()
	path := os.Getenv("VERITY_BENCH_FILE")
	if path == "" {
		mib, _ := strconv.Atoi(os.Getenv("VERITY_BENCH_MB"))
		if mib <= 0 {
			mib = 64
		}
		path = filepath.Join(b.TempDir(), "image")
		if err := os.WriteFile(path, randBytes(1, mib<<20), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	return f, fi.Size()
}

var benchModes = []struct {
	name    string
	workers func() int
}{{"serial", func() int { return 1 }}, {"parallel", cores}}

// BenchmarkBuild: the whole tree of the image, read from its file.
func BenchmarkBuild(b *testing.B) {
	f, size := benchFile(b)
	p := params(BlocksFor(size), randBytes(2, 32))
	tree := &mem{b: make([]byte, p.TreeSize())}
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := build(io.NewSectionReader(f, 0, size), size, p, tree, m.workers()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheck: every block of the image, read from its file in 1 MiB
// batches (as an install receives them) and checked against the tree.
func BenchmarkCheck(b *testing.B) {
	f, size := benchFile(b)
	p := params(BlocksFor(size), randBytes(2, 32))
	var tree mem
	root, err := Build(io.NewSectionReader(f, 0, size), size, p, &tree)
	if err != nil {
		b.Fatal(err)
	}
	var dst mem
	t, err := ReadTree(io.NewSectionReader(&tree, 0, int64(len(tree.b))), p, root, &dst, 0)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 256 // blocks
	buf := make([]byte, batch*BlockSize)
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			t.workers = m.workers()
			b.SetBytes(size)
			for b.Loop() {
				for first := int64(0); first < p.DataBlocks; first += batch {
					n := min(batch, p.DataBlocks-first)
					chunk := buf[:n*BlockSize]
					if k, err := f.ReadAt(chunk, first*BlockSize); k < len(chunk) {
						clear(chunk[k:]) // the last block, zero-padded
						if err != io.EOF {
							b.Fatal(err)
						}
					}
					if err := t.Check(&dst, first, chunk); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkSHA256: Go's SHA-256 over the image in one stream, the
// whole-image hash the tree replaces.
func BenchmarkSHA256(b *testing.B) {
	f, size := benchFile(b)
	b.SetBytes(size)
	for b.Loop() {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
			b.Fatal(err)
		}
	}
}
