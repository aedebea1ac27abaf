package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"github.com/airlockfw/airlock/internal/canonjson"
)

// TUFKey holds the fields of the TUF key object (TUF 1.0 §4.2) for a public
// key: what go-tuf's KeyFromPublicKey writes, except that a P-384 key gets
// the ecdsa-sha2-nistp384 scheme. Package keys/tufsign turns it into
// go-tuf's type for the vendor side; the device never needs more than its
// ID (KeyID).
type TUFKey struct {
	Type, Scheme, Public string
}

// TUFKeyOf returns the TUF key object of pub.
func TUFKeyOf(pub crypto.PublicKey) (TUFKey, error) {
	t, err := TypeOf(pub)
	if err != nil {
		return TUFKey{}, err
	}
	switch t {
	case Ed25519:
		return TUFKey{"ed25519", "ed25519", hex.EncodeToString(pub.(ed25519.PublicKey))}, nil
	case ECDSAP256, ECDSAP384, RSA3072:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return TUFKey{}, fmt.Errorf("failed to build TUF key: %w", err)
		}
		p := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		switch t {
		case ECDSAP256:
			return TUFKey{"ecdsa", "ecdsa-sha2-nistp256", p}, nil
		case ECDSAP384:
			return TUFKey{"ecdsa", "ecdsa-sha2-nistp384", p}, nil
		}
		return TUFKey{"rsa", "rsassa-pss-sha256", p}, nil
	}
	return TUFKey{}, fmt.Errorf("%w %T", ErrUnsupportedKey, pub)
}

// KeyID returns the TUF key ID of pub: the hex SHA-256 of the canonical JSON
// of its key object (TUF 1.0 §4.2, "KEYID").
func KeyID(pub crypto.PublicKey) (string, error) {
	k, err := TUFKeyOf(pub)
	if err != nil {
		return "", err
	}
	data, err := canonjson.Marshal(map[string]any{
		"keytype": k.Type,
		"scheme":  k.Scheme,
		"keyval":  map[string]any{"public": k.Public},
	})
	if err != nil {
		return "", fmt.Errorf("failed to encode TUF key: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// SignMessage signs msg with s using the scheme TUFKey declares for its key.
func SignMessage(s crypto.Signer, msg []byte) ([]byte, error) {
	switch pub := s.Public().(type) {
	case ed25519.PublicKey:
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			d := sha256.Sum256(msg)
			return s.Sign(rand.Reader, d[:], crypto.SHA256)
		case elliptic.P384():
			d := sha512.Sum384(msg)
			return s.Sign(rand.Reader, d[:], crypto.SHA384)
		}
	case *rsa.PublicKey:
		d := sha256.Sum256(msg)
		return s.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	}
	return nil, fmt.Errorf("%w %T", ErrUnsupportedKey, s.Public())
}
