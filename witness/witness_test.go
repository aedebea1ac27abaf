package witness

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tree is an in-memory RFC 6962 tree with a note signer for its
// checkpoints.
type tree struct {
	t      testing.TB
	origin string
	signer note.Signer
	vkey   string
	hashes map[int64]tlog.Hash
	n      int64
	salt   string
}

func newTree(t testing.TB, origin string) *tree {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &tree{t: t, origin: origin, signer: s, vkey: vkey, hashes: map[int64]tlog.Hash{}}
}

func (tr *tree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		h, ok := tr.hashes[x]
		if !ok {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = h
	}
	return out, nil
}

func (tr *tree) add(k int) {
	for range k {
		hs, err := tlog.StoredHashes(tr.n, []byte(fmt.Sprintf("entry %d%s", tr.n, tr.salt)), tr)
		if err != nil {
			tr.t.Fatal(err)
		}
		base := tlog.StoredHashIndex(0, tr.n)
		for i, h := range hs {
			tr.hashes[base+int64(i)] = h
		}
		tr.n++
	}
}

func (tr *tree) root(n int64) tlog.Hash {
	h, err := tlog.TreeHash(n, tr)
	if err != nil {
		tr.t.Fatal(err)
	}
	return h
}

// checkpoint returns the log-signed checkpoint of the first n entries.
func (tr *tree) checkpoint(n int64, s note.Signer) []byte {
	h := tr.root(n)
	body := (&log.Checkpoint{Origin: tr.origin, Size: uint64(n), Hash: h[:]}).Marshal()
	b, err := note.Sign(&note.Note{Text: string(body)}, s)
	if err != nil {
		tr.t.Fatal(err)
	}
	return b
}

// request builds an add-checkpoint body from old to n.
func (tr *tree) request(old, n int64) []byte {
	r := &Request{OldSize: uint64(old), Checkpoint: tr.checkpoint(n, tr.signer)}
	if old > 0 && old < n {
		p, err := tlog.ProveTree(n, old, tr)
		if err != nil {
			tr.t.Fatal(err)
		}
		r.Proof = p
	}
	return r.Marshal()
}

func newWitness(t *testing.T, dir string, logs ...string) *Witness {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil {
		if _, err := GenerateKey(dir, "w.test"); err != nil {
			t.Fatal(err)
		}
	}
	w, err := Open(dir, logs)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func post(t *testing.T, url string, body []byte) (int, string, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b.Bytes()
}

// TestAddCheckpoint walks the protocol over HTTP: first checkpoint
// (trust on first use), growth with a consistency proof, the same
// checkpoint again, a stale old size (409 with the held size), a forked
// tree (422), a rollback, an unknown log (404), a bad log signature (403),
// malformed bodies (400) and a restart that keeps the state.
func TestAddCheckpoint(t *testing.T) {
	tr := newTree(t, "example.com/log")
	dir := t.TempDir()
	w := newWitness(t, dir, tr.vkey)
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	cv, err := fnote.NewVerifierForCosignatureV1(w.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	cosigned := func(cp, sig []byte) {
		t.Helper()
		n, err := note.Open(append(bytes.Clone(cp), sig...), note.VerifierList(cv))
		if err != nil || len(n.Sigs) != 1 {
			t.Fatalf("cosignature %q does not verify: %v", sig, err)
		}
	}
	tr.add(3)
	code, _, body := post(t, srv.URL, tr.request(0, 3))
	if code != 200 {
		t.Fatalf("first checkpoint: %d %s", code, body)
	}
	cosigned(tr.checkpoint(3, tr.signer), body)
	if !bytes.HasPrefix(body, []byte("— w.test ")) || bytes.Count(body, []byte("\n")) != 1 {
		t.Errorf("reply %q is not one signature line", body)
	}
	tr.add(5)
	if code, _, body = post(t, srv.URL, tr.request(3, 8)); code != 200 {
		t.Fatalf("growth 3→8: %d %s", code, body)
	}
	cosigned(tr.checkpoint(8, tr.signer), body)
	if code, _, body = post(t, srv.URL, tr.request(8, 8)); code != 200 {
		t.Fatalf("same checkpoint again: %d %s", code, body)
	}
	// The log believes the witness holds 3: 409 says 8.
	tr.add(2)
	code, ct, body := post(t, srv.URL, tr.request(3, 10))
	if code != http.StatusConflict || ct != "text/x.tlog.size" || string(body) != "8\n" {
		t.Errorf("stale old size: %d %q %q, want 409 text/x.tlog.size \"8\\n\"", code, ct, body)
	}
	// A fork: same log key, another history of 10 entries.
	fork := newTree(t, tr.origin)
	fork.signer, fork.vkey, fork.salt = tr.signer, tr.vkey, " forked"
	fork.add(10)
	req := fork.request(0, 10)
	p, _ := tlog.ProveTree(10, 8, tr) // a proof from the real tree
	bad := &Request{OldSize: 8, Proof: p, Checkpoint: fork.checkpoint(10, tr.signer)}
	if code, _, body = post(t, srv.URL, bad.Marshal()); code != http.StatusUnprocessableEntity {
		t.Errorf("forked checkpoint: %d %s, want 422", code, body)
	}
	_ = req
	split := &Request{OldSize: 8, Checkpoint: fork.checkpoint(8, tr.signer)}
	if code, _, body = post(t, srv.URL, split.Marshal()); code != http.StatusUnprocessableEntity {
		t.Errorf("split view at size 8: %d %s, want 422", code, body)
	}
	// A rollback: a smaller checkpoint, claiming the held size.
	if code, _, body = post(t, srv.URL, (&Request{OldSize: 8, Checkpoint: tr.checkpoint(5, tr.signer)}).Marshal()); code != http.StatusBadRequest {
		t.Errorf("rollback to 5 with old 8: %d %s, want 400", code, body)
	}
	if code, ct, body = post(t, srv.URL, (&Request{OldSize: 5, Checkpoint: tr.checkpoint(5, tr.signer)}).Marshal()); code != http.StatusConflict || string(body) != "8\n" {
		t.Errorf("rollback to 5 with old 5: %d %q %s, want 409 8", code, ct, body)
	}
	other := newTree(t, "example.com/other")
	other.add(1)
	if code, _, body = post(t, srv.URL, other.request(0, 1)); code != http.StatusNotFound {
		t.Errorf("unknown log: %d %s, want 404", code, body)
	}
	impostor := newTree(t, tr.origin)
	impostor.add(10)
	if code, _, body = post(t, srv.URL, impostor.request(0, 10)); code != http.StatusForbidden {
		t.Errorf("checkpoint signed by another key: %d %s, want 403", code, body)
	}
	for _, b := range []string{"", "old 8\n", "old 08\n\n" + string(tr.checkpoint(8, tr.signer)), "old 8\nnot-base64\n\nx", "old -1\n\nx", "old 8\n\n"} {
		if code, _, body = post(t, srv.URL, []byte(b)); code != http.StatusBadRequest {
			t.Errorf("body %q: %d %s, want 400", b, code, body)
		}
	}
	if code, _, _ = post(t, srv.URL, bytes.Repeat([]byte("x"), MaxRequestSize+1)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", code)
	}
	if w.Held(tr.origin) != 8 {
		t.Errorf("held %d, want 8", w.Held(tr.origin))
	}
	// A restarted witness remembers 8.
	w2 := newWitness(t, dir, tr.vkey)
	if w2.Held(tr.origin) != 8 || w2.VerifierKey() != w.VerifierKey() {
		t.Fatalf("after restart: held %d", w2.Held(tr.origin))
	}
	if r := w2.add(tr.request(0, 10)); r.status != http.StatusConflict || string(r.body) != "8\n" {
		t.Errorf("restarted witness: %d %q", r.status, r.body)
	}
	if r := w2.add(tr.request(8, 10)); r.status != http.StatusOK {
		t.Errorf("restarted witness, 8→10: %d %s", r.status, r.msg)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	if _, err := GenerateKey(dir, "w.test"); err == nil {
		t.Error("GenerateKey replaced an existing key")
	}
	if !strings.Contains(w.VerifierKey(), "w.test+") {
		t.Errorf("verifier key %q", w.VerifierKey())
	}
}

func FuzzParseRequest(f *testing.F) {
	tr := newTree(f, "example.com/log")
	tr.add(5)
	f.Add(tr.request(2, 5))
	f.Add(tr.request(0, 5))
	f.Add([]byte("old 0\n\nx"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("round trip: %q → %q", b, r.Marshal())
		}
	})
}
