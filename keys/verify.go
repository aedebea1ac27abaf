package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
)

// VerifyMessage reports whether sig is pub's signature over msg in the
// scheme SignMessage uses for the key's type: Ed25519 over the message,
// ECDSA (ASN.1 DER) over its SHA-256 (P-256) or SHA-384 (P-384), RSA-PSS
// over its SHA-256. Any other key type is never valid.
func VerifyMessage(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			d := sha256.Sum256(msg)
			return ecdsa.VerifyASN1(k, d[:], sig)
		case elliptic.P384():
			d := sha512.Sum384(msg)
			return ecdsa.VerifyASN1(k, d[:], sig)
		}
	case *rsa.PublicKey:
		d := sha256.Sum256(msg)
		return rsa.VerifyPSS(k, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	}
	return false
}
