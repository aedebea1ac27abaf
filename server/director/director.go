// Package director is the director repository of Uptane's two-repository
// design: for each device, TUF metadata signed with an online key whose
// targets.json lists the one release the device is assigned (zero or one
// target).
//
// # Threat model
//
// Keys: a director root key and an online key (targets, snapshot,
// timestamp), Ed25519, stored only sealed with the server's key-encryption
// key (a [Sealer]: auth.KEK), mode 0600, created with O_EXCL. The root is
// re-signed with the same keys RootRenewBefore its expiry; devices are
// provisioned with root version 1 and follow the chain. Rotating the keys
// themselves means provisioning a new root.
//
// The online key lives on the server, so a compromised server can sign any
// director metadata. That is why the director is not enough: a device
// installs a target only if the director assigns it AND the vendor's image
// repository (signed offline) lists the same path with the same length and
// hashes. The director copies length and hashes from the image repository's
// verified metadata ([Assignment].Target); it never computes or invents
// them. What a compromised director can do is withhold or delay an update
// (bounded by the expiries) and choose which signed release a device gets.
//
// Input: metadata file names from the network are parsed strictly
// ([ParseMetadataName]); the device is identified by its mTLS certificate
// by the caller, never by the request.
package director

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/tufsign"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/trust"
)

// Sealer seals the director's keys at rest (the server's KEK, auth.KEK).
type Sealer interface {
	Seal(purpose, recordID string, plaintext []byte) ([]byte, error)
	Open(purpose, recordID string, sealed []byte) ([]byte, error)
}

// The director repository (Uptane's director): per device, the server signs
// with an online key TUF metadata whose targets.json lists the one release
// the device is assigned (zero or one target). A device installs a target
// only if the director assigns it AND the vendor's image repository lists
// the same path with the same length and hashes, so the online key alone —
// a compromised server — cannot make a device install firmware the vendor
// never signed. The director copies length and hashes from the image
// repository's verified metadata; it never computes or invents them.
const (
	// Dir is the director's directory in the data directory.
	Dir = "director"
	// RootKeyFile and OnlineKeyFile hold the director's
	// root key and online key (targets, snapshot, timestamp), sealed with
	// the server's KEK, mode 0600.
	RootKeyFile   = "root.key"
	OnlineKeyFile = "online.key"
	// Path is where devices fetch their director metadata (mTLS).
	Path = deviceapi.PathDirector
	// CustomKey is the key of the director's object in the custom
	// field of an assigned target.
	CustomKey = "airlock_director"
	// DefaultTimestampExpiry and DefaultExpiry are the
	// lifetimes of a device's timestamp and of its snapshot and targets.
	DefaultTimestampExpiry = time.Hour
	DefaultExpiry          = 24 * time.Hour
	// MinExpiry and MaxExpiry bound both settings.
	MinExpiry = time.Minute
	MaxExpiry = 30 * 24 * time.Hour
	// RootExpiry is the lifetime of a director root version; the
	// server signs the next version (same keys) when less than
	// RootRenewBefore is left.
	RootExpiry      = 365 * 24 * time.Hour
	RootRenewBefore = 60 * 24 * time.Hour
	// MaxRootVersions bounds the root history the server loads.
	MaxRootVersions = 1000
	// MaxKeyFileSize bounds a sealed key file.
	MaxKeyFileSize = 16 << 10
)

const (
	directorRootPurpose   = "director-root-key"
	directorOnlinePurpose = "director-online-key"
)

// ErrExpiry: a configured metadata lifetime is outside MinExpiry..MaxExpiry.
var ErrExpiry = errors.New("director expiry")

// ErrKeys: the director's key files are missing, unreadable or do
// not open with the KEK.
var ErrKeys = errors.New("director keys")

// Director signs per-device director metadata.
type Director struct {
	dir     string
	rootKey crypto.Signer
	key     crypto.Signer // online: targets, snapshot, timestamp
	tsLife  time.Duration
	life    time.Duration
	shared  Shared // nil: the data directory alone (Open)

	mu       sync.Mutex
	roots    [][]byte  // root versions 1..N; appended to, never changed
	reloaded time.Time // the last reload of roots from shared
}

// Open loads the director in dir, creating its keys and root
// version 1 if absent, and signing the next root version when the newest
// is about to expire. A server with replicas opens it with OpenShared.
func Open(dir string, kek Sealer, now time.Time, tsLife, life time.Duration) (*Director, error) {
	d, err := newDirector(dir, tsLife, life)
	if err != nil {
		return nil, err
	}
	if d.rootKey, err = loadOrCreateSealedKey(filepath.Join(dir, RootKeyFile), kek, directorRootPurpose); err != nil {
		return nil, err
	}
	if d.key, err = loadOrCreateSealedKey(filepath.Join(dir, OnlineKeyFile), kek, directorOnlinePurpose); err != nil {
		return nil, err
	}
	if d.roots, err = readRootFiles(dir); err != nil {
		return nil, err
	}
	if len(d.roots) == 0 || d.rootExpires(len(d.roots)).Before(now.Add(RootRenewBefore)) {
		data, err := d.signRoot(len(d.roots)+1, now)
		if err != nil {
			return nil, err
		}
		if err := d.writeRoot(len(d.roots)+1, data); err != nil {
			return nil, err
		}
		d.roots = append(d.roots, data)
	}
	return d, nil
}

func newDirector(dir string, tsLife, life time.Duration) (*Director, error) {
	if tsLife == 0 {
		tsLife = DefaultTimestampExpiry
	}
	if life == 0 {
		life = DefaultExpiry
	}
	for _, l := range []time.Duration{tsLife, life} {
		if l < MinExpiry || l > MaxExpiry {
			return nil, fmt.Errorf("%w %v outside %v..%v", ErrExpiry, l, MinExpiry, MaxExpiry)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create the director directory: %w", err)
	}
	return &Director{dir: dir, tsLife: tsLife, life: life}, nil
}

// readRootFiles reads the root versions 1..N in dir.
func readRootFiles(dir string) ([][]byte, error) {
	var roots [][]byte
	for v := 1; v <= MaxRootVersions; v++ {
		data, err := durable.ReadFile(durable.OS, filepath.Join(dir, fmt.Sprintf("%d.root.json", v)), trust.MaxRootSize)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read director root version %d: %w", v, err)
		}
		roots = append(roots, data)
	}
	return roots, nil
}

// writeRoot writes root version v into the data directory.
func (d *Director) writeRoot(v int, data []byte) error {
	if err := durable.WriteFile(durable.OS, filepath.Join(d.dir, fmt.Sprintf("%d.root.json", v)), data, 0o644); err != nil {
		return fmt.Errorf("failed to write director root version %d: %w", v, err)
	}
	return nil
}

func (d *Director) rootExpires(v int) time.Time {
	md, err := metadata.Root().FromBytes(d.roots[v-1])
	if err != nil {
		return time.Time{}
	}
	return md.Signed.Expires
}

// signRoot returns root version v: the root key for root, the online key
// for targets, snapshot and timestamp, threshold 1, consistent snapshots.
// A new version is signed by the root key, which signed the previous one.
func (d *Director) signRoot(v int, now time.Time) ([]byte, error) {
	root := metadata.Root(now.Add(RootExpiry).UTC().Truncate(time.Second))
	root.Signed.Version = int64(v)
	root.Signed.ConsistentSnapshot = true
	rk, err := tufsign.Key(d.rootKey.Public())
	if err != nil {
		return nil, err
	}
	ok, err := tufsign.Key(d.key.Public())
	if err != nil {
		return nil, err
	}
	if err := root.Signed.AddKey(rk, metadata.ROOT); err != nil {
		return nil, err
	}
	for _, role := range []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(ok, role); err != nil {
			return nil, err
		}
	}
	if err := tufsign.Sign(root, d.rootKey); err != nil {
		return nil, err
	}
	return root.ToBytes(false)
}

// loadOrCreateSealedKey reads an Ed25519 key sealed with kek, or creates
// one (O_EXCL, 0600, fsynced) when the file does not exist.
func loadOrCreateSealedKey(path string, kek Sealer, purpose string) (crypto.Signer, error) {
	data, err := durable.ReadFile(durable.OS, path, MaxKeyFileSize)
	if err == nil {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%w: %s is accessible by other users (mode %v); chmod 600 it", ErrKeys, path, fi.Mode().Perm())
		}
		der, err := kek.Open(purpose, filepath.Base(path), data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrKeys, path, err)
		}
		k, err := keys.ParsePrivate(der, nil)
		clear(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrKeys, path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		return nil, err
	}
	pemKey, err := keys.MarshalPrivate(k, nil)
	if err != nil {
		return nil, err
	}
	sealed, err := kek.Seal(purpose, filepath.Base(path), pemKey)
	clear(pemKey)
	if err != nil {
		return nil, err
	}
	if err := durable.CreateFile(durable.OS, path, sealed, 0o600); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	return k, nil
}

// Assignment is what the director signs for one device.
type Assignment struct {
	DeviceID  string
	RolloutID string
	Forced    bool
	Target    *trust.TargetFiles // from the image repository's verified metadata
}

// Fingerprint identifies an assignment: a change re-signs the metadata.
func (a *Assignment) Fingerprint() string {
	if a == nil || a.Target == nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%t\x00%s\x00%d", a.DeviceID, a.RolloutID, a.Forced, a.Target.Path, a.Target.Length)
	algs := mapsKeys(a.Target.Hashes)
	slices.Sort(algs)
	for _, alg := range algs {
		fmt.Fprintf(h, "\x00%s=%x", alg, []byte(a.Target.Hashes[alg]))
	}
	return a.RolloutID + ":" + hex.EncodeToString(h.Sum(nil))[:32]
}

func mapsKeys(h trust.Hashes) []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// Custom is the custom field of an assigned target.
type Custom struct {
	Device  string `json:"device"`
	Rollout string `json:"rollout"`
	Forced  bool   `json:"forced"`
}

// SignTargets returns the device's targets.json of state st.
func (d *Director) SignTargets(st store.DirectorState, a *Assignment) ([]byte, error) {
	md := metadata.Targets(st.Expires)
	md.Signed.Version = st.Version
	if a != nil && a.Target != nil {
		custom, err := json.Marshal(map[string]Custom{CustomKey: {Device: a.DeviceID, Rollout: a.RolloutID, Forced: a.Forced}})
		if err != nil {
			return nil, err
		}
		raw := json.RawMessage(custom)
		hashes := metadata.Hashes{}
		for alg, v := range a.Target.Hashes {
			hashes[alg] = metadata.HexBytes(slices.Clone(v))
		}
		md.Signed.Targets[a.Target.Path] = &metadata.TargetFiles{Length: a.Target.Length, Hashes: hashes, Path: a.Target.Path, Custom: &raw}
	}
	if err := tufsign.Sign(md, d.key); err != nil {
		return nil, err
	}
	return md.ToBytes(false)
}

// SignSnapshot returns the device's snapshot.json of state st.
func (d *Director) SignSnapshot(st store.DirectorState) ([]byte, error) {
	md := metadata.Snapshot(st.Expires)
	md.Signed.Version = st.Version
	md.Signed.Meta["targets.json"] = metadata.MetaFile(st.Version)
	if err := tufsign.Sign(md, d.key); err != nil {
		return nil, err
	}
	return md.ToBytes(false)
}

// SignTimestamp returns the device's timestamp.json of state st.
func (d *Director) SignTimestamp(st store.DirectorState) ([]byte, error) {
	md := metadata.Timestamp(st.TimestampExpires)
	md.Signed.Version = st.Version
	md.Signed.Meta["snapshot.json"] = metadata.MetaFile(st.Version)
	if err := tufsign.Sign(md, d.key); err != nil {
		return nil, err
	}
	return md.ToBytes(false)
}

// ParseMetadataName parses "ROLE.json" and "N.ROLE.json" (N a positive
// decimal without leading zeros); version 0 means unversioned.
func ParseMetadataName(name string) (int64, string, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok || len(name) > 64 {
		return 0, "", false
	}
	num, role, versioned := strings.Cut(base, ".")
	if !versioned {
		return 0, base, true
	}
	if num == "" || num[0] == '0' || strings.Contains(role, ".") {
		return 0, "", false
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 {
		return 0, "", false
	}
	return v, role, true
}

// Roots returns how many root versions the director has signed.
func (d *Director) Roots() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return int64(len(d.roots))
}

// Root returns root version v (1..Roots()).
func (d *Director) Root(v int64) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v < 1 || v > int64(len(d.roots)) {
		return nil, false
	}
	return d.roots[v-1], true
}

// Fresh reports whether the stored state cur still serves assignment
// fingerprint fp at now: same assignment, and more than half of both
// lifetimes left. Otherwise the caller stores Next(cur, …).
func (d *Director) Fresh(cur store.DirectorState, fp string, now time.Time) bool {
	return cur.Version > 0 && cur.Assignment == fp &&
		cur.TimestampExpires.Sub(now) > d.tsLife/2 && cur.Expires.Sub(now) > d.life/2
}

// Next returns the state that follows cur for deviceID: the next version,
// assignment fingerprint fp, and new expiries from now.
func (d *Director) Next(cur store.DirectorState, deviceID, fp string, now time.Time) store.DirectorState {
	return store.DirectorState{DeviceID: deviceID, Version: cur.Version + 1, Assignment: fp,
		TimestampExpires: now.Add(d.tsLife).Truncate(time.Second), Expires: now.Add(d.life).Truncate(time.Second), UpdatedAt: now}
}
