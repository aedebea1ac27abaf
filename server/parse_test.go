package server

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/server/pki"
)

func TestParseCSRAcceptsOnlyP256AndEd25519WithValidSignature(t *testing.T) {
	_, p256 := newCSR(t, false)
	_, ed := newCSR(t, true)
	for _, tt := range []struct {
		name, in string
		ok       bool
	}{
		{"P-256", p256, true},
		{"Ed25519", ed, true},
		{"P-384", p384CSR(t), false},
		{"bad signature", tamperedCSR(t), false},
		{"trailing data", p256 + "junk", false},
		{"two blocks", p256 + p256, false},
		{"certificate block", strings.Replace(p256, "CERTIFICATE REQUEST", "CERTIFICATE", 2), false},
		{"empty", "", false},
		{"too large", p256 + strings.Repeat(" ", MaxCSRSize), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCSR([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("ParseCSR = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadCSR) {
				t.Fatalf("error does not wrap ErrBadCSR: %v", err)
			}
		})
	}
}

func FuzzParseCSR(f *testing.F) {
	f.Add([]byte(validCSRSeed))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err == nil && csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR whose signature does not verify")
		}
	})
}

// validCSRSeed is a P-256 CSR (testdata for the fuzzer).
var validCSRSeed = func() string {
	data, _ := os.ReadFile("testdata/p256.csr")
	return string(data)
}()

func TestEnsureCAIsStableAndKeysArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	pem1, fp1, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	pem2, fp2, err := EnsureCA(dir)
	if err != nil || fp1 != fp2 || string(pem1) != string(pem2) {
		t.Fatalf("second EnsureCA changed the CA: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v, want 0600 (%v)", fi.Mode().Perm(), err)
	}
	if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureCA(dir); !errors.Is(err, ErrInsecureKeyFile) {
		t.Fatalf("world-readable CA key accepted: %v", err)
	}
}

// TestCAKeysAreSealedWithTheKEK: the CA private keys at rest are encrypted
// with the KEK (which is not in the database); a wrong KEK fails closed; a
// plain key from an earlier version is sealed on first load.
func TestCAKeysAreSealedWithTheKEK(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := EnsureCA(dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("PRIVATE KEY")) {
		t.Fatal("CA key is stored in the clear")
	}
	other, err := NewKEK(bytes.Repeat([]byte{7}, KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadCAKey(filepath.Join(dir, CAKeyFile), other); err == nil {
		t.Fatal("CA key opened with the wrong KEK")
	}
	// Legacy plain key: accepted once, then sealed.
	legacy := filepath.Join(dir, "legacy.key")
	k, _ := keys.Generate(keys.ECDSAP256)
	pemKey, _ := keys.MarshalPrivate(k, nil)
	os.WriteFile(legacy, pemKey, 0o600)
	kek, err := LoadKEK(filepath.Join(dir, KEKFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadCAKey(legacy, kek); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(legacy); bytes.Contains(data, []byte("PRIVATE KEY")) {
		t.Fatal("legacy key was not sealed")
	}
	if _, err := pki.LoadCAKey(legacy, kek); err != nil {
		t.Fatalf("sealed legacy key: %v", err)
	}
}
