package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// MinRSABits is the smallest RSA modulus accepted for signature keys.
const MinRSABits = 2048

// verifier checks one signature over a payload with one public key.
type verifier struct {
	fingerprint [32]byte // SHA-256 of the PKIX encoding: identifies the key, not the key ID
	verify      func(payload, sig []byte) bool
}

var errUnsupportedKey = errors.New("unsupported key")

// newVerifier parses a TUF key. Supported (keytype, scheme) pairs follow the
// TUF spec and python-tuf/securesystemslib: ed25519/ed25519;
// ecdsa|ecdsa-sha2-nistp256/ecdsa-sha2-nistp256; ecdsa|ecdsa-sha2-nistp384/
// ecdsa-sha2-nistp384; rsa/rsassa-pss-sha{256,384,512} and
// rsa/rsa-pkcs1v15-sha{256,384,512}.
func newVerifier(k *Key) (*verifier, error) {
	if k == nil {
		return nil, errUnsupportedKey
	}
	switch {
	case k.Type == "ed25519" && k.Scheme == "ed25519":
		raw, err := hex.DecodeString(k.Value.PublicKey)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: bad ed25519 public key", errUnsupportedKey)
		}
		pub := ed25519.PublicKey(raw)
		v, err := withFingerprint(pub)
		if err != nil {
			return nil, err
		}
		v.verify = func(payload, sig []byte) bool { return ed25519.Verify(pub, payload, sig) }
		return v, nil

	case (k.Type == "ecdsa" || k.Type == "ecdsa-sha2-nistp256") && k.Scheme == "ecdsa-sha2-nistp256",
		(k.Type == "ecdsa" || k.Type == "ecdsa-sha2-nistp384") && k.Scheme == "ecdsa-sha2-nistp384":
		pub, err := parsePEMPublicKey(k.Value.PublicKey)
		if err != nil {
			return nil, err
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: not an ecdsa key", errUnsupportedKey)
		}
		curve, h := elliptic.P256(), crypto.SHA256
		if k.Scheme == "ecdsa-sha2-nistp384" {
			curve, h = elliptic.P384(), crypto.SHA384
		}
		if ec.Curve != curve {
			return nil, fmt.Errorf("%w: ecdsa curve does not match scheme %q", errUnsupportedKey, k.Scheme)
		}
		v, err := withFingerprint(ec)
		if err != nil {
			return nil, err
		}
		v.verify = func(payload, sig []byte) bool { return ecdsa.VerifyASN1(ec, digest(h, payload), sig) }
		return v, nil

	case k.Type == "rsa" && (strings.HasPrefix(k.Scheme, "rsassa-pss-") || strings.HasPrefix(k.Scheme, "rsa-pkcs1v15-")):
		var h crypto.Hash
		switch k.Scheme[strings.LastIndexByte(k.Scheme, '-')+1:] {
		case "sha256":
			h = crypto.SHA256
		case "sha384":
			h = crypto.SHA384
		case "sha512":
			h = crypto.SHA512
		default:
			return nil, fmt.Errorf("%w: scheme %q", errUnsupportedKey, k.Scheme)
		}
		pub, err := parsePEMPublicKey(k.Value.PublicKey)
		if err != nil {
			return nil, err
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok || rk.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("%w: not an rsa key of at least %d bits", errUnsupportedKey, MinRSABits)
		}
		v, err := withFingerprint(rk)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(k.Scheme, "rsassa-pss-") {
			v.verify = func(payload, sig []byte) bool {
				return rsa.VerifyPSS(rk, h, digest(h, payload), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: h}) == nil
			}
		} else {
			v.verify = func(payload, sig []byte) bool {
				return rsa.VerifyPKCS1v15(rk, h, digest(h, payload), sig) == nil
			}
		}
		return v, nil
	}
	return nil, fmt.Errorf("%w: keytype %q scheme %q", errUnsupportedKey, k.Type, k.Scheme)
}

func withFingerprint(pub crypto.PublicKey) (*verifier, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnsupportedKey, err)
	}
	return &verifier{fingerprint: sha256.Sum256(der)}, nil
}

func parsePEMPublicKey(s string) (crypto.PublicKey, error) {
	block, rest := pem.Decode([]byte(s))
	if block == nil || block.Type != "PUBLIC KEY" || strings.TrimSpace(string(rest)) != "" {
		return nil, fmt.Errorf("%w: public key is not one PEM PUBLIC KEY block", errUnsupportedKey)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnsupportedKey, err)
	}
	return pub, nil
}

func digest(h crypto.Hash, data []byte) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(data)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(data)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(data)
		return d[:]
	}
	panic("internal error: unexpected hash")
}

// roleKeys is what a delegator says about a role: its key IDs, threshold and
// the key table they index.
type roleKeys struct {
	keyIDs    []string
	threshold int
	keys      map[string]*Key
}

// verifySignatures counts distinct public keys among rk that produced a valid
// signature over payload (spec 5.3.4, 5.4.2 ...; threshold over distinct keys,
// not key IDs). Unknown or unsupported keys and signatures by keys outside the
// role are ignored.
func verifySignatures(role string, rk roleKeys, sigs []Signature, payload []byte) error {
	if rk.threshold < 1 {
		return fmt.Errorf("%s: %w: threshold %d", role, ErrMalformed, rk.threshold)
	}
	byID := make(map[string][]byte, len(sigs))
	for _, s := range sigs {
		byID[s.KeyID] = s.Signature
	}
	seenID := map[string]bool{}
	valid := map[[32]byte]bool{}
	for _, id := range rk.keyIDs {
		if seenID[id] {
			continue
		}
		seenID[id] = true
		sig, ok := byID[id]
		if !ok {
			continue
		}
		v, err := newVerifier(rk.keys[id])
		if err != nil {
			continue
		}
		if v.verify(payload, sig) {
			valid[v.fingerprint] = true
		}
	}
	if len(valid) < rk.threshold {
		return fmt.Errorf("%s: %w: %d valid signatures from distinct keys, threshold %d",
			role, ErrThreshold, len(valid), rk.threshold)
	}
	return nil
}
