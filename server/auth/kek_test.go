package auth

import (
	"bytes"
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
