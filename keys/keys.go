// Package keys creates, stores and loads Airlock signing keys, and signs TUF
// metadata with any crypto.Signer.
//
// Threat model: private keys are the root of every trust decision a device
// makes, so they are written once (O_EXCL, mode 0600, never overwritten),
// optionally encrypted at rest with a passphrase (PKCS#8 PBES2), and never
// logged or printed. Callers sign only through crypto.Signer, so a key held in
// an HSM (PKCS#11) is interchangeable with a file key and its private part
// never has to enter this process. Public keys are not secret; their TUF key
// ID is the SHA-256 of the canonical JSON of the TUF key object (TUF 1.0
// §4.2), computed here with the right signing scheme for every key type.
package keys

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
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/airlockfw/airlock/internal/durable"
)

// Type names a key algorithm. One signing scheme is fixed per type.
type Type string

// The supported key types.
const (
	Ed25519   Type = "ed25519"
	ECDSAP256 Type = "ecdsa-p256"
	ECDSAP384 Type = "ecdsa-p384"
	RSA3072   Type = "rsa-3072"
)

// Types lists the supported key types in the order help text shows them.
var Types = []Type{Ed25519, ECDSAP256, ECDSAP384, RSA3072}

// MaxKeyFileSize bounds the size of a key file this package will read.
const MaxKeyFileSize = 64 << 10

// Errors callers branch on.
var (
	ErrUnsupportedKey = errors.New("unsupported key type")
	ErrExists         = errors.New("key file already exists")
	ErrPassphrase     = errors.New("wrong passphrase or corrupt encrypted key")
	ErrNeedPassphrase = errors.New("key is encrypted and no passphrase was given")
	ErrNotKey         = errors.New("file is not a PEM key")
)

// ParseType parses a key type name.
func ParseType(s string) (Type, error) {
	for _, t := range Types {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of %s)", ErrUnsupportedKey, s, typeList())
}

func typeList() string {
	var s []string
	for _, t := range Types {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

// Generate creates a new private key of type t.
func Generate(t Type) (crypto.Signer, error) {
	switch t {
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("%w %q", ErrUnsupportedKey, t)
}

// TypeOf reports the Type of a public key, or an error for unsupported keys.
func TypeOf(pub crypto.PublicKey) (Type, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return Ed25519, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		}
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return RSA3072, nil
		}
		return "", fmt.Errorf("%w: RSA key of %d bits (want >= 2048)", ErrUnsupportedKey, k.N.BitLen())
	}
	return "", fmt.Errorf("%w %T", ErrUnsupportedKey, pub)
}

// MarshalPrivate encodes priv as a PKCS#8 PEM block. A non-empty passphrase
// encrypts it with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), readable by
// OpenSSL.
func MarshalPrivate(priv crypto.Signer, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return MarshalUnencryptedPrivate(priv)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("failed to encode private key: %w", err)
	}
	enc, err := encryptPKCS8(der, passphrase)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc}), nil
}

// MarshalPublic encodes pub as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublic(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// WritePrivate writes priv to path as PKCS#8 PEM, and its public key to
// path+".pub". The private file is created with O_EXCL and mode 0600: an
// existing file is never overwritten.
func WritePrivate(path string, priv crypto.Signer, passphrase []byte) error {
	data, err := MarshalPrivate(priv, passphrase)
	if err != nil {
		return err
	}
	pubData, err := MarshalPublic(priv.Public())
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path + ".pub"); err == nil {
		return fmt.Errorf("%w: %s (refusing to overwrite)", ErrExists, path+".pub")
	}
	if err := writeExclusive(path, data, 0o600); err != nil {
		return err
	}
	if err := writeExclusive(path+".pub", pubData, 0o644); err != nil {
		return err
	}
	return nil
}

func writeExclusive(path string, data []byte, perm fs.FileMode) error {
	if err := durable.CreateFile(durable.OS, path, data, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s (refusing to overwrite)", ErrExists, path)
		}
		return fmt.Errorf("failed to write key file: %w", err)
	}
	return nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("key file %s is larger than %d bytes (MaxKeyFileSize)", path, MaxKeyFileSize)
	}
	return data, nil
}

// MarshalUnencryptedPrivate encodes priv as an unencrypted PKCS#8 PEM block:
// MarshalPrivate without a passphrase. It is for keys that no one could
// type a passphrase for, such as a device's identity key (protected by file
// mode 0600); a caller that never encrypts does not link the PBES2 code.
func MarshalUnencryptedPrivate(priv crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("failed to encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseUnencryptedPrivate parses an unencrypted PKCS#8 PEM private key, as
// written by MarshalUnencryptedPrivate; an encrypted key is refused with
// ErrNeedPassphrase. A caller that never decrypts (the device agent) does
// not link the PBES2 code.
func ParseUnencryptedPrivate(data []byte) (crypto.Signer, error) {
	block, err := privateBlock(data)
	if err != nil {
		return nil, err
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, ErrNeedPassphrase
	}
	return parsePKCS8(block.Bytes)
}

// privateBlock decodes the one PEM block of a private key file.
func privateBlock(data []byte) (*pem.Block, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, ErrNotKey
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the PEM block", ErrNotKey)
	}
	switch block.Type {
	case "PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return block, nil
	}
	return nil, fmt.Errorf("%w: PEM block %q is not a PKCS#8 private key", ErrNotKey, block.Type)
}

// parsePKCS8 parses a DER PKCS#8 private key of a supported type.
func parsePKCS8(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("failed to parse PKCS#8 private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w %T", ErrUnsupportedKey, k)
	}
	if _, err := TypeOf(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

// ParsePrivate parses a PKCS#8 PEM private key, decrypting it with the
// passphrase returned by pass when it is encrypted. pass may be nil.
func ParsePrivate(data []byte, pass func() ([]byte, error)) (crypto.Signer, error) {
	block, err := privateBlock(data)
	if err != nil {
		return nil, err
	}
	der := block.Bytes
	if block.Type == "ENCRYPTED PRIVATE KEY" {
		if pass == nil {
			return nil, ErrNeedPassphrase
		}
		p, err := pass()
		if err != nil {
			return nil, err
		}
		if len(p) == 0 {
			return nil, ErrNeedPassphrase
		}
		if der, err = decryptPKCS8(der, p); err != nil {
			return nil, err
		}
	}
	return parsePKCS8(der)
}

// LoadPrivate reads and parses a private key file.
func LoadPrivate(path string, pass func() ([]byte, error)) (crypto.Signer, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(os.Stderr, "airlock: warning: private key %s is accessible by other users (mode %v)\n", path, fi.Mode().Perm())
	}
	s, err := ParsePrivate(data, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParsePublic parses a public key from a PKIX "PUBLIC KEY" PEM block, or the
// public part of a PKCS#8 "PRIVATE KEY" block.
func ParsePublic(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, ErrNotKey
	}
	switch block.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to parse public key: %w", err)
		}
		if _, err := TypeOf(pub); err != nil {
			return nil, err
		}
		return pub, nil
	case "PRIVATE KEY":
		s, err := ParsePrivate(data, nil)
		if err != nil {
			return nil, err
		}
		return s.Public(), nil
	}
	return nil, fmt.Errorf("%w: PEM block %q is not a public key", ErrNotKey, block.Type)
}

// LoadPublic reads a public key file (PATH.pub as written by WritePrivate).
func LoadPublic(path string) (crypto.PublicKey, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublic(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}
