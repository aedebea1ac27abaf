package repo

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/tufsign"
	"github.com/airlockfw/airlock/release"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Directory names inside a repository.
const (
	PublicDir   = "public"
	StagingDir  = "staging"
	MetadataDir = "metadata" // under public/
	TargetsDir  = "targets"  // under public/ and staging/
)

// Repo is an open repository directory. A Repo is not safe for concurrent
// use, but several Repos (in one or several processes) may work on one
// directory: every mutating operation holds the repository lock (LockFile).
type Repo struct {
	dir string
	cfg Config
	// Now returns the current time; it defaults to time.Now and tests
	// replace it.
	Now  func() time.Time
	opts Options
}

// InitOptions configures a new repository.
type InitOptions struct {
	// RootKeys are the n root keys. RootThreshold (k, default 1) of them
	// must sign every root version.
	RootKeys      []crypto.PublicKey
	RootThreshold int
	// RootSigners sign root version 1: at least RootThreshold of them, each
	// the private half of one of RootKeys. Root keys given only as public
	// keys count toward n but cannot sign.
	RootSigners []crypto.Signer
	// Targets, Snapshot and Timestamp sign version 1 of their role; their
	// public keys become the role's single key (threshold 1).
	Targets, Snapshot, Timestamp crypto.Signer
	// Expires sets expiry durations; zero fields take the defaults.
	Expires Expiry
	// OnlineSnapshotKey and OnlineTimestampKey are recorded in the
	// configuration as the default keys of Publish/Timestamp in the CLI.
	// They must lie outside dir.
	OnlineSnapshotKey, OnlineTimestampKey string
	// AuditKey is the path of the audit log's checkpoint signing key
	// (outside dir); "" means no audit log. See AuditDir.
	AuditKey string
	// Environment is dev (default), staging or prod. It is recorded in the
	// signed root metadata and in every release; devices provisioned with a
	// root of one environment refuse metadata of any other.
	Environment string
	// Log, if not nil, enables the transparency log: its policy goes into
	// root version 1 and every release Publish makes installable is logged.
	Log *LogOptions
	// Options configures the returned Repo; its Keyring also checks and
	// registers every key of the new repository for Environment.
	Options
}

// RootEnvironmentField is the field of the signed root metadata that names
// the repository's trust environment.
const RootEnvironmentField = release.RootEnvironmentField

// AuditDirName is the repository's audit log directory (never served).
const AuditDirName = "audit"

// AuditDir returns the directory of the repository's audit log, or "" when
// the repository keeps none.
func (r *Repo) AuditDir() string {
	if r.cfg.AuditKey == "" {
		return ""
	}
	return r.path(AuditDirName)
}

// Environment returns the repository's trust environment.
func (r *Repo) Environment() string {
	if r.cfg.Environment == "" {
		return keys.EnvDev
	}
	return r.cfg.Environment
}

// Init creates a repository in dir (which must not exist or be empty) with
// root, targets, snapshot and timestamp metadata version 1, all signed, and
// consistent snapshots on.
func Init(dir string, opts InitOptions) (*Repo, error) {
	if err := checkEmptyDir(dir); err != nil {
		return nil, err
	}
	for _, p := range []string{opts.OnlineSnapshotKey, opts.OnlineTimestampKey, opts.AuditKey} {
		if err := CheckKeyPath(dir, p); err != nil {
			return nil, err
		}
	}
	if len(opts.RootKeys) == 0 {
		return nil, fmt.Errorf("%w: no root keys", ErrInvalidOptions)
	}
	if opts.RootThreshold == 0 {
		opts.RootThreshold = 1
	}
	if opts.RootThreshold < 0 || opts.RootThreshold > len(opts.RootKeys) {
		return nil, fmt.Errorf("%w: root threshold %d with %d root keys", ErrInvalidOptions, opts.RootThreshold, len(opts.RootKeys))
	}
	if opts.Targets == nil || opts.Snapshot == nil || opts.Timestamp == nil {
		return nil, fmt.Errorf("%w: targets, snapshot and timestamp signers are required", ErrInvalidOptions)
	}
	if opts.Environment == "" {
		opts.Environment = keys.EnvDev
	}
	if err := keys.CheckEnvironment(opts.Environment); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	// Every key of the repository, by role, for the environment rule and
	// the audit log.
	roleKeyList := map[string][]crypto.PublicKey{metadata.ROOT: opts.RootKeys, metadata.TARGETS: {opts.Targets.Public()},
		metadata.SNAPSHOT: {opts.Snapshot.Public()}, metadata.TIMESTAMP: {opts.Timestamp.Public()}}
	var allKeys []crypto.PublicKey
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		allKeys = append(allKeys, roleKeyList[role]...)
	}
	if kr := opts.Keyring; kr != nil {
		if err := kr.CheckKeys(opts.Environment, allKeys...); err != nil {
			return nil, err
		}
	}
	auditKey, err := ensureAuditKey(opts.AuditKey)
	if err != nil {
		return nil, err
	}
	opts.AuditKey = auditKey
	r := &Repo{dir: dir, cfg: Config{Schema: ConfigSchema, Expires: opts.Expires.withDefaults(), Environment: opts.Environment, AuditKey: opts.AuditKey,
		OnlineSnapshotKey: opts.OnlineSnapshotKey, OnlineTimestampKey: opts.OnlineTimestampKey}, Now: time.Now, opts: opts.Options}
	now := r.now()

	root := metadata.Root(now.Add(time.Duration(r.cfg.Expires.Root)))
	root.Signed.ConsistentSnapshot = true
	// The environment is part of the signed root, so every device knows
	// which trust environment its root belongs to (TUF keeps unrecognized
	// fields; rotations copy the root and keep it).
	root.Signed.UnrecognizedFields = map[string]any{RootEnvironmentField: opts.Environment}
	rootIDs := map[string]bool{}
	for _, pub := range opts.RootKeys {
		k, err := tufsign.Key(pub)
		if err != nil {
			return nil, err
		}
		if err := root.Signed.AddKey(k, metadata.ROOT); err != nil {
			return nil, err
		}
		id, _ := k.ID()
		if rootIDs[id] {
			return nil, fmt.Errorf("%w: root key %s given twice", ErrInvalidOptions, id)
		}
		rootIDs[id] = true
	}
	root.Signed.Roles[metadata.ROOT].Threshold = opts.RootThreshold
	online := map[string]string{}
	for _, rs := range []struct {
		role string
		s    crypto.Signer
	}{{metadata.TARGETS, opts.Targets}, {metadata.SNAPSHOT, opts.Snapshot}, {metadata.TIMESTAMP, opts.Timestamp}} {
		k, err := tufsign.Key(rs.s.Public())
		if err != nil {
			return nil, err
		}
		id, _ := k.ID()
		if rootIDs[id] {
			return nil, fmt.Errorf("%w: the %s key is also a root key; use separate keys per role", ErrInvalidOptions, rs.role)
		}
		if rs.role != metadata.TARGETS {
			if other, ok := online[id]; ok {
				return nil, fmt.Errorf("%w: the %s key is also the %s key", ErrInvalidOptions, rs.role, other)
			}
		}
		online[id] = rs.role
		if err := root.Signed.AddKey(k, rs.role); err != nil {
			return nil, err
		}
	}
	if opts.Log != nil {
		p, err := r.policyFor(*opts.Log, nil, root)
		if err != nil {
			return nil, err
		}
		if err := setRootPolicy(root, &p); err != nil {
			return nil, err
		}
		if err := r.applyLogConfig(*opts.Log, p); err != nil {
			return nil, err
		}
	}
	if err := signWith(root, opts.RootSigners, rootKeysOf(root), metadata.ROOT); err != nil {
		return nil, err
	}
	if err := needThreshold(root, rootKeysOf(root), metadata.ROOT, "root version 1"); err != nil {
		return nil, err
	}

	targets := metadata.Targets(now.Add(time.Duration(r.cfg.Expires.Targets)))
	if err := tufsign.Sign(targets, opts.Targets); err != nil {
		return nil, err
	}
	targetsData, err := targets.ToBytes(true)
	if err != nil {
		return nil, err
	}
	snapshot := metadata.Snapshot(now.Add(time.Duration(r.cfg.Expires.Snapshot)))
	if err := tufsign.Sign(snapshot, opts.Snapshot); err != nil {
		return nil, err
	}
	snapData, err := snapshot.ToBytes(true)
	if err != nil {
		return nil, err
	}
	ts := metadata.Timestamp(now.Add(time.Duration(r.cfg.Expires.Timestamp)))
	ts.Signed.Meta["snapshot.json"] = metaFileFor(1, snapData)
	if err := tufsign.Sign(ts, opts.Timestamp); err != nil {
		return nil, err
	}
	rootData, err := root.ToBytes(true)
	if err != nil {
		return nil, err
	}
	tsData, err := ts.ToBytes(true)
	if err != nil {
		return nil, err
	}

	unlock, err := r.lock("init")
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another Init may have won the race for the empty directory.
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
		return nil, fmt.Errorf("%w: %s is not empty", ErrExists, dir)
	}
	for _, d := range []string{r.path(PublicDir, MetadataDir), r.path(PublicDir, TargetsDir), r.path(StagingDir, TargetsDir)} {
		if err := os.MkdirAll(d, DirMode); err != nil {
			return nil, fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"1.root.json", rootData}, {"root.json", rootData}, {"1.targets.json", targetsData},
		{"1.snapshot.json", snapData}, {"timestamp.json", tsData},
	} {
		if err := writeFile(r.metaPath(f.name), f.data); err != nil {
			return nil, err
		}
	}
	if err := r.saveConfig(); err != nil {
		return nil, err
	}
	if kr := opts.Keyring; kr != nil {
		if err := kr.RegisterKeys(opts.Environment, "repository "+dir, allKeys...); err != nil {
			return nil, err
		}
	}
	var entries []audit.Entry
	for _, role := range []string{metadata.ROOT, metadata.SNAPSHOT, metadata.TARGETS, metadata.TIMESTAMP} {
		ids := map[string]bool{}
		for _, pub := range roleKeyList[role] {
			id, _ := keys.KeyID(pub)
			ids[id] = true
		}
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			entries = append(entries, audit.Entry{Action: audit.KeyGenerated, Details: map[string]string{"role": role, "key_id": id, "environment": opts.Environment, "event": "repository created"}})
		}
	}
	if err := r.record(entries...); err != nil {
		return nil, err
	}
	return r, nil
}

func checkEmptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(dir, DirMode)
	}
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", dir, err)
	}
	if len(ents) != 0 {
		return fmt.Errorf("%w: %s is not empty", ErrExists, dir)
	}
	return nil
}

// Open opens an existing repository directory.
func Open(dir string) (*Repo, error) {
	data, err := readLimited(filepath.Join(dir, ConfigFile), MaxConfigSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s", ErrNotRepo, dir, ConfigFile)
	}
	if err != nil {
		return nil, err
	}
	cfg, err := parseConfig(data)
	if err != nil {
		return nil, err
	}
	cfg.Expires = cfg.Expires.withDefaults()
	return &Repo{dir: dir, cfg: cfg, Now: time.Now}, nil
}

// Dir returns the repository directory.
func (r *Repo) Dir() string { return r.dir }

// Config returns the repository configuration.
func (r *Repo) Config() Config { return r.cfg }

// PublicDir returns the directory to serve as-is over HTTP.
func (r *Repo) PublicDir() string { return r.path(PublicDir) }

func (r *Repo) saveConfig() error {
	data, err := json.MarshalIndent(r.cfg, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(r.path(ConfigFile), append(data, '\n'))
}

func (r *Repo) now() time.Time {
	if r.Now == nil {
		return time.Now().UTC().Truncate(time.Second)
	}
	return r.Now().UTC().Truncate(time.Second)
}

func (r *Repo) path(elem ...string) string {
	return filepath.Join(append([]string{r.dir}, elem...)...)
}

func (r *Repo) metaPath(name string) string { return r.path(PublicDir, MetadataDir, name) }

func (r *Repo) stagedPath(role string) string { return r.path(StagingDir, role+".json") }

// latestVersion returns the highest N of public/metadata/N.<role>.json, or 0.
func (r *Repo) latestVersion(role string) (int64, error) {
	ents, err := os.ReadDir(r.path(PublicDir, MetadataDir))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotRepo, err)
	}
	var max int64
	suffix := "." + role + ".json"
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v < 1 || strconv.FormatInt(v, 10) != n {
			continue
		}
		max = max0(max, v)
	}
	return max, nil
}

func max0(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func loadMD[T metadata.Roles](path string, max int64) (*metadata.Metadata[T], []byte, error) {
	data, err := readLimited(path, max)
	if err != nil {
		return nil, nil, err
	}
	md, err := parseMD[T](data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return md, data, nil
}

func parseMD[T metadata.Roles](data []byte) (*metadata.Metadata[T], error) {
	var zero metadata.Metadata[T]
	md, err := zero.FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
	}
	return md, nil
}

// PublishedRoot returns the newest published root metadata.
func (r *Repo) PublishedRoot() (*metadata.Metadata[metadata.RootType], error) {
	v, err := r.latestVersion(metadata.ROOT)
	if err != nil {
		return nil, err
	}
	if v == 0 {
		return nil, fmt.Errorf("%w: no root metadata", ErrNotRepo)
	}
	md, _, err := loadMD[metadata.RootType](r.metaPath(fmt.Sprintf("%d.root.json", v)), MaxRootSize)
	return md, err
}

// PublishedTargets returns the newest published top-level targets metadata.
func (r *Repo) PublishedTargets() (*metadata.Metadata[metadata.TargetsType], error) {
	md, _, err := r.publishedTargetsRole(metadata.TARGETS)
	if err == nil && md == nil {
		return nil, fmt.Errorf("%w: no targets metadata", ErrNotRepo)
	}
	return md, err
}

// PublishedRole returns the newest published metadata of a delegated role,
// or nil (and no error) if it was never published.
func (r *Repo) PublishedRole(role string) (*metadata.Metadata[metadata.TargetsType], error) {
	md, _, err := r.publishedTargetsRole(role)
	return md, err
}

func (r *Repo) publishedTargetsRole(role string) (*metadata.Metadata[metadata.TargetsType], int64, error) {
	v, err := r.latestVersion(role)
	if err != nil || v == 0 {
		return nil, 0, err
	}
	md, _, err := loadMD[metadata.TargetsType](r.metaPath(fmt.Sprintf("%d.%s.json", v, role)), MaxMetadataSize)
	return md, v, err
}

// PublishedSnapshot returns the newest published snapshot metadata.
func (r *Repo) PublishedSnapshot() (*metadata.Metadata[metadata.SnapshotType], error) {
	v, err := r.latestVersion(metadata.SNAPSHOT)
	if err != nil {
		return nil, err
	}
	md, _, err := loadMD[metadata.SnapshotType](r.metaPath(fmt.Sprintf("%d.snapshot.json", v)), MaxMetadataSize)
	return md, err
}

// PublishedTimestamp returns the published timestamp metadata.
func (r *Repo) PublishedTimestamp() (*metadata.Metadata[metadata.TimestampType], error) {
	md, _, err := loadMD[metadata.TimestampType](r.metaPath("timestamp.json"), MaxMetadataSize)
	return md, err
}

// stagedRoot returns the staged root, or nil.
func (r *Repo) stagedRoot() (*metadata.Metadata[metadata.RootType], error) {
	md, _, err := loadMD[metadata.RootType](r.stagedPath(metadata.ROOT), MaxRootSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return md, err
}

// stagedTargetsRole returns the staged targets or delegated role, or nil.
func (r *Repo) stagedTargetsRole(role string) (*metadata.Metadata[metadata.TargetsType], error) {
	md, _, err := loadMD[metadata.TargetsType](r.stagedPath(role), MaxMetadataSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return md, err
}

// currentRoot is the staged root if there is one, else the published one.
func (r *Repo) currentRoot() (*metadata.Metadata[metadata.RootType], error) {
	if md, err := r.stagedRoot(); md != nil || err != nil {
		return md, err
	}
	return r.PublishedRoot()
}

// currentTargets is the staged targets if there is one, else the published one.
func (r *Repo) currentTargets() (*metadata.Metadata[metadata.TargetsType], error) {
	if md, err := r.stagedTargetsRole(metadata.TARGETS); md != nil || err != nil {
		return md, err
	}
	return r.PublishedTargets()
}

// currentRole is the staged role if there is one, else the published one,
// else nil. staged reports which.
func (r *Repo) currentRole(role string) (md *metadata.Metadata[metadata.TargetsType], staged bool, err error) {
	if md, err := r.stagedTargetsRole(role); md != nil || err != nil {
		return md, true, err
	}
	md, err = r.PublishedRole(role)
	return md, false, err
}

// nextTargetsVersion returns the metadata to edit for the next version of a
// targets-type role: the staged one (edited in place, signatures cleared),
// or a copy of the published one with version+1, or a new version 1.
func (r *Repo) nextTargetsVersion(role string, expiry Duration) (*metadata.Metadata[metadata.TargetsType], error) {
	md, staged, err := r.currentRole(role)
	if err != nil {
		return nil, err
	}
	if md == nil {
		md = metadata.Targets()
	} else if !staged {
		md.Signed.Version++
	}
	md.Signed.Expires = r.now().Add(time.Duration(expiry))
	md.ClearSignatures()
	return md, nil
}

func writeStaged[T metadata.Roles](r *Repo, role string, md *metadata.Metadata[T]) error {
	data, err := md.ToBytes(true)
	if err != nil {
		return fmt.Errorf("failed to encode %s metadata: %w", role, err)
	}
	return writeFile(r.stagedPath(role), data)
}

func rootKeysOf(root *metadata.Metadata[metadata.RootType]) roleKeys {
	rk, _ := rootRoleKeys(root, metadata.ROOT)
	return rk
}

// signWith signs md with every signer after checking each is a key of rk.
func signWith[T metadata.Roles](md *metadata.Metadata[T], signers []crypto.Signer, rk roleKeys, role string) error {
	for _, s := range signers {
		if _, err := rk.authorize(s, role); err != nil {
			return err
		}
		if err := tufsign.Sign(md, s); err != nil {
			return err
		}
	}
	return nil
}

// needThreshold returns a *ThresholdError if md lacks signatures.
func needThreshold[T metadata.Roles](md *metadata.Metadata[T], rk roleKeys, role, what string) error {
	have, err := countValid(md, rk)
	if err != nil {
		return err
	}
	if have < rk.threshold {
		return &ThresholdError{Role: role, What: what, Have: have, Need: rk.threshold}
	}
	return nil
}
