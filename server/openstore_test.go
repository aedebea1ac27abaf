package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/store/pgtest"
)

// addUser creates a user in the store of dataDir (opened with open) and
// closes it.
func addUser(t *testing.T, db interface{ Close() error }, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func TestInitStoreRecordsTheDefaultAndOpenStoreFindsIt(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	db, err := InitStore(ctx, data, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := CreateAdminToken(ctx, db, "ops", RoleAdmin, time.Now()); err != nil {
		t.Fatal(err)
	}
	db.Close()
	fi, err := os.Stat(filepath.Join(data, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", StoreFile, fi.Mode().Perm())
	}
	db, err = OpenStore(ctx, data, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.GetUserByName(ctx, "ops"); err != nil {
		t.Fatalf("the admin command did not open the server's store: %v", err)
	}
}

func TestOpenStoreCreatesNothingInADirectoryWithoutServerData(t *testing.T) {
	data := t.TempDir()
	_, err := OpenStore(context.Background(), data, "")
	if !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "holds no server data") {
		t.Fatalf("err = %v, want a refusal naming the missing server data", err)
	}
	if entries, _ := os.ReadDir(data); len(entries) != 0 {
		t.Fatalf("OpenStore wrote %v into a directory without server data", entries)
	}
	// The same for a directory that does not exist.
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := OpenStore(context.Background(), missing, ""); !errors.Is(err, ErrStore) {
		t.Fatalf("err = %v, want ErrStore", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenStore created %s", missing)
	}
}

func TestOpenStoreOfALegacyDataDirectory(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	db, err := openDSN(ctx, filepath.Join(data, DBFile)) // a data directory from before store.json
	addUser(t, db, err)
	db, err = OpenStore(ctx, data, "")
	addUser(t, db, err)
}

func TestStoreRecordRefusesAnotherDSN(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	other := "sqlite://" + filepath.Join(t.TempDir(), "other.db")
	db, err := InitStore(ctx, data, "")
	addUser(t, db, err)
	for name, open := range map[string]func(context.Context, string, string) (interface{ Close() error }, error){
		"serve": func(ctx context.Context, d, dsn string) (interface{ Close() error }, error) {
			return InitStore(ctx, d, dsn)
		},
		"admin": func(ctx context.Context, d, dsn string) (interface{ Close() error }, error) {
			return OpenStore(ctx, d, dsn)
		},
	} {
		_, err := open(ctx, data, other)
		if !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "omit --db") {
			t.Errorf("%s: err = %v, want a refusal of the other store", name, err)
		}
		// The recorded store named explicitly is fine.
		db, err := open(ctx, data, filepath.Join(data, DBFile))
		addUser(t, db, err)
	}
}

func TestStoreRecordIsParsedStrictly(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":      "sqlite",
		"unknown field": `{"schema":1,"dsn":"","password":"x"}`,
		"other schema":  `{"schema":2,"dsn":""}`,
		"duplicate key": `{"schema":1,"dsn":"","dsn":"postgres://evil/"}`,
		"trailing data": `{"schema":1,"dsn":""} {}`,
		"too large":     `{"schema":1,"dsn":"` + strings.Repeat("a", MaxStoreFileSize) + `"}`,
	} {
		data := t.TempDir()
		if err := os.WriteFile(filepath.Join(data, StoreFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenStore(context.Background(), data, ""); err == nil {
			t.Errorf("%s: opened a store from a bad %s", name, StoreFile)
		}
		if _, err := InitStore(context.Background(), data, ""); err == nil {
			t.Errorf("%s: serve started with a bad %s", name, StoreFile)
		}
	}
}

// TestAdminCommandsFollowAPostgresServer is the field report: a server
// started with --db postgres://…; an admin command given only --data must
// act on PostgreSQL, not create a SQLite file.
func TestAdminCommandsFollowAPostgresServer(t *testing.T) {
	ctx := context.Background()
	cluster, err := pgtest.Start(ctx)
	if errors.Is(err, pgtest.ErrNotInstalled) && os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "" {
		t.Skip("postgresql not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Stop()
	dsn, err := cluster.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	db, err := InitStore(ctx, data, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = OpenStore(ctx, data, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := CreateAdminToken(ctx, db, "ops", RoleAdmin, time.Now()); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := os.Stat(filepath.Join(data, DBFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an admin command created %s beside a PostgreSQL server", DBFile)
	}
	pg, err := openDSN(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if _, err := pg.GetUserByName(ctx, "ops"); err != nil {
		t.Fatalf("the user is not in PostgreSQL: %v", err)
	}
}
