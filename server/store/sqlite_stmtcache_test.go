package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

func openTestSQLite(t *testing.T) *sqliteBackend {
	t.Helper()
	st, err := openSQLite(context.Background(), filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.(*sqlStore).b.backend.(*sqliteBackend)
}

// The prepared-statement cache must not grow without bound (SQL built from
// filter combinations), and queries past the bound must still run.
func TestSQLiteStmtCacheIsBoundedAndOverflowStillRuns(t *testing.T) {
	b := openTestSQLite(t)
	ctx := context.Background()
	for i := range SQLiteStmtCacheSize + 20 {
		var got int64
		q := fmt.Sprintf("SELECT $1 + %d", i)
		if err := b.reader().queryRow(ctx, q, int64(1000)).Scan(&got); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if want := int64(1000 + i); got != want {
			t.Fatalf("%s = %d, want %d", q, got, want)
		}
	}
	if n := b.rs.len(); n != SQLiteStmtCacheSize {
		t.Errorf("reader cache holds %d statements, want the bound %d", n, SQLiteStmtCacheSize)
	}
	if n := b.ws.len(); n != 0 {
		t.Errorf("writer cache holds %d statements, want 0 (only the reader was used)", n)
	}
}

// A cached statement reused by many goroutines at once on the writer (one
// connection) and the reader pool must give each caller its own result.
func TestSQLiteStmtCacheConcurrentReuseKeepsResultsApart(t *testing.T) {
	b := openTestSQLite(t)
	ctx := context.Background()
	if _, err := b.writer().exec(ctx, `CREATE TABLE kv (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			if _, err := b.writer().exec(ctx, `INSERT INTO kv (k, v) VALUES ($1, $2)`, int64(i), int64(i*i)); err != nil {
				errs <- err
				return
			}
			var v int64
			if err := b.reader().queryRow(ctx, `SELECT v FROM kv WHERE k = $1`, int64(i)).Scan(&v); err != nil {
				errs <- err
				return
			}
			if v != int64(i*i) {
				errs <- fmt.Errorf("k=%d: got v=%d, want %d", i, v, i*i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if b.ws.len() != 2 || b.rs.len() != 1 {
		t.Errorf("cached statements: writer %d (want 2), reader %d (want 1)", b.ws.len(), b.rs.len())
	}
}

// Closing the store closes the cached statements; later calls fail with an
// error instead of panicking or using a finalized statement.
func TestSQLiteStmtCacheAfterCloseFailsCleanly(t *testing.T) {
	st, err := openSQLite(context.Background(), filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	b := st.(*sqlStore).b.backend.(*sqliteBackend)
	var one int64
	if err := b.reader().queryRow(context.Background(), `SELECT 1`).Scan(&one); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.reader().queryRow(context.Background(), `SELECT 1`).Scan(&one); err == nil {
		t.Error("query on a closed store succeeded")
	}
}
