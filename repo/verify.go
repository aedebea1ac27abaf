package repo

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/airlockfw/airlock/keys"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// roleKeys is what a delegator says about a role: its keys and threshold.
type roleKeys struct {
	keys      map[string]*metadata.Key
	ids       []string
	threshold int
}

func rootRoleKeys(root *metadata.Metadata[metadata.RootType], role string) (roleKeys, error) {
	r, ok := root.Signed.Roles[role]
	if !ok {
		return roleKeys{}, fmt.Errorf("%w: root has no role %q", ErrInvalidMetadata, role)
	}
	return roleKeys{keys: root.Signed.Keys, ids: r.KeyIDs, threshold: r.Threshold}, nil
}

// delegatedRoleKeys returns the delegation of role in targets, or ok false.
func delegatedRoleKeys(targets *metadata.Metadata[metadata.TargetsType], role string) (roleKeys, *metadata.DelegatedRole, bool) {
	d := targets.Signed.Delegations
	if d == nil {
		return roleKeys{}, nil, false
	}
	for i := range d.Roles {
		if d.Roles[i].Name == role {
			return roleKeys{keys: d.Keys, ids: d.Roles[i].KeyIDs, threshold: d.Roles[i].Threshold}, &d.Roles[i], true
		}
	}
	return roleKeys{}, nil, false
}

// authorize returns the key ID of s if it is one of rk's keys.
func (rk roleKeys) authorize(s crypto.Signer, role string) (string, error) {
	id, err := keys.KeyID(s.Public())
	if err != nil {
		return "", err
	}
	if !slices.Contains(rk.ids, id) {
		return "", fmt.Errorf("%w: key %s is not a key of role %q", ErrUnauthorizedKey, id, role)
	}
	return id, nil
}

// countValid counts the signatures over md.Signed that verify with distinct
// keys of rk (distinct public keys, not key IDs: TUF 1.0 §5.4 and go-tuf's
// VerifyDelegate).
func countValid[T metadata.Roles](md *metadata.Metadata[T], rk roleKeys) (int, error) {
	payload, err := canonjson.Marshal(md.Signed)
	if err != nil {
		return 0, fmt.Errorf("failed to encode metadata: %w", err)
	}
	seen := map[[32]byte]bool{}
	n := 0
	for _, id := range rk.ids {
		k, ok := rk.keys[id]
		if !ok {
			continue
		}
		pub, err := k.ToPublicKey()
		if err != nil {
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			continue
		}
		fp := sha256.Sum256(der)
		if seen[fp] {
			continue
		}
		for _, sig := range md.Signatures {
			if sig.KeyID == id && verifySig(k.Scheme, pub, payload, sig.Signature) {
				seen[fp] = true
				n++
				break
			}
		}
	}
	return n, nil
}

// validSignatures returns the signatures of md that verify with a key of rk.
func validSignatures[T metadata.Roles](md *metadata.Metadata[T], rk roleKeys) ([]metadata.Signature, error) {
	payload, err := canonjson.Marshal(md.Signed)
	if err != nil {
		return nil, fmt.Errorf("failed to encode metadata: %w", err)
	}
	var out []metadata.Signature
	for _, sig := range md.Signatures {
		k, ok := rk.keys[sig.KeyID]
		if !ok || !slices.Contains(rk.ids, sig.KeyID) {
			continue
		}
		pub, err := k.ToPublicKey()
		if err != nil {
			continue
		}
		if verifySig(k.Scheme, pub, payload, sig.Signature) {
			out = append(out, sig)
		}
	}
	return out, nil
}

// verifySig verifies one signature with the scheme the key declares.
func verifySig(scheme string, pub crypto.PublicKey, msg, sig []byte) bool {
	switch p := pub.(type) {
	case ed25519.PublicKey:
		return scheme == metadata.KeySchemeEd25519 && ed25519.Verify(p, msg, sig)
	case *ecdsa.PublicKey:
		switch {
		case scheme == metadata.KeySchemeECDSA_SHA2_P256 && p.Curve == elliptic.P256():
			d := sha256.Sum256(msg)
			return ecdsa.VerifyASN1(p, d[:], sig)
		case scheme == metadata.KeySchemeECDSA_SHA2_P384 && p.Curve == elliptic.P384():
			d := sha512.Sum384(msg)
			return ecdsa.VerifyASN1(p, d[:], sig)
		}
	case *rsa.PublicKey:
		if scheme != metadata.KeySchemeRSASSA_PSS_SHA256 {
			return false
		}
		d := sha256.Sum256(msg)
		return rsa.VerifyPSS(p, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil
	}
	return false
}
