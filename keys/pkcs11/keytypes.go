//go:build cgo

package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math/big"

	p11 "github.com/miekg/pkcs11"

	"github.com/airlockfw/airlock/keys"
)

// PKCS#11 v3.0 constants that github.com/miekg/pkcs11 v1.1.2 does not
// define (PKCS#11 v3.0 §2.3.3, §2.3.5).
const (
	ckkECEdwards            = 0x00000040 // CKK_EC_EDWARDS
	ckmECEdwardsKeyPairGen  = 0x00001055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA                = 0x00001057 // CKM_EDDSA
	rsaBits                 = 3072       // keys.RSA3072
	maxRSABits              = 16384
	maxRSAPublicExponentLen = 4
)

// DER encodings of the named curves' object identifiers (CKA_EC_PARAMS).
var (
	oidP256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384    = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
)

func mustDER(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic("internal error: " + err.Error())
	}
	return b
}

// templates returns the generation mechanism and the public and private
// key attributes for t. Every key pair gets the same usage attributes,
// whatever its type: the private key may sign and nothing else (decrypt,
// unwrap, derive and sign-recover off), the public key may verify and
// nothing else (encrypt, wrap, derive and verify-recover off). Tokens pick
// their own defaults for attributes a template leaves out (SoftHSM2 allows
// decrypt and unwrap), so every one is set explicitly.
func templates(t keys.Type) (mech uint, pub, priv []*p11.Attribute, err error) {
	var kt uint
	switch t {
	case keys.Ed25519:
		mech, kt = ckmECEdwardsKeyPairGen, ckkECEdwards
		pub = []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, mustDER(oidEd25519))}
	case keys.ECDSAP256:
		mech, kt = p11.CKM_EC_KEY_PAIR_GEN, p11.CKK_EC
		pub = []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, mustDER(oidP256))}
	case keys.ECDSAP384:
		mech, kt = p11.CKM_EC_KEY_PAIR_GEN, p11.CKK_EC
		pub = []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, mustDER(oidP384))}
	case keys.RSA3072:
		mech, kt = p11.CKM_RSA_PKCS_KEY_PAIR_GEN, p11.CKK_RSA
		pub = []*p11.Attribute{
			p11.NewAttribute(p11.CKA_MODULUS_BITS, rsaBits),
			p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		}
	default:
		return 0, nil, nil, fmt.Errorf("%w %q", keys.ErrUnsupportedKey, t)
	}
	pub = append(pub,
		p11.NewAttribute(p11.CKA_KEY_TYPE, kt),
		p11.NewAttribute(p11.CKA_VERIFY, true),
		p11.NewAttribute(p11.CKA_VERIFY_RECOVER, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
	)
	priv = []*p11.Attribute{
		p11.NewAttribute(p11.CKA_KEY_TYPE, kt),
		p11.NewAttribute(p11.CKA_SIGN, true),
		p11.NewAttribute(p11.CKA_SIGN_RECOVER, false),
		p11.NewAttribute(p11.CKA_DECRYPT, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
	}
	return mech, pub, priv, nil
}

// publicKey reads and checks the public key object h. Everything the token
// returns is treated as untrusted input. Caller holds m.mu.
func (m *module) publicKey(sh p11.SessionHandle, h p11.ObjectHandle) (crypto.PublicKey, error) {
	kt, err := m.ctx.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return nil, fmt.Errorf("failed to read public key type: %w", err)
	}
	typ, err := ulong(kt[0].Value)
	if err != nil {
		return nil, fmt.Errorf("failed to read public key type: %w", err)
	}
	var pub crypto.PublicKey
	switch typ {
	case p11.CKK_EC, ckkECEdwards:
		a, err := m.ctx.GetAttributeValue(sh, h, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_EC_PARAMS, nil),
			p11.NewAttribute(p11.CKA_EC_POINT, nil),
		})
		if err != nil {
			return nil, fmt.Errorf("failed to read EC public key: %w", err)
		}
		if pub, err = parseECPublic(typ, a[0].Value, a[1].Value); err != nil {
			return nil, err
		}
	case p11.CKK_RSA:
		a, err := m.ctx.GetAttributeValue(sh, h, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_MODULUS, nil),
			p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return nil, fmt.Errorf("failed to read RSA public key: %w", err)
		}
		if pub, err = parseRSAPublic(a[0].Value, a[1].Value); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: pkcs11 key type %#x", keys.ErrUnsupportedKey, typ)
	}
	if _, err := keys.TypeOf(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// ulong decodes a CK_ULONG attribute, which PKCS#11 passes in host byte
// order and size.
func ulong(b []byte) (uint, error) {
	switch len(b) {
	case 4:
		return uint(binary.NativeEndian.Uint32(b)), nil
	case 8:
		return uint(binary.NativeEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("CK_ULONG attribute has %d bytes", len(b))
}

func parseECPublic(kt uint, params, point []byte) (crypto.PublicKey, error) {
	var oid asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(params, &oid)
	if err != nil || len(rest) != 0 {
		// PKCS#11 v3.0 also allows the curve name as a PrintableString.
		var name string
		if rest, err := asn1.UnmarshalWithParams(params, &name, "printable"); err == nil && len(rest) == 0 && name == "edwards25519" {
			oid = oidEd25519
		} else {
			return nil, fmt.Errorf("%w: unparseable CKA_EC_PARAMS", keys.ErrUnsupportedKey)
		}
	}
	switch {
	case kt == ckkECEdwards && oid.Equal(oidEd25519):
		p := unwrapOctets(point, ed25519.PublicKeySize)
		if len(p) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 CKA_EC_POINT has %d bytes, want %d", len(p), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(bytes.Clone(p)), nil
	case kt == p11.CKK_EC && oid.Equal(oidP256):
		return parseECPoint(elliptic.P256(), point)
	case kt == p11.CKK_EC && oid.Equal(oidP384):
		return parseECPoint(elliptic.P384(), point)
	}
	return nil, fmt.Errorf("%w: curve %v", keys.ErrUnsupportedKey, oid)
}

// unwrapOctets returns the content of a DER OCTET STRING holding want bytes
// (what PKCS#11 specifies for CKA_EC_POINT), or b itself when it already
// has the raw length (what some modules return).
func unwrapOctets(b []byte, want int) []byte {
	if len(b) == want {
		return b
	}
	var inner []byte
	if rest, err := asn1.Unmarshal(b, &inner); err == nil && len(rest) == 0 {
		return inner
	}
	return nil
}

func parseECPoint(c elliptic.Curve, point []byte) (*ecdsa.PublicKey, error) {
	size := (c.Params().BitSize + 7) / 8
	p := unwrapOctets(point, 1+2*size)
	pub, err := ecdsa.ParseUncompressedPublicKey(c, p)
	if err != nil {
		return nil, fmt.Errorf("invalid %s CKA_EC_POINT: %w", c.Params().Name, err)
	}
	return pub, nil
}

func parseRSAPublic(modulus, exponent []byte) (*rsa.PublicKey, error) {
	n := new(big.Int).SetBytes(modulus)
	if n.BitLen() > maxRSABits {
		return nil, fmt.Errorf("%w: RSA modulus of %d bits (max %d)", keys.ErrUnsupportedKey, n.BitLen(), maxRSABits)
	}
	e := new(big.Int).SetBytes(exponent)
	if len(bytes.TrimLeft(exponent, "\x00")) > maxRSAPublicExponentLen || e.Int64() < 3 || e.Bit(0) == 0 {
		return nil, fmt.Errorf("%w: RSA public exponent is not a small odd number", keys.ErrUnsupportedKey)
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

// rawToDER converts a PKCS#11 ECDSA signature (r||s, each as long as the
// curve's order) into the ASN.1 DER ECDSA-Sig-Value crypto.Signer returns.
func rawToDER(raw []byte, c elliptic.Curve) ([]byte, error) {
	size := (c.Params().BitSize + 7) / 8
	if len(raw) != 2*size {
		return nil, fmt.Errorf("token returned a %d-byte ECDSA signature, want %d", len(raw), 2*size)
	}
	r := new(big.Int).SetBytes(raw[:size])
	s := new(big.Int).SetBytes(raw[size:])
	if r.Sign() == 0 || s.Sign() == 0 {
		return nil, fmt.Errorf("token returned an invalid ECDSA signature")
	}
	return asn1.Marshal(struct{ R, S *big.Int }{r, s})
}
