package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/airlockfw/airlock/keys"
)

// TestConcurrentAppendsAreContiguous: 100 goroutines append at once; every
// entry gets its own seq, the seqs are 0..99 and the log verifies.
func TestConcurrentAppendsAreContiguous(t *testing.T) {
	dir := t.TempDir()
	signer := newKey(t)
	l, err := Open(dir, signer, Options{CheckpointEvery: 7})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	seqs := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			seq, err := l.Append(context.Background(), sampleEntry(i))
			if err != nil {
				t.Error(err)
			}
			seqs[i] = seq
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("seqs are not 0..%d: position %d holds %d", n-1, i, s)
		}
	}
	rep, err := Verify(dir, signer.Public())
	if err != nil || rep.Entries != n || rep.Checkpoints != n/7+1 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Run("another signer than audit-key.pub", func(t *testing.T) {
		dir, _ := writeLog(t, 3, 10)
		if _, err := Open(dir, newKey(t), Options{}); !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("Open = %v, want ErrKeyMismatch", err)
		}
	})
	t.Run("a log signed by another key", func(t *testing.T) {
		dir, _ := writeLog(t, 3, 10)
		os.Remove(filepath.Join(dir, PublicKeyFile))
		if _, err := Open(dir, newKey(t), Options{}); !errors.Is(err, ErrCheckpointSignature) {
			t.Fatalf("Open = %v, want ErrCheckpointSignature", err)
		}
		if _, err := os.Stat(filepath.Join(dir, PublicKeyFile)); err == nil {
			t.Fatal("a refused Open wrote the public key file")
		}
	})
	t.Run("a second opener", func(t *testing.T) {
		dir := t.TempDir()
		s := newKey(t)
		l, err := Open(dir, s, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := Open(dir, s, Options{}); !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open = %v, want ErrLocked", err)
		}
	})
	t.Run("a non-Ed25519 key", func(t *testing.T) {
		s, err := keys.Generate(keys.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(t.TempDir(), s, Options{}); !errors.Is(err, ErrUnsupportedKey) {
			t.Fatalf("Open = %v, want ErrUnsupportedKey", err)
		}
	})
	t.Run("another origin", func(t *testing.T) {
		dir, s := writeLog(t, 3, 10)
		if _, err := Open(dir, s, Options{Origin: "other.example/audit"}); err == nil {
			t.Fatal("Open with another origin succeeded")
		}
	})
}

func TestLogFilePermissions(t *testing.T) {
	dir, _ := writeLog(t, 1, 10)
	for name, want := range map[string]os.FileMode{".": 0o700, LogFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
}

func TestGenerateKeyAndLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.pem")
	s, err := GenerateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKey(path); !errors.Is(err, keys.ErrExists) {
		t.Fatalf("second GenerateKey = %v, want ErrExists", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v", fi.Mode().Perm(), err)
	}
	loaded, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublic(path + ".pub")
	if err != nil || !pub.Equal(s.Public()) || !pub.Equal(loaded.Public()) {
		t.Fatalf("LoadPublic = %v, %v", pub, err)
	}
	// The loaded key signs checkpoints that verify with the public key file.
	dir := t.TempDir()
	l, err := Open(dir, loaded, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), Entry{Actor: SystemActor, Action: KeyGenerated, Details: map[string]string{"key_id": "abc"}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep, err := Verify(dir, pub); err != nil || rep.Checkpoints != 1 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	ecdsaPath := filepath.Join(t.TempDir(), "ec.pem")
	ec, _ := keys.Generate(keys.ECDSAP256)
	if err := keys.WritePrivate(ecdsaPath, ec, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPublic(ecdsaPath + ".pub"); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("LoadPublic(ecdsa) = %v, want ErrUnsupportedKey", err)
	}
}

func TestAppendHonoursContext(t *testing.T) {
	l, err := Open(t.TempDir(), newKey(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Append(ctx, sampleEntry(0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append = %v, want context.Canceled", err)
	}
	if l.Size() != 0 {
		t.Fatal("a cancelled Append wrote an entry")
	}
}

// TestTailSurvivesReopen: Tail returns the newest entries, oldest first,
// from memory after Append and AppendBatch and from the file after Open;
// AppendBatch writes all of a batch or, with one invalid entry, none.
func TestTailSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	signer := newKey(t)
	l, err := Open(dir, signer, Options{CheckpointEvery: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Tail(1)) != 0 || len(l.Tail(10)) != 0 {
		t.Fatal("an empty log has a tail")
	}
	if _, err := l.Append(context.Background(), sampleEntry(0)); err != nil {
		t.Fatal(err)
	}
	batch := make([]Entry, 300)
	for i := range batch {
		batch[i] = sampleEntry(i + 1)
	}
	bad := append(slices.Clone(batch[:2]), Entry{Actor: "x", Action: "nope"})
	if _, err := l.AppendBatch(context.Background(), bad); !errors.Is(err, ErrInvalidEntry) || l.Size() != 1 {
		t.Fatalf("AppendBatch with an invalid entry = %v, size %d; want ErrInvalidEntry and nothing written", err, l.Size())
	}
	first, err := l.AppendBatch(context.Background(), batch)
	if err != nil || first != 1 || l.Size() != 301 {
		t.Fatalf("AppendBatch = %d, %v (size %d)", first, err, l.Size())
	}
	want := l.Tail(1000)
	if len(want) != MaxTail || want[0].Seq != 301-MaxTail || want[MaxTail-1].Seq != 300 {
		t.Fatalf("Tail returned %d entries from %d", len(want), want[0].Seq)
	}
	if last := l.Tail(1); len(last) != 1 || last[0].Seq != 300 || last[0].Actor != sampleEntry(300).Actor {
		t.Fatalf("Tail(1) = %+v", last)
	}
	if want[len(want)-1].Details != nil {
		want[len(want)-1].Details["x"] = "changed" // a copy: the log's entry is unchanged
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, signer.Public())
	if err != nil || rep.Entries != 301 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	l, err = Open(dir, signer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := l.Tail(MaxTail)
	delete(want[len(want)-1].Details, "x")
	if len(got) != len(want) {
		t.Fatalf("Tail after reopen: %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if string(got[i].Encode()) != string(want[i].Encode()) {
			t.Fatalf("Tail after reopen [%d] = %s, want %s", i, got[i].Encode(), want[i].Encode())
		}
	}
}
