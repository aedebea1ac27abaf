package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite connection settings.
const (
	// SQLiteBusyTimeoutMillis is how long a connection waits for a lock
	// (busy_timeout) before failing with SQLITE_BUSY.
	SQLiteBusyTimeoutMillis = 10_000
	// SQLiteMaxReaders bounds the read-only connection pool.
	SQLiteMaxReaders = 16
	// SQLiteStmtCacheSize bounds the prepared statements kept per pool
	// (reader, writer). The store's SQL is a fixed set of constant strings
	// (plus filter combinations), so the cache fills once; statements beyond
	// the bound run unprepared as before.
	SQLiteStmtCacheSize = 128
)

// sqliteBackend uses two pools on one WAL-mode file: a single writer
// connection, so writers queue in Go instead of failing with SQLITE_BUSY, and
// a pool of query_only readers that WAL lets run alongside the writer. Write
// transactions start with BEGIN IMMEDIATE.
//
// Statements run outside a transaction are prepared once per pool and kept
// (stmtCache): SQLite's SQL compiler is a large part of a check-in's cost
// (two statements: the device lookup and the update), and the same few
// statements run for every device.
type sqliteBackend struct {
	w, r   *sql.DB
	ws, rs *stmtCache
}

func openSQLite(ctx context.Context, path string) (Store, error) {
	// Create the file owner-only before SQLite does (with the umask's mode).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open sqlite database: %w", err)
	}
	f.Close()

	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", SQLiteBusyTimeoutMillis)
	w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("failed to open sqlite database: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	b := &sqliteBackend{w: w, ws: newStmtCache(w)}
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("failed to open sqlite database: %w", err)
	}
	if err := migrate(ctx, b); err != nil {
		w.Close()
		return nil, fmt.Errorf("failed to migrate sqlite database: %w", err)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("failed to open sqlite database: %w", err)
	}
	n := min(SQLiteMaxReaders, max(4, 2*runtime.GOMAXPROCS(0)))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	b.r, b.rs = r, newStmtCache(r)
	return newSQLStore(b), nil
}

type sqlQuerier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

type sqlDBQuerier struct{ db sqlQuerier }

func (q sqlDBQuerier) exec(ctx context.Context, s string, args ...any) (int64, error) {
	res, err := q.db.ExecContext(ctx, s, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q sqlDBQuerier) queryRow(ctx context.Context, s string, args ...any) row {
	return q.db.QueryRowContext(ctx, s, args...)
}

func (q sqlDBQuerier) query(ctx context.Context, s string, args ...any) (rows, error) {
	rs, err := q.db.QueryContext(ctx, s, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

func (b *sqliteBackend) reader() querier { return cachedQuerier{b.rs} }
func (b *sqliteBackend) writer() querier { return cachedQuerier{b.ws} }
func (b *sqliteBackend) dialect() string { return "sqlite" }

func (b *sqliteBackend) inTx(ctx context.Context, fn func(querier) error) error {
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(sqlDBQuerier{tx}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// lockMigrations is a no-op: BEGIN IMMEDIATE already holds the write lock.
func (b *sqliteBackend) lockMigrations(context.Context, querier) error { return nil }

func (b *sqliteBackend) isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func (b *sqliteBackend) sizeBytes(ctx context.Context) (int64, error) {
	var n int64
	err := b.r.QueryRowContext(ctx, `SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&n)
	return n, err
}

func (b *sqliteBackend) close() error {
	var rerr error
	if b.r != nil {
		rerr = errors.Join(b.rs.close(), b.r.Close())
	}
	return errors.Join(rerr, b.ws.close(), b.w.Close())
}

// stmtCache keeps prepared statements of one pool by their SQL text, at most
// SQLiteStmtCacheSize. A *sql.Stmt is safe for concurrent use; database/sql
// prepares it again on each connection it runs on.
type stmtCache struct {
	db     *sql.DB
	mu     sync.Mutex
	m      map[string]*sql.Stmt
	closed bool
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: make(map[string]*sql.Stmt)}
}

// stmt returns the prepared statement for q, preparing it on first use, or
// nil when the cache is full or closed (the caller then runs q unprepared).
func (c *stmtCache) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[q]
	full := c.closed || len(c.m) >= SQLiteStmtCacheSize
	c.mu.Unlock()
	if ok || full {
		return st, nil
	}
	// Prepare outside the lock: it takes a connection, which may be busy.
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[q]; ok {
		st.Close() // lost a race with another caller
		return prev, nil
	}
	if c.closed || len(c.m) >= SQLiteStmtCacheSize {
		st.Close()
		return nil, nil
	}
	c.m[q] = st
	return st, nil
}

func (c *stmtCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *stmtCache) close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for q, st := range c.m {
		errs = append(errs, st.Close())
		delete(c.m, q)
	}
	return errors.Join(errs...)
}

// cachedQuerier runs statements through a stmtCache.
type cachedQuerier struct{ c *stmtCache }

func (q cachedQuerier) exec(ctx context.Context, s string, args ...any) (int64, error) {
	st, err := q.c.stmt(ctx, s)
	if err != nil {
		return 0, err
	}
	if st == nil {
		return sqlDBQuerier{q.c.db}.exec(ctx, s, args...)
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q cachedQuerier) queryRow(ctx context.Context, s string, args ...any) row {
	st, err := q.c.stmt(ctx, s)
	if err != nil {
		return errRow{err}
	}
	if st == nil {
		return q.c.db.QueryRowContext(ctx, s, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (q cachedQuerier) query(ctx context.Context, s string, args ...any) (rows, error) {
	st, err := q.c.stmt(ctx, s)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return sqlDBQuerier{q.c.db}.query(ctx, s, args...)
	}
	rs, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

// errRow is a row whose Scan returns a preparation error.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
