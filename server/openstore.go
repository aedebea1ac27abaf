package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/strictjson"
	"github.com/airlockfw/airlock/server/store"
)

// StoreFile, in the server's data directory, records which store the
// server keeps its state in: `airlock serve` writes it on first start, and
// every command given that data directory reads it. Without it, an admin
// command run against a PostgreSQL server without --db would silently
// create an empty SQLite file in the data directory and act there. The
// file is 0600: a PostgreSQL DSN may hold a password.
const StoreFile = "store.json"

// MaxStoreFileSize bounds StoreFile.
const MaxStoreFileSize = 8 << 10

// ErrStore is wrapped by every refusal to open a data directory's store.
var ErrStore = errors.New("server store")

// storeRecord is StoreFile. An empty DSN is the default store, DATA/DBFile.
type storeRecord struct {
	Schema int    `json:"schema"`
	DSN    string `json:"dsn"`
}

const storeRecordSchema = 1

// OpenStore opens the store of the server whose data directory is
// dataDir, for `airlock serve` and for every command that acts on the
// server's state (tokens, users). The store is the one recorded in
// DATA/store.json; a dsn that names another store is refused. Without a
// record, dsn (or DATA/airlock.db when dsn is empty) is recorded first, so
// that the first command run against a data directory, whether `serve` or
// `server user add` before the first start, fixes its store for all later
// ones. A non-empty data directory without a record and without
// airlock.db, from a server that ran before the record existed, is refused
// when dsn is empty: its store is unknown, and guessing SQLite would act on
// a new, empty database beside the real one. With dataDir empty, dsn is
// opened as given.
func OpenStore(ctx context.Context, dataDir, dsn string) (store.Store, error) {
	if dataDir == "" {
		return openDSN(ctx, dsn)
	}
	rec, err := readStoreRecord(dataDir)
	switch {
	case err == nil:
		if dsn, err = recordedDSN(dataDir, rec, dsn); err != nil {
			return nil, err
		}
		return openDSN(ctx, dsn)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if dsn == "" {
		_, dbErr := os.Stat(filepath.Join(dataDir, DBFile))
		entries, err := os.ReadDir(dataDir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("failed to read data directory: %w", err)
		}
		if errors.Is(dbErr, fs.ErrNotExist) && len(entries) > 0 {
			return nil, fmt.Errorf("%w: %s holds server files but no %s and no %s: its store is unknown; give --db once and it is recorded", ErrStore, dataDir, StoreFile, DBFile)
		}
	} else if _, _, err := store.ParseDSN(dsn); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create data directory: %w", err)
	}
	data, err := json.Marshal(storeRecord{Schema: storeRecordSchema, DSN: dsn})
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(durable.OS, filepath.Join(dataDir, StoreFile), data, 0o600); err != nil {
		return nil, fmt.Errorf("failed to record the store in %s: %w", StoreFile, err)
	}
	if dsn == "" {
		dsn = filepath.Join(dataDir, DBFile)
	}
	return openDSN(ctx, dsn)
}

func openDSN(ctx context.Context, dsn string) (store.Store, error) {
	db, err := store.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("failed to open the database: %w", err)
	}
	return db, nil
}

func readStoreRecord(dataDir string) (storeRecord, error) {
	path := filepath.Join(dataDir, StoreFile)
	data, err := durable.ReadFile(durable.OS, path, MaxStoreFileSize)
	if err != nil {
		return storeRecord{}, err
	}
	var rec storeRecord
	if err := (strictjson.Limits{Size: MaxStoreFileSize}).Unmarshal(data, &rec); err != nil {
		return storeRecord{}, fmt.Errorf("%w: %s: %w", ErrStore, path, err)
	}
	if rec.Schema != storeRecordSchema {
		return storeRecord{}, fmt.Errorf("%w: %s: schema %d, want %d", ErrStore, path, rec.Schema, storeRecordSchema)
	}
	return rec, nil
}

// recordedDSN returns the store rec names, refusing a given dsn that names
// another. Messages name the dialects only: a DSN may hold a password.
func recordedDSN(dataDir string, rec storeRecord, dsn string) (string, error) {
	recorded := rec.DSN
	if recorded == "" {
		recorded = filepath.Join(dataDir, DBFile)
	}
	if dsn != "" && dsn != rec.DSN && dsn != recorded {
		return "", fmt.Errorf("%w: the server in %s keeps its state in the %s store recorded in %s, and --db names another (%s); omit --db to use the recorded one",
			ErrStore, dataDir, dialectOf(recorded), filepath.Join(dataDir, StoreFile), dialectOf(dsn))
	}
	return recorded, nil
}

func dialectOf(dsn string) string {
	d, _, err := store.ParseDSN(dsn)
	if err != nil {
		return "unknown"
	}
	if d == store.DialectSQLite {
		return "SQLite"
	}
	return "PostgreSQL"
}
