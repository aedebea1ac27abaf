package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/server/store"
)

// OpenStore opens the store named by dsn (sqlite:///path, a path, or
// postgres://…), or DATA/airlock.db (DBFile) when dsn is empty, creating
// DATA (0700) if needed.
func OpenStore(ctx context.Context, dataDir, dsn string) (store.Store, error) {
	if dsn == "" {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create data directory: %w", err)
		}
		dsn = filepath.Join(dataDir, DBFile)
	}
	db, err := store.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("failed to open the database: %w", err)
	}
	return db, nil
}
