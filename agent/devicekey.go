package agent

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/keys"
)

// The device key file is an unencrypted PKCS#8 PEM key of one of the two
// types the server certifies (server/pki: ECDSA P-256, Ed25519). The agent
// encodes and parses it here rather than with x509.MarshalPKCS8PrivateKey
// and x509.ParsePKCS8PrivateKey, whose RSA branches (PKCS#1, RSA private
// keys and their precomputation) cost the device binary about 57 KB for
// keys no server would certify. The encoding is byte for byte
// x509.MarshalPKCS8PrivateKey's (TestDeviceKeyEncoding); the parser accepts
// a subset of what x509.ParsePKCS8PrivateKey accepts, with the same key
// (FuzzParseDeviceKey).

var (
	oidPublicKeyECDSA   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidNamedCurveP256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidPublicKeyEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// pkcs8 is RFC 5208's PrivateKeyInfo without attributes.
type pkcs8 struct {
	Version    int
	Algo       pkix.AlgorithmIdentifier
	PrivateKey []byte
}

// ecPrivateKey is RFC 5915's ECPrivateKey.
type ecPrivateKey struct {
	Version       int
	PrivateKey    []byte
	NamedCurveOID asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey     asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

// marshalDeviceKey encodes k as a "PRIVATE KEY" PEM block (PKCS#8, the
// curve named in the algorithm identifier only).
func marshalDeviceKey(k *ecdsa.PrivateKey) ([]byte, error) {
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: the device key must be ECDSA P-256", keys.ErrUnsupportedKey)
	}
	d, err := k.Bytes()
	if err != nil {
		return nil, fmt.Errorf("failed to encode private key: %w", err)
	}
	pub, err := k.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("failed to encode private key: %w", err)
	}
	inner, err := asn1.Marshal(ecPrivateKey{Version: 1, PrivateKey: d, PublicKey: asn1.BitString{Bytes: pub, BitLength: 8 * len(pub)}})
	if err != nil {
		return nil, fmt.Errorf("failed to encode private key: %w", err)
	}
	params, err := asn1.Marshal(oidNamedCurveP256)
	if err != nil {
		return nil, fmt.Errorf("failed to encode private key: %w", err)
	}
	der, err := asn1.Marshal(pkcs8{Algo: pkix.AlgorithmIdentifier{Algorithm: oidPublicKeyECDSA, Parameters: asn1.RawValue{FullBytes: params}}, PrivateKey: inner})
	if err != nil {
		return nil, fmt.Errorf("failed to encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseDeviceKey parses one unencrypted PKCS#8 PEM key of type ECDSA P-256
// or Ed25519 (anything else: keys.ErrUnsupportedKey; an encrypted key:
// keys.ErrNeedPassphrase; not one PEM private key: keys.ErrNotKey).
func parseDeviceKey(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, keys.ErrNotKey
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the PEM block", keys.ErrNotKey)
	}
	switch block.Type {
	case "PRIVATE KEY":
	case "ENCRYPTED PRIVATE KEY":
		return nil, keys.ErrNeedPassphrase
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not a PKCS#8 private key", keys.ErrNotKey, block.Type)
	}
	var p pkcs8
	if rest, err := asn1.Unmarshal(block.Bytes, &p); err != nil || len(rest) != 0 || p.Version != 0 {
		return nil, errors.New("failed to parse PKCS#8 private key: not one version 0 PrivateKeyInfo")
	}
	switch {
	case p.Algo.Algorithm.Equal(oidPublicKeyECDSA):
		var curve asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(p.Algo.Parameters.FullBytes, &curve); err != nil || len(rest) != 0 || !curve.Equal(oidNamedCurveP256) {
			return nil, fmt.Errorf("%w: ECDSA key not on P-256 (the server certifies P-256 and Ed25519 device keys)", keys.ErrUnsupportedKey)
		}
		var ec ecPrivateKey
		if rest, err := asn1.Unmarshal(p.PrivateKey, &ec); err != nil || len(rest) != 0 || ec.Version != 1 {
			return nil, errors.New("failed to parse PKCS#8 private key: not one version 1 ECPrivateKey")
		}
		if ec.NamedCurveOID != nil && !ec.NamedCurveOID.Equal(oidNamedCurveP256) {
			return nil, errors.New("failed to parse PKCS#8 private key: the ECPrivateKey names another curve")
		}
		if len(ec.PrivateKey) > 32 {
			return nil, errors.New("failed to parse PKCS#8 private key: invalid private key length")
		}
		d := make([]byte, 32) // a shorter scalar is left-padded, as x509 does
		copy(d[32-len(ec.PrivateKey):], ec.PrivateKey)
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
		if err != nil {
			return nil, fmt.Errorf("failed to parse PKCS#8 private key: %w", err)
		}
		return k, nil
	case p.Algo.Algorithm.Equal(oidPublicKeyEd25519):
		var seed []byte
		if len(p.Algo.Parameters.FullBytes) != 0 {
			return nil, errors.New("failed to parse PKCS#8 private key: Ed25519 with parameters")
		}
		if rest, err := asn1.Unmarshal(p.PrivateKey, &seed); err != nil || len(rest) != 0 || len(seed) != ed25519.SeedSize {
			return nil, errors.New("failed to parse PKCS#8 private key: invalid Ed25519 private key")
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	return nil, fmt.Errorf("%w: algorithm %v (the server certifies ECDSA P-256 and Ed25519 device keys)", keys.ErrUnsupportedKey, p.Algo.Algorithm)
}
