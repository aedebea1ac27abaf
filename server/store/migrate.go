package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// migrationFS holds the schema migrations, one directory per dialect. Files
// are named NNNN_description.sql, numbered 1..N without gaps. The list is
// append-only: a released migration is never edited or removed, a change is
// a new file.
//
//go:embed migrations
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the dialect's migrations in version order.
func loadMigrations(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("internal error: no migrations for %q: %w", dialect, err)
	}
	var out []migration
	for _, e := range entries { // ReadDir sorts by name
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") || len(num) != 4 {
			return nil, fmt.Errorf("internal error: bad migration file name %q", e.Name())
		}
		if v != len(out)+1 {
			return nil, fmt.Errorf("internal error: migration %q out of sequence, want version %d", e.Name(), len(out)+1)
		}
		b, err := fs.ReadFile(migrationFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("internal error: %w", err)
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("internal error: no migrations for %q", dialect)
	}
	return out, nil
}

// SchemaVersion returns the schema version this binary migrates a database of
// the given dialect ("sqlite" or "postgres") to.
func SchemaVersion(dialect string) (int, error) {
	m, err := loadMigrations(dialect)
	if err != nil {
		return 0, err
	}
	return len(m), nil
}

// migrate applies the pending migrations in one transaction, recording each
// in schema_migrations. It refuses a database whose schema is newer than the
// migrations known to this binary.
func migrate(ctx context.Context, b backend) error {
	migs, err := loadMigrations(b.dialect())
	if err != nil {
		return err
	}
	return b.inTx(ctx, func(q querier) error {
		if err := b.lockMigrations(ctx, q); err != nil {
			return fmt.Errorf("failed to lock schema migrations: %w", err)
		}
		if _, err := q.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY,
			applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("failed to create schema_migrations: %w", err)
		}
		var count, current int64
		if err := q.queryRow(ctx, `SELECT COUNT(*), COALESCE(MAX(version), 0) FROM schema_migrations`).
			Scan(&count, &current); err != nil {
			return fmt.Errorf("failed to read schema version: %w", err)
		}
		if current > int64(len(migs)) {
			return fmt.Errorf("%w: database is at version %d, this binary knows %d", ErrSchemaTooNew, current, len(migs))
		}
		if count != current {
			return fmt.Errorf("schema_migrations is inconsistent: %d rows, highest version %d", count, current)
		}
		for _, m := range migs[current:] {
			if _, err := q.exec(ctx, m.sql); err != nil {
				return fmt.Errorf("failed to apply migration %s: %w", m.name, err)
			}
			if _, err := q.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
				int64(m.version), dbTime(time.Now())); err != nil {
				return fmt.Errorf("failed to record migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}
