package repo

import (
	"crypto"
	"fmt"
	"time"

	"github.com/airlockfw/airlock/audit"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// RenewResult says what Renew staged.
type RenewResult struct {
	Role       string    `json:"role"` // "targets" or the product ID
	Version    int64     `json:"version"`
	Expires    time.Time `json:"expires"`
	Signatures int       `json:"signatures"`
	Threshold  int       `json:"threshold"`
	Staged     string    `json:"staged"` // the staged file
}

// Renew re-signs a targets-type role with a new expiry and nothing else
// changed: role is "targets" or a product ID (its release role). The new
// version expires lifetime from now (0: the repository's configured
// lifetime for the role, Config.Expires). It is staged like any change
// ('release sign --pending' adds the signatures a threshold still needs;
// 'repo publish' makes it effective). Renewing is what keeps offline
// bundles installable: a device checks the expiry of root, targets and the
// product role in a bundle, so a vendor renews them before they expire and
// re-creates the bundles.
//
// Root is renewed by staging the next root ('repo rotate --role root' with
// no key change); snapshot and timestamp by every publish and timestamp.
// A role with staged changes is refused: sign and publish them first.
func (r *Repo) Renew(role string, lifetime time.Duration, signers []crypto.Signer) (*RenewResult, error) {
	unlock, err := r.lock("renew")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := r.checkSigners(signers...); err != nil {
		return nil, err
	}
	name, life := metadata.TARGETS, time.Duration(r.cfg.Expires.Targets)
	switch role {
	case metadata.TARGETS:
	case metadata.ROOT, metadata.SNAPSHOT, metadata.TIMESTAMP:
		return nil, fmt.Errorf("%w: renew root with 'airlock repo rotate --role root' (no key change needed); snapshot and timestamp are renewed by every 'repo publish' and 'repo timestamp'", ErrInvalidOptions)
	default:
		if _, name, err = productRole(role); err != nil {
			return nil, err
		}
		life = time.Duration(r.cfg.Expires.Product)
	}
	if lifetime < 0 {
		return nil, fmt.Errorf("%w: negative lifetime %v", ErrInvalidOptions, lifetime)
	}
	if lifetime > 0 {
		life = lifetime
	}
	if len(signers) == 0 {
		return nil, fmt.Errorf("%w: a key of %s must sign the renewed metadata", ErrInvalidOptions, role)
	}
	if md, err := r.stagedTargetsRole(name); err != nil {
		return nil, err
	} else if md != nil {
		return nil, fmt.Errorf("%w: %s has staged changes (%s): sign and publish them first; they carry their own expiry", ErrInvalidOptions, role, r.stagedPath(name))
	}
	rk, err := r.keysForTargetsRole(name)
	if err != nil {
		return nil, err
	}
	md, err := r.nextTargetsVersion(name, Duration(life))
	if err != nil {
		return nil, err
	}
	if md.Signed.Version == 1 {
		return nil, fmt.Errorf("%w: %s has no published metadata to renew", ErrNotFound, role)
	}
	if err := signWith(md, signers, rk, name); err != nil {
		return nil, err
	}
	if err := writeStaged(r, name, md); err != nil {
		return nil, err
	}
	have, _ := countValid(md, rk)
	res := &RenewResult{Role: role, Version: md.Signed.Version, Expires: md.Signed.Expires.UTC(),
		Signatures: have, Threshold: rk.threshold, Staged: r.stagedPath(name)}
	return res, r.record(audit.Entry{Action: audit.MetadataRenewed, Details: map[string]string{
		"role": role, "version": fmt.Sprint(res.Version), "expires": res.Expires.Format(time.RFC3339),
		"keys": signerIDs(signers...)}})
}
