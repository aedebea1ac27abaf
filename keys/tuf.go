//go:build !airlock_device

// The go-tuf metadata helpers are for the vendor side (repo, server), which
// builds metadata with go-tuf's types. The device build leaves them out so
// that it does not link go-tuf and what go-tuf imports (sigstore, protobuf);
// the device verifies with package trust's own types.

package keys

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TUFKey returns the TUF key object (TUF 1.0 §4.2) for pub, with the signing
// scheme this package uses for its type: ed25519, ecdsa-sha2-nistp256,
// ecdsa-sha2-nistp384 or rsassa-pss-sha256. Its ID is KeyID(pub).
//
// go-tuf's KeyFromPublicKey labels every ECDSA key nistp256; a P-384 key
// needs the nistp384 scheme so that verifiers hash with SHA-384.
func TUFKey(pub crypto.PublicKey) (*metadata.Key, error) {
	k, err := tufKeyOf(pub)
	if err != nil {
		return nil, err
	}
	return &metadata.Key{Type: k.keyType, Scheme: k.scheme, Value: metadata.KeyVal{PublicKey: k.public}}, nil
}

// Sign adds s's signature over the canonical JSON of md.Signed, replacing an
// earlier signature by the same key. The canonical form is canonjson's, the
// one package trust verifies against.
func Sign[T metadata.Roles](md *metadata.Metadata[T], s crypto.Signer) error {
	if s == nil {
		return errors.New("no signer")
	}
	id, err := KeyID(s.Public())
	if err != nil {
		return err
	}
	payload, err := canonjson.Marshal(md.Signed)
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
