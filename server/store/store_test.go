package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/server/store/pgtest"
	"github.com/airlockfw/airlock/server/store/storetest"
)

// The throwaway PostgreSQL cluster shared by this package's tests is started
// on first use and stopped after all tests ran.
var (
	clusterOnce sync.Once
	cluster     *pgtest.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "store: failed to stop postgresql: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func sqliteDSN(t testing.TB) string {
	return "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
}

// postgresDSN returns a fresh database in the shared cluster. It skips only
// when PostgreSQL is not installed and AIRLOCK_REQUIRE_TOOLS is unset.
func postgresDSN(t testing.TB) string {
	t.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = pgtest.Start(context.Background()) })
	if errors.Is(clusterErr, pgtest.ErrNotInstalled) && os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "" {
		t.Skip("postgresql not installed")
	}
	if clusterErr != nil {
		t.Fatalf("failed to start postgresql: %v", clusterErr)
	}
	dsn, err := cluster.NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) string { return sqliteDSN(t) })
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) string { return postgresDSN(t) })
}

func TestSQLiteFileIsOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := store.Open(context.Background(), path) // plain path form
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("database file mode %o, want 600", perm)
	}
}

func TestSQLiteUsesWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := store.Open(context.Background(), "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal_mode %q, want wal (readers would block the writer)", mode)
	}
}

func TestOpenRejectsBadDSN(t *testing.T) {
	for _, dsn := range []string{
		"",
		"mysql://root@localhost/db",
		"sqlite://",
		"sqlite:///tmp/x.db?_pragma=foreign_keys(0)",
		":memory:",
		"file:x.db",
	} {
		t.Run(dsn, func(t *testing.T) {
			_, err := store.Open(context.Background(), dsn)
			if !errors.Is(err, store.ErrUnsupportedDSN) {
				t.Fatalf("Open(%q) = %v, want ErrUnsupportedDSN", dsn, err)
			}
		})
	}
}

func TestOpenPostgresUnreachableFails(t *testing.T) {
	// A closed port: Open must fail promptly, not hang or return a store.
	ctx, cancel := context.WithTimeout(context.Background(), 10e9)
	defer cancel()
	s, err := store.Open(ctx, "postgres://airlock@127.0.0.1:1/airlock?sslmode=disable&connect_timeout=5")
	if err == nil {
		s.Close()
		t.Fatal("Open of an unreachable server succeeded")
	}
}

func BenchmarkCheckin(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		s, err := store.Open(context.Background(), sqliteDSN(b))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		storetest.BenchCheckin(b, s)
	})
	b.Run("postgres", func(b *testing.B) {
		s, err := store.Open(context.Background(), postgresDSN(b))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		storetest.BenchCheckin(b, s)
	})
}

// TestPostgresDeadlockIsRetried: of two transactions that deadlock,
// PostgreSQL aborts one; the store runs it again and both commit.
func TestPostgresDeadlockIsRetried(t *testing.T) {
	st, err := store.Open(t.Context(), postgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	errA, errB, runs, err := store.DeadlockBoth(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	if errA != nil || errB != nil || runs != 3 {
		t.Fatalf("errors %v, %v after %d runs of the bodies; want both committed after 3 (one retried)", errA, errB, runs)
	}
}
