package repo

import (
	"errors"
	"fmt"
	"github.com/airlockfw/airlock/internal/strictjson"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/provenance"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ConfigFile is the name of the configuration file in a repository directory.
const ConfigFile = "airlock-repo.json"

// ConfigSchema is the only configuration schema version this package reads.
const ConfigSchema = 1

// Size limits of the files this package reads back.
const (
	// MaxConfigSize bounds airlock-repo.json.
	MaxConfigSize = 64 << 10
	// MaxMetadataSize bounds every metadata file read from the repository or
	// carried in from another machine. It equals go-tuf's default
	// TargetsMaxLength, so nothing published is larger than a client accepts.
	MaxMetadataSize = 5_000_000
	// MaxRootSize bounds root metadata (go-tuf's default RootMaxLength).
	MaxRootSize = 512_000
	// MaxDurationDays bounds an expiry duration given in days (10 years).
	MaxDurationDays = 3650
)

// Default expiry durations of the metadata each role signs.
const (
	DefaultRootExpiry      = 365 * 24 * time.Hour
	DefaultTargetsExpiry   = 180 * 24 * time.Hour
	DefaultSnapshotExpiry  = 7 * 24 * time.Hour
	DefaultTimestampExpiry = 24 * time.Hour
	DefaultProductExpiry   = 180 * 24 * time.Hour
)

// Duration is an expiry duration. Its text form is a whole number of days
// ("365d") or a Go duration ("36h", "90m").
type Duration time.Duration

// ParseDuration parses "Nd" (days) or a Go duration string; it must be
// positive and at most MaxDurationDays days.
func ParseDuration(s string) (Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 32)
		if err != nil || (len(n) > 1 && n[0] == '0') {
			return 0, fmt.Errorf("%w: duration %q: want a whole number of days such as 365d", ErrConfig, s)
		}
		if days > MaxDurationDays {
			return 0, fmt.Errorf("%w: duration %q is over the limit of %d days", ErrConfig, s, MaxDurationDays)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%w: duration %q: want 365d or a Go duration such as 36h", ErrConfig, s)
		}
		if d > MaxDurationDays*24*time.Hour {
			return 0, fmt.Errorf("%w: duration %q is over the limit of %d days", ErrConfig, s, MaxDurationDays)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%w: duration %q must be positive", ErrConfig, s)
	}
	return Duration(d), nil
}

// String returns "Nd" for whole days, otherwise a Go duration.
func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", td/(24*time.Hour))
	}
	return td.String()
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	p, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// Expiry holds how long each role's metadata is valid after it is signed.
// A zero field means the default (DefaultRootExpiry, ...).
type Expiry struct {
	Root      Duration `json:"root"`
	Targets   Duration `json:"targets"`
	Snapshot  Duration `json:"snapshot"`
	Timestamp Duration `json:"timestamp"`
	// Product applies to every delegated product role.
	Product Duration `json:"product"`
}

func (e Expiry) withDefaults() Expiry {
	for _, f := range []struct {
		p *Duration
		d time.Duration
	}{
		{&e.Root, DefaultRootExpiry}, {&e.Targets, DefaultTargetsExpiry}, {&e.Snapshot, DefaultSnapshotExpiry},
		{&e.Timestamp, DefaultTimestampExpiry}, {&e.Product, DefaultProductExpiry},
	} {
		if *f.p == 0 {
			*f.p = Duration(f.d)
		}
	}
	return e
}

// Config is the repository configuration stored in REPO/airlock-repo.json.
// It never holds key material, only paths to the online keys, which must be
// outside the repository directory.
type Config struct {
	Schema  int    `json:"schema"`
	Expires Expiry `json:"expires"`
	// Environment is the trust environment: dev, staging or prod.
	Environment string `json:"environment,omitempty"`
	// AuditKey is the path (outside the repository) of the Ed25519 key that
	// signs the checkpoints of the repository's audit log (REPO/audit/);
	// empty means the repository keeps no audit log.
	AuditKey string `json:"audit_key,omitempty"`
	// OnlineSnapshotKey and OnlineTimestampKey are paths (or pkcs11: URIs)
	// of the keys Publish and Timestamp use by default. Empty means the
	// operator passes the keys each time.
	OnlineSnapshotKey  string `json:"online_snapshot_key,omitempty"`
	OnlineTimestampKey string `json:"online_timestamp_key,omitempty"`
	// Provenance maps a product ID to its provenance publish policy
	// (repo/provenance.go; `airlock repo provenance-policy`).
	Provenance map[string]provenance.Policy `json:"provenance,omitempty"`
	// LogKey is the path (outside the repository) or pkcs11: URI of the
	// Ed25519 key that signs the transparency log's checkpoints; LogOrigin
	// is the log's name (the checkpoints' origin line). Both are set by
	// Init or EnableLog when the root carries a transparency policy.
	LogKey    string `json:"log_key,omitempty"`
	LogOrigin string `json:"log_origin,omitempty"`
}

func parseConfig(data []byte) (Config, error) {
	var c Config
	if err := (strictjson.Limits{Size: MaxConfigSize}).Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.Schema != ConfigSchema {
		return Config{}, fmt.Errorf("%w: schema %d, want %d", ErrConfig, c.Schema, ConfigSchema)
	}
	if c.Environment != "" {
		if err := keys.CheckEnvironment(c.Environment); err != nil {
			return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if err := checkPolicies(c.Provenance); err != nil {
		return Config{}, err
	}
	return c, nil
}

// CheckKeyPath refuses a key path that lies inside the repository directory
// dir (after making both absolute and resolving symlinks), so that nothing
// under the repository, and in particular nothing published, is ever a
// private key. pkcs11: URIs are not paths and are accepted.
func CheckKeyPath(dir, keyPath string) error {
	if keyPath == "" || strings.HasPrefix(keyPath, "pkcs11:") {
		return nil
	}
	rd, err := resolve(dir)
	if err != nil {
		return err
	}
	kp, err := resolve(keyPath)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(rd, kp)
	if err != nil {
		return nil
	}
	if rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))) {
		return fmt.Errorf("%w: %s is inside %s", ErrKeyInsideRepo, keyPath, dir)
	}
	return nil
}

// resolve returns the absolute, symlink-free form of p. When p (or a tail of
// it) does not exist yet, the existing prefix is resolved and the rest kept.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("failed to resolve %s: %w", p, err)
	}
	var tail []string
	cur := abs
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(append([]string{r}, tail...)...), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("failed to resolve %s: %w", p, err)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		tail = append([]string{filepath.Base(cur)}, tail...)
		cur = parent
	}
}
