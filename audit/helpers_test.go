package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// sampleEntry returns a varied entry number i.
func sampleEntry(i int) Entry {
	actions := []Action{ReleaseAdded, ReleaseSigned, ReleaseApproved, ReleasePublished, RolloutStarted, DeviceUpdated, AuthLogin}
	e := Entry{
		Time:    t0.Add(time.Duration(i) * time.Minute),
		Actor:   fmt.Sprintf("user%d", i%3),
		Action:  actions[i%len(actions)],
		Release: fmt.Sprintf("acme/router-x1@1.%d.0", i%2),
	}
	if e.Action == DeviceUpdated {
		e.Actor, e.Device = fmt.Sprintf("dev-%d", i), fmt.Sprintf("dev-%d", i)
	}
	if e.Action == AuthLogin {
		e.Release = ""
		e.Details = map[string]string{"remote_addr": "192.0.2.7", "mfa": "totp"}
	}
	return e
}

// writeLog creates a log of n sample entries with a checkpoint every `every`
// entries and a final one at Close.
func writeLog(t testing.TB, n, every int) (dir string, signer crypto.Signer) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "audit")
	signer = newKey(t)
	l, err := Open(dir, signer, Options{CheckpointEvery: every, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		seq, err := l.Append(context.Background(), sampleEntry(i))
		if err != nil || seq != uint64(i) {
			t.Fatalf("Append %d = %d, %v", i, seq, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, signer
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// editEntries applies fn to each parsed entry of the log and writes it
// back; with rechain the seq and prev fields are recomputed afterwards, as a
// careful attacker would.
func editEntries(t testing.TB, dir string, rechain bool, fn func([]Entry) []Entry) {
	t.Helper()
	path := filepath.Join(dir, LogFile)
	var es []Entry
	for _, l := range readLines(t, path) {
		e, err := ParseEntry(bytes.TrimSuffix(l, []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	es = fn(es)
	var prev [HashSize]byte
	var out [][]byte
	for i := range es {
		if rechain {
			es[i].Seq, es[i].Prev = uint64(i), prev
		}
		b := es[i].Encode()
		copy(prev[:], hasher.HashLeaf(b))
		out = append(out, append(b, '\n'))
	}
	writeLines(t, path, out)
}

// editCheckpoint rewrites checkpoint i's note with fn.
func editCheckpoint(t testing.TB, dir string, i int, fn func([]byte) []byte) {
	t.Helper()
	path := filepath.Join(dir, CheckpointFile)
	lines := readLines(t, path)
	msg, err := base64.StdEncoding.DecodeString(string(bytes.TrimSuffix(lines[i], []byte("\n"))))
	if err != nil {
		t.Fatal(err)
	}
	lines[i] = append(base64.StdEncoding.AppendEncode(nil, fn(msg)), '\n')
	writeLines(t, path, lines)
}

// signedCheckpoint returns a checkpoint note over the first size entries of
// es, signed by s.
func signedCheckpoint(t testing.TB, s crypto.Signer, es []Entry, size int) []byte {
	t.Helper()
	rng := newRange()
	for _, e := range es[:size] {
		if err := rng.Append(hasher.HashLeaf(e.Encode()), nil); err != nil {
			t.Fatal(err)
		}
	}
	root, _ := rng.GetRootHash(nil)
	c := Checkpoint{Origin: DefaultOrigin, Size: uint64(size), Time: t0}
	copy(c.Root[:], root)
	ns, err := newNoteSigner(DefaultOrigin, s)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := signCheckpoint(c, ns)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func pubOf(s crypto.Signer) ed25519.PublicKey { return s.Public().(ed25519.PublicKey) }
