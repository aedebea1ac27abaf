package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"testing"
)

func pemKey(t *testing.T, pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestKeyTypesVerify checks every (keytype, scheme) the conformance suite and
// python-tuf repositories use, and that a signature by another key fails.
func TestKeyTypesVerify(t *testing.T) {
	msg := []byte(`{"_type":"timestamp"}`)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	sign := func(f func() ([]byte, error)) []byte {
		s, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h256 := digest(crypto.SHA256, msg)
	tests := []struct {
		name string
		key  Key
		sig  []byte
	}{
		{"ed25519", Key{Type: "ed25519", Scheme: "ed25519", Value: KeyVal{PublicKey: hex.EncodeToString(edPub)}}, ed25519.Sign(edPriv, msg)},
		{"ecdsa p256", Key{Type: "ecdsa", Scheme: "ecdsa-sha2-nistp256", Value: KeyVal{PublicKey: pemKey(t, &ec256.PublicKey)}},
			sign(func() ([]byte, error) { return ecdsa.SignASN1(rand.Reader, ec256, h256) })},
		{"ecdsa-sha2-nistp256 alias", Key{Type: "ecdsa-sha2-nistp256", Scheme: "ecdsa-sha2-nistp256", Value: KeyVal{PublicKey: pemKey(t, &ec256.PublicKey)}},
			sign(func() ([]byte, error) { return ecdsa.SignASN1(rand.Reader, ec256, h256) })},
		{"ecdsa p384", Key{Type: "ecdsa", Scheme: "ecdsa-sha2-nistp384", Value: KeyVal{PublicKey: pemKey(t, &ec384.PublicKey)}},
			sign(func() ([]byte, error) { return ecdsa.SignASN1(rand.Reader, ec384, digest(crypto.SHA384, msg)) })},
		{"rsa pss", Key{Type: "rsa", Scheme: "rsassa-pss-sha256", Value: KeyVal{PublicKey: pemKey(t, &rk.PublicKey)}},
			sign(func() ([]byte, error) {
				return rsa.SignPSS(rand.Reader, rk, crypto.SHA256, h256, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
			})},
		{"rsa pkcs1v15", Key{Type: "rsa", Scheme: "rsa-pkcs1v15-sha256", Value: KeyVal{PublicKey: pemKey(t, &rk.PublicKey)}},
			sign(func() ([]byte, error) { return rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, h256) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := newVerifier(&tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if !v.verify(msg, tt.sig) {
				t.Fatal("valid signature rejected")
			}
			if v.verify(append(msg, ' '), tt.sig) {
				t.Fatal("signature over other bytes accepted")
			}
		})
	}
	t.Run("curve must match scheme", func(t *testing.T) {
		k := Key{Type: "ecdsa", Scheme: "ecdsa-sha2-nistp256", Value: KeyVal{PublicKey: pemKey(t, &ec384.PublicKey)}}
		if _, err := newVerifier(&k); err == nil {
			t.Fatal("P-384 key accepted for ecdsa-sha2-nistp256")
		}
	})
}
