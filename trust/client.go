package trust

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Config configures a Client. The zero value is ready to use.
type Config struct {
	// Now returns the reference time for expiry checks; nil means time.Now.
	// Refresh reads it once, at the start (the "fixed update start time").
	Now func() time.Time
	// Limits overrides size and count limits; zero fields mean defaults.
	Limits Limits
	// Offline says the source is a copy made at one time and carried to
	// the device (an offline bundle), not a live repository: the expiry of
	// the timestamp and snapshot, which bound how stale a live repository's
	// answer may be, is not enforced; the expiry of root, targets and every
	// delegated role, all signatures and thresholds, and every rollback
	// floor still are (docs/bundle-format.md, "Freshness").
	Offline bool
}

// Client is a TUF client that holds only verified metadata. Its methods are
// safe for concurrent use (they are serialized).
type Client struct {
	store Store
	src   Source
	now   func() time.Time
	lim   Limits
	// offline is Config.Offline.
	offline bool

	mu        sync.Mutex
	refreshed bool
	refTime   time.Time
	root      *Metadata[RootType]
	rootRaw   []byte
	ts        *Metadata[TimestampType]
	tsRaw     []byte
	snap      *Metadata[SnapshotType]
	snapRaw   []byte
	targets   *Metadata[TargetsType]
	targetRaw []byte
	// delegated holds the bytes of delegated roles verified by lookups since
	// the last Refresh, for Trusted().Delegated only: lookups never trust
	// them without re-verifying against the current delegator.
	delegated map[string][]byte
	// paths holds, per target path found since the last Refresh, the
	// delegated roles from targets to the role that listed it.
	paths map[string][]DelegatedRole
	// floors is the rollback floor record as last read or written by
	// Refresh, floorsRaw its stored bytes (floors.go).
	floors    *floors
	floorsRaw []byte
}

// DelegatedRole is the verified metadata of one delegated targets role.
type DelegatedRole struct {
	Name string
	Data []byte
}

// New returns a client over store and src. The trusted root must already be
// in the store as "root.json" (spec 5.2); it must be signed by a threshold of
// its own root keys. Its expiry is not checked here (5.3.10 checks the final
// root during Refresh). New does not use the network.
func New(store Store, src Source, cfg Config) (*Client, error) {
	if store == nil || src == nil {
		return nil, errors.New("trust: nil store or source")
	}
	lim, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	raw, err := store.Get(rootFile)
	if err != nil {
		return nil, fmt.Errorf("failed to load trusted root: %w", err)
	}
	if int64(len(raw)) > lim.RootSize {
		return nil, fmt.Errorf("trusted root: %w: %d > %d bytes", ErrTooLarge, len(raw), lim.RootSize)
	}
	root, payload, err := parseMetadata[RootType](raw)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	if err := verifySignatures("trusted root", rootRole(root, RoleRoot), root.Signatures, payload); err != nil {
		return nil, err
	}
	return &Client{store: store, src: src, now: now, lim: lim, offline: cfg.Offline, root: root, rootRaw: raw}, nil
}

const (
	rootFile      = "root.json"
	timestampFile = "timestamp.json"
	snapshotFile  = "snapshot.json"
	targetsFile   = "targets.json"
)

// rootHistoryName is the store name of the copy of root version v.
func rootHistoryName(v int64) string { return "root." + strconv.FormatInt(v, 10) }

func rootRole(root *Metadata[RootType], role string) roleKeys {
	r := root.Signed.Roles[role] // present: validateRoot checked it
	return roleKeys{keyIDs: r.KeyIDs, threshold: r.Threshold, keys: root.Signed.Keys}
}

// Refresh runs the top-level client workflow (spec 5.3 to 5.5 and 5.6 for
// top-level targets): root rotation, timestamp, snapshot, targets. Each file
// is persisted only after all of its checks passed; a failed Refresh leaves
// the store with the files verified before the failure (a rotated root stays
// rotated).
//
// The rollback reference is the higher of two floors: the stored metadata
// files, and the rollback floor record kept beside them (floors.go), so
// that losing or corrupting one stored file never lowers a floor. Local
// metadata that no longer verifies under the current root, and recorded
// floors whose keys the current root rotated out, no longer count (5.3.11,
// fast-forward recovery). A record that is present but corrupt fails
// Refresh with ErrCorruptFloors before any request; a missing record is
// rebuilt from the files. The final root must not be older than the
// recorded root version (ErrRollback: root.json was lost or replaced by an
// older root and the source does not offer the chain back to it).
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshed = false
	c.ts, c.tsRaw, c.snap, c.snapRaw, c.targets, c.targetRaw = nil, nil, nil, nil, nil, nil
	c.delegated = map[string][]byte{}
	c.paths = map[string][]DelegatedRole{}
	c.refTime = c.now()
	var err error
	if c.floors, c.floorsRaw, err = loadFloors(c.store); err != nil {
		return err
	}

	if err := c.updateRoot(ctx); err != nil {
		return err
	}
	// 5.3.5 across losses: the chain must reach the recorded root version.
	if v := c.root.Signed.Version; v < c.floors.root {
		return fmt.Errorf("root: %w: trusted root version %d < recorded %d (root.json was lost or replaced by an older root, and the source does not offer the newer versions)",
			ErrRollback, v, c.floors.root)
	} else if v > c.floors.root {
		nf := c.floors.clone() // rebuilt upward: a record missing or behind root.json
		nf.root = v
		if err := c.saveFloors(nf); err != nil {
			return err
		}
	}
	// 5.3.10: the final root must not be expired (checked after persisting it).
	if expired(c.root.Signed.Expires, c.refTime) {
		return fmt.Errorf("root version %d: %w at %s (expired %s)", c.root.Signed.Version, ErrExpired,
			c.refTime.UTC().Format(time.RFC3339), c.root.Signed.Expires.UTC().Format(time.RFC3339))
	}
	if err := c.updateTimestamp(ctx); err != nil {
		return err
	}
	if err := c.updateSnapshot(ctx); err != nil {
		return err
	}
	mf, ok := c.snap.Signed.Meta[targetsFile]
	if !ok {
		return fmt.Errorf("snapshot: %w: does not list targets.json", ErrMalformed)
	}
	md, raw, err := c.loadTargetsRole(ctx, RoleTargets, rootRole(c.root, RoleTargets), mf)
	if err != nil {
		return err
	}
	c.targets, c.targetRaw = md, raw
	c.refreshed = true
	return nil
}

// updateRoot follows the root chain (5.3.2 to 5.3.9): version N+1, N+2, ...
// until the source has no next version, at most Limits.RootRotations.
func (c *Client) updateRoot(ctx context.Context) error {
	for i := 0; i < c.lim.RootRotations && c.root.Signed.Version < math.MaxInt64; i++ {
		next := c.root.Signed.Version + 1
		data, err := c.src.FetchMetadata(ctx, RoleRoot, next, c.lim.RootSize)
		if errors.Is(err, ErrNotFound) {
			return nil // 5.3.3: no newer root
		}
		if err != nil {
			return fmt.Errorf("failed to fetch root version %d: %w", next, err)
		}
		newRoot, err := verifyNextRoot(c.root, data)
		if err != nil {
			return err
		}
		// 5.3.8: persist, then trust. The floor first, then the history
		// copy: a power cut between the Puts only means fetching this
		// version again (the source still offers it).
		nf := c.floors.clone()
		nf.root = max(nf.root, next)
		if err := c.saveFloors(nf); err != nil {
			return err
		}
		if err := c.store.Put(rootHistoryName(next), data); err != nil {
			return err
		}
		if err := c.store.Put(rootFile, data); err != nil {
			return err
		}
		c.root, c.rootRaw = newRoot, data
	}
	return nil
}

// verifyNextRoot checks that data is root version trusted+1, signed by a
// threshold of the trusted root's root keys (5.3.4) and of its own root keys
// (5.3.4), with the expected version (5.3.5). Expiry is not checked.
func verifyNextRoot(trusted *Metadata[RootType], data []byte) (*Metadata[RootType], error) {
	want := trusted.Signed.Version + 1
	newRoot, payload, err := parseMetadata[RootType](data)
	if err != nil {
		return nil, fmt.Errorf("root version %d: %w", want, err)
	}
	if err := verifySignatures(fmt.Sprintf("root version %d (by trusted root version %d)", want, trusted.Signed.Version),
		rootRole(trusted, RoleRoot), newRoot.Signatures, payload); err != nil {
		return nil, err
	}
	if err := verifySignatures(fmt.Sprintf("root version %d (by its own keys)", want),
		rootRole(newRoot, RoleRoot), newRoot.Signatures, payload); err != nil {
		return nil, err
	}
	if v := newRoot.Signed.Version; v != want {
		if v < want {
			return nil, fmt.Errorf("root: %w: got version %d, want %d", ErrRollback, v, want)
		}
		return nil, fmt.Errorf("root: %w: got version %d, want %d", ErrMalformed, v, want)
	}
	return newRoot, nil
}

// verifyTimestamp returns the timestamp and the fingerprints of the keys
// whose signatures on it are valid (for the floor record).
func (c *Client) verifyTimestamp(data []byte) (*Metadata[TimestampType], []fingerprint, error) {
	if int64(len(data)) > c.lim.TimestampSize {
		return nil, nil, fmt.Errorf("timestamp: %w", ErrTooLarge)
	}
	md, payload, err := parseMetadata[TimestampType](data)
	if err != nil {
		return nil, nil, fmt.Errorf("timestamp: %w", err)
	}
	rk := rootRole(c.root, RoleTimestamp)
	if err := verifySignatures("timestamp", rk, md.Signatures, payload); err != nil {
		return nil, nil, err
	}
	return md, signersOf(rk, md.Signatures, payload), nil
}

// updateTimestamp implements 5.4.
func (c *Client) updateTimestamp(ctx context.Context) error {
	local, err := getOptional(c.store, timestampFile)
	if err != nil {
		return err
	}
	var old *Metadata[TimestampType]
	var oldSigners []fingerprint
	if local != nil {
		if md, signers, err := c.verifyTimestamp(local); err == nil {
			old, oldSigners = md, signers // rollback reference; may be expired
		}
	}
	// The floors: the stored timestamp, and the record while the keys
	// that signed the timestamp it recorded still hold (5.3.11).
	var tsFloor, snapFloor int64
	if old != nil {
		tsFloor, snapFloor = old.Signed.Version, old.Signed.Meta[snapshotFile].Version
	}
	if f := c.floors; f.timestamp > 0 && signersHold(c.root, RoleTimestamp, f.tsSigners) {
		tsFloor, snapFloor = max(tsFloor, f.timestamp), max(snapFloor, f.tsSnapshot)
	}
	data, err := c.src.FetchMetadata(ctx, RoleTimestamp, 0, c.lim.TimestampSize)
	if err != nil {
		return fmt.Errorf("failed to fetch timestamp: %w", err)
	}
	md, signers, err := c.verifyTimestamp(data) // 5.4.1, 5.4.2
	if err != nil {
		return err
	}
	// 5.4.3.1: no timestamp version rollback; an equal version keeps the
	// trusted copy (a re-signed file with the same version is ignored).
	if md.Signed.Version < tsFloor {
		return fmt.Errorf("timestamp: %w: version %d < trusted %d", ErrRollback, md.Signed.Version, tsFloor)
	}
	if old != nil && md.Signed.Version == old.Signed.Version {
		md, data, signers = old, local, oldSigners
	}
	// 5.4.3.2: no snapshot version rollback.
	if nv := md.Signed.Meta[snapshotFile].Version; nv < snapFloor {
		return fmt.Errorf("timestamp: %w: snapshot version %d < trusted %d", ErrRollback, nv, snapFloor)
	}
	// 5.4.4: freeze attack (not for an offline copy: Config.Offline).
	if c.expired(md.Signed.Expires) {
		return fmt.Errorf("timestamp version %d: %w (expired %s)", md.Signed.Version, ErrExpired, md.Signed.Expires.UTC().Format(time.RFC3339))
	}
	// The floor first, then the file it covers (5.4.5).
	nf := c.floors.clone()
	nf.timestamp, nf.tsSnapshot, nf.tsSigners = md.Signed.Version, md.Signed.Meta[snapshotFile].Version, signers
	if err := c.saveFloors(nf); err != nil {
		return err
	}
	if old == nil || md != old {
		if err := c.store.Put(timestampFile, data); err != nil { // 5.4.5
			return err
		}
	}
	c.ts, c.tsRaw = md, data
	return nil
}

// verifySnapshot returns the snapshot and the fingerprints of the keys
// whose signatures on it are valid (for the floor record).
func (c *Client) verifySnapshot(data []byte) (*Metadata[SnapshotType], []fingerprint, error) {
	if int64(len(data)) > c.lim.SnapshotSize {
		return nil, nil, fmt.Errorf("snapshot: %w", ErrTooLarge)
	}
	md, payload, err := parseMetadata[SnapshotType](data)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	rk := rootRole(c.root, RoleSnapshot)
	if err := verifySignatures("snapshot", rk, md.Signatures, payload); err != nil {
		return nil, nil, err
	}
	return md, signersOf(rk, md.Signatures, payload), nil
}

// snapshotFloors are the rollback floors a new snapshot must meet: the
// trusted snapshot's version and the version of every file it lists
// (5.5.5), from the stored snapshot and from the record.
type snapshotFloors struct {
	version int64
	meta    map[string]int64
}

// check implements 5.5.5 against the floors.
func (f snapshotFloors) check(md *Metadata[SnapshotType]) error {
	if md.Signed.Version < f.version {
		return fmt.Errorf("snapshot: %w: version %d < trusted %d", ErrRollback, md.Signed.Version, f.version)
	}
	for _, name := range slices.Sorted(maps.Keys(f.meta)) {
		n, ok := md.Signed.Meta[name]
		if !ok {
			return fmt.Errorf("snapshot: %w: %q removed from snapshot", ErrRollback, name)
		}
		if n.Version < f.meta[name] {
			return fmt.Errorf("snapshot: %w: %q version %d < trusted %d", ErrRollback, name, n.Version, f.meta[name])
		}
	}
	return nil
}

// updateSnapshot implements 5.5.
func (c *Client) updateSnapshot(ctx context.Context) error {
	pin := c.ts.Signed.Meta[snapshotFile]
	local, err := getOptional(c.store, snapshotFile)
	if err != nil {
		return err
	}
	var old *Metadata[SnapshotType]
	var oldSigners []fingerprint
	if local != nil {
		if md, signers, err := c.verifySnapshot(local); err == nil {
			old, oldSigners = md, signers // rollback reference; may be expired or outdated
		}
	}
	// The floors: the stored snapshot, and the record while the keys that
	// signed the snapshot it recorded still hold (5.3.11).
	floor := snapshotFloors{meta: map[string]int64{}}
	if old != nil {
		floor.version = old.Signed.Version
		for name, info := range old.Signed.Meta {
			floor.meta[name] = info.Version
		}
	}
	if f := c.floors; f.snapshot > 0 && signersHold(c.root, RoleSnapshot, f.snapSigners) {
		floor.version = max(floor.version, f.snapshot)
		for name, v := range f.meta {
			floor.meta[name] = max(floor.meta[name], v)
		}
	}
	if old != nil && old.Signed.Version == pin.Version && !c.expired(old.Signed.Expires) && floor.check(old) == nil {
		// Already have the pinned version; make sure the record covers it.
		if err := c.saveSnapshotFloors(old, oldSigners); err != nil {
			return err
		}
		c.snap, c.snapRaw = old, local
		return nil
	}
	var version int64
	if c.root.Signed.ConsistentSnapshot {
		version = pin.Version
	}
	data, err := c.src.FetchMetadata(ctx, RoleSnapshot, version, minLimit(c.lim.SnapshotSize, pin.Length))
	if err != nil {
		return fmt.Errorf("failed to fetch snapshot: %w", err)
	}
	if err := checkMetaFile("snapshot", pin, data); err != nil { // 5.5.2
		return err
	}
	md, signers, err := c.verifySnapshot(data) // 5.5.3
	if err != nil {
		return err
	}
	if md.Signed.Version != pin.Version { // 5.5.4
		return fmt.Errorf("snapshot: %w: version %d, timestamp pins %d", ErrMixAndMatch, md.Signed.Version, pin.Version)
	}
	if err := floor.check(md); err != nil { // 5.5.5
		return err
	}
	if c.expired(md.Signed.Expires) { // 5.5.6
		return fmt.Errorf("snapshot version %d: %w (expired %s)", md.Signed.Version, ErrExpired, md.Signed.Expires.UTC().Format(time.RFC3339))
	}
	// The floor first, then the file it covers (5.5.7).
	if err := c.saveSnapshotFloors(md, signers); err != nil {
		return err
	}
	if err := c.store.Put(snapshotFile, data); err != nil { // 5.5.7
		return err
	}
	c.snap, c.snapRaw = md, data
	return nil
}

// expired applies the timestamp and snapshot expiry: never expired for an
// offline copy (Config.Offline).
func (c *Client) expired(exp time.Time) bool { return !c.offline && expired(exp, c.refTime) }

// saveSnapshotFloors records md as the trusted snapshot: its version and
// the versions it lists, vouched for by signers.
func (c *Client) saveSnapshotFloors(md *Metadata[SnapshotType], signers []fingerprint) error {
	nf := c.floors.clone()
	nf.snapshot, nf.snapSigners = md.Signed.Version, signers
	nf.meta = make(map[string]int64, len(md.Signed.Meta))
	for name, info := range md.Signed.Meta {
		nf.meta[name] = info.Version
	}
	return c.saveFloors(nf)
}

// verifyTargetsRole checks targets or delegated targets bytes against the
// snapshot pin (5.6.2 length and hashes), the delegator's keys and threshold
// (5.6.3), the pinned version (5.6.4) and expiry (5.6.5).
func (c *Client) verifyTargetsRole(role string, data []byte, rk roleKeys, pin *MetaFiles) (*Metadata[TargetsType], error) {
	if int64(len(data)) > c.lim.TargetsSize {
		return nil, fmt.Errorf("role %q: %w", role, ErrTooLarge)
	}
	if err := checkMetaFile(fmt.Sprintf("role %q", role), pin, data); err != nil {
		return nil, err
	}
	md, payload, err := parseMetadata[TargetsType](data)
	if err != nil {
		return nil, fmt.Errorf("role %q: %w", role, err)
	}
	if err := verifySignatures(fmt.Sprintf("role %q", role), rk, md.Signatures, payload); err != nil {
		return nil, err
	}
	if md.Signed.Version != pin.Version {
		return nil, fmt.Errorf("role %q: %w: version %d, snapshot pins %d", role, ErrMixAndMatch, md.Signed.Version, pin.Version)
	}
	if expired(md.Signed.Expires, c.refTime) {
		return nil, fmt.Errorf("role %q version %d: %w (expired %s)", role, md.Signed.Version, ErrExpired, md.Signed.Expires.UTC().Format(time.RFC3339))
	}
	return md, nil
}

// loadTargetsRole returns the verified metadata of a targets role, from the
// store when the stored copy passes every check against the current snapshot
// and delegator, otherwise from the source (then persisted, 5.6.6).
func (c *Client) loadTargetsRole(ctx context.Context, role string, rk roleKeys, pin *MetaFiles) (*Metadata[TargetsType], []byte, error) {
	name := roleFileName(role)
	local, err := getOptional(c.store, name)
	if err != nil {
		return nil, nil, err
	}
	if local != nil {
		if md, err := c.verifyTargetsRole(role, local, rk, pin); err == nil {
			return md, local, nil
		}
	}
	var version int64
	if c.root.Signed.ConsistentSnapshot {
		version = pin.Version
	}
	data, err := c.src.FetchMetadata(ctx, role, version, minLimit(c.lim.TargetsSize, pin.Length))
	if err != nil {
		return nil, nil, fmt.Errorf("failed to fetch role %q: %w", role, err)
	}
	md, err := c.verifyTargetsRole(role, data, rk, pin)
	if err != nil {
		return nil, nil, err
	}
	if err := c.store.Put(name, data); err != nil {
		return nil, nil, err
	}
	return md, data, nil
}

// Trusted is a read-only snapshot of the verified metadata. Its values are
// copies: modifying them does not affect the client.
type Trusted struct {
	Root      *Metadata[RootType]
	Timestamp *Metadata[TimestampType] // nil before a successful timestamp update
	Snapshot  *Metadata[SnapshotType]
	Targets   *Metadata[TargetsType]
	delegated map[string][]byte
}

// Delegated returns the delegated role as last verified by a lookup since the
// last Refresh (for summaries such as versions and expiry), or nil.
func (t Trusted) Delegated(role string) *Metadata[TargetsType] {
	raw, ok := t.delegated[role]
	if !ok {
		return nil
	}
	md, _ := decodeMetadata[TargetsType](raw)
	return md
}

// DelegatedNames returns the names Delegated knows.
func (t Trusted) DelegatedNames() []string {
	names := make([]string, 0, len(t.delegated))
	for n := range t.delegated {
		names = append(names, n)
	}
	return names
}

// Trusted returns copies of the verified metadata.
func (c *Client) Trusted() Trusted {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := Trusted{delegated: map[string][]byte{}}
	t.Root, _ = decodeMetadata[RootType](c.rootRaw)
	if c.tsRaw != nil {
		t.Timestamp, _ = decodeMetadata[TimestampType](c.tsRaw)
	}
	if c.snapRaw != nil {
		t.Snapshot, _ = decodeMetadata[SnapshotType](c.snapRaw)
	}
	if c.targetRaw != nil {
		t.Targets, _ = decodeMetadata[TargetsType](c.targetRaw)
	}
	for k, v := range c.delegated {
		t.delegated[k] = v
	}
	return t
}
