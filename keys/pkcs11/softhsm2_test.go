//go:build cgo

package pkcs11_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/pkcs11"
	"github.com/airlockfw/airlock/keys/pkcs11/pkcs11test"
	"github.com/airlockfw/airlock/keys/tufsign"
)

// signRoot builds a root with pub for every role, signs it through
// keys.Sign with s, and verifies it with go-tuf's verifier.
func signRoot(t *testing.T, s crypto.Signer) *metadata.Metadata[metadata.RootType] {
	t.Helper()
	root := metadata.Root()
	tk, err := tufsign.Key(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		if err := root.Signed.AddKey(tk, role); err != nil {
			t.Fatal(err)
		}
	}
	if err := tufsign.Sign(root, s); err != nil {
		t.Fatalf("keys.Sign with HSM key: %v", err)
	}
	if err := root.VerifyDelegate("root", root); err != nil {
		t.Fatalf("go-tuf rejects the HSM signature: %v", err)
	}
	return root
}

func TestGenerateSignVerifyEveryType(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	for _, typ := range keys.Types {
		t.Run(string(typ), func(t *testing.T) {
			uri := pkcs11test.URI(base, "key-"+string(typ), mod, pin)
			pub, err := pkcs11.Generate(uri, typ)
			if err != nil {
				t.Fatalf("Generate(%s): %v", typ, err)
			}
			if got, err := keys.TypeOf(pub); err != nil || got != typ {
				t.Fatalf("generated key type = %v, %v; want %v", got, err, typ)
			}
			s, err := pkcs11.Open(uri)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			id1, _ := keys.KeyID(pub)
			id2, _ := keys.KeyID(s.Public())
			if id1 != id2 || id1 == "" {
				t.Fatalf("Open's public key ID %s differs from Generate's %s", id2, id1)
			}
			pub2, err := pkcs11.PublicKey(uri)
			if err != nil {
				t.Fatalf("PublicKey: %v", err)
			}
			if id3, _ := keys.KeyID(pub2); id3 != id1 {
				t.Fatalf("PublicKey's key ID %s differs from Generate's %s", id3, id1)
			}
			root := signRoot(t, s)
			root.Signed.Version = 9
			if err := root.VerifyDelegate("root", root); err == nil {
				t.Fatal("tampered metadata verified")
			}
		})
	}
}

func TestPrivateKeyNeverLeavesToken(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	for _, typ := range keys.Types {
		t.Run(string(typ), func(t *testing.T) {
			uri := pkcs11test.URI(base, "sealed-"+string(typ), mod, pin)
			if _, err := pkcs11.Generate(uri, typ); err != nil {
				t.Fatal(err)
			}
			kp, err := pkcs11.PrivateKeyProtection(uri)
			if err != nil {
				t.Fatal(err)
			}
			if kp.Extractable || !kp.Sensitive || !kp.NeverExtractable || !kp.AlwaysSensitive || !kp.Private || !kp.Token {
				t.Errorf("private key attributes = %+v; want non-extractable, sensitive, private token object", *kp)
			}
			if kp.ValueErr == nil {
				t.Fatal("C_GetAttributeValue returned the private key value")
			}
			if !pkcs11.IsSensitiveErr(kp.ValueErr) {
				t.Errorf("reading the private value failed with %v, want CKR_ATTRIBUTE_SENSITIVE", kp.ValueErr)
			}
		})
	}
}

// TestGeneratedKeysOnlySign reads every usage attribute of each generated
// key pair back from the token and checks that the token refuses to
// decrypt or derive with the private key: a signing key that can also
// decrypt or unwrap is an oracle for whoever can reach the token.
func TestGeneratedKeysOnlySign(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	wantPriv := map[string]bool{
		"CKA_SIGN": true, "CKA_SIGN_RECOVER": false, "CKA_DECRYPT": false,
		"CKA_UNWRAP": false, "CKA_DERIVE": false, "CKA_EXTRACTABLE": false,
		"CKA_SENSITIVE": true, "CKA_PRIVATE": true, "CKA_TOKEN": true,
	}
	wantPub := map[string]bool{
		"CKA_VERIFY": true, "CKA_VERIFY_RECOVER": false, "CKA_ENCRYPT": false,
		"CKA_WRAP": false, "CKA_DERIVE": false, "CKA_PRIVATE": false,
		"CKA_TOKEN": true,
	}
	for _, typ := range keys.Types {
		t.Run(string(typ), func(t *testing.T) {
			uri := pkcs11test.URI(base, "usage-"+string(typ), mod, pin)
			if _, err := pkcs11.Generate(uri, typ); err != nil {
				t.Fatal(err)
			}
			for class, want := range map[string]map[string]bool{"private": wantPriv, "public": wantPub} {
				got, err := pkcs11.KeyUsage(uri, class)
				if err != nil {
					t.Fatalf("%s key: %v", class, err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s key attributes (-want +got):\n%s", class, diff)
				}
			}
			// SoftHSM2 checks CKA_DECRYPT before the mechanism, so a
			// non-RSA key is refused for its function, not its type.
			if err := pkcs11.TryDecryptInit(uri); !pkcs11.IsFunctionNotPermittedErr(err) {
				t.Errorf("C_DecryptInit = %v, want CKR_KEY_FUNCTION_NOT_PERMITTED", err)
			}
			if typ == keys.ECDSAP256 || typ == keys.ECDSAP384 {
				if err := pkcs11.TryDeriveKey(uri); !pkcs11.IsFunctionNotPermittedErr(err) {
					t.Errorf("C_DeriveKey(ECDH) = %v, want CKR_KEY_FUNCTION_NOT_PERMITTED", err)
				}
			}
		})
	}
}

func TestOpenFailures(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	good := pkcs11test.URI(base, "k", mod, pin)
	if _, err := pkcs11.Generate(good, keys.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wrongPIN := filepath.Join(dir, "wrong.pin")
	if err := os.WriteFile(wrongPIN, []byte("00000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyPIN := filepath.Join(dir, "empty.pin")
	if err := os.WriteFile(emptyPIN, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(pkcs11.PINEnv, "")
	tests := []struct {
		name  string
		uri   string
		want  error
		fresh bool // close the module first, so that the token itself checks the PIN
	}{
		{"missing object", pkcs11test.URI(base, "nope", mod, pin), pkcs11.ErrNotFound, false},
		{"missing token", pkcs11test.URI("pkcs11:token=no-such-token", "k", mod, pin), pkcs11.ErrTokenNotFound, false},
		{"pin-value refused", good + "&pin-value=" + pkcs11test.PIN, pkcs11.ErrPINOnCommandLine, false},
		{"no key named", "pkcs11:token=x?module-path=" + mod, pkcs11.ErrURI, false},
		{"no PIN", pkcs11test.URI(base, "k", mod, ""), pkcs11.ErrPIN, false},
		{"empty PIN file", pkcs11test.URI(base, "k", mod, emptyPIN), pkcs11.ErrPIN, false},
		{"unset PIN variable", pkcs11test.URI(base, "k", mod, "") + "&pin-source=env:AIRLOCK_TEST_UNSET_PIN", pkcs11.ErrPIN, false},
		{"relative module path", strings.Replace(good, "module-path=", "module-path=lib", 1), pkcs11.ErrModule, false},
		{"module is not a library", strings.Replace(good, mod, wrongPIN, 1), pkcs11.ErrModule, false},
		{"wrong PIN while logged in", pkcs11test.URI(base, "k", mod, wrongPIN), pkcs11.ErrPIN, false},
		{"wrong PIN", pkcs11test.URI(base, "k", mod, wrongPIN), pkcs11.ErrPIN, true},
		{"no PIN before login", pkcs11test.URI(base, "k", mod, ""), pkcs11.ErrPIN, true},
	}
	if _, err := pkcs11.Open(good); err != nil { // logged in now
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fresh {
				if err := pkcs11.Close(); err != nil {
					t.Fatal(err)
				}
			}
			s, err := pkcs11.Open(tt.uri)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, %v; want %v", s, err, tt.want)
			}
			if strings.Contains(err.Error(), pkcs11test.PIN) {
				t.Fatalf("error reveals the PIN: %v", err)
			}
		})
	}
}

func TestPINFromEnvironment(t *testing.T) {
	base, mod, _ := pkcs11test.NewToken(t)
	t.Setenv("AIRLOCK_TEST_HSM_PIN", pkcs11test.PIN)
	uri := pkcs11test.URI(base, "env-key", mod, "") + "&pin-source=env:AIRLOCK_TEST_HSM_PIN"
	if _, err := pkcs11.Generate(uri, keys.Ed25519); err != nil {
		t.Fatal(err)
	}
	pkcs11.Close() // log out, so that the next Open logs in again
	t.Setenv("AIRLOCK_TEST_HSM_PIN", "")
	t.Setenv(pkcs11.PINEnv, pkcs11test.PIN)
	s, err := pkcs11.Open(pkcs11test.URI(base, "env-key", mod, ""))
	if err != nil {
		t.Fatalf("Open with %s: %v", pkcs11.PINEnv, err)
	}
	signRoot(t, s)
}

func TestGenerateRefusesExistingLabelOrID(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	uri := pkcs11test.URI(base, "dup", mod, pin)
	if _, err := pkcs11.Generate(uri, keys.Ed25519); err != nil {
		t.Fatal(err)
	}
	first, err := pkcs11.PublicKey(uri)
	if err != nil {
		t.Fatal(err)
	}
	withID := pkcs11test.URI(base, "", mod, pin)
	withID = strings.Replace(withID, "?", ";id=%01%02?", 1)
	if _, err := pkcs11.Generate(withID, keys.ECDSAP384); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{uri, withID, strings.Replace(withID, "token=", "object=other;token=", 1)} {
		if _, err := pkcs11.Generate(u, keys.ECDSAP256); !errors.Is(err, pkcs11.ErrExists) {
			t.Errorf("Generate(%s) over an existing key = %v, want ErrExists", u, err)
		}
	}
	// The original key is untouched.
	after, err := pkcs11.PublicKey(uri)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := keys.KeyID(first)
	id2, _ := keys.KeyID(after)
	if id1 != id2 {
		t.Fatal("Generate replaced an existing key")
	}
	// Keys named only by id open too.
	s, err := pkcs11.Open(withID)
	if err != nil {
		t.Fatal(err)
	}
	signRoot(t, s)
}

func TestSignerRefusesWeakOrWrongOptions(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	open := func(name string, typ keys.Type) crypto.Signer {
		uri := pkcs11test.URI(base, name, mod, pin)
		if _, err := pkcs11.Generate(uri, typ); err != nil {
			t.Fatal(err)
		}
		s, err := pkcs11.Open(uri)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey := open("rsa", keys.RSA3072)
	ecKey := open("ec", keys.ECDSAP256)
	edKey := open("ed", keys.Ed25519)
	d := sha256.Sum256([]byte("firmware"))
	tests := []struct {
		name   string
		s      crypto.Signer
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"RSA PKCS#1 v1.5", rsaKey, d[:], crypto.SHA256},
		{"RSA-PSS digest length", rsaKey, d[:20], &rsa.PSSOptions{Hash: crypto.SHA256}},
		{"ECDSA without hash", ecKey, d[:], crypto.Hash(0)},
		{"ECDSA digest length", ecKey, d[:31], crypto.SHA256},
		{"ECDSA SHA-1", ecKey, d[:20], crypto.SHA1},
		{"Ed25519ph", edKey, d[:], crypto.SHA512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.s.Sign(rand.Reader, tt.digest, tt.opts); !errors.Is(err, pkcs11.ErrMechanism) {
				t.Fatalf("Sign = %v, want ErrMechanism", err)
			}
		})
	}
	// The valid forms verify with the standard library.
	sig, err := ecKey.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(ecKey.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Error("ECDSA signature (ASN.1) does not verify")
	}
	pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	sig, err = rsaKey.Sign(rand.Reader, d[:], pss)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(rsaKey.Public().(*rsa.PublicKey), crypto.SHA256, d[:], sig, pss); err != nil {
		t.Errorf("RSA-PSS signature does not verify: %v", err)
	}
}

func TestConcurrentSigning(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	base2, _, pin2 := pkcs11test.NewToken(t) // a second token in the same module
	var signers []crypto.Signer
	for i, typ := range []keys.Type{keys.Ed25519, keys.ECDSAP256} {
		b, p := base, pin
		if i == 1 {
			b, p = base2, pin2
		}
		uri := pkcs11test.URI(b, "c", mod, p)
		if _, err := pkcs11.Generate(uri, typ); err != nil {
			t.Fatal(err)
		}
		s, err := pkcs11.Open(uri)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := signers[i%2]
			md := metadata.Targets()
			md.Signed.Version = int64(i + 1)
			if err := tufsign.Sign(md, s); err != nil {
				errs <- err
				return
			}
			tk, _ := tufsign.Key(s.Public())
			root := metadata.Root()
			if err := root.Signed.AddKey(tk, "targets"); err != nil {
				errs <- err
				return
			}
			errs <- root.VerifyDelegate("targets", md)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestSignerAfterCloseFails(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	uri := pkcs11test.URI(base, "k", mod, pin)
	if _, err := pkcs11.Generate(uri, keys.Ed25519); err != nil {
		t.Fatal(err)
	}
	s, err := pkcs11.Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	if err := pkcs11.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(rand.Reader, []byte("m"), crypto.Hash(0)); !errors.Is(err, pkcs11.ErrClosed) {
		t.Fatalf("Sign after Close = %v, want ErrClosed", err)
	}
	// Reopening loads the module again.
	if s, err = pkcs11.Open(uri); err != nil {
		t.Fatal(err)
	}
	signRoot(t, s)
}

func TestWrongPINDoesNotLogIn(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	uri := pkcs11test.URI(base, "k", mod, pin)
	if _, err := pkcs11.Generate(uri, keys.Ed25519); err != nil {
		t.Fatal(err)
	}
	if err := pkcs11.Close(); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.pin")
	if err := os.WriteFile(wrong, []byte("11111111"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pkcs11.Open(pkcs11test.URI(base, "k", mod, wrong)); !errors.Is(err, pkcs11.ErrPIN) {
		t.Fatalf("Open with wrong PIN = %v, want ErrPIN", err)
	}
	// The private key is still invisible without a PIN ...
	if _, err := pkcs11.Open(pkcs11test.URI(base, "k", mod, "")); !errors.Is(err, pkcs11.ErrPIN) {
		t.Fatalf("Open without PIN after a failed login = %v, want ErrPIN", err)
	}
	// ... and the right PIN still works.
	s, err := pkcs11.Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	signRoot(t, s)
}
