package tlog_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/tlog"
	"github.com/airlockfw/airlock/tlog/tlogtest"
	xtlog "golang.org/x/mod/sumdb/tlog"
)

const origin = "airlock.log/0123456789abcdef"

// entry returns the canonical log entry of release version v.
func entry(t testing.TB, v string) ([]byte, tlog.Release) {
	t.Helper()
	sum := sha256.Sum256([]byte(v))
	d := hex.EncodeToString(sum[:])
	e := tlog.Entry{Type: tlog.EntryType, Product: "acme/router-x1", Version: v, Target: "acme/router-x1/" + v + "/firmware.img",
		TargetSHA256: d, Role: "acme.router-x1", RoleVersion: 1, Signers: []string{strings.Repeat("ab", 32)}, Logged: "2026-12-08T01:02:03Z"}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b, tlog.Release{Product: e.Product, Version: v, TargetSHA256: d}
}

// world is a log with two witnesses and releases 1.0.<i> for i < n, each
// indexed.
type world struct {
	log    *tlogtest.Log
	w1, w2 *tlogtest.Witness
	pol    tlog.Policy
}

func newWorld(t testing.TB, n int) *world {
	t.Helper()
	w1, w2 := tlogtest.NewWitness(t, "w1.example"), tlogtest.NewWitness(t, "w2.example")
	l := tlogtest.New(t, t.TempDir(), origin, w1, w2)
	w := &world{log: l, w1: w1, w2: w2, pol: l.Policy(2, w1, w2)}
	if n > 0 {
		w.add(t, 0, n)
	}
	return w
}

// add appends releases 1.0.<from>..1.0.<to-1>.
func (w *world) add(t testing.TB, from, to int) {
	t.Helper()
	var entries [][]byte
	var rels []tlog.Release
	for i := from; i < to; i++ {
		b, r := entry(t, fmt.Sprintf("1.0.%d", i))
		entries, rels = append(entries, b), append(rels, r)
	}
	for i, idx := range w.log.Append(entries...) {
		w.log.Index(rels[i].TargetSHA256, idx)
	}
}

func (w *world) prove(t testing.TB, v string, held *tlog.Checkpoint) (*tlog.Proof, tlog.Release) {
	t.Helper()
	_, r := entry(t, v)
	var from []uint64
	if held != nil {
		from = []uint64{held.Size}
	}
	p, err := tlog.NewProver(w.log).Prove(context.Background(), r.TargetSHA256, from)
	if err != nil {
		t.Fatal(err)
	}
	return p, r
}

func TestVerifyOnlineAndAdvance(t *testing.T) {
	w := newWorld(t, 300) // a full tile and a partial one
	p, r := w.prove(t, "1.0.257", nil)
	cp, err := p.Verify(w.pol, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 300 || cp.Origin != origin {
		t.Fatalf("checkpoint %d %q", cp.Size, cp.Origin)
	}
	held, err := tlog.ParseHeld(cp.Note)
	if err != nil || held.Hash != cp.Hash {
		t.Fatalf("ParseHeld: %v", err)
	}
	w.add(t, 300, 320)
	p, r = w.prove(t, "1.0.3", held)
	cp2, err := p.Verify(w.pol, held, r)
	if err != nil {
		t.Fatal(err)
	}
	if cp2.Size != 320 || len(p.Consistency) != 1 {
		t.Fatalf("size %d, %d consistency proofs", cp2.Size, len(p.Consistency))
	}
	// The same checkpoint again is fine (no proof needed).
	if _, err := p.Verify(w.pol, cp2, r); err != nil {
		t.Fatal(err)
	}
}

func TestRefusals(t *testing.T) {
	w := newWorld(t, 10)
	goodP, goodR := w.prove(t, "1.0.4", nil)
	heldCP, err := goodP.Verify(w.pol, nil, goodR)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.SplitAfterN(string(goodP.Checkpoint), "\n\n", 2)[0]
	body = body[:len(body)-1]

	t.Run("forged checkpoint", func(t *testing.T) {
		p := *goodP
		p.Checkpoint = []byte(strings.Replace(string(goodP.Checkpoint), "\n10\n", "\n11\n", 1))
		_, err := p.Verify(w.pol, nil, goodR)
		wantErr(t, err, tlog.ErrCheckpoint, "")
		other := tlogtest.New(t, t.TempDir(), origin, w.w1, w.w2)
		p.Checkpoint = other.Sign(body, w.w1, w.w2)
		_, err = p.Verify(w.pol, nil, goodR)
		wantErr(t, err, tlog.ErrCheckpoint, "")
	})
	t.Run("too few witness cosignatures", func(t *testing.T) {
		p := *goodP
		p.Checkpoint = w.log.Sign(body, w.w1)
		_, err := p.Verify(w.pol, nil, goodR)
		wantErr(t, err, tlog.ErrWitnesses, "(1 of 2 valid, need 2)")
		// A cosignature by an unlisted witness does not count.
		p.Checkpoint = w.log.Sign(body, w.w1, tlogtest.NewWitness(t, "w2.example"))
		_, err = p.Verify(w.pol, nil, goodR)
		wantErr(t, err, tlog.ErrWitnesses, "(1 of 2 valid, need 2)")
	})
	t.Run("fork", func(t *testing.T) {
		f := w.log.Fork(t.TempDir())
		fw := &world{log: f, pol: w.pol}
		var entries [][]byte
		for i := range 10 {
			b, _ := entry(t, fmt.Sprintf("6.6.%d", i))
			entries = append(entries, b)
		}
		_, r := entry(t, "6.6.6")
		idx := f.Append(entries...)
		f.Index(r.TargetSHA256, idx[6])
		p, r := fw.prove(t, "6.6.6", nil)
		if _, err := p.Verify(w.pol, nil, r); err != nil {
			t.Fatalf("the fork alone verifies: %v", err) // a device that saw nothing else cannot tell
		}
		_, err := p.Verify(w.pol, heldCP, r)
		wantErr(t, err, tlog.ErrConsistency, "split view")
	})
	t.Run("rollback", func(t *testing.T) {
		w := newWorld(t, 5)
		old := w.log.Checkpoint()
		w.add(t, 5, 8)
		p, r := w.prove(t, "1.0.6", nil)
		held, err := p.Verify(w.pol, nil, r)
		if err != nil {
			t.Fatal(err)
		}
		w.log.WriteCheckpoint(old)
		p, r = w.prove(t, "1.0.2", nil)
		_, err = p.Verify(w.pol, held, r)
		wantErr(t, err, tlog.ErrConsistency, "older than the one this device holds")
	})
	t.Run("bad inclusion proof", func(t *testing.T) {
		p := *goodP
		p.Inclusion = append(xtlog.RecordProof{}, goodP.Inclusion...)
		p.Inclusion[0][0] ^= 1
		_, err := p.Verify(w.pol, nil, goodR)
		wantErr(t, err, tlog.ErrInclusion, "")
		p = *goodP
		p.Index = 3
		_, err = p.Verify(w.pol, nil, goodR)
		wantErr(t, err, tlog.ErrInclusion, "")
	})
	t.Run("bad consistency proof", func(t *testing.T) {
		w.add(t, 10, 12)
		old, _ := tlog.ParseHeld(heldCP.Note)
		p, r := w.prove(t, "1.0.11", old)
		p.Consistency[0].Hashes[0][0] ^= 1
		_, err := p.Verify(w.pol, old, r)
		wantErr(t, err, tlog.ErrConsistency, "")
	})
	t.Run("not logged", func(t *testing.T) {
		_, r := entry(t, "9.9.9")
		_, err := tlog.NewProver(w.log).Prove(context.Background(), r.TargetSHA256, nil)
		wantErr(t, err, tlog.ErrNotLogged, "no entry")
		// A proof of another release's entry.
		_, err = goodP.Verify(w.pol, nil, r)
		wantErr(t, err, tlog.ErrNotLogged, "release acme/router-x1@9.9.9 is not in the transparency log")
	})
	t.Run("stale offline proof", func(t *testing.T) {
		w := newWorld(t, 4)
		p, r := w.prove(t, "1.0.1", nil)
		held, err := p.Verify(w.pol, nil, r)
		if err != nil {
			t.Fatal(err)
		}
		w.add(t, 4, 6)
		held2 := held
		p, r = w.prove(t, "1.0.5", held)
		if held2, err = p.Verify(w.pol, held, r); err != nil {
			t.Fatal(err)
		}
		// A bundle made before the device saw size 6, proving from 2 only.
		w.add(t, 6, 9)
		p, r = w.prove(t, "1.0.7", &tlog.Checkpoint{Size: 2})
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		bp, err := tlog.ParseProof(b)
		if err != nil {
			t.Fatal(err)
		}
		_, err = bp.Verify(w.pol, held2, r)
		wantErr(t, err, tlog.ErrStale, "cannot prove the log is consistent with the checkpoint this device holds (size 6)")
		// With the proof from size 6 it verifies.
		p, r = w.prove(t, "1.0.7", held2)
		b, _ = p.Marshal()
		if bp, err = tlog.ParseProof(b); err != nil {
			t.Fatal(err)
		}
		if _, err := bp.Verify(w.pol, held2, r); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWitnessRotation(t *testing.T) {
	w := newWorld(t, 3)
	w3 := tlogtest.NewWitness(t, "w3.example")
	p, r := w.prove(t, "1.0.1", nil)
	held, err := p.Verify(w.pol, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	// The root rotates w2 out and w3 in; the log is cosigned by w1 and w3.
	rotated := w.log.Policy(2, w.w1, w3)
	w.log.Cosigners = []*tlogtest.Witness{w.w1, w3}
	w.add(t, 3, 5)
	p, r = w.prove(t, "1.0.4", held)
	_, err = p.Verify(w.pol, held, r)
	wantErr(t, err, tlog.ErrWitnesses, "(1 of 2 valid, need 2)")
	if _, err := p.Verify(rotated, held, r); err != nil {
		t.Fatalf("with the rotated policy: %v", err)
	}
}

func wantErr(t *testing.T, err, sentinel error, text string) {
	t.Helper()
	if !errors.Is(err, sentinel) || !strings.Contains(err.Error(), text) || !strings.HasPrefix(err.Error(), "transparency: ") {
		t.Fatalf("err = %v, want %v naming %q", err, sentinel, text)
	}
}

func TestTilePath(t *testing.T) {
	for _, c := range []struct {
		t    xtlog.Tile
		want string
	}{
		{xtlog.Tile{H: 8, L: 0, N: 0, W: 256}, "tile/0/000"},
		{xtlog.Tile{H: 8, L: 1, N: 1234067, W: 256}, "tile/1/x001/x234/067"},
		{xtlog.Tile{H: 8, L: 0, N: 1000, W: 5}, "tile/0/x001/000.p/5"},
		{xtlog.Tile{H: 8, L: -1, N: 2, W: 256}, "tile/entries/002"},
		{xtlog.Tile{H: 8, L: -1, N: 2, W: 44}, "tile/entries/002.p/44"},
	} {
		if got := tlog.TilePath(c.t); got != c.want {
			t.Errorf("TilePath(%+v) = %q, want %q", c.t, got, c.want)
		}
	}
}

func TestParseProofRefuses(t *testing.T) {
	w := newWorld(t, 3)
	p, _ := w.prove(t, "1.0.1", &tlog.Checkpoint{Size: 1})
	good, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlog.ParseProof(good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, data string }{
		{"spaced", strings.Replace(string(good), `,"index"`, `, "index"`, 1)},
		{"unknown field", strings.Replace(string(good), `{"checkpoint"`, `{"x":1,"checkpoint"`, 1)},
		{"short hash", strings.Replace(string(good), `"inclusion":["`, `"inclusion":["AAAA","`, 1)},
		{"null inclusion", strings.Replace(string(good), `"inclusion":[`, `"inclusion":null,"y":[`, 1)},
		{"decreasing sizes", strings.Replace(string(good), `"consistency":[{"size":1,`, `"consistency":[{"size":2,"proof":[]},{"size":1,`, 1)},
		{"too large", string(good) + strings.Repeat(" ", tlog.MaxProofSize)},
	} {
		if _, err := tlog.ParseProof([]byte(c.data)); !errors.Is(err, tlog.ErrProof) {
			t.Errorf("%s: err = %v, want ErrProof", c.name, err)
		}
	}
	for i := range len(good) {
		if _, err := tlog.ParseProof(good[:i]); err == nil {
			t.Fatalf("prefix of %d bytes accepted", i)
		}
	}
}

func FuzzParseProof(f *testing.F) {
	w := newWorld(f, 3)
	p, _ := w.prove(f, "1.0.1", &tlog.Checkpoint{Size: 1})
	good, _ := p.Marshal()
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := tlog.ParseProof(data)
		if err != nil {
			return
		}
		b, err := p.Marshal()
		if err != nil || string(b) != string(data) {
			t.Fatalf("accepted %q but re-encodes as %q (%v)", data, b, err)
		}
	})
}

func FuzzVerifyCheckpoint(f *testing.F) {
	w := newWorld(f, 2)
	f.Add(w.log.Checkpoint())
	f.Add([]byte("x\n1\nAAAA\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if cp, err := tlog.VerifyCheckpoint(data, w.pol); err == nil && cp.Size != 2 {
			t.Fatalf("accepted a checkpoint of size %d", cp.Size)
		}
		if cp, err := tlog.ParseHeld(data); err == nil {
			if _, err := tlog.ParseHeld(cp.Note); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzParseEntryBundle(f *testing.F) {
	f.Add([]byte("\x00\x02ab\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := tlog.ParseEntryBundle(data)
		if err != nil {
			return
		}
		n := 0
		for _, e := range es {
			n += 2 + len(e)
		}
		if n != len(data) || len(es) > 256 {
			t.Fatalf("%d entries covering %d of %d bytes", len(es), n, len(data))
		}
	})
}

func TestParseIndex(t *testing.T) {
	if i, err := tlog.ParseIndex(tlog.MarshalIndex(7)); err != nil || i != 7 {
		t.Errorf("round trip: %d, %v", i, err)
	}
	for _, bad := range []string{``, `{}`, `{"index":-1}`, `{"index":1,"x":2}`, `{"index":1}{}`, `{"index":"1"}`, `{"index":1,"index":2}`} {
		if _, err := tlog.ParseIndex([]byte(bad)); !errors.Is(err, tlog.ErrIndex) {
			t.Errorf("ParseIndex(%q) = %v, want ErrIndex", bad, err)
		}
	}
}

func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"index":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		i, err := tlog.ParseIndex(b)
		if err != nil {
			return
		}
		if j, err := tlog.ParseIndex(tlog.MarshalIndex(i)); err != nil || j != i {
			t.Fatalf("accepted %q as %d, which does not round-trip: %d, %v", b, i, j, err)
		}
	})
}
