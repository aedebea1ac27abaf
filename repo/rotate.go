package repo

import (
	"bytes"
	"crypto"
	"fmt"
	"slices"
	"time"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/tufsign"
	"github.com/airlockfw/airlock/tlog"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// delegate is Delegate without the repository lock, the environment rule and the
// audit entry.
func (r *Repo) delegate(product string, pubs []crypto.PublicKey, threshold int, targetsSigners ...crypto.Signer) error {
	p, role, err := productRole(product)
	if err != nil {
		return err
	}
	if len(pubs) == 0 || threshold < 1 || threshold > len(pubs) {
		return fmt.Errorf("%w: threshold %d with %d keys", ErrInvalidOptions, threshold, len(pubs))
	}
	tk, err := r.keysForTargetsRole(metadata.TARGETS)
	if err != nil {
		return err
	}
	md, err := r.nextTargetsVersion(metadata.TARGETS, r.cfg.Expires.Targets)
	if err != nil {
		return err
	}
	if _, _, ok := delegatedRoleKeys(md, role); ok {
		return fmt.Errorf("%w: %s is already delegated; use rotate to change its keys", ErrInvalidOptions, p)
	}
	if md.Signed.Delegations == nil {
		md.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	d := metadata.DelegatedRole{Name: role, Threshold: threshold, Terminating: true, Paths: []string{p.PathPattern()}}
	for _, pub := range pubs {
		k, err := tufsign.Key(pub)
		if err != nil {
			return err
		}
		id, err := k.ID()
		if err != nil {
			return err
		}
		if slices.Contains(d.KeyIDs, id) {
			return fmt.Errorf("%w: key %s given twice", ErrInvalidOptions, id)
		}
		d.KeyIDs = append(d.KeyIDs, id)
		md.Signed.Delegations.Keys[id] = k
	}
	md.Signed.Delegations.Roles = append(md.Signed.Delegations.Roles, d)
	if len(targetsSigners) == 0 {
		return fmt.Errorf("%w: a targets key must sign the delegation", ErrInvalidOptions)
	}
	if err := signWith(md, targetsSigners, tk, metadata.TARGETS); err != nil {
		return err
	}
	return writeStaged(r, metadata.TARGETS, md)
}

// RotateOptions describes a key rotation.
type RotateOptions struct {
	// Role is "root", "targets", "snapshot", "timestamp" or a product
	// ("acme/router-x1").
	Role string
	// Add and Remove change the role's keys (Remove takes TUF key IDs);
	// Threshold, if not 0, sets the role's new threshold.
	Add       []crypto.PublicKey
	Remove    []string
	Threshold int
	// OldSigners sign the change as the delegator: for a top-level role,
	// root keys of the current root (a threshold of them); for a product
	// role, the targets key.
	OldSigners []crypto.Signer
	// NewSigners sign with the new keys: for root, a threshold of the new
	// root keys; for targets and a product role, keys of the rotated role
	// that re-sign its metadata. Snapshot and timestamp metadata are
	// re-signed by the next Publish with the new online keys.
	NewSigners []crypto.Signer
	// Log, if not nil, changes the transparency policy of the new root
	// (Role must then be a top-level role, usually root): it enables the log
	// on a repository without one, or changes its witnesses or key.
	Log *LogOptions
}

// RotateResult reports a rotation.
type RotateResult struct {
	// Staged lists the staged metadata files written.
	Staged []string
	// Missing is a description of the signatures still missing before
	// Publish accepts the rotation (collect them with SignPendingFile and
	// ImportPending), or "".
	Missing string
}

var topLevel = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// rotate is Rotate without the repository lock, the environment rule and the
// audit entry.
func (r *Repo) rotate(opts RotateOptions) (*RotateResult, error) {
	if opts.Log != nil && !slices.Contains(topLevel, opts.Role) {
		return nil, fmt.Errorf("%w: the transparency policy is changed by a root rotation, not a rotation of %s", ErrInvalidOptions, opts.Role)
	}
	if slices.Contains(topLevel, opts.Role) {
		return r.rotateTopLevel(opts)
	}
	return r.rotateProduct(opts)
}

func editKeys(ids []string, threshold *int, keysMap map[string]*metadata.Key, opts RotateOptions, role string) ([]string, error) {
	for _, id := range opts.Remove {
		if !slices.Contains(ids, id) {
			return nil, fmt.Errorf("%w: key %s is not a key of %s", ErrInvalidOptions, id, role)
		}
		ids = slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == id })
	}
	for _, pub := range opts.Add {
		k, err := tufsign.Key(pub)
		if err != nil {
			return nil, err
		}
		id, err := k.ID()
		if err != nil {
			return nil, err
		}
		if slices.Contains(ids, id) {
			return nil, fmt.Errorf("%w: key %s is already a key of %s", ErrInvalidOptions, id, role)
		}
		ids = append(ids, id)
		keysMap[id] = k
	}
	if opts.Threshold != 0 {
		*threshold = opts.Threshold
	}
	if *threshold < 1 || *threshold > len(ids) {
		return nil, fmt.Errorf("%w: %s would have threshold %d with %d keys", ErrInvalidOptions, role, *threshold, len(ids))
	}
	return ids, nil
}

func (r *Repo) rotateTopLevel(opts RotateOptions) (*RotateResult, error) {
	if st, err := r.stagedRoot(); err != nil {
		return nil, err
	} else if st != nil {
		return nil, fmt.Errorf("%w (version %d): publish it before the next rotation", ErrPendingRoot, st.Signed.Version)
	}
	old, err := r.PublishedRoot()
	if err != nil {
		return nil, err
	}
	next, err := cloneMD(old)
	if err != nil {
		return nil, err
	}
	next.Signed.Version++
	next.Signed.Expires = r.now().Add(time.Duration(r.cfg.Expires.Root))
	next.ClearSignatures()
	role := next.Signed.Roles[opts.Role]
	ids, err := editKeys(role.KeyIDs, &role.Threshold, next.Signed.Keys, opts, opts.Role)
	if err != nil {
		return nil, err
	}
	role.KeyIDs = ids
	// Drop keys no role uses any more.
	for id := range next.Signed.Keys {
		used := false
		for _, rl := range next.Signed.Roles {
			used = used || slices.Contains(rl.KeyIDs, id)
		}
		if !used {
			delete(next.Signed.Keys, id)
		}
	}
	if opts.Role != metadata.ROOT {
		for _, s := range opts.NewSigners {
			id, err := keys.KeyID(s.Public())
			if err != nil {
				return nil, err
			}
			if !slices.Contains(ids, id) {
				return nil, fmt.Errorf("%w: new signer %s is not a new %s key", ErrUnauthorizedKey, id, opts.Role)
			}
		}
	}
	saveCfg := false
	if opts.Log != nil {
		cur, had, err := RootPolicy(old)
		if err != nil {
			return nil, err
		}
		root1, _, err := loadMD[metadata.RootType](r.metaPath("1.root.json"), MaxRootSize)
		if err != nil {
			return nil, err
		}
		var curp *tlog.Policy
		if had {
			curp = &cur
		}
		p, err := r.policyFor(*opts.Log, curp, root1)
		if err != nil {
			return nil, err
		}
		if err := setRootPolicy(next, &p); err != nil {
			return nil, err
		}
		if err := r.applyLogConfig(*opts.Log, p); err != nil {
			return nil, err
		}
		saveCfg = true
	}
	oldKeys, newKeys := rootKeysOf(old), rootKeysOf(next)
	rootSigners := opts.OldSigners
	if opts.Role == metadata.ROOT {
		rootSigners = append(slices.Clone(opts.OldSigners), opts.NewSigners...)
	}
	if len(rootSigners) == 0 {
		return nil, fmt.Errorf("%w: root keys must sign the new root", ErrInvalidOptions)
	}
	for _, s := range rootSigners {
		id, err := keys.KeyID(s.Public())
		if err != nil {
			return nil, err
		}
		if !slices.Contains(oldKeys.ids, id) && !slices.Contains(newKeys.ids, id) {
			return nil, fmt.Errorf("%w: key %s is neither an old nor a new root key", ErrUnauthorizedKey, id)
		}
		if err := tufsign.Sign(next, s); err != nil {
			return nil, err
		}
	}
	if err := writeStaged(r, metadata.ROOT, next); err != nil {
		return nil, err
	}
	if saveCfg {
		if err := r.saveConfig(); err != nil {
			return nil, err
		}
	}
	res := &RotateResult{Staged: []string{r.stagedPath(metadata.ROOT)}}
	if opts.Role == metadata.TARGETS && len(opts.NewSigners) > 0 {
		md, err := r.nextTargetsVersion(metadata.TARGETS, r.cfg.Expires.Targets)
		if err != nil {
			return nil, err
		}
		tk, _ := rootRoleKeys(next, metadata.TARGETS)
		if err := signWith(md, opts.NewSigners, tk, metadata.TARGETS); err != nil {
			return nil, err
		}
		if err := writeStaged(r, metadata.TARGETS, md); err != nil {
			return nil, err
		}
		res.Staged = append(res.Staged, r.stagedPath(metadata.TARGETS))
	}
	if err := checkRootRotation(old, next); err != nil {
		res.Missing = err.Error()
	}
	return res, nil
}

func (r *Repo) rotateProduct(opts RotateOptions) (*RotateResult, error) {
	p, role, err := productRole(opts.Role)
	if err != nil {
		return nil, err
	}
	tk, err := r.keysForTargetsRole(metadata.TARGETS)
	if err != nil {
		return nil, err
	}
	if len(opts.OldSigners) == 0 {
		return nil, fmt.Errorf("%w: a targets key must sign the new delegation", ErrInvalidOptions)
	}
	md, err := r.nextTargetsVersion(metadata.TARGETS, r.cfg.Expires.Targets)
	if err != nil {
		return nil, err
	}
	_, d, ok := delegatedRoleKeys(md, role)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoDelegation, p)
	}
	ids, err := editKeys(d.KeyIDs, &d.Threshold, md.Signed.Delegations.Keys, opts, role)
	if err != nil {
		return nil, err
	}
	d.KeyIDs = ids
	for id := range md.Signed.Delegations.Keys {
		used := false
		for _, dr := range md.Signed.Delegations.Roles {
			used = used || slices.Contains(dr.KeyIDs, id)
		}
		if !used {
			delete(md.Signed.Delegations.Keys, id)
		}
	}
	if err := signWith(md, opts.OldSigners, tk, metadata.TARGETS); err != nil {
		return nil, err
	}
	newKeys, _, _ := delegatedRoleKeys(md, role)
	for _, s := range opts.NewSigners {
		if _, err := newKeys.authorize(s, role); err != nil {
			return nil, err
		}
	}
	if err := writeStaged(r, metadata.TARGETS, md); err != nil {
		return nil, err
	}
	res := &RotateResult{Staged: []string{r.stagedPath(metadata.TARGETS)}}

	// Re-sign the product role: a staged version keeps the signatures of
	// keys that remain; a published one is re-signed as the next version.
	prod, err := r.stagedTargetsRole(role)
	if err != nil {
		return nil, err
	}
	if prod == nil {
		pub, err := r.PublishedRole(role)
		if err != nil {
			return nil, err
		}
		if pub == nil || len(opts.NewSigners) == 0 {
			if pub != nil {
				res.Missing = fmt.Sprintf("role %s must be re-signed by its new keys ('airlock release sign')", role)
			}
			return res, nil
		}
		if prod, err = r.nextTargetsVersion(role, r.cfg.Expires.Product); err != nil {
			return nil, err
		}
	} else {
		prod.Signatures = slices.DeleteFunc(prod.Signatures, func(s metadata.Signature) bool { return !slices.Contains(ids, s.KeyID) })
	}
	for _, s := range opts.NewSigners {
		if err := tufsign.Sign(prod, s); err != nil {
			return nil, err
		}
	}
	if err := writeStaged(r, role, prod); err != nil {
		return nil, err
	}
	res.Staged = append(res.Staged, r.stagedPath(role))
	if err := needThreshold(prod, newKeys, role, fmt.Sprintf("role %s version %d", role, prod.Signed.Version)); err != nil {
		res.Missing = err.Error()
	}
	return res, nil
}

// revoke is Revoke without the repository lock, the environment rule and the
// audit entry.
func (r *Repo) revoke(product, keyID string, targetsSigner crypto.Signer) error {
	_, err := r.rotate(RotateOptions{Role: product, Remove: []string{keyID}, OldSigners: []crypto.Signer{targetsSigner}})
	return err
}

// importRoot merges valid root signatures from a carried staged root.
func (r *Repo) importRoot(data []byte) (string, int, int, error) {
	carried, err := parseMD[metadata.RootType](data)
	if err != nil {
		return "", 0, 0, err
	}
	staged, err := r.stagedRoot()
	if err != nil {
		return "", 0, 0, err
	}
	if staged == nil {
		return "", 0, 0, fmt.Errorf("%w: no root rotation is staged", ErrMismatch)
	}
	a, err := canonjson.Marshal(carried.Signed)
	if err != nil {
		return "", 0, 0, err
	}
	b, err := canonjson.Marshal(staged.Signed)
	if err != nil {
		return "", 0, 0, err
	}
	if !bytes.Equal(a, b) {
		return "", 0, 0, fmt.Errorf("%w: the carried root differs from staged root version %d", ErrMismatch, staged.Signed.Version)
	}
	old, err := r.PublishedRoot()
	if err != nil {
		return "", 0, 0, err
	}
	okOld, err := validSignatures(carried, rootKeysOf(old))
	if err != nil {
		return "", 0, 0, err
	}
	okNew, err := validSignatures(carried, rootKeysOf(staged))
	if err != nil {
		return "", 0, 0, err
	}
	staged.Signatures = mergeSignatures(mergeSignatures(staged.Signatures, okOld), okNew)
	if err := writeStaged(r, metadata.ROOT, staged); err != nil {
		return "", 0, 0, err
	}
	have, err := countValid(staged, rootKeysOf(staged))
	return metadata.ROOT, have, rootKeysOf(staged).threshold, err
}

// RootStatus reports the signatures of the staged root: by the keys of the
// published root and by its own keys, with both thresholds. ok is false when
// no root is staged.
func (r *Repo) RootStatus() (haveOld, needOld, haveNew, needNew int, ok bool, err error) {
	staged, err := r.stagedRoot()
	if err != nil || staged == nil {
		return 0, 0, 0, 0, false, err
	}
	old, err := r.PublishedRoot()
	if err != nil {
		return 0, 0, 0, 0, false, err
	}
	if haveOld, err = countValid(staged, rootKeysOf(old)); err != nil {
		return
	}
	if haveNew, err = countValid(staged, rootKeysOf(staged)); err != nil {
		return
	}
	return haveOld, rootKeysOf(old).threshold, haveNew, rootKeysOf(staged).threshold, true, nil
}

func cloneMD[T metadata.Roles](md *metadata.Metadata[T]) (*metadata.Metadata[T], error) {
	data, err := md.ToBytes(false)
	if err != nil {
		return nil, err
	}
	return parseMD[T](data)
}
