package release

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// indexedCustom is a schema 2 release with a zstd payload: 16 MiB in
// 4096 blocks, a tree of 33 blocks, 16 frames of 1 MiB.
const indexedCustom = `{"airlock":{"schema":2,"product":"acme/router-x1","models":["x1"],"version":"1.2.0","security_version":1,"channel":"stable","install":{"kind":"raw","compression":"zstd"},"installed":{"length":16777216,"sha256":"` + testDigest + `"},"index":{"hash":"sha256","block_size":4096,"salt":"00ff","root":"` + testDigest + `","tree_length":135168,"frames":{"size":1048576,"count":16,"sha256":"` + testDigest + `"}}}}`

// indexedRawCustom is a schema 2 release with an uncompressed payload of one
// partial block: no tree, no frames, an empty salt.
const indexedRawCustom = `{"airlock":{"schema":2,"product":"acme/router-x1","models":["x1"],"version":"1.2.0","security_version":1,"channel":"stable","install":{"kind":"raw","compression":"none"},"installed":{"length":100,"sha256":"` + testDigest + `"},"index":{"hash":"sha256","block_size":4096,"salt":"","root":"` + testDigest + `","tree_length":0}}}`

// withDeltas is indexedCustom signing two deltas.
var withDeltas = strings.Replace(indexedCustom, `}}}}`, `}},"deltas":[`+
	`{"from":"1.0.0","tree":{"length":90000,"header_length":500,"header_sha256":"`+testDigest+`"},"data":{"length":1749621,"header_length":6491,"header_sha256":"`+testDigest+`"}},`+
	`{"from":"1.1.0-rc.1","tree":{"length":10,"header_length":10,"header_sha256":"`+testDigest+`"},"data":{"length":20,"header_length":10,"header_sha256":"`+testDigest+`"}}]}}`, 1)

func TestIndexRoundTrip(t *testing.T) {
	for _, raw := range []string{indexedCustom, indexedRawCustom, withDeltas} {
		m, err := ParseCustom([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		if m.Index == nil || m.Schema != 2 {
			t.Fatalf("schema %d, index %v", m.Schema, m.Index)
		}
		out, err := MarshalCustom(m)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != raw {
			t.Errorf("marshal:\n got %s\nwant %s", out, raw)
		}
	}
	m, _ := ParseCustom([]byte(indexedCustom))
	if m.DataBlocks() != 4096 || m.HashOffset() != 16<<20 || m.SlotLength() != 16<<20+135168 || m.PayloadDataOffset() != 135168+16*FrameEntrySize {
		t.Errorf("geometry: blocks %d hash offset %d slot %d data offset %d", m.DataBlocks(), m.HashOffset(), m.SlotLength(), m.PayloadDataOffset())
	}
}

// TestTreeLength pins the dm-verity geometry (veritysetup's, tested against
// the real tool in package verity).
func TestTreeLength(t *testing.T) {
	for blocks, want := range map[int64]int64{1: 0, 2: 1, 128: 1, 129: 3, 16384: 129, 16385: 132} {
		if got := TreeLength(blocks); got != want*IndexBlockSize {
			t.Errorf("TreeLength(%d) = %d blocks, want %d", blocks, got/IndexBlockSize, want)
		}
	}
}

func TestIndexRejects(t *testing.T) {
	sub := func(raw, old, new string) string {
		if !strings.Contains(raw, old) {
			t.Fatalf("%q not in %s", old, raw)
		}
		return strings.Replace(raw, old, new, 1)
	}
	cases := []struct{ name, raw, field string }{
		{"schema 2 without index", sub(indexedRawCustom, `,"index":{"hash":"sha256","block_size":4096,"salt":"","root":"`+testDigest+`","tree_length":0}`, ``), "index"},
		{"schema 1 with index", sub(indexedRawCustom, `"schema":2`, `"schema":1`), "index"},
		{"other hash", sub(indexedCustom, `"hash":"sha256"`, `"hash":"sha1"`), "index.hash"},
		{"other block size", sub(indexedCustom, `"block_size":4096`, `"block_size":512`), "index.block_size"},
		{"odd salt", sub(indexedCustom, `"salt":"00ff"`, `"salt":"00f"`), "index.salt"},
		{"uppercase salt", sub(indexedCustom, `"salt":"00ff"`, `"salt":"00FF"`), "index.salt"},
		{"long salt", sub(indexedCustom, `"salt":"00ff"`, `"salt":"`+strings.Repeat("00", 257)+`"`), "index.salt"},
		{"zero root", sub(indexedCustom, `"root":"`+testDigest, `"root":"`+strings.Repeat("0", 64)), "index.root"},
		{"short root", sub(indexedCustom, `"root":"`+testDigest, `"root":"00`), "index.root"},
		{"tree length", sub(indexedCustom, `"tree_length":135168`, `"tree_length":131072`), "index.tree_length"},
		{"frames of uncompressed", sub(indexedCustom, `"compression":"zstd"`, `"compression":"none"`), "index.frames"},
		{"compressed without frames", sub(indexedCustom, `,"frames":{"size":1048576,"count":16,"sha256":"`+testDigest+`"}`, ``), "index.frames.size"},
		{"frame size not whole blocks", sub(indexedCustom, `"size":1048576,"count":16`, `"size":1048577,"count":16`), "index.frames.size"},
		{"frame size too big", sub(indexedCustom, `"size":1048576,"count":16`, `"size":8388608,"count":2`), "index.frames.size"},
		{"frame count", sub(indexedCustom, `"count":16`, `"count":17`), "index.frames.count"},
		{"unknown index key", sub(indexedCustom, `"tree_length":135168`, `"tree_length":135168,"superblock":true`), "index.superblock"},
		{"unknown frames key", sub(indexedCustom, `"count":16`, `"count":16,"level":19`), "index.frames.level"},
		{"too many blocks", sub(indexedRawCustom, `"length":100`, `"length":68719476737`), "installed.length"},
		{"delta from itself", sub(withDeltas, `"from":"1.0.0"`, `"from":"1.2.0"`), "deltas[0].from"},
		{"duplicate delta", sub(withDeltas, `"from":"1.1.0-rc.1"`, `"from":"1.0.0"`), "deltas[1].from"},
		{"delta shorter than its header", sub(withDeltas, `"length":10,"header_length":10`, `"length":9,"header_length":10`), "deltas[1].tree.length"},
		{"delta without header", sub(withDeltas, `"length":20,"header_length":10`, `"length":20,"header_length":0`), "deltas[1].data.header_length"},
		{"delta header over the limit", sub(withDeltas, `"length":20,"header_length":10`, `"length":2000000,"header_length":1048577`), "deltas[1].data.header_length"},
		{"delta over the transport limit", sub(withDeltas, `"length":20,"header_length":10`, `"length":68719476737,"header_length":10`), "deltas[1].data.length"},
		{"installed length overflows", sub(indexedRawCustom, `"length":100`, `"length":9223372036854775807`), "installed.length"},
		{"too many frames", sub(sub(sub(indexedCustom, `"length":16777216`, `"length":2147483648`), `"size":1048576,"count":16`, `"size":65536,"count":32768`), `"tree_length":135168`, `"tree_length":16912384`), "index.frames.count"},
		{"delta digest", sub(withDeltas, `"header_length":6491,"header_sha256":"`+testDigest, `"header_length":6491,"header_sha256":"`+strings.Repeat("0", 64)), "deltas[0].data.header_sha256"},
		{"delta bad digest", sub(withDeltas, `"header_length":500,"header_sha256":"`+testDigest, `"header_length":500,"header_sha256":"xyz`), "deltas[0].tree.header_sha256"},
		{"delta bad version", sub(withDeltas, `"from":"1.0.0"`, `"from":"1.0"`), "deltas[0].from"},
		{"delta unknown key", sub(withDeltas, `"length":10,`, `"length":10,"x":1,`), "deltas[1].tree.x"},
		{"delta without tree", sub(withDeltas, `"from":"1.0.0","tree"`, `"from":"1.0.0","trees"`), "deltas[0].trees"},
		{"deltas in schema 1", sub(sub(withDeltas, `"schema":2`, `"schema":1`), `,"index":{"hash":"sha256","block_size":4096,"salt":"00ff","root":"`+testDigest+`","tree_length":135168,"frames":{"size":1048576,"count":16,"sha256":"`+testDigest+`"}}`, ``), "deltas"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCustom([]byte(c.raw))
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidMetadata) {
				t.Fatalf("ParseCustom = %v, want a *FieldError", err)
			}
			if fe.Field != c.field {
				t.Errorf("field %q, want %q (%v)", fe.Field, c.field, err)
			}
		})
	}
}

func TestIndexValidateGoValues(t *testing.T) {
	m, err := ParseCustom([]byte(indexedCustom))
	if err != nil {
		t.Fatal(err)
	}
	m2 := *m
	m2.Index = nil
	if err := m2.Validate(); err == nil {
		t.Error("schema 2 without an index validated")
	}
	m3 := *m
	m3.Schema = SchemaV1
	if err := m3.Validate(); err == nil {
		t.Error("schema 1 with an index validated")
	}
	x := *m.Index
	m4 := *m
	m4.Index = &x
	x.FrameTable = [32]byte{}
	if err := m4.Validate(); err == nil {
		t.Error("zero frame table digest validated")
	}
	if diff := cmp.Diff(m, mustParse(t, indexedCustom), cmpOpts); diff != "" {
		t.Error(diff)
	}
	d := mustParse(t, withDeltas)
	if got := d.DeltaFrom("1.1.0-rc.1"); got == nil || got.Length() != 30 {
		t.Errorf("DeltaFrom = %+v", got)
	}
	if d.DeltaFrom("1.1.0") != nil {
		t.Error("DeltaFrom found a delta that is not signed")
	}
}

func mustParse(t *testing.T, raw string) *Metadata {
	t.Helper()
	m, err := ParseCustom([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
