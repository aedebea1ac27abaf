package main

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func writeFile(t testing.TB, dir, name string, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// roundTrip creates a delta from old to new, applies it and checks the result.
func roundTrip(t *testing.T, old, new []byte) (Stats, []byte) {
	t.Helper()
	dir := t.TempDir()
	var delta bytes.Buffer
	st, err := Create(&delta, writeFile(t, dir, "old", old), writeFile(t, dir, "new", new))
	if err != nil {
		t.Fatal(err)
	}
	if st.Download != int64(delta.Len()) {
		t.Errorf("Download = %d, delta is %d bytes", st.Download, delta.Len())
	}
	var out bytes.Buffer
	if err := Apply(&out, bytes.NewReader(old), bytes.NewReader(delta.Bytes()), int64(delta.Len())); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), new) {
		t.Fatalf("applied delta gives %d bytes that differ from the new image (%d bytes)", out.Len(), len(new))
	}
	return st, delta.Bytes()
}

// TestReusesShiftedBlocks: the new image is the old one with blocks moved
// (as mke2fs places files after a package grew), some blocks replaced, and
// a partial last block; only the replaced and partial blocks are literal.
func TestReusesShiftedBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	old := randomBytes(rng, 64*BlockSize)
	var new []byte
	new = append(new, old[10*BlockSize:40*BlockSize]...)   // 30 moved blocks
	new = append(new, randomBytes(rng, 5*BlockSize)...)    // 5 new blocks
	new = append(new, old[0:10*BlockSize]...)              // 10 moved blocks
	new = append(new, old[41*BlockSize+7:44*BlockSize]...) // unaligned: 3 blocks minus 7 bytes, all literal
	st, _ := roundTrip(t, old, new)
	want := Stats{Blocks: 48, Reused: 40, Literal: 8, NewSize: int64(len(new))}
	st.Download = 0
	if st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
}

// TestIdenticalImagesGiveATinyDelta: references to consecutive old blocks
// compress to almost nothing.
func TestIdenticalImagesGiveATinyDelta(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	img := randomBytes(rng, 4096*BlockSize/8)
	st, _ := roundTrip(t, img, img)
	if st.Literal != 0 || st.Download > 200 {
		t.Errorf("identical images: %+v, want no literal block and a delta under 200 bytes", st)
	}
}

// TestRandomImageIsAllLiteral: the worst case costs the compressed size of
// the new image.
func TestRandomImageIsAllLiteral(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	st, _ := roundTrip(t, randomBytes(rng, 32*BlockSize), randomBytes(rng, 32*BlockSize))
	if st.Reused != 0 || st.Download < 32*BlockSize {
		t.Errorf("random images: %+v, want nothing reused and at least the image size", st)
	}
}

func TestApplyRefusesBadDeltas(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	old := randomBytes(rng, 8*BlockSize)
	new := append(append([]byte(nil), old[BlockSize:]...), randomBytes(rng, BlockSize)...)
	_, delta := roundTrip(t, old, new)
	for name, d := range map[string][]byte{
		"empty":       nil,
		"bad magic":   append([]byte("XLBLKD01"), delta[8:]...),
		"truncated":   delta[:len(delta)-3],
		"header only": delta[:headerSize],
		"huge size":   binary.LittleEndian.AppendUint64(append([]byte(nil), delta[:len(magic)+4]...), MaxImageSize+1),
		"old too short": func() []byte {
			return delta // applied against a shorter old image below
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			o := old
			if name == "old too short" {
				o = old[:2*BlockSize]
			}
			var out bytes.Buffer
			if err := Apply(&out, bytes.NewReader(o), bytes.NewReader(d), int64(len(d))); err == nil {
				t.Errorf("Apply accepted the delta, wrote %d bytes", out.Len())
			}
		})
	}
}

func FuzzApply(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 10))
	old := randomBytes(rng, 8*BlockSize)
	dir := f.TempDir()
	for i, new := range [][]byte{old, old[BlockSize : 3*BlockSize], append(old[:BlockSize:BlockSize], 1, 2, 3)} {
		var d bytes.Buffer
		if _, err := Create(&d, writeFile(f, dir, "old", old), writeFile(f, dir, "new"+string(rune('0'+i)), new)); err != nil {
			f.Fatal(err)
		}
		f.Add(d.Bytes())
	}
	f.Fuzz(func(t *testing.T, delta []byte) {
		// Bound the work of one input: a tiny stream may claim a 16 GiB image.
		if len(delta) >= headerSize && binary.LittleEndian.Uint64(delta[len(magic)+4:]) > 1<<20 {
			return
		}
		var out bytes.Buffer
		if err := Apply(&out, bytes.NewReader(old), bytes.NewReader(delta), int64(len(delta))); err == nil {
			if n := binary.LittleEndian.Uint64(delta[len(magic)+4:]); uint64(out.Len()) != n {
				t.Fatalf("accepted delta for %d bytes wrote %d", n, out.Len())
			}
		}
	})
}
