package deltaenc_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/delta"
	"github.com/airlockfw/airlock/delta/deltaenc"
)

func image(seed uint64, blocks int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, blocks*delta.BlockSize)
	for i := range b {
		b[i] = "abcdefgh\x00\x01"[rng.IntN(10)]
	}
	return b
}

func create(t *testing.T, old, new []byte, opt deltaenc.Options) ([]byte, *deltaenc.Stats, error) {
	t.Helper()
	var d bytes.Buffer
	st, err := deltaenc.Create(&d, bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), opt)
	return d.Bytes(), st, err
}

func TestCreateRefusesBadOptions(t *testing.T) {
	img := image(1, 4)
	for _, opt := range []deltaenc.Options{
		{WindowSize: 100},
		{WindowSize: delta.MaxWindowSize + delta.BlockSize},
		{DictSize: delta.MaxDictSize + 1},
		{DictSize: -1},
	} {
		if _, _, err := create(t, img, img, opt); err == nil {
			t.Errorf("%+v accepted", opt)
		}
	}
	// An image shorter than it is said to be.
	var d bytes.Buffer
	if _, err := deltaenc.Create(&d, bytes.NewReader(img), int64(len(img))+1, bytes.NewReader(img), int64(len(img)), deltaenc.Options{}); err == nil {
		t.Error("a short old image was accepted")
	}
}

// TestCreateIsDeterministic: the same images and options give the same
// bytes, however many windows are compressed at once.
func TestCreateIsDeterministic(t *testing.T) {
	old := image(2, 64)
	new := bytes.Clone(old)
	for i := 0; i < len(new); i += 999 {
		new[i] = 'z'
	}
	var first []byte
	for _, c := range []int{1, 2, 4, 1} {
		d, _, err := create(t, old, new, deltaenc.Options{WindowSize: 8 * delta.BlockSize, Concurrency: c})
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = d
		} else if !bytes.Equal(d, first) {
			t.Fatalf("concurrency %d gave other bytes", c)
		}
	}
}

func TestStatsString(t *testing.T) {
	old := image(3, 16)
	new := append(bytes.Clone(old[:8*delta.BlockSize]), image(4, 8)...)
	d, st, err := create(t, old, new, deltaenc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := delta.NewReader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	if st.HeaderSHA256 != r.HeaderSHA256() || st.HeaderBytes != r.HeaderLength() || st.Bytes != r.StreamLength() {
		t.Errorf("stats %+v disagree with the reader (header %x, %d bytes, stream %d)", st, r.HeaderSHA256(), r.HeaderLength(), r.StreamLength())
	}
	if st.CopiedBlocks != 8 || st.LiteralBlocks != 8 || st.Windows != 1 {
		t.Errorf("stats %+v: want 8 copied, 8 literal, 1 window", st)
	}
	s := st.String()
	for _, want := range []string{"copied blocks   8\n", "literal blocks  8\n", fmt.Sprintf("delta bytes     %d\n", len(d)), fmt.Sprintf("header sha256   %x\n", r.HeaderSHA256())} {
		if !strings.Contains(s, want) {
			t.Errorf("Stats.String() lacks %q:\n%s", want, s)
		}
	}
}

func ExampleCreate() {
	old := bytes.Repeat([]byte("firmware 1.0 "), 100000)
	new := bytes.Replace(old, []byte("1.0"), []byte("1.1"), 1000)
	var d bytes.Buffer
	st, err := deltaenc.Create(&d, bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), deltaenc.Options{})
	if err != nil {
		panic(err)
	}
	// The device: compare the header's digest with the signed one, then apply,
	// checking each block against the new release's hash tree before writing it.
	r, err := delta.NewReader(&d)
	if err != nil {
		panic(err)
	}
	fmt.Println("header digest as made:", r.HeaderSHA256() == st.HeaderSHA256)
	var out []byte
	err = r.Apply(context.Background(), bytes.NewReader(old), func(first int64, blocks []byte) error {
		out = append(out, blocks...)
		return nil
	})
	fmt.Println(err, bytes.Equal(out[:r.NewLength()], new), st.Bytes < int64(len(new))/100)
	// Output:
	// header digest as made: true
	// <nil> true true
}

// TestOldImageEndingInAZeroPartialBlock: an old image whose length is not
// a multiple of the block size and whose last, partial block is zeros (a
// filesystem image cut short, a one-block image of zeros) is indexed
// without going past its end.
func TestOldImageEndingInAZeroPartialBlock(t *testing.T) {
	for _, old := range [][]byte{
		make([]byte, 3000),
		append(image(3, 2), make([]byte, 100)...),
	} {
		new := append(image(4, 3), 'x')
		d, _, err := create(t, old, new, deltaenc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := delta.NewReader(bytes.NewReader(d))
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := r.Apply(context.Background(), bytes.NewReader(old), func(_ int64, b []byte) error {
			got = append(got, b...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:len(new)], new) {
			t.Fatalf("old image of %d bytes: the delta does not rebuild the new image", len(old))
		}
	}
}
