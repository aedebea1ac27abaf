package storetest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/store"
)

func testStats(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Devices != 0 || st.Events != 0 || st.SizeBytes <= 0 {
		t.Fatalf("empty store stats: %+v", st)
	}
	for i := range 3 {
		mustCreate(t, s, device(i))
		for j := range 2 {
			if _, err := s.AddEvent(ctx, store.Event{DeviceID: device(i).ID, Time: at(time.Duration(j)), Kind: "note"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err = s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Devices != 3 || st.Events != 6 || st.SizeBytes <= 0 {
		t.Fatalf("stats: %+v, want 3 devices, 6 events", st)
	}
}

func testTimes(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	ns := time.Date(2030, 12, 31, 23, 59, 59, 123456789, time.FixedZone("Y", -7*3600))
	d := device(1)
	d.EnrolledAt, d.LastSeen = ns, ns.Add(time.Nanosecond)
	mustCreate(t, s, d)
	got, err := s.GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := ns.Truncate(time.Microsecond).UTC()
	for name, tm := range map[string]time.Time{"EnrolledAt": got.EnrolledAt, "LastSeen": got.LastSeen} {
		if !tm.Equal(want) || tm.Location() != time.UTC {
			t.Errorf("%s = %v, want %v in UTC (microsecond precision)", name, tm, want)
		}
	}
}

func testReopen(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	dsn := newDSN(t)
	s1, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s1, device(1))
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dsn)
	s3 := open(t, dsn) // two stores on one database at once
	for _, s := range []store.Store{s2, s3} {
		if _, err := s.GetDevice(ctx, device(1).ID); err != nil {
			t.Fatalf("device lost across reopen: %v", err)
		}
	}
	db := rawDB(t, dsn)
	dialect, _, _ := store.ParseDSN(dsn)
	want, err := store.SchemaVersion(dialect)
	if err != nil {
		t.Fatal(err)
	}
	var n, max int
	if err := db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != want || max != want {
		t.Fatalf("schema_migrations has %d rows up to %d, want %d", n, max, want)
	}
}

func testNewerSchema(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	dsn := newDSN(t)
	s, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	dialect, _, _ := store.ParseDSN(dsn)
	v, _ := store.SchemaVersion(dialect)
	db := rawDB(t, dsn)
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)`, v+1); err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(ctx, dsn)
	wantErr(t, "Open newer schema", err, store.ErrSchemaTooNew)
}

func testCanceledContext(t *testing.T, newDSN NewDSN) {
	s := fresh(t, newDSN)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.CreateDevice(ctx, device(1)); err == nil {
		t.Fatal("CreateDevice with canceled context succeeded")
	}
	if _, err := s.ListDevices(ctx, store.DeviceFilter{}); err == nil {
		t.Fatal("ListDevices with canceled context succeeded")
	}
}

// rawDB opens the database behind dsn directly, for what the Store API
// deliberately cannot do (inspect or tamper with schema_migrations).
func rawDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	dialect, target, err := store.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	driver := "sqlite"
	if dialect == store.DialectPostgres {
		driver = "pgx"
	}
	db, err := sql.Open(driver, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
