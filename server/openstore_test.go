package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mustOpen fails the test if opening a store failed, and closes it.
func mustOpen(t *testing.T, db interface{ Close() error }, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func TestInitStoreRecordsTheDefaultAndOpenStoreFindsIt(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	db, err := OpenStore(ctx, data, "")
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

func TestOpenStoreRefusesALegacyDataDirectoryOfUnknownStore(t *testing.T) {
	// A server that ran with --db postgres://… before store.json existed
	// left its CA and keys, and no airlock.db.
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, CAFile), []byte("ca"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenStore(context.Background(), data, "")
	if !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "give --db once") {
		t.Fatalf("err = %v, want a refusal asking for --db", err)
	}
	for _, name := range []string{DBFile, StoreFile} {
		if _, err := os.Stat(filepath.Join(data, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("OpenStore wrote %s into a data directory of unknown store", name)
		}
	}
}

func TestTheFirstCommandFixesTheStore(t *testing.T) {
	// `server user add --data D` before the first `serve`: the default
	// store is recorded, and a later serve with another --db is refused.
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "new")
	db, err := OpenStore(ctx, data, "")
	mustOpen(t, db, err)
	fi, err := os.Stat(data)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory: %v, %v; want mode 0700", fi, err)
	}
	other := "sqlite://" + filepath.Join(t.TempDir(), "other.db")
	if _, err := OpenStore(ctx, data, other); !errors.Is(err, ErrStore) {
		t.Fatalf("err = %v, want ErrStore", err)
	}
}

func TestOpenStoreOfALegacyDataDirectory(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	db, err := openDSN(ctx, filepath.Join(data, DBFile)) // a data directory from before store.json
	mustOpen(t, db, err)
	db, err = OpenStore(ctx, data, "")
	mustOpen(t, db, err)
}

func TestStoreRecordRefusesAnotherDSN(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	other := "sqlite://" + filepath.Join(t.TempDir(), "other.db")
	db, err := OpenStore(ctx, data, "")
	mustOpen(t, db, err)
	_, err = OpenStore(ctx, data, other)
	if !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "omit --db") {
		t.Errorf("err = %v, want a refusal of the other store", err)
	}
	// The recorded store named explicitly is fine.
	db, err = OpenStore(ctx, data, filepath.Join(data, DBFile))
	mustOpen(t, db, err)
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
	}
}

// TestAdminCommandsFollowAPostgresServer is the field report: a server
// started with --db postgres://…; an admin command given only --data must
// act on PostgreSQL, not create a SQLite file.
func TestAdminCommandsFollowAPostgresServer(t *testing.T) {
	ctx := context.Background()
	dsn := postgresDSN(t)
	data := t.TempDir()
	db, err := OpenStore(ctx, data, dsn)
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
