package keys

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/strictjson"
	"github.com/airlockfw/airlock/release"
)

// Environments are separate trust roots: a key belongs to exactly one (the
// names are release's).
const (
	EnvDev     = release.EnvDev
	EnvStaging = release.EnvStaging
	EnvProd    = release.EnvProd
)

// Environments lists the valid environment names.
var Environments = release.Environments

// KeyringEnv names the environment variable that overrides the keyring path.
const KeyringEnv = "AIRLOCK_KEYRING"

// MaxKeyringSize bounds the keyring file.
const MaxKeyringSize = 4 << 20

// Errors of the keyring.
var (
	ErrEnvironment = errors.New("key environment mismatch")
	ErrKeyring     = errors.New("invalid keyring")
)

// CheckEnvironment validates an environment name.
func CheckEnvironment(env string) error { return release.ValidEnvironment(env) }

// Keyring records which environment each signing key (by TUF key ID) is
// registered for, so that a key made for development can never be used to
// sign production metadata by mistake. It holds only public information
// (key IDs, environments, labels); it is a safety net for people, not a
// security boundary against an attacker who can edit it — devices enforce
// environments through their roots.
type Keyring struct {
	path    string
	Entries map[string]KeyringEntry `json:"keys"`
}

// KeyringEntry is one registered key.
type KeyringEntry struct {
	Environment string    `json:"environment"`
	Label       string    `json:"label,omitempty"`
	Registered  time.Time `json:"registered"`
}

// DefaultKeyringPath returns $AIRLOCK_KEYRING, else
// $XDG_CONFIG_HOME/airlock/keyring.json, else ~/.config/airlock/keyring.json.
func DefaultKeyringPath() string {
	if p := os.Getenv(KeyringEnv); p != "" {
		return p
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "airlock", "keyring.json")
	}
	return ""
}

// OpenKeyring reads the keyring at path; a missing file is an empty keyring.
func OpenKeyring(path string) (*Keyring, error) {
	k := &Keyring{path: path, Entries: map[string]KeyringEntry{}}
	if path == "" {
		return k, nil
	}
	data, err := durable.ReadFile(durable.OS, path, MaxKeyringSize)
	if errors.Is(err, fs.ErrNotExist) {
		return k, nil
	}
	if errors.Is(err, durable.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes (MaxKeyringSize)", ErrKeyring, path, MaxKeyringSize)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read keyring: %w", err)
	}
	if err := (strictjson.Limits{Size: MaxKeyringSize}).Unmarshal(data, k); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyring, path, err)
	}
	if k.Entries == nil {
		k.Entries = map[string]KeyringEntry{}
	}
	for id, e := range k.Entries {
		if err := CheckEnvironment(e.Environment); err != nil {
			return nil, fmt.Errorf("%w: key %s: %v", ErrKeyring, id, err)
		}
	}
	return k, nil
}

// Environment returns the environment key ID id is registered for.
func (k *Keyring) Environment(id string) (string, bool) {
	e, ok := k.Entries[id]
	return e.Environment, ok
}

// Check refuses a key registered for an environment other than env. Keys
// not in the keyring pass.
func (k *Keyring) Check(id, env string) error {
	if have, ok := k.Environment(id); ok && have != env {
		return fmt.Errorf("%w: key %s is registered for the %s environment, refusing to use it for %s", ErrEnvironment, short(id), have, env)
	}
	return nil
}

// Register records key id for env (refusing a key registered for another
// environment) and saves the keyring.
func (k *Keyring) Register(id, env, label string) error {
	if err := CheckEnvironment(env); err != nil {
		return err
	}
	if err := k.Check(id, env); err != nil {
		return err
	}
	if _, ok := k.Entries[id]; ok {
		return nil
	}
	k.Entries[id] = KeyringEntry{Environment: env, Label: label, Registered: time.Now().UTC().Truncate(time.Second)}
	return k.save()
}

// IDs returns the registered key IDs, sorted.
func (k *Keyring) IDs() []string {
	var ids []string
	for id := range k.Entries {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (k *Keyring) save() error {
	if k.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("failed to create keyring directory: %w", err)
	}
	return durable.WriteFile(durable.OS, k.path, append(data, '\n'), 0o600)
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

// CheckSigners enforces the environment rule when signing: it refuses a
// signer whose key is registered for an environment other than env. Nil
// signers and keys not in the keyring pass.
func (k *Keyring) CheckSigners(env string, signers ...crypto.Signer) error {
	for _, s := range signers {
		if s == nil {
			continue
		}
		id, err := KeyID(s.Public())
		if err != nil {
			return err
		}
		if err := k.Check(id, env); err != nil {
			return fmt.Errorf("%w (see 'airlock key gen --env' and docs/keys.md)", err)
		}
	}
	return nil
}

// CheckKeys refuses public keys registered for an environment other than
// env, without registering any.
func (k *Keyring) CheckKeys(env string, pubs ...crypto.PublicKey) error {
	for _, pub := range pubs {
		id, err := KeyID(pub)
		if err != nil {
			return err
		}
		if err := k.Check(id, env); err != nil {
			return err
		}
	}
	return nil
}

// RegisterKeys records pubs for env under label, after checking that none
// is registered for another environment (so it registers all or none).
func (k *Keyring) RegisterKeys(env, label string, pubs ...crypto.PublicKey) error {
	if err := k.CheckKeys(env, pubs...); err != nil {
		return err
	}
	for _, pub := range pubs {
		id, err := KeyID(pub)
		if err != nil {
			return err
		}
		if err := k.Register(id, env, label); err != nil {
			return err
		}
	}
	return nil
}
