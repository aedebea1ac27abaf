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
	"errors"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TUFKey returns the TUF key object (TUF 1.0 §4.2) for pub, with the signing
// scheme this package uses for its type: ed25519, ecdsa-sha2-nistp256,
// ecdsa-sha2-nistp384 or rsassa-pss-sha256.
//
// go-tuf's KeyFromPublicKey labels every ECDSA key nistp256; a P-384 key
// needs the nistp384 scheme so that verifiers hash with SHA-384.
func TUFKey(pub crypto.PublicKey) (*metadata.Key, error) {
	t, err := TypeOf(pub)
	if err != nil {
		return nil, err
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to build TUF key: %w", err)
	}
	if t == ECDSAP384 {
		k.Scheme = metadata.KeySchemeECDSA_SHA2_P384
	}
	return k, nil
}

// KeyID returns the TUF key ID of pub.
func KeyID(pub crypto.PublicKey) (string, error) {
	k, err := TUFKey(pub)
	if err != nil {
		return "", err
	}
	return k.ID()
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

// Sign adds s's signature over the canonical JSON of md.Signed, replacing an
// earlier signature by the same key.
func Sign[T metadata.Roles](md *metadata.Metadata[T], s crypto.Signer) error {
	if s == nil {
		return errors.New("no signer")
	}
	id, err := KeyID(s.Public())
	if err != nil {
		return err
	}
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		return fmt.Errorf("failed to encode metadata: %w", err)
	}
	sig, err := SignMessage(s, payload)
	if err != nil {
		return fmt.Errorf("failed to sign metadata: %w", err)
	}
	out := md.Signatures[:0:0]
	for _, old := range md.Signatures {
		if old.KeyID != id {
			out = append(out, old)
		}
	}
	md.Signatures = append(out, metadata.Signature{KeyID: id, Signature: sig})
	return nil
}
