package delta_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/airlockfw/airlock/delta"
	"github.com/airlockfw/airlock/delta/deltaenc"
)

func seeds(f *testing.F) (old []byte, ds [][]byte) {
	old, _, d := smallDelta(f)
	ds = append(ds, d)
	rng := rand.New(rand.NewPCG(11, 12))
	for _, new := range [][]byte{nil, old[:3*bs+5], randomBytes(rng, 2*bs), append(retime(old[:8*bs], 9), old[20*bs:]...)} {
		d, _ := makeDelta(f, old, new, deltaenc.Options{WindowSize: 2 * bs})
		ds = append(ds, d)
	}
	return old, ds
}

// FuzzNewReader: whatever NewReader accepts is in the one encoding
// (MarshalBinary gives back the same bytes), its digest is that of those
// bytes, and no prefix of it is accepted.
func FuzzNewReader(f *testing.F) {
	_, ds := seeds(f)
	for _, d := range ds {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		r, err := delta.NewReader(bytes.NewReader(d))
		if err != nil {
			return
		}
		hdr := d[:r.HeaderLength()]
		again, err := r.Header().MarshalBinary()
		if err != nil {
			t.Fatalf("accepted header does not marshal: %v", err)
		}
		if !bytes.Equal(again, hdr) {
			t.Fatal("accepted header marshals to other bytes")
		}
		if sha256.Sum256(hdr) != r.HeaderSHA256() {
			t.Fatal("HeaderSHA256 is not the digest of the header")
		}
		if len(hdr) <= 4096 {
			for n := range len(hdr) {
				if _, err := delta.NewReader(bytes.NewReader(hdr[:n])); err == nil {
					t.Fatalf("prefix of %d bytes of a %d-byte header accepted", n, len(hdr))
				}
			}
		}
	})
}

// FuzzApply: Apply never panics, emits whole blocks in order, and emits
// them all when it succeeds. With fix set, the windows' SHA-256 values are
// recomputed from the fuzzed bytes, so that the zstd decoder (which in use
// sees only windows that match the signed header) is fuzzed too.
func FuzzApply(f *testing.F) {
	old, ds := seeds(f)
	for _, d := range ds {
		f.Add(d, false)
		f.Add(d, true)
	}
	f.Fuzz(func(t *testing.T, d []byte, fix bool) {
		r, err := delta.NewReader(bytes.NewReader(d))
		if err != nil || r.NewLength() > 4<<20 {
			return
		}
		if fix {
			h := r.Header()
			at := r.HeaderLength()
			for i := range h.Windows {
				w := &h.Windows[i]
				end := at + int64(w.CompLen)
				if end > int64(len(d)) {
					return
				}
				w.SHA256 = sha256.Sum256(d[at:end])
				at = end
			}
			hdr, err := h.MarshalBinary()
			if err != nil {
				t.Fatalf("a parsed header does not marshal: %v", err)
			}
			d = append(hdr, d[r.HeaderLength():]...)
		}
		if _, _, err := apply(old, d); errors.Is(err, errBadEmit) {
			t.Fatal(err)
		}
	})
}
