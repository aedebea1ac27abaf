package server

import (
	"bytes"
	"encoding/base32"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/server/auth"
)

// TestDatabaseHoldsOnlySealedTOTPSecrets greps the raw SQLite files (and
// WAL) for the TOTP seed in binary and base32 form.
func TestDatabaseHoldsOnlySealedTOTPSecrets(t *testing.T) {
	e := startServer(t, nil)
	u := e.newUser("alice", RoleApprover)
	if len(u.secret) != TOTPSecretSize {
		t.Fatalf("secret of %d bytes", len(u.secret))
	}
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(u.secret)
	files, _ := filepath.Glob(filepath.Join(e.cfg.DataDir, DBFile+"*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, u.secret) || bytes.Contains(data, []byte(b32)) || bytes.Contains(data, []byte(strings.ToLower(b32))) {
			t.Fatalf("%s contains the TOTP secret in the clear", f)
		}
	}
	// The sealed form is what the store holds.
	stored, err := e.db.GetUser(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := e.srv.kek.Open(auth.TOTPPurpose, u.ID, stored.TOTPSecret); err != nil || !bytes.Equal(pt, u.secret) {
		t.Fatalf("stored secret does not open to the enrolled one: %v", err)
	}
}

func TestWrongKEKFailsClosed(t *testing.T) {
	e := startServer(t, nil)
	e.newUser("alice", RoleApprover)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	if _, _, err := LoadOrCreateKEK(other); err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.KEKFile = other
	srv, err := New(cfg)
	if err == nil {
		srv.Close()
		t.Fatal("server started with the wrong key-encryption key")
	}
	if !errors.Is(err, ErrWrongKEK) || !strings.Contains(err.Error(), "does not match the database") {
		t.Fatalf("error %v, want ErrWrongKEK saying what is wrong", err)
	}
	// A missing KEK file with an existing database is a new key: also refused.
	cfg.KEKFile = filepath.Join(t.TempDir(), "fresh.key")
	if srv, err := New(cfg); !errors.Is(err, ErrWrongKEK) {
		if srv != nil {
			srv.Close()
		}
		t.Fatalf("fresh KEK on an existing database: %v, want ErrWrongKEK", err)
	}
}

func FuzzKEKOpen(f *testing.F) {
	k, _ := NewKEK(bytes.Repeat([]byte{7}, KEKSize))
	sealed, _ := k.Seal("totp", "u-1", []byte("12345678901234567890"))
	f.Add(sealed)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := k.Open("totp", "u-1", b)
		if err == nil && !bytes.Equal(b, sealed) && len(pt) > 0 {
			// Only the genuine sealed value (or another genuine seal) opens.
			if _, err := k.Open("totp", "u-2", b); err == nil {
				t.Fatal("one sealed value opened for two records")
			}
		}
	})
}
