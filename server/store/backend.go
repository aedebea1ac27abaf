package store

import (
	"context"
	"database/sql"
	"time"
)

// querier is what the shared SQL implementation needs from a connection pool
// or a transaction. Both dialects use $N placeholders.
type querier interface {
	exec(ctx context.Context, q string, args ...any) (rowsAffected int64, err error)
	queryRow(ctx context.Context, q string, args ...any) row
	query(ctx context.Context, q string, args ...any) (rows, error)
}

type row interface {
	Scan(dest ...any) error
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// backend is one database dialect under the shared implementation.
type backend interface {
	// reader runs read-only statements; writer runs everything else.
	reader() querier
	writer() querier
	// inTx runs fn in a write transaction, committing when fn returns nil.
	inTx(ctx context.Context, fn func(q querier) error) error
	// lockMigrations serializes concurrent migrations inside a transaction.
	lockMigrations(ctx context.Context, q querier) error
	// isUnique reports whether err is a unique-constraint violation.
	isUnique(err error) bool
	// sizeBytes returns the database size on disk.
	sizeBytes(ctx context.Context) (int64, error)
	close() error
	dialect() string
}

func dbTime(t time.Time) int64 { return t.UnixMicro() }

func dbOptTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromDBTime(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromDBOptTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromDBTime(v.Int64)
}
