package server

import (
	"bytes"
	"encoding/base32"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKEKFileCreatedOwnerOnlyAndReloaded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "kek.key")
	k1, created, err := LoadOrCreateKEK(path)
	if err != nil || !created {
		t.Fatalf("create: %v (created %v)", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadOrCreateKEK(path)
	if err != nil || created {
		t.Fatalf("reload: %v (created %v)", err, created)
	}
	sealed, err := k1.Seal("totp", "u-1", []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k2.Open("totp", "u-1", sealed); err != nil || string(pt) != "seed" {
		t.Fatalf("reloaded KEK cannot open: %q, %v", pt, err)
	}
	if leftovers, _ := filepath.Glob(path + ".tmp-*"); len(leftovers) != 0 {
		t.Fatalf("temporary files left: %q", leftovers)
	}
}

func TestKEKFileRefusedWhenMalformedOrExposed(t *testing.T) {
	good := strings.Repeat("ab", KEKSize)
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		ok            bool
	}{
		{"hex", good, 0o600, true},
		{"hex and newline", good + "\n", 0o400, true},
		{"group readable", good, 0o640, false},
		{"world readable", good, 0o604, false},
		{"uppercase hex", strings.ToUpper(good), 0o600, false},
		{"short", good[:62], 0o600, false},
		{"long", good + "ab", 0o600, false},
		{"two newlines", good + "\n\n", 0o600, false},
		{"CRLF", good + "\r\n", 0o600, false},
		{"raw bytes", string(bytes.Repeat([]byte{1}, KEKSize)), 0o600, false},
		{"empty", "", 0o600, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kek.key")
			if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode)
			_, err := LoadKEK(path)
			if tc.ok != (err == nil) {
				t.Fatalf("LoadKEK: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrKEK) {
				t.Fatalf("error %v does not match ErrKEK", err)
			}
		})
	}
	_, err := LoadKEK(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSealedSecretBoundToPurposeAndRecord(t *testing.T) {
	k, err := NewKEK(bytes.Repeat([]byte{7}, KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewKEK(bytes.Repeat([]byte{8}, KEKSize))
	sealed, err := k.Seal("totp", "u-alice", []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for _, tc := range []struct {
		name        string
		k           *KEK
		purpose, id string
		sealed      []byte
	}{
		{"moved to another user", k, "totp", "u-mallory", sealed},
		{"used for another purpose", k, "ca", "u-alice", sealed},
		{"wrong KEK", other, "totp", "u-alice", sealed},
		{"flipped bit", k, "totp", "u-alice", flipped},
		{"truncated", k, "totp", "u-alice", sealed[:10]},
		{"unknown version", k, "totp", "u-alice", append([]byte{9}, sealed[1:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.k.Open(tc.purpose, tc.id, tc.sealed); !errors.Is(err, ErrSealed) {
				t.Fatalf("Open: %v, want ErrSealed", err)
			}
		})
	}
}

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
	if pt, err := e.srv.kek.Open(totpPurpose, u.ID, stored.TOTPSecret); err != nil || !bytes.Equal(pt, u.secret) {
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
