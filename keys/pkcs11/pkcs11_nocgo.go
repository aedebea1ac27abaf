//go:build !cgo

package pkcs11

import (
	"crypto"

	"github.com/airlockfw/airlock/keys"
)

// Open returns ErrNoCgo: this build has no PKCS#11 support.
func Open(uri string) (crypto.Signer, error) { return nil, ErrNoCgo }

// Generate returns ErrNoCgo: this build has no PKCS#11 support.
func Generate(uri string, t keys.Type) (crypto.PublicKey, error) { return nil, ErrNoCgo }

// PublicKey returns ErrNoCgo: this build has no PKCS#11 support.
func PublicKey(uri string) (crypto.PublicKey, error) { return nil, ErrNoCgo }

// Close does nothing: this build loads no PKCS#11 modules.
func Close() error { return nil }
