package keys

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenSignerFileKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	priv, err := Generate(Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	plain, enc := filepath.Join(dir, "plain.pem"), filepath.Join(dir, "enc.pem")
	if err := WritePrivate(plain, priv, nil); err != nil {
		t.Fatal(err)
	}
	if err := WritePrivate(enc, priv, []byte("correct horse")); err != nil {
		t.Fatal(err)
	}
	passFile := filepath.Join(dir, "pass")
	os.WriteFile(passFile, []byte("correct horse\n"), 0o600)
	wantID, _ := KeyID(priv.Public())

	for _, tt := range []struct {
		name, ref string
		opts      OpenOptions
		ok        bool
	}{
		{"plain file", plain, OpenOptions{}, true},
		{"encrypted file with passphrase", enc, OpenOptions{Passphrase: PassphraseFile(passFile)}, true},
		{"encrypted file without passphrase", enc, OpenOptions{}, false},
		{"missing file", filepath.Join(dir, "nope.pem"), OpenOptions{}, false},
		{"public key file", plain + ".pub", OpenOptions{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenSigner(ctx, tt.ref, tt.opts)
			if (err == nil) != tt.ok {
				t.Fatalf("OpenSigner = %v, want ok=%v", err, tt.ok)
			}
			if err == nil {
				if id, _ := KeyID(s.Public()); id != wantID {
					t.Errorf("key ID %s, want %s", id, wantID)
				}
			}
		})
	}
	for _, ref := range []string{plain, plain + ".pub", enc} {
		pub, err := OpenPublic(ctx, ref, OpenOptions{Passphrase: PassphraseFile(passFile)})
		if err != nil {
			t.Fatalf("OpenPublic(%s): %v", ref, err)
		}
		if id, _ := KeyID(pub); id != wantID {
			t.Errorf("OpenPublic(%s) key ID %s, want %s", ref, id, wantID)
		}
	}
	if !IsPrivate(plain) || IsPrivate(plain+".pub") || !IsPrivate("pkcs11:token=t;object=o") {
		t.Errorf("IsPrivate: plain %v, .pub %v, pkcs11 %v; want true, false, true", IsPrivate(plain), IsPrivate(plain+".pub"), IsPrivate("pkcs11:token=t;object=o"))
	}
}

// TestOpenSignerDispatchesToRegisteredBackend: a URI goes to its backend,
// never to the filesystem, and a known scheme without a backend in this
// binary fails with ErrNoBackend instead of being read as a file name.
func TestOpenSignerDispatchesToRegisteredBackend(t *testing.T) {
	ctx := context.Background()
	if _, err := OpenSigner(ctx, "pkcs11:token=t;object=o", OpenOptions{}); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("pkcs11 URI without the backend: err = %v, want ErrNoBackend", err)
	}
	priv, _ := Generate(ECDSAP256)
	var gotRef string
	RegisterBackend("testhsm", Backend{
		Signer: func(_ context.Context, ref string) (crypto.Signer, error) { gotRef = ref; return priv, nil },
		Public: func(_ context.Context, ref string) (crypto.PublicKey, error) { return priv.Public(), nil },
	})
	s, err := OpenSigner(ctx, "testhsm:slot=1", OpenOptions{})
	if err != nil || s != priv || gotRef != "testhsm:slot=1" {
		t.Fatalf("OpenSigner(testhsm:) = %v, %v (backend saw %q)", s, err, gotRef)
	}
	if pub, err := OpenPublic(ctx, "testhsm:slot=1", OpenOptions{}); err != nil || pub == nil {
		t.Fatalf("OpenPublic(testhsm:) = %v, %v", pub, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a scheme twice did not panic")
		}
	}()
	RegisterBackend("testhsm", Backend{Signer: func(context.Context, string) (crypto.Signer, error) { return nil, nil },
		Public: func(context.Context, string) (crypto.PublicKey, error) { return nil, nil }})
}
