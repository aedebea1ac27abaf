package director

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/store"
)

func TestParseMetadataName(t *testing.T) {
	for _, tc := range []struct {
		in      string
		version int64
		role    string
		ok      bool
	}{
		{"timestamp.json", 0, "timestamp", true},
		{"3.targets.json", 3, "targets", true},
		{"1.root.json", 1, "root", true},
		{"0.root.json", 0, "", false},
		{"01.root.json", 0, "", false},
		{"-1.root.json", 0, "", false},
		{"1.a.b.json", 0, "", false},
		{"root", 0, "", false},
		{".json", 0, "", true},
		{"99999999999999999999.root.json", 0, "", false},
	} {
		v, role, ok := ParseMetadataName(tc.in)
		if ok != tc.ok || (ok && (v != tc.version || role != tc.role)) {
			t.Errorf("ParseMetadataName(%q) = %d, %q, %v; want %d, %q, %v", tc.in, v, role, ok, tc.version, tc.role, tc.ok)
		}
	}
}

// TestKeysAreSealedAndTheRootIsStable: the director's keys at rest are
// sealed with the KEK, a reopened director keeps its root, another KEK
// fails closed, and the freshness rule re-signs a changed assignment.
func TestKeysAreSealedAndTheRootIsStable(t *testing.T) {
	dir := t.TempDir()
	kek, _, err := auth.LoadOrCreateKEK(filepath.Join(dir, auth.KEKFile))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	d1, err := Open(filepath.Join(dir, Dir), kek, now, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := Open(filepath.Join(dir, Dir), kek, now, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := d1.Root(1)
	r2, ok := d2.Root(1)
	if !ok || !bytes.Equal(r1, r2) || d2.Roots() != 1 {
		t.Fatal("reopening the director changed its root")
	}
	for _, f := range []string{RootKeyFile, OnlineKeyFile} {
		data, err := os.ReadFile(filepath.Join(dir, Dir, f))
		if err != nil || bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Fatalf("%s is not sealed (%v)", f, err)
		}
	}
	other, _ := auth.NewKEK(bytes.Repeat([]byte{9}, auth.KEKSize))
	if _, err := Open(filepath.Join(dir, Dir), other, now, 0, 0); !errors.Is(err, ErrKeys) {
		t.Fatalf("director opened with another KEK: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "x"), kek, now, time.Second, 0); !errors.Is(err, ErrExpiry) {
		t.Fatalf("1s timestamp expiry accepted: %v", err)
	}
	next := d1.Next(store.DirectorState{}, "dev-a", "fp1", now)
	if next.Version != 1 || !d1.Fresh(next, "fp1", now) || d1.Fresh(next, "fp2", now) ||
		d1.Fresh(next, "fp1", now.Add(DefaultTimestampExpiry)) {
		t.Fatalf("freshness rule: %+v", next)
	}
}

// TestReplicasShareKeysAndRoots: directors opened on one database with
// separate data directories sign with the same keys and serve the same
// roots; a data directory with other keys is refused; a data directory
// from before replicas gives the database its keys and roots.
func TestReplicasShareKeysAndRoots(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	kek, _, err := auth.LoadOrCreateKEK(filepath.Join(base, auth.KEKFile))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, "sqlite://"+filepath.Join(base, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	// A server from before replicas: keys and root only in its directory.
	legacy, err := Open(filepath.Join(base, "a", Dir), kek, now, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := OpenShared(ctx, db, filepath.Join(base, "a", Dir), kek, now, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenShared(ctx, db, filepath.Join(base, "b", Dir), kek, now, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := a.Next(store.DirectorState{}, "dev-a", "", now)
	for _, d := range []*Director{a, b} {
		r, _ := d.Root(1)
		l, _ := legacy.Root(1)
		if !bytes.Equal(r, l) || d.Roots() != 1 {
			t.Fatal("a replica serves another root version 1")
		}
		ts1, err1 := legacy.SignTimestamp(st)
		ts2, err2 := d.SignTimestamp(st)
		if err1 != nil || err2 != nil || !bytes.Equal(ts1, ts2) {
			t.Fatalf("one director state, two timestamps (%v, %v)", err1, err2)
		}
	}
	// b's directory now holds the same root (director-root --data).
	if r, err := os.ReadFile(filepath.Join(base, "b", Dir, "1.root.json")); err != nil || !bytes.Equal(r, func() []byte { r, _ := a.Root(1); return r }()) {
		t.Fatalf("b's copy of root version 1: %v", err)
	}
	// A directory with keys of its own is refused.
	if _, err := Open(filepath.Join(base, "c", Dir), kek, now, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenShared(ctx, db, filepath.Join(base, "c", Dir), kek, now, 0, 0); !errors.Is(err, ErrKeysDiffer) || !errors.Is(err, ErrKeys) {
		t.Fatalf("a data directory with other keys: %v, want ErrKeysDiffer", err)
	}
	// A renewal by a replica started later reaches the others on demand.
	later := now.Add(RootExpiry - RootRenewBefore + time.Hour)
	c, err := OpenShared(ctx, db, filepath.Join(base, "d", Dir), kek, later, 0, 0)
	if err != nil || c.Roots() != 2 {
		t.Fatalf("renewal: %d roots, %v", c.Roots(), err)
	}
	r2, _ := c.Root(2)
	if got, ok, err := a.RootContext(ctx, 2, now.Add(RootRecheck)); err != nil || !ok || !bytes.Equal(got, r2) {
		t.Fatalf("RootContext(2) on an older replica: %t, %v", ok, err)
	}
}
