package audit

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/airlockfw/airlock/keys"
)

func TestOpenWithKeyCreatesTheKeyOnceAndReusesIt(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(t.TempDir(), "audit.pem")
	l, err := OpenWithKey(dir, keyPath, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), Entry{Actor: "user:a", Action: ReleaseAdded, Release: "p@1.0.0"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	first, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	// Reopening uses the same key: the chain of checkpoints continues.
	l, err = OpenWithKey(dir, keyPath, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), Entry{Actor: "user:a", Action: ReleaseSigned, Release: "p@1.0.0"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if again, _ := os.ReadFile(keyPath); string(again) != string(first) {
		t.Fatal("OpenWithKey replaced an existing key")
	}
	got, err := Query(dir, Filter{})
	if err != nil || len(got) != 2 {
		t.Fatalf("Query = %d entries, %v; want 2", len(got), err)
	}
}

func TestOpenWithKeyRefusesANonEd25519Key(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "p256.pem")
	priv, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.WritePrivate(keyPath, priv, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWithKey(t.TempDir(), keyPath, Options{}); err == nil {
		t.Fatal("opened an audit log with a P-256 key")
	}
}
