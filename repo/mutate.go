package repo

import (
	"crypto"
	"fmt"
	"strings"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/release"
)

// The mutating operations of a repository. Each one takes the repository
// lock, checks its signers against the key environment registry, acts, and
// records what it did in the audit log, so a library user gets the same
// guarantees and trail as the command line.

// signerIDs returns the comma-separated key IDs of signers.
func signerIDs(signers ...crypto.Signer) string {
	var ids []string
	for _, s := range signers {
		if s == nil {
			continue
		}
		if id, err := keys.KeyID(s.Public()); err == nil {
			ids = append(ids, id)
		}
	}
	return strings.Join(ids, ",")
}

func pubIDs(pubs ...crypto.PublicKey) string {
	var ids []string
	for _, pub := range pubs {
		if id, err := keys.KeyID(pub); err == nil {
			ids = append(ids, id)
		}
	}
	return strings.Join(ids, ",")
}

// Publish makes everything staged public in one consistent snapshot: a
// staged root, targets and product roles (each must reach its threshold,
// otherwise nothing is written and a *ThresholdError says what is missing),
// their payloads, a new snapshot signed by snapshotSigner and a new
// timestamp signed by timestampSigner. Publishing with nothing staged
// refreshes snapshot and timestamp.
//
// Files are written in the order a client cannot trip over: payloads,
// product roles, targets, snapshot, root, timestamp (the timestamp is what
// makes the new snapshot visible).
//
// It holds the repository lock (LockFile), enforces the environment rule on
// its signers (Options.Keyring) and appends its audit entry, if the
// repository keeps an audit log.
func (r *Repo) Publish(snapshotSigner, timestampSigner crypto.Signer) (*PublishResult, error) {
	unlock, err := r.lock("publish")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := r.checkSigners(snapshotSigner, timestampSigner); err != nil {
		return nil, err
	}
	res, err := r.publish(snapshotSigner, timestampSigner)
	if err != nil {
		return nil, err
	}
	var entries []audit.Entry
	for _, p := range res.Released {
		if prod, v, _, err := release.ParseTargetPath(p); err == nil {
			entries = append(entries, audit.Entry{Action: audit.ReleasePublished, Release: prod.String() + "@" + v.String(),
				Details: map[string]string{"target": p, "snapshot": fmt.Sprint(res.SnapshotVersion), "timestamp": fmt.Sprint(res.TimestampVersion)}})
		}
	}
	if err := r.record(entries...); err != nil {
		return res, err
	}
	return res, nil
}

// Timestamp signs a new timestamp for the current snapshot with a fresh
// expiry. Run it more often than the timestamp expiry (default 1 day), e.g.
// from cron on the server holding the online key.
//
// It holds the repository lock (LockFile), enforces the environment rule on
// its signers (Options.Keyring) and appends its audit entry, if the
// repository keeps an audit log.
func (r *Repo) Timestamp(signer crypto.Signer) (int64, error) {
	unlock, err := r.lock("timestamp")
	if err != nil {
		return 0, err
	}
	defer unlock()
	if err := r.checkSigners(signer); err != nil {
		return 0, err
	}
	return r.timestamp(signer)
}

// AddRelease streams the image into staging (compressing it when asked),
// adds its target to the product role's staged metadata and signs that with
// opts.Signers. The release is published by Publish once the role's
// threshold of signatures is reached.
//
// It holds the repository lock (LockFile), enforces the environment rule on
// its signers (Options.Keyring) and appends its audit entry, if the
// repository keeps an audit log.
func (r *Repo) AddRelease(opts ReleaseOptions) (*ReleaseInfo, error) {
	unlock, err := r.lock("release add")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := r.checkSigners(opts.Signers...); err != nil {
		return nil, err
	}
	info, err := r.addRelease(opts)
	if err != nil {
		return nil, err
	}
	details := map[string]string{"target": info.TargetPath, "sha256": info.SHA256, "keys": signerIDs(opts.Signers...)}
	if len(info.Deltas) > 0 {
		var ds []string
		for _, d := range info.Deltas {
			ds = append(ds, fmt.Sprintf("%s:%d", d.From, d.Length))
		}
		details["deltas"] = strings.Join(ds, ",") // base:bytes of each delta file
	}
	if info.Provenance != nil {
		details["provenance"] = info.Provenance.SHA256 // the envelope's digest
	}
	if err := r.record(audit.Entry{Action: audit.ReleaseAdded, Release: info.Product + "@" + info.Version, Details: details}); err != nil {
		return info, err
	}
	return info, nil
}

// SignPending adds signer's approval to the product role's staged
// metadata. If version is not empty, the staged metadata must contain that
// release (so an approver signs what they mean to). If nothing is staged,
// the published role is re-signed as a new version (after a revocation):
// then the threshold must be collected again.
//
// It holds the repository lock (LockFile), enforces the environment rule on
// its signers (Options.Keyring) and appends its audit entry, if the
// repository keeps an audit log.
func (r *Repo) SignPending(product, version string, signer crypto.Signer, shown string) (have, need int, err error) {
	unlock, err := r.lock("release sign")
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	if err := r.checkSigners(signer); err != nil {
		return 0, 0, err
	}
	have, need, err = r.signPending(product, version, signer, shown)
	if err != nil {
		return 0, 0, err
	}
	rel := ""
	if version != "" {
		rel = product + "@" + version
	}
	err = r.record(audit.Entry{Action: audit.ReleaseSigned, Release: rel,
		Details: map[string]string{"role": product, "keys": signerIDs(signer), "signatures": fmt.Sprintf("%d/%d", have, need)}})
	return have, need, err
}

// ImportPending merges the signatures of a carried pending file (signed on
// another machine with SignPendingFile) into the staged metadata whose
// signed content is byte-for-byte identical. Only signatures that verify with
// a key of the role are merged; anything else in the file is ignored. It
// returns the role and its signature count after the merge.
//
// It holds the repository lock (LockFile), enforces the environment rule on
// its signers (Options.Keyring) and appends its audit entry, if the
// repository keeps an audit log.
func (r *Repo) ImportPending(path string) (role string, have, need int, err error) {
	unlock, err := r.lock("import")
	if err != nil {
		return "", 0, 0, err
	}
	defer unlock()
	return r.importPending(path)
}

// Delegate delegates the product's paths (release.Product.PathPattern) to a
// new product role with the given keys and threshold, in a new (staged)
// targets version signed by targetsSigners. Publish makes it effective.
//
// It holds the repository lock (LockFile), enforces the environment rule on
// its signers (Options.Keyring) and appends its audit entry, if the
// repository keeps an audit log.
func (r *Repo) Delegate(product string, pubs []crypto.PublicKey, threshold int, targetsSigners ...crypto.Signer) error {
	unlock, err := r.lock("delegate")
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.checkSigners(targetsSigners...); err != nil {
		return err
	}
	if kr := r.opts.Keyring; kr != nil {
		if err := kr.CheckKeys(r.Environment(), pubs...); err != nil {
			return err
		}
	}
	if err := r.delegate(product, pubs, threshold, targetsSigners...); err != nil {
		return err
	}
	if kr := r.opts.Keyring; kr != nil {
		if err := kr.RegisterKeys(r.Environment(), "product "+product, pubs...); err != nil {
			return err
		}
	}
	return r.record(audit.Entry{Action: audit.KeyRotated, Details: map[string]string{
		"role": product, "event": "delegated", "keys": pubIDs(pubs...), "threshold": fmt.Sprint(threshold)}})
}

// Rotate changes the keys or threshold of a role. A top-level role's keys
// live in root, so rotating one stages the next root version, signed by a
// threshold of the old root keys and (for root itself) of the new ones; the
// next Publish makes it effective. A product role's keys live in targets, so
// rotating one stages the next targets version (signed by the targets key)
// and re-signs the product role with the new keys.
//
// It holds the repository lock (LockFile), enforces the environment rule on
// its signers (Options.Keyring) and appends its audit entry, if the
// repository keeps an audit log.
func (r *Repo) Rotate(opts RotateOptions) (*RotateResult, error) {
	unlock, err := r.lock("rotate")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := r.checkSigners(append(append([]crypto.Signer{}, opts.OldSigners...), opts.NewSigners...)...); err != nil {
		return nil, err
	}
	res, err := r.rotate(opts)
	if err != nil {
		return nil, err
	}
	details := map[string]string{"role": opts.Role, "added": pubIDs(opts.Add...), "removed": strings.Join(opts.Remove, ",")}
	if opts.Log != nil {
		details["transparency"] = "policy changed"
	}
	if err := r.record(audit.Entry{Action: audit.KeyRotated, Details: details}); err != nil {
		return res, err
	}
	return res, nil
}

// Revoke removes a key from a product role's delegation, in a new staged
// targets version signed by targetsSigner. Once published, signatures by the
// revoked key no longer count: releases that lack a threshold without them
// stop verifying on devices until re-signed with the remaining keys
// (SignPending with an empty staging re-signs the published role).
//
// It holds the repository lock (LockFile), enforces the environment rule on
// its signers (Options.Keyring) and appends its audit entry, if the
// repository keeps an audit log.
func (r *Repo) Revoke(product, keyID string, targetsSigner crypto.Signer) error {
	unlock, err := r.lock("revoke")
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.checkSigners(targetsSigner); err != nil {
		return err
	}
	if err := r.revoke(product, keyID, targetsSigner); err != nil {
		return err
	}
	return r.record(audit.Entry{Action: audit.KeyRevoked, Details: map[string]string{"role": product, "key_id": keyID}})
}
