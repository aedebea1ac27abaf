package trust

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"sort"
)

// delegationKeys returns what delegator says about role's keys, or an error if
// it does not delegate to role.
func delegationKeys(delegator *Metadata[TargetsType], role string) (roleKeys, error) {
	d := delegator.Signed.Delegations
	if d != nil {
		if s := d.SuccinctRoles; s != nil && s.IsDelegatedRole(role) {
			return roleKeys{keyIDs: s.KeyIDs, threshold: s.Threshold, keys: d.Keys}, nil
		}
		for _, r := range d.Roles {
			if r.Name == role {
				return roleKeys{keyIDs: r.KeyIDs, threshold: r.Threshold, keys: d.Keys}, nil
			}
		}
	}
	return roleKeys{}, fmt.Errorf("%w: no delegation to role %q", ErrMalformed, role)
}

func checkTargetPath(p string) error {
	if p == "" || len(p) > MaxTargetPathLength {
		return fmt.Errorf("%w: target path %q (empty or longer than %d bytes)", ErrInvalidName, p, MaxTargetPathLength)
	}
	return nil
}

// Target looks up targetPath (spec 5.6.7): top-level targets first, then a
// pre-order depth-first search of the delegations whose paths match, in
// the order the delegator lists them, stopping at terminating delegations,
// visiting at most Limits.Delegations roles. Every delegated role is verified
// against the keys and threshold given by the delegator through which THIS
// lookup reached it; a copy verified through another delegator is never
// reused. A role that fails verification ends the lookup with its error.
// Refresh must have succeeded first. The result is a copy.
func (c *Client) Target(ctx context.Context, targetPath string) (*TargetFiles, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.refreshed {
		return nil, ErrNotRefreshed
	}
	if err := checkTargetPath(targetPath); err != nil {
		return nil, err
	}
	type visit struct {
		role     string
		parent   *Metadata[TargetsType] // nil for top-level targets
		ancestry []DelegatedRole
	}
	stack := []visit{{role: RoleTargets}}
	visited := map[string]bool{}
	for len(visited) <= c.lim.Delegations && len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[v.role] { // 5.6.7.1: skip roles visited in this lookup
			continue
		}
		md := c.targets
		ancestry := v.ancestry
		if v.parent != nil {
			rk, err := delegationKeys(v.parent, v.role)
			if err != nil {
				return nil, err
			}
			pin, ok := c.snap.Signed.Meta[v.role+".json"]
			if !ok {
				return nil, fmt.Errorf("role %q: %w: snapshot does not list it", v.role, ErrMalformed)
			}
			var raw []byte
			md, raw, err = c.loadTargetsRole(ctx, v.role, rk, pin)
			if err != nil {
				return nil, err
			}
			c.delegated[v.role] = raw
			ancestry = append(slices.Clip(ancestry), DelegatedRole{Name: v.role, Data: raw})
		}
		if tf, ok := md.Signed.Targets[targetPath]; ok {
			c.paths[targetPath] = ancestry
			return cloneTargetFiles(targetPath, tf), nil
		}
		visited[v.role] = true
		if md.Signed.Delegations == nil {
			continue
		}
		var children []visit
		for _, r := range md.Signed.Delegations.GetRolesForTarget(targetPath) {
			children = append(children, visit{role: r.Name, parent: md, ancestry: ancestry})
			if r.Terminating { // 5.6.7.2.1: do not backtrack past a terminating delegation
				stack = nil
				break
			}
		}
		slices.Reverse(children)
		stack = append(stack, children...)
	}
	return nil, fmt.Errorf("%q: %w", targetPath, ErrTargetNotFound)
}

// Role returns the verified metadata of a role that the top-level targets
// role delegates to directly (a product role): verified against the keys
// and threshold targets gives it, the snapshot's pin and expiry, like a
// lookup would (spec 5.6.7.2). Listing a role's targets does not authorize
// them: each path must still be looked up with Target, which applies the
// delegations' path patterns and terminating flags. Refresh must have
// succeeded first. The result is a copy.
func (c *Client) Role(ctx context.Context, name string) (*Metadata[TargetsType], error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.refreshed {
		return nil, ErrNotRefreshed
	}
	rk, err := delegationKeys(c.targets, name)
	if err != nil {
		return nil, err
	}
	pin, ok := c.snap.Signed.Meta[name+".json"]
	if !ok {
		return nil, fmt.Errorf("role %q: %w: snapshot does not list it", name, ErrMalformed)
	}
	md, raw, err := c.loadTargetsRole(ctx, name, rk, pin)
	if err != nil {
		return nil, err
	}
	c.delegated[name] = raw
	return md, nil // parsed afresh by loadTargetsRole: the caller's copy
}

// DelegatedRoles returns the names of the roles the top-level targets role
// delegates to, in its order. Refresh must have succeeded first.
func (c *Client) DelegatedRoles() ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.refreshed {
		return nil, ErrNotRefreshed
	}
	d := c.targets.Signed.Delegations
	if d == nil {
		return nil, nil
	}
	names := make([]string, 0, len(d.Roles))
	for _, r := range d.Roles {
		names = append(names, r.Name)
	}
	return names, nil
}

func cloneTargetFiles(path string, tf *TargetFiles) *TargetFiles {
	out := *tf
	out.Path = path
	out.Hashes = Hashes{}
	for k, v := range tf.Hashes {
		out.Hashes[k] = slices.Clone(v)
	}
	if tf.Custom != nil {
		c := json.RawMessage(slices.Clone([]byte(*tf.Custom)))
		out.Custom = &c
	}
	out.UnrecognizedFields = maps.Clone(tf.UnrecognizedFields)
	return &out
}

// Chain returns the verified bytes the device keeps beside an installed slot
// for VerifyBootChain: the root chain (stored root versions, oldest first,
// ending with the current root), targets.json and the delegated roles from
// targets to the role that listed targetPath. Target(targetPath) must have
// succeeded since the last Refresh.
//
// The root chain holds the versions this store rotated through (kept as
// "root.<version>"), each verified again to be signed by its predecessor; a
// store seeded with root version N cannot reproduce versions before N, so
// the device must also keep its factory root (VerifyBootChain starts there
// and skips chain entries at or below its version).
func (c *Client) Chain(targetPath string) (rootChain [][]byte, targets []byte, delegated []DelegatedRole, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.refreshed {
		return nil, nil, nil, ErrNotRefreshed
	}
	anc, ok := c.paths[targetPath]
	if !ok {
		return nil, nil, nil, fmt.Errorf("%q: %w (look it up with Target first)", targetPath, ErrTargetNotFound)
	}
	chain := [][]byte{c.rootRaw}
	for v := c.root.Signed.Version - 1; v >= 1 && len(chain) < MaxRootChainLength; v-- {
		raw, err := getOptional(c.store, rootHistoryName(v))
		if err != nil {
			return nil, nil, nil, err
		}
		if raw == nil {
			break
		}
		older, _, err := parseMetadata[RootType](raw)
		if err != nil || older.Signed.Version != v {
			break
		}
		// The next newer version must be signed by this one's root keys.
		if _, err := verifyNextRoot(older, chain[0]); err != nil {
			break
		}
		chain = append([][]byte{raw}, chain...)
	}
	out := make([]DelegatedRole, len(anc))
	for i, d := range anc {
		out[i] = DelegatedRole{Name: d.Name, Data: slices.Clone(d.Data)}
	}
	return chain, slices.Clone(c.targetRaw), out, nil
}

// Download streams the target described by tf (from Target) from the source
// into w, and verifies it: exactly tf.Length bytes (ErrLength when the
// source has fewer or more; at most tf.Length bytes reach w), and every
// listed hash of a supported algorithm (sha256, sha512) must match
// (ErrHash); a target listing no supported algorithm is refused before
// fetching (ErrUnsupportedHash). It returns the bytes written.
//
// Bytes are written to w before they are verified: when Download returns an
// error, everything written to w is untrusted and must be discarded (the
// caller writes into the inactive slot or a temporary file and only uses it
// after Download returned nil).
func (c *Client) Download(ctx context.Context, tf *TargetFiles, w io.Writer) (int64, error) {
	checks, err := hashChecks(tf)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	consistent := c.root.Signed.ConsistentSnapshot
	c.mu.Unlock()
	prefix := ""
	if consistent {
		// The repository names the file after one of its hashes: sha256 if
		// listed, else the first supported algorithm in name order.
		prefix = hex.EncodeToString(checks[0].want)
	}
	rc, err := c.src.OpenTarget(ctx, tf.Path, prefix)
	if err != nil {
		return 0, fmt.Errorf("failed to open target %q: %w", tf.Path, err)
	}
	defer rc.Close()
	return copyVerified(w, rc, tf, checks)
}

// Verify streams r and checks that it holds exactly the target described by
// tf (length and every supported hash), e.g. to re-check a slot or a cached
// file. It returns the bytes read (at most tf.Length+1).
func Verify(r io.Reader, tf *TargetFiles) (int64, error) {
	checks, err := hashChecks(tf)
	if err != nil {
		return 0, err
	}
	return copyVerified(io.Discard, r, tf, checks)
}

type hashCheck struct {
	alg  string
	h    hash.Hash
	want []byte
}

// hashChecks returns the supported hashes of tf, sha256 first.
func hashChecks(tf *TargetFiles) ([]hashCheck, error) {
	if tf == nil || tf.Length < 0 {
		return nil, fmt.Errorf("%w: invalid target description", ErrMalformed)
	}
	if err := checkTargetPath(tf.Path); err != nil {
		return nil, err
	}
	var checks []hashCheck
	algs := slices.Sorted(maps.Keys(tf.Hashes))
	for _, alg := range algs {
		h := newHash(alg)
		if h == nil {
			continue
		}
		want := tf.Hashes[alg]
		if len(want) != h.Size() {
			return nil, fmt.Errorf("target %q: %w: %s digest is %d bytes, want %d", tf.Path, ErrMalformed, alg, len(want), h.Size())
		}
		checks = append(checks, hashCheck{alg, h, want})
	}
	if len(checks) == 0 {
		return nil, fmt.Errorf("target %q: %w (listed: %v)", tf.Path, ErrUnsupportedHash, algs)
	}
	sort.SliceStable(checks, func(i, j int) bool { return checks[i].alg == "sha256" && checks[j].alg != "sha256" })
	return checks, nil
}

func copyVerified(w io.Writer, r io.Reader, tf *TargetFiles, checks []hashCheck) (int64, error) {
	writers := []io.Writer{w}
	for _, ch := range checks {
		writers = append(writers, ch.h)
	}
	n, err := io.CopyN(io.MultiWriter(writers...), r, tf.Length)
	if errors.Is(err, io.EOF) {
		return n, fmt.Errorf("target %q: %w: %d bytes, declared %d", tf.Path, ErrLength, n, tf.Length)
	}
	if err != nil {
		return n, fmt.Errorf("failed to read target %q: %w", tf.Path, err)
	}
	// Endless data: anything after the declared length is an error.
	var extra [1]byte
	k, err := io.ReadFull(r, extra[:])
	if k > 0 {
		return n, fmt.Errorf("target %q: %w: longer than declared %d bytes", tf.Path, ErrLength, tf.Length)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("failed to read target %q: %w", tf.Path, err)
	}
	for _, ch := range checks {
		if subtle.ConstantTimeCompare(ch.h.Sum(nil), ch.want) != 1 {
			return n, fmt.Errorf("target %q: %w: %s", tf.Path, ErrHash, ch.alg)
		}
	}
	return n, nil
}
