package keys_test

import (
	"bytes"
	"crypto"
	"errors"
	. "github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/tufsign"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestGenerateWriteLoadSignVerify(t *testing.T) {
	for _, typ := range Types {
		t.Run(string(typ), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "k.pem")
			priv, err := Generate(typ)
			if err != nil {
				t.Fatal(err)
			}
			if err := WritePrivate(path, priv, nil); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("private key mode = %v, want 0600", fi.Mode().Perm())
			}
			loaded, err := LoadPrivate(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := LoadPublic(path + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			id1, _ := KeyID(loaded.Public())
			id2, _ := KeyID(pub)
			if id1 != id2 || id1 == "" {
				t.Fatalf("key IDs differ: %s vs %s", id1, id2)
			}
			gotType, err := TypeOf(pub)
			if err != nil || gotType != typ {
				t.Fatalf("TypeOf = %v, %v; want %v", gotType, err, typ)
			}

			// A root signed with this key verifies with go-tuf's verifier.
			root := metadata.Root()
			tk, err := tufsign.Key(pub)
			if err != nil {
				t.Fatal(err)
			}
			for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
				if err := root.Signed.AddKey(tk, role); err != nil {
					t.Fatal(err)
				}
			}
			if err := tufsign.Sign(root, loaded); err != nil {
				t.Fatal(err)
			}
			if err := tufsign.Sign(root, loaded); err != nil { // re-signing replaces
				t.Fatal(err)
			}
			if len(root.Signatures) != 1 {
				t.Fatalf("got %d signatures after re-signing, want 1", len(root.Signatures))
			}
			if err := root.VerifyDelegate("root", root); err != nil {
				t.Fatalf("go-tuf rejects our signature: %v", err)
			}
			// Tampering breaks it.
			root.Signed.Version = 7
			if err := root.VerifyDelegate("root", root); err == nil {
				t.Fatal("tampered metadata verified")
			}
		})
	}
}

func TestP384KeyUsesNISTP384Scheme(t *testing.T) {
	priv, _ := Generate(ECDSAP384)
	k, err := tufsign.Key(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if k.Scheme != metadata.KeySchemeECDSA_SHA2_P384 {
		t.Fatalf("scheme = %q, want %q", k.Scheme, metadata.KeySchemeECDSA_SHA2_P384)
	}
}

func TestWritePrivateRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	priv, _ := Generate(Ed25519)
	err := WritePrivate(path, priv, nil)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("err = %v, want ErrExists", err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != "precious" {
		t.Fatal("existing file was modified")
	}
	if _, err := os.Stat(path + ".pub"); err == nil {
		t.Fatal("public key written although the private key was refused")
	}
}

func TestEncryptedKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.pem")
	priv, _ := Generate(ECDSAP256)
	if err := WritePrivate(path, priv, []byte("correct horse")); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatal("key not encrypted")
	}
	if _, err := LoadPrivate(path, nil); !errors.Is(err, ErrNeedPassphrase) {
		t.Fatalf("no passphrase: err = %v, want ErrNeedPassphrase", err)
	}
	if _, err := LoadPrivate(path, func() ([]byte, error) { return []byte("wrong"), nil }); err == nil {
		t.Fatal("wrong passphrase accepted")
	}
	got, err := LoadPrivate(path, func() ([]byte, error) { return []byte("correct horse"), nil })
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := KeyID(priv.Public())
	id2, _ := KeyID(got.Public())
	if id1 != id2 {
		t.Fatal("decrypted key differs")
	}

	// Interop: OpenSSL reads our encrypted PKCS#8.
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") != "" {
			t.Fatal("openssl missing")
		}
		t.Skip("openssl not installed")
	}
	pf := filepath.Join(dir, "pass")
	os.WriteFile(pf, []byte("correct horse\n"), 0o600)
	out, err := exec.Command("openssl", "pkey", "-in", path, "-passin", "file:"+pf, "-pubout").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cannot read our encrypted key: %v\n%s", err, out)
	}
	pub, err := ParsePublic(out)
	if err != nil {
		t.Fatal(err)
	}
	if id3, _ := KeyID(pub); id3 != id1 {
		t.Fatal("openssl derived a different public key")
	}
	// And we read OpenSSL's.
	osslKey := filepath.Join(dir, "ossl.pem")
	plain := filepath.Join(dir, "plain.pem")
	os.WriteFile(plain, mustMarshal(t, priv), 0o600)
	if out, err := exec.Command("openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-in", plain, "-out", osslKey, "-passout", "file:"+pf).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkcs8: %v\n%s", err, out)
	}
	got2, err := LoadPrivate(osslKey, func() ([]byte, error) { return []byte("correct horse"), nil })
	if err != nil {
		t.Fatalf("cannot read OpenSSL's encrypted key: %v", err)
	}
	if id4, _ := KeyID(got2.Public()); id4 != id1 {
		t.Fatal("OpenSSL-encrypted key differs")
	}
}

func mustMarshal(t *testing.T, priv crypto.Signer) []byte {
	t.Helper()
	data, err := MarshalPrivate(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParsePrivateRejectsJunk(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":     nil,
		"not pem":   []byte("hello"),
		"cert type": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"bad der":   []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePrivate(data, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzParsePrivate(f *testing.F) {
	priv, _ := Generate(Ed25519)
	plain, _ := MarshalPrivate(priv, nil)
	f.Add(plain)
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ParsePrivate(data, func() ([]byte, error) { return []byte("x"), nil })
		ParsePublic(data)
	})
}
