// Package tufsign builds and signs TUF metadata objects of go-tuf's types
// for the vendor side (repo, the server's director): the TUF key object of a
// public key and a signature over canonical JSON.
//
// It lives apart from package keys so that the device, which verifies with
// package trust's own types, links neither go-tuf nor what go-tuf's metadata
// package imports (sigstore, protobuf). The canonical form is canonjson's,
// the one package trust verifies against; keys.FuzzSignThenVerify's
// successor here checks that whatever Sign signs, the device accepts.
//
// Threat model: the signer is trusted (a key file or an HSM opened by
// package keys); the metadata to sign comes from the vendor's own
// repository. Sign refuses values canonjson cannot encode rather than sign
// bytes a device would decode differently.
package tufsign

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/airlockfw/airlock/keys"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Key returns the TUF key object (TUF 1.0 §4.2) for pub, with the signing
// scheme package keys uses for its type: ed25519, ecdsa-sha2-nistp256,
// ecdsa-sha2-nistp384 or rsassa-pss-sha256. Its ID is keys.KeyID(pub).
//
// go-tuf's KeyFromPublicKey labels every ECDSA key nistp256; a P-384 key
// needs the nistp384 scheme so that verifiers hash with SHA-384.
func Key(pub crypto.PublicKey) (*metadata.Key, error) {
	k, err := keys.TUFKeyOf(pub)
	if err != nil {
		return nil, err
	}
	return &metadata.Key{Type: k.Type, Scheme: k.Scheme, Value: metadata.KeyVal{PublicKey: k.Public}}, nil
}

// Sign adds s's signature over the canonical JSON of md.Signed, replacing an
// earlier signature by the same key.
func Sign[T metadata.Roles](md *metadata.Metadata[T], s crypto.Signer) error {
	if s == nil {
		return errors.New("no signer")
	}
	id, err := keys.KeyID(s.Public())
	if err != nil {
		return err
	}
	payload, err := canonjson.Marshal(md.Signed)
	if err != nil {
		return fmt.Errorf("failed to encode metadata: %w", err)
	}
	sig, err := keys.SignMessage(s, payload)
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
