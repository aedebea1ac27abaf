package keys_test

import (
	"errors"
	"testing"

	. "github.com/airlockfw/airlock/keys"
)

func TestUnencryptedPrivateRoundTrip(t *testing.T) {
	for _, typ := range Types {
		t.Run(string(typ), func(t *testing.T) {
			priv, err := Generate(typ)
			if err != nil {
				t.Fatal(err)
			}
			data, err := MarshalUnencryptedPrivate(priv)
			if err != nil {
				t.Fatal(err)
			}
			viaPlain, err := MarshalPrivate(priv, nil)
			if err != nil || string(viaPlain) != string(data) {
				t.Fatalf("MarshalPrivate(nil passphrase) differs from MarshalUnencryptedPrivate: %v", err)
			}
			got, err := ParseUnencryptedPrivate(data)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := KeyID(priv.Public())
			b, _ := KeyID(got.Public())
			if a != b {
				t.Fatalf("key ID %s after the round trip, want %s", b, a)
			}
		})
	}
}

func TestParseUnencryptedPrivateRefuses(t *testing.T) {
	priv, err := Generate(Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := MarshalPrivate(priv, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseUnencryptedPrivate(enc); !errors.Is(err, ErrNeedPassphrase) {
		t.Errorf("encrypted key: err = %v, want ErrNeedPassphrase", err)
	}
	plain, _ := MarshalUnencryptedPrivate(priv)
	pub, _ := MarshalPublic(priv.Public())
	for name, data := range map[string][]byte{
		"not PEM":        []byte("not a key"),
		"trailing data":  append(append([]byte{}, plain...), "junk"...),
		"a public key":   pub,
		"two PEM blocks": append(append([]byte{}, plain...), plain...),
	} {
		if _, err := ParseUnencryptedPrivate(data); !errors.Is(err, ErrNotKey) {
			t.Errorf("%s: err = %v, want ErrNotKey", name, err)
		}
	}
}
