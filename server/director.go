package server

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
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
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/trust"
)

// The director repository (Uptane's director): per device, the server signs
// with an online key TUF metadata whose targets.json lists the one release
// the device is assigned (zero or one target). A device installs a target
// only if the director assigns it AND the vendor's image repository lists
// the same path with the same length and hashes, so the online key alone —
// a compromised server — cannot make a device install firmware the vendor
// never signed. The director copies length and hashes from the image
// repository's verified metadata; it never computes or invents them.
const (
	// DirectorDir is the director's directory in the data directory.
	DirectorDir = "director"
	// DirectorRootKeyFile and DirectorOnlineKeyFile hold the director's
	// root key and online key (targets, snapshot, timestamp), sealed with
	// the server's KEK, mode 0600.
	DirectorRootKeyFile   = "root.key"
	DirectorOnlineKeyFile = "online.key"
	// DirectorPath is where devices fetch their director metadata (mTLS).
	DirectorPath = deviceapi.PathDirector
	// DirectorCustomKey is the key of the director's object in the custom
	// field of an assigned target.
	DirectorCustomKey = "airlock_director"
	// DefaultDirectorTimestampExpiry and DefaultDirectorExpiry are the
	// lifetimes of a device's timestamp and of its snapshot and targets.
	DefaultDirectorTimestampExpiry = time.Hour
	DefaultDirectorExpiry          = 24 * time.Hour
	// MinDirectorExpiry and MaxDirectorExpiry bound both settings.
	MinDirectorExpiry = time.Minute
	MaxDirectorExpiry = 30 * 24 * time.Hour
	// DirectorRootExpiry is the lifetime of a director root version; the
	// server signs the next version (same keys) when less than
	// DirectorRootRenewBefore is left.
	DirectorRootExpiry      = 365 * 24 * time.Hour
	DirectorRootRenewBefore = 60 * 24 * time.Hour
	// MaxDirectorRootVersions bounds the root history the server loads.
	MaxDirectorRootVersions = 1000
	// ImageRepoRecheck is how often the director re-verifies the image
	// repository even when its timestamp.json did not change (expiry).
	ImageRepoRecheck = time.Minute
	// MaxDirectorKeyFileSize bounds a sealed key file.
	MaxDirectorKeyFileSize = 16 << 10
)

const (
	directorRootPurpose   = "director-root-key"
	directorOnlinePurpose = "director-online-key"
)

// ErrDirectorKeys: the director's key files are missing, unreadable or do
// not open with the KEK.
var ErrDirectorKeys = errors.New("director keys")

// director signs per-device director metadata.
type director struct {
	dir     string
	rootKey crypto.Signer
	key     crypto.Signer // online: targets, snapshot, timestamp
	roots   [][]byte      // root versions 1..N
	tsLife  time.Duration
	life    time.Duration
}

// DirectorRoot returns version 1 of the director repository's root
// metadata of the server data directory dataDir (devices are provisioned
// with it), creating the director's keys and root on first use; kekFile is
// the KEK file (empty: dataDir/kek.key, created if missing).
func DirectorRoot(dataDir, kekFile string) ([]byte, error) {
	if kekFile == "" {
		kekFile = filepath.Join(dataDir, KEKFile)
	}
	kek, _, err := LoadOrCreateKEK(kekFile)
	if err != nil {
		return nil, err
	}
	d, err := openDirector(filepath.Join(dataDir, DirectorDir), kek, time.Now(), 0, 0)
	if err != nil {
		return nil, err
	}
	return d.roots[0], nil
}

// openDirector loads the director in dir, creating its keys and root
// version 1 if absent, and signing the next root version when the newest
// is about to expire.
func openDirector(dir string, kek *KEK, now time.Time, tsLife, life time.Duration) (*director, error) {
	if tsLife == 0 {
		tsLife = DefaultDirectorTimestampExpiry
	}
	if life == 0 {
		life = DefaultDirectorExpiry
	}
	for _, l := range []time.Duration{tsLife, life} {
		if l < MinDirectorExpiry || l > MaxDirectorExpiry {
			return nil, fmt.Errorf("%w: director expiry %v outside %v..%v", ErrConfig, l, MinDirectorExpiry, MaxDirectorExpiry)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create the director directory: %w", err)
	}
	d := &director{dir: dir, tsLife: tsLife, life: life}
	var err error
	if d.rootKey, err = loadOrCreateSealedKey(filepath.Join(dir, DirectorRootKeyFile), kek, directorRootPurpose); err != nil {
		return nil, err
	}
	if d.key, err = loadOrCreateSealedKey(filepath.Join(dir, DirectorOnlineKeyFile), kek, directorOnlinePurpose); err != nil {
		return nil, err
	}
	for v := 1; v <= MaxDirectorRootVersions; v++ {
		data, err := durable.ReadFile(durable.OS, filepath.Join(dir, fmt.Sprintf("%d.root.json", v)), trust.MaxRootSize)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read director root version %d: %w", v, err)
		}
		d.roots = append(d.roots, data)
	}
	if len(d.roots) == 0 || d.rootExpires(len(d.roots)).Before(now.Add(DirectorRootRenewBefore)) {
		if err := d.signRoot(len(d.roots)+1, now); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *director) rootExpires(v int) time.Time {
	md, err := metadata.Root().FromBytes(d.roots[v-1])
	if err != nil {
		return time.Time{}
	}
	return md.Signed.Expires
}

// signRoot writes root version v: the root key for root, the online key
// for targets, snapshot and timestamp, threshold 1, consistent snapshots.
// A new version is signed by the root key, which signed the previous one.
func (d *director) signRoot(v int, now time.Time) error {
	root := metadata.Root(now.Add(DirectorRootExpiry).UTC().Truncate(time.Second))
	root.Signed.Version = int64(v)
	root.Signed.ConsistentSnapshot = true
	rk, err := keys.TUFKey(d.rootKey.Public())
	if err != nil {
		return err
	}
	ok, err := keys.TUFKey(d.key.Public())
	if err != nil {
		return err
	}
	if err := root.Signed.AddKey(rk, metadata.ROOT); err != nil {
		return err
	}
	for _, role := range []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(ok, role); err != nil {
			return err
		}
	}
	if err := keys.Sign(root, d.rootKey); err != nil {
		return err
	}
	data, err := root.ToBytes(false)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(durable.OS, filepath.Join(d.dir, fmt.Sprintf("%d.root.json", v)), data, 0o644); err != nil {
		return fmt.Errorf("failed to write director root version %d: %w", v, err)
	}
	d.roots = append(d.roots, data)
	return nil
}

// loadOrCreateSealedKey reads an Ed25519 key sealed with kek, or creates
// one (O_EXCL, 0600, fsynced) when the file does not exist.
func loadOrCreateSealedKey(path string, kek *KEK, purpose string) (crypto.Signer, error) {
	data, err := durable.ReadFile(durable.OS, path, MaxDirectorKeyFileSize)
	if err == nil {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%w: %s is accessible by other users (mode %v); chmod 600 it", ErrDirectorKeys, path, fi.Mode().Perm())
		}
		der, err := kek.Open(purpose, filepath.Base(path), data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrDirectorKeys, path, err)
		}
		k, err := keys.ParsePrivate(der, nil)
		clear(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrDirectorKeys, path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrDirectorKeys, err)
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
		return nil, fmt.Errorf("%w: %w", ErrDirectorKeys, err)
	}
	return k, nil
}

// assignment is what the director signs for one device.
type assignment struct {
	DeviceID  string
	RolloutID string
	Forced    bool
	Target    *trust.TargetFiles // from the image repository's verified metadata
}

// fingerprint identifies an assignment: a change re-signs the metadata.
func (a *assignment) fingerprint() string {
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

// directorCustom is the custom field of an assigned target.
type directorCustom struct {
	Device  string `json:"device"`
	Rollout string `json:"rollout"`
	Forced  bool   `json:"forced"`
}

// signTargets returns the device's targets.json of state st.
func (d *director) signTargets(st store.DirectorState, a *assignment) ([]byte, error) {
	md := metadata.Targets(st.Expires)
	md.Signed.Version = st.Version
	if a != nil && a.Target != nil {
		custom, err := json.Marshal(map[string]directorCustom{DirectorCustomKey: {Device: a.DeviceID, Rollout: a.RolloutID, Forced: a.Forced}})
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
	if err := keys.Sign(md, d.key); err != nil {
		return nil, err
	}
	return md.ToBytes(false)
}

func (d *director) signSnapshot(st store.DirectorState) ([]byte, error) {
	md := metadata.Snapshot(st.Expires)
	md.Signed.Version = st.Version
	md.Signed.Meta["targets.json"] = metadata.MetaFile(st.Version)
	if err := keys.Sign(md, d.key); err != nil {
		return nil, err
	}
	return md.ToBytes(false)
}

func (d *director) signTimestamp(st store.DirectorState) ([]byte, error) {
	md := metadata.Timestamp(st.TimestampExpires)
	md.Signed.Version = st.Version
	md.Signed.Meta["snapshot.json"] = metadata.MetaFile(st.Version)
	if err := keys.Sign(md, d.key); err != nil {
		return nil, err
	}
	return md.ToBytes(false)
}

// imageRepo looks targets up in the served image repository through the
// device-side TUF client (signatures, delegations, expiry all verified),
// trusting REPO/public/metadata/1.root.json. Results are cached until
// timestamp.json changes or ImageRepoRecheck passes.
type imageRepo struct {
	s       *Server
	mu      sync.Mutex
	client  *trust.Client
	stamp   string // size and mtime of timestamp.json at the last refresh
	checked time.Time
	err     error
	cache   map[string]*trust.TargetFiles
}

// metaRootSource is a trust.Source over the served metadata directory.
type metaRootSource struct{ s *Server }

func (m metaRootSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	name := role + ".json"
	if version > 0 {
		name = strconv.FormatInt(version, 10) + "." + name
	}
	if strings.ContainsAny(role, "/\\") || strings.HasPrefix(role, ".") {
		return nil, fmt.Errorf("%w: role %q", trust.ErrNotFound, role)
	}
	f, err := m.s.metaRoot.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, trust.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLength {
		return nil, fmt.Errorf("%s: %w", name, trust.ErrTooLarge)
	}
	return data, nil
}

func (m metaRootSource) OpenTarget(ctx context.Context, targetPath, hashPrefix string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("%w: the director never reads payloads", trust.ErrNotFound)
}

// lookup returns the image repository's verified target at path.
func (ir *imageRepo) lookup(ctx context.Context, path string) (*trust.TargetFiles, error) {
	ir.mu.Lock()
	defer ir.mu.Unlock()
	now := ir.s.now()
	stamp := ""
	if fi, err := ir.s.metaRoot.Stat("timestamp.json"); err == nil {
		stamp = fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	}
	if ir.client == nil || stamp != ir.stamp || now.Sub(ir.checked) >= ImageRepoRecheck || now.Before(ir.checked) {
		ir.cache, ir.client, ir.err = map[string]*trust.TargetFiles{}, nil, nil
		ir.stamp, ir.checked = stamp, now
		ir.client, ir.err = ir.refresh(ctx, now)
	}
	if ir.err != nil {
		return nil, ir.err
	}
	if tf, ok := ir.cache[path]; ok {
		return tf, nil
	}
	tf, err := ir.client.Target(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("image repository: %w", err)
	}
	ir.cache[path] = tf
	return tf, nil
}

func (ir *imageRepo) refresh(ctx context.Context, now time.Time) (*trust.Client, error) {
	src := metaRootSource{ir.s}
	root, err := src.FetchMetadata(ctx, metadata.ROOT, 1, trust.MaxRootSize)
	if err != nil {
		return nil, fmt.Errorf("image repository root: %w", err)
	}
	st := trust.NewMemStore()
	if err := st.Put("root.json", root); err != nil {
		return nil, err
	}
	c, err := trust.New(st, src, trust.Config{Now: func() time.Time { return now }})
	if err != nil {
		return nil, fmt.Errorf("image repository: %w", err)
	}
	if err := c.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("image repository: %w", err)
	}
	return c, nil
}

// deviceAssignment returns what the director assigns to device dev: its
// current assignment (if its rollout is not cancelled), with the target's
// length and hashes from the image repository; nil if none.
func (s *Server) deviceAssignment(ctx context.Context, dev store.Device) (*assignment, error) {
	_, ro, err := s.db.DeviceAssignment(ctx, dev.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if ro.Product != dev.Product {
		return nil, nil
	}
	tf, err := s.images.lookup(ctx, ro.TargetPath)
	if err != nil {
		// The image repository does not authorize it (any more): assign
		// nothing rather than anything unverified.
		s.log.Warn("director: the assigned target does not verify in the image repository; assigning nothing",
			"device_id", dev.ID, "rollout", ro.ID, "target", ro.TargetPath, "err", err)
		return nil, nil
	}
	return &assignment{DeviceID: dev.ID, RolloutID: ro.ID, Forced: ro.Forced, Target: tf}, nil
}

// directorState returns the device's current director state, signing a
// new version when the assignment changed or the metadata is (about to
// be) stale: less than half its lifetime left.
func (s *Server) directorState(ctx context.Context, dev store.Device) (store.DirectorState, *assignment, error) {
	a, err := s.deviceAssignment(ctx, dev)
	if err != nil {
		return store.DirectorState{}, nil, err
	}
	fp := a.fingerprint()
	d := s.director
	for range 3 {
		cur, err := s.db.GetDirectorState(ctx, dev.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.DirectorState{}, nil, err
		}
		now := s.now().UTC()
		fresh := cur.Version > 0 && cur.Assignment == fp &&
			cur.TimestampExpires.Sub(now) > d.tsLife/2 && cur.Expires.Sub(now) > d.life/2
		if fresh {
			return cur, a, nil
		}
		next := store.DirectorState{DeviceID: dev.ID, Version: cur.Version + 1, Assignment: fp,
			TimestampExpires: now.Add(d.tsLife).Truncate(time.Second), Expires: now.Add(d.life).Truncate(time.Second), UpdatedAt: now}
		err = s.db.PutDirectorState(ctx, next, cur.Version)
		if errors.Is(err, store.ErrConflict) {
			continue // a concurrent request of the same device won; re-read
		}
		if err != nil {
			return store.DirectorState{}, nil, err
		}
		return next, a, nil
	}
	return store.DirectorState{}, nil, fmt.Errorf("%w: director state of %s keeps changing", store.ErrConflict, dev.ID)
}

// handleDirector serves the calling device's director metadata.
func (s *Server) handleDirector(w http.ResponseWriter, r *http.Request, dev store.Device) {
	name := r.PathValue("file")
	version, role, ok := parseMetadataName(name)
	if !ok {
		writeError(w, r, errStatus(http.StatusNotFound, "no such director metadata file"))
		return
	}
	var data []byte
	var err error
	switch role {
	case metadata.ROOT:
		if version == 0 {
			version = int64(len(s.director.roots))
		}
		if version < 1 || version > int64(len(s.director.roots)) {
			writeError(w, r, errStatus(http.StatusNotFound, "no director root version %d", version))
			return
		}
		data = s.director.roots[version-1]
	case metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS:
		if role == metadata.TIMESTAMP && version != 0 {
			writeError(w, r, errStatus(http.StatusNotFound, "timestamp.json is not versioned"))
			return
		}
		st, a, err2 := s.directorState(r.Context(), dev)
		if err2 != nil {
			writeError(w, r, err2)
			return
		}
		if version != 0 && version != st.Version {
			writeError(w, r, errStatus(http.StatusNotFound, "%s version %d is not current (%d); refresh from timestamp.json", role, version, st.Version))
			return
		}
		switch role {
		case metadata.TIMESTAMP:
			data, err = s.director.signTimestamp(st)
		case metadata.SNAPSHOT:
			data, err = s.director.signSnapshot(st)
		default:
			data, err = s.director.signTargets(st, a)
		}
	default:
		writeError(w, r, errStatus(http.StatusNotFound, "no such director role"))
		return
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data)
}

// parseMetadataName parses "ROLE.json" and "N.ROLE.json" (N a positive
// decimal without leading zeros); version 0 means unversioned.
func parseMetadataName(name string) (int64, string, bool) {
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

// initRollouts opens the director (creating its keys and root on first
// start) and loads the rollout engine.
func (s *Server) initRollouts() error {
	if s.cfg.RolloutTick == 0 {
		s.cfg.RolloutTick = DefaultRolloutTick
	}
	if s.cfg.RolloutTick < MinRolloutTick || s.cfg.RolloutTick > MaxRolloutTick {
		return fmt.Errorf("%w: rollout tick %v outside %v..%v", ErrConfig, s.cfg.RolloutTick, MinRolloutTick, MaxRolloutTick)
	}
	d, err := openDirector(filepath.Join(s.cfg.DataDir, DirectorDir), s.kek, s.now(), s.cfg.DirectorTimestampExpiry, s.cfg.DirectorExpiry)
	if err != nil {
		return err
	}
	s.director = d
	s.images = &imageRepo{s: s}
	s.rollouts = newRolloutEngine(s)
	ctx, cancel := context.WithTimeout(context.Background(), StoreTimeout)
	defer cancel()
	return s.rollouts.load(ctx)
}
