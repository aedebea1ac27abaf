package agent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/airlockfw/airlock/keys"
)

func pkcs8PEM(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// The device key file is byte for byte what x509.MarshalPKCS8PrivateKey
// (and so keys.MarshalUnencryptedPrivate) writes.
func TestDeviceKeyEncoding(t *testing.T) {
	for range 20 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalDeviceKey(k)
		if err != nil {
			t.Fatal(err)
		}
		want, err := keys.MarshalUnencryptedPrivate(k)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("marshalDeviceKey:\n%s\nx509:\n%s", got, want)
		}
		back, err := parseDeviceKey(got)
		if err != nil {
			t.Fatal(err)
		}
		if !k.Equal(back) {
			t.Fatal("parsed key differs")
		}
	}
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := marshalDeviceKey(k384); !errors.Is(err, keys.ErrUnsupportedKey) {
		t.Fatalf("P-384: err = %v, want ErrUnsupportedKey", err)
	}
}

func TestParseDeviceKey(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []crypto.Signer{p256, ed} {
		got, err := parseDeviceKey(pkcs8PEM(t, k))
		if err != nil {
			t.Fatalf("%T: %v", k, err)
		}
		if !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Fatalf("%T: parsed key differs", k)
		}
	}
	// The same answers as keys.ParseUnencryptedPrivate for the other cases.
	good := pkcs8PEM(t, p256)
	sec1, _ := x509.MarshalECPrivateKey(p256)
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"P-384", pkcs8PEM(t, p384), keys.ErrUnsupportedKey},
		{"RSA", pkcs8PEM(t, rsaKey), keys.ErrUnsupportedKey},
		{"encrypted", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}), keys.ErrNeedPassphrase},
		{"trailing data", append(append([]byte{}, good...), "x"...), keys.ErrNotKey},
		{"not PEM", []byte("hello"), keys.ErrNotKey},
		{"SEC1 block", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), keys.ErrNotKey},
		{"SEC1 in a PKCS#8 block", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: sec1}), nil},
	} {
		_, err := parseDeviceKey(c.data)
		if err == nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// Every prefix of the DER is refused.
	b, _ := pem.Decode(good)
	for n := range len(b.Bytes) {
		if _, err := parseDeviceKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b.Bytes[:n]})); err == nil {
			t.Fatalf("prefix of %d bytes accepted", n)
		}
	}
}

// FuzzParseDeviceKey: whatever parseDeviceKey accepts, x509 accepts too,
// as the same key (the device parser is a strict subset).
func FuzzParseDeviceKey(f *testing.F) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, k := range []any{p256, ed} {
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := parseDeviceKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		if err != nil {
			return
		}
		x, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatalf("accepted a key x509 refuses: %v", err)
		}
		if !k.(interface{ Equal(crypto.PrivateKey) bool }).Equal(x) {
			t.Fatal("a different key than x509's")
		}
	})
}
