package pkcs11

import (
	"context"
	"crypto"

	"github.com/airlockfw/airlock/keys"
)

// Importing this package makes keys.OpenSigner and keys.OpenPublic open
// pkcs11: URIs (in a build without cgo they fail with ErrNoCgo).
func init() {
	keys.RegisterBackend("pkcs11", keys.Backend{
		Signer: func(_ context.Context, ref string) (crypto.Signer, error) { return Open(ref) },
		Public: func(_ context.Context, ref string) (crypto.PublicKey, error) { return PublicKey(ref) },
	})
}
