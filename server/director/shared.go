package director

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys"
)

// Replicas: several servers on one database must sign every device's
// director metadata with the same keys and serve the same root versions,
// or a device that alternates between them would refuse half of the
// responses. OpenShared keeps the sealed keys (server_secrets) and the
// root versions in the database, the first replica's winning; the data
// directory holds a copy (so that 'airlock server director-root --data'
// prints the same root). The per-device versions are in the database too
// (store.DirectorState, advanced by compare-and-swap), and signing is
// deterministic (Ed25519), so one version always means one metadata set
// whichever replica signs it.

// RootRecheck bounds how often a director re-reads the root versions from
// the database when a device asks for one it does not have (another
// replica renewed the root).
const RootRecheck = time.Minute

// Names of the director's sealed keys in the database (store.Store
// PutSecretIfAbsent).
const (
	RootKeySecret   = "director-root-key"
	OnlineKeySecret = "director-online-key"
)

// ErrKeysDiffer: the data directory holds director keys or roots other than
// the database's, so the replicas would sign with different keys.
var ErrKeysDiffer = fmt.Errorf("%w: the data directory's director keys differ from the database's", ErrKeys)

// Shared is what OpenShared needs of the server's store.
type Shared interface {
	PutSecretIfAbsent(ctx context.Context, name string, value []byte, now time.Time) ([]byte, error)
	PutDirectorRoot(ctx context.Context, v int64, data []byte, now time.Time) ([]byte, error)
	ListDirectorRoots(ctx context.Context) ([][]byte, error)
}

// OpenShared is Open for a server that may have replicas: the keys and root
// versions are the database's (db), created by the first server to open
// it; a data directory that already holds other ones is refused
// (ErrKeysDiffer). A data directory with keys and roots but a database
// without them (a server from before replicas) gives the database its own.
func OpenShared(ctx context.Context, db Shared, dir string, kek Sealer, now time.Time, tsLife, life time.Duration) (*Director, error) {
	d, err := newDirector(dir, tsLife, life)
	if err != nil {
		return nil, err
	}
	d.shared = db
	if d.rootKey, err = sharedKey(ctx, db, filepath.Join(dir, RootKeyFile), kek, directorRootPurpose, RootKeySecret, now); err != nil {
		return nil, err
	}
	if d.key, err = sharedKey(ctx, db, filepath.Join(dir, OnlineKeyFile), kek, directorOnlinePurpose, OnlineKeySecret, now); err != nil {
		return nil, err
	}
	local, err := readRootFiles(dir)
	if err != nil {
		return nil, err
	}
	for i, data := range local {
		stored, err := db.PutDirectorRoot(ctx, int64(i+1), data, now)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(stored, data) {
			return nil, fmt.Errorf("%w: root version %d in %s is not the database's; remove the directory to use the database's", ErrKeysDiffer, i+1, dir)
		}
	}
	roots, err := db.ListDirectorRoots(ctx)
	if err != nil {
		return nil, err
	}
	if len(roots) == 0 || expires(roots[len(roots)-1]).Before(now.Add(RootRenewBefore)) {
		d.roots = roots
		data, err := d.signRoot(len(roots)+1, now)
		if err != nil {
			return nil, err
		}
		// Another replica may have renewed at the same time: the first
		// stored version wins.
		stored, err := db.PutDirectorRoot(ctx, int64(len(roots)+1), data, now)
		if err != nil {
			return nil, err
		}
		roots = append(roots, stored)
	}
	for v := len(local) + 1; v <= len(roots); v++ {
		if err := d.writeRoot(v, roots[v-1]); err != nil {
			return nil, err
		}
	}
	d.roots, d.reloaded = roots, now
	return d, nil
}

// sharedKey returns the director key stored in db under name, storing the
// data directory's key file (or a new key) there first if db has none,
// and writes the stored key to the file when it is missing.
func sharedKey(ctx context.Context, db Shared, path string, kek Sealer, purpose, name string, now time.Time) (crypto.Signer, error) {
	local, err := durable.ReadFile(durable.OS, path, MaxKeyFileSize)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	candidate := local
	if !exists {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			return nil, err
		}
		pemKey, err := keys.MarshalPrivate(k, nil)
		if err != nil {
			return nil, err
		}
		candidate, err = kek.Seal(purpose, filepath.Base(path), pemKey)
		clear(pemKey)
		if err != nil {
			return nil, err
		}
	}
	stored, err := db.PutSecretIfAbsent(ctx, name, candidate, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	if exists && !bytes.Equal(stored, local) {
		return nil, fmt.Errorf("%w: %s is not the database's %s (another server created the director first); remove %s to use the database's",
			ErrKeysDiffer, path, name, filepath.Dir(path))
	}
	if !exists {
		if err := durable.CreateFile(durable.OS, path, stored, 0o600); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKeys, err)
		}
	}
	return loadOrCreateSealedKey(path, kek, purpose)
}

// RootContext is Root, re-reading the root versions from the database
// (at most every RootRecheck) when v is newer than the director has: a
// replica started later may have renewed the root.
func (d *Director) RootContext(ctx context.Context, v int64, now time.Time) ([]byte, bool, error) {
	if data, ok := d.Root(v); ok || d.shared == nil || v < 1 {
		return data, ok, nil
	}
	d.mu.Lock()
	due := now.Sub(d.reloaded) >= RootRecheck || now.Before(d.reloaded)
	if due {
		d.reloaded = now
	}
	d.mu.Unlock()
	if !due {
		return nil, false, nil
	}
	roots, err := d.shared.ListDirectorRoots(ctx)
	if err != nil {
		return nil, false, err
	}
	d.mu.Lock()
	for i := len(d.roots); i < len(roots); i++ {
		d.roots = append(d.roots, roots[i]) // versions never change: only new ones are taken
	}
	d.mu.Unlock()
	data, ok := d.Root(v)
	return data, ok, nil
}

// expires returns a root's expiry (zero if it does not parse).
func expires(root []byte) time.Time {
	d := &Director{roots: [][]byte{root}}
	return d.rootExpires(1)
}
