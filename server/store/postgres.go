package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationLockID is the pg_advisory_xact_lock key that serializes schema
// migrations of concurrently starting servers ("airlock!" in ASCII).
const migrationLockID = 0x6169726c6f636b21

// pgBackend uses one pgx connection pool; PostgreSQL's row locks make the
// single-statement updates atomic under concurrency.
type pgBackend struct {
	pool *pgxpool.Pool
}

func openPostgres(ctx context.Context, dsn string) (Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN may hold a password: do not echo it.
		return nil, fmt.Errorf("%w: failed to parse postgres dsn", ErrUnsupportedDSN)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to open postgres database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("failed to connect to postgres database: %w", err)
	}
	b := &pgBackend{pool: pool}
	if err := migrate(ctx, b); err != nil {
		pool.Close()
		return nil, fmt.Errorf("failed to migrate postgres database: %w", err)
	}
	return newSQLStore(b), nil
}

type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

type pgQuerier struct{ db pgxQuerier }

func (q pgQuerier) exec(ctx context.Context, s string, args ...any) (int64, error) {
	tag, err := q.db.Exec(ctx, s, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (q pgQuerier) queryRow(ctx context.Context, s string, args ...any) row {
	return q.db.QueryRow(ctx, s, args...)
}

func (q pgQuerier) query(ctx context.Context, s string, args ...any) (rows, error) {
	return q.db.Query(ctx, s, args...)
}

func (b *pgBackend) reader() querier { return pgQuerier{b.pool} }
func (b *pgBackend) writer() querier { return pgQuerier{b.pool} }
func (b *pgBackend) dialect() string { return "postgres" }

// MaxTxAttempts bounds how often a PostgreSQL transaction that lost a
// deadlock or a serialization conflict is run again.
const MaxTxAttempts = 4

// inTx runs fn in a transaction. PostgreSQL aborts one of two transactions
// that wait on each other's row locks (deadlock_detected) or conflict under
// serializable isolation (serialization_failure) and rolled it back
// entirely, so it is run again, up to MaxTxAttempts times after a short
// random pause: with replicas updating the same rollout, a report or an
// evaluation must not be lost to a lock-order race another server won.
func (b *pgBackend) inTx(ctx context.Context, fn func(querier) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return fn(pgQuerier{tx}) })
		if attempt >= MaxTxAttempts || !retryable(err) {
			return err
		}
		pause := time.Duration(attempt) * time.Millisecond * time.Duration(1+rand.IntN(10))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// retryable reports whether err aborted a transaction that may succeed
// when run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001") // deadlock_detected, serialization_failure
}

func (b *pgBackend) lockMigrations(ctx context.Context, q querier) error {
	_, err := q.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockID))
	return err
}

func (b *pgBackend) isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
}

func (b *pgBackend) sizeBytes(ctx context.Context) (int64, error) {
	var n int64
	err := b.pool.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n)
	return n, err
}

func (b *pgBackend) close() error {
	b.pool.Close()
	return nil
}
