//go:build cgo

package pkcs11

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"io"

	p11 "github.com/miekg/pkcs11"
)

// signer is a crypto.Signer backed by a private key object in a token.
type signer struct {
	m    *module
	slot uint
	key  p11.ObjectHandle
	pub  crypto.PublicKey
}

// Public returns the public key read from the token's public key object.
func (s *signer) Public() crypto.PublicKey { return s.pub }

// Sign signs inside the token. rand is ignored: the token uses its own
// random number generator.
//
//   - Ed25519: opts.HashFunc() must be 0 and digest is the whole message
//     (CKM_EDDSA, pure Ed25519); Ed25519ph is refused.
//   - ECDSA: digest is the hash named by opts (CKM_ECDSA); the result is
//     ASN.1 DER.
//   - RSA: opts must be *rsa.PSSOptions (CKM_RSA_PKCS_PSS with MGF1 over
//     the same hash; salt as long as the hash unless opts gives a length);
//     PKCS#1 v1.5 is refused.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		return nil, fmt.Errorf("%w: no signer options", ErrMechanism)
	}
	var mech *p11.Mechanism
	switch pub := s.pub.(type) {
	case ed25519.PublicKey:
		if opts.HashFunc() != crypto.Hash(0) {
			return nil, fmt.Errorf("%w: Ed25519ph (pre-hashed Ed25519)", ErrMechanism)
		}
		mech = p11.NewMechanism(ckmEdDSA, nil)
	case *ecdsa.PublicKey:
		if err := checkDigest(digest, opts.HashFunc()); err != nil {
			return nil, err
		}
		mech = p11.NewMechanism(p11.CKM_ECDSA, nil)
	case *rsa.PublicKey:
		pss, ok := opts.(*rsa.PSSOptions)
		if !ok {
			return nil, fmt.Errorf("%w: RSA PKCS#1 v1.5 signatures are refused, only RSA-PSS", ErrMechanism)
		}
		h := pss.HashFunc()
		if err := checkDigest(digest, h); err != nil {
			return nil, err
		}
		hashMech, mgf, ok := pssHash(h)
		if !ok {
			return nil, fmt.Errorf("%w: RSA-PSS with hash %v", ErrMechanism, h)
		}
		salt := pss.SaltLength
		switch {
		case salt == rsa.PSSSaltLengthEqualsHash || salt == rsa.PSSSaltLengthAuto:
			salt = h.Size()
		case salt < 0 || salt > (pub.N.BitLen()-1+7)/8-h.Size()-2:
			return nil, fmt.Errorf("%w: RSA-PSS salt length %d", ErrMechanism, pss.SaltLength)
		}
		mech = p11.NewMechanism(p11.CKM_RSA_PKCS_PSS, p11.NewPSSParams(hashMech, mgf, uint(salt)))
	default:
		return nil, fmt.Errorf("%w: key type %T", ErrMechanism, s.pub)
	}

	sig, err := s.sign(mech, digest)
	if err != nil {
		return nil, err
	}
	switch pub := s.pub.(type) {
	case ed25519.PublicKey:
		if len(sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("token returned a %d-byte Ed25519 signature, want %d", len(sig), ed25519.SignatureSize)
		}
	case *ecdsa.PublicKey:
		return rawToDER(sig, pub.Curve)
	case *rsa.PublicKey:
		if len(sig) != pub.Size() {
			return nil, fmt.Errorf("token returned a %d-byte RSA signature, want %d", len(sig), pub.Size())
		}
	}
	return sig, nil
}

func (s *signer) sign(mech *p11.Mechanism, data []byte) ([]byte, error) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	sh, ok := m.sessions[s.slot]
	if m.closed || !ok {
		return nil, ErrClosed
	}
	if err := m.ctx.SignInit(sh, []*p11.Mechanism{mech}, s.key); err != nil {
		return nil, fmt.Errorf("pkcs11 C_SignInit failed: %w", err)
	}
	sig, err := m.ctx.Sign(sh, data)
	if err != nil {
		return nil, fmt.Errorf("pkcs11 C_Sign failed: %w", err)
	}
	return sig, nil
}

func checkDigest(digest []byte, h crypto.Hash) error {
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	case crypto.Hash(0):
		return fmt.Errorf("%w: this key signs a digest, and opts names no hash", ErrMechanism)
	default:
		return fmt.Errorf("%w: hash %v", ErrMechanism, h)
	}
	if len(digest) != h.Size() {
		return fmt.Errorf("%w: digest is %d bytes, %v needs %d", ErrMechanism, len(digest), h, h.Size())
	}
	return nil
}

// pssHash maps a hash to its PKCS#11 mechanism and MGF1 generator.
func pssHash(h crypto.Hash) (hashMech, mgf uint, ok bool) {
	switch h {
	case crypto.SHA256:
		return p11.CKM_SHA256, p11.CKG_MGF1_SHA256, true
	case crypto.SHA384:
		return p11.CKM_SHA384, p11.CKG_MGF1_SHA384, true
	case crypto.SHA512:
		return p11.CKM_SHA512, p11.CKG_MGF1_SHA512, true
	}
	return 0, 0, false
}
