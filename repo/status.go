package repo

import (
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// RoleStatus describes one role of the repository.
type RoleStatus struct {
	Name      string    `json:"name"`
	Version   int64     `json:"version"` // published version, 0 if never published
	Expires   time.Time `json:"expires"`
	KeyIDs    []string  `json:"key_ids"` // keys of the current (staged or published) delegation
	Threshold int       `json:"threshold"`
	// Signatures is the number of valid signatures on the published
	// version under the current delegation (below Threshold after a key
	// revocation until re-signed).
	Signatures int `json:"signatures"`
	// StagedVersion and StagedSignatures describe pending metadata (0 if none).
	StagedVersion    int64 `json:"staged_version"`
	StagedSignatures int   `json:"staged_signatures"`
}

// Status describes the repository: every role, published and staged.
type Status struct {
	Roles []RoleStatus `json:"roles"`
	// Expired lists roles whose published metadata has expired.
	Expired []string `json:"expired"`
}

// Status reports the state of every role.
func (r *Repo) Status() (*Status, error) {
	root, err := r.currentRoot()
	if err != nil {
		return nil, err
	}
	pubRoot, err := r.PublishedRoot()
	if err != nil {
		return nil, err
	}
	now := r.now()
	st := &Status{}
	add := func(rs RoleStatus, expired bool) {
		st.Roles = append(st.Roles, rs)
		if expired {
			st.Expired = append(st.Expired, rs.Name)
		}
	}
	// Root.
	rk := rootKeysOf(root)
	rs := RoleStatus{Name: metadata.ROOT, Version: pubRoot.Signed.Version, Expires: pubRoot.Signed.Expires, KeyIDs: rk.ids, Threshold: rk.threshold}
	rs.Signatures, _ = countValid(pubRoot, rootKeysOf(pubRoot))
	if staged, _ := r.stagedRoot(); staged != nil {
		rs.StagedVersion = staged.Signed.Version
		rs.StagedSignatures, _ = countValid(staged, rk)
	}
	add(rs, pubRoot.Signed.IsExpired(now))
	// Targets and product roles.
	targets, err := r.currentTargets()
	if err != nil {
		return nil, err
	}
	roles := []string{metadata.TARGETS}
	if targets.Signed.Delegations != nil {
		for _, d := range targets.Signed.Delegations.Roles {
			roles = append(roles, d.Name)
		}
	}
	for _, name := range roles {
		keys, err := r.keysForTargetsRole(name)
		if err != nil {
			return nil, err
		}
		rs := RoleStatus{Name: name, KeyIDs: keys.ids, Threshold: keys.threshold}
		pub, v, err := r.publishedTargetsRole(name)
		if err != nil {
			return nil, err
		}
		expired := false
		if pub != nil {
			rs.Version, rs.Expires = v, pub.Signed.Expires
			rs.Signatures, _ = countValid(pub, keys)
			expired = pub.Signed.IsExpired(now)
		}
		if staged, _ := r.stagedTargetsRole(name); staged != nil {
			rs.StagedVersion = staged.Signed.Version
			rs.StagedSignatures, _ = countValid(staged, keys)
		}
		add(rs, expired)
	}
	// Snapshot and timestamp.
	snap, err := r.PublishedSnapshot()
	if err != nil {
		return nil, err
	}
	sk, _ := rootRoleKeys(root, metadata.SNAPSHOT)
	rs = RoleStatus{Name: metadata.SNAPSHOT, Version: snap.Signed.Version, Expires: snap.Signed.Expires, KeyIDs: sk.ids, Threshold: sk.threshold}
	rs.Signatures, _ = countValid(snap, sk)
	add(rs, snap.Signed.IsExpired(now))
	ts, err := r.PublishedTimestamp()
	if err != nil {
		return nil, err
	}
	tk, _ := rootRoleKeys(root, metadata.TIMESTAMP)
	rs = RoleStatus{Name: metadata.TIMESTAMP, Version: ts.Signed.Version, Expires: ts.Signed.Expires, KeyIDs: tk.ids, Threshold: tk.threshold}
	rs.Signatures, _ = countValid(ts, tk)
	add(rs, ts.Signed.IsExpired(now))
	return st, nil
}
