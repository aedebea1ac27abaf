package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/server/store"
)

// twoReplicas opens one fresh database twice, as two server replicas do.
func twoReplicas(t *testing.T, newDSN NewDSN) (store.Store, store.Store) {
	dsn := newDSN(t)
	return open(t, dsn), open(t, dsn)
}

func dashSession(secret, user string, created time.Time) store.DashboardSession {
	return store.DashboardSession{Hash: hash(secret), UserID: user, CreatedAt: created, LastSeen: created, ExpiresAt: created.Add(8 * time.Hour)}
}

func testDashboardSessions(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	a, b := twoReplicas(t, newDSN)
	mustUser(t, a, user("u-alice", "alice", "operator"))
	const idle = 30 * time.Minute
	touch := func(s store.Store, secret string, now time.Time) (store.DashboardSession, error) {
		return s.TouchDashboardSession(ctx, hash(secret), now, now.Add(-idle))
	}
	want := dashSession("s1", "u-alice", at(0))
	if err := a.CreateDashboardSession(ctx, want, at(-idle)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "duplicate hash", a.CreateDashboardSession(ctx, want, at(-idle)), store.ErrExists)
	wantErr(t, "unknown user", a.CreateDashboardSession(ctx, dashSession("s9", "u-nobody", at(0)), at(-idle)), store.ErrNotFound)
	for name, bad := range map[string]func(*store.DashboardSession){
		"short hash":        func(x *store.DashboardSession) { x.Hash = x.Hash[:31] },
		"expires at create": func(x *store.DashboardSession) { x.ExpiresAt = x.CreatedAt },
		"no user":           func(x *store.DashboardSession) { x.UserID = "" },
		"long flash":        func(x *store.DashboardSession) { x.Flash = string(make([]byte, store.MaxMessageLen+1)) },
	} {
		x := dashSession("s-bad", "u-alice", at(0))
		bad(&x)
		wantErr(t, name, a.CreateDashboardSession(ctx, x, at(-idle)), store.ErrInvalid)
	}

	// Created on one replica, used on the other; LastSeen moves forward only.
	got, err := touch(b, "s1", at(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want.LastSeen = at(10 * time.Minute)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("TouchDashboardSession (-want +got):\n%s", diff)
	}
	if got, err = touch(a, "s1", at(5*time.Minute)); err != nil || !got.LastSeen.Equal(at(10*time.Minute).Truncate(time.Microsecond)) {
		t.Errorf("touch with an earlier clock: LastSeen %v, %v; want it kept at %v", got.LastSeen, err, at(10*time.Minute))
	}
	wantErr(t, "unknown", func() error { _, err := touch(a, "nope", at(0)); return err }(), store.ErrNotFound)
	if err := a.CreateDashboardSession(ctx, dashSession("s0", "u-alice", at(0)), at(-idle)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "before creation", func() error { _, err := touch(a, "s0", at(-time.Second)); return err }(), store.ErrNotFound)

	// Flash: set on one replica, taken once.
	if err := b.SetDashboardSessionFlash(ctx, hash("s1"), "approved"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "flash of unknown", a.SetDashboardSessionFlash(ctx, hash("nope"), "x"), store.ErrNotFound)
	got, _ = touch(a, "s1", at(11*time.Minute))
	if got.Flash != "approved" {
		t.Fatalf("flash %q, want %q", got.Flash, "approved")
	}
	var took []bool
	for _, s := range []store.Store{a, b} {
		ok, err := s.TakeDashboardSessionFlash(ctx, hash("s1"), got.Flash)
		if err != nil {
			t.Fatal(err)
		}
		took = append(took, ok)
	}
	if !slices.Equal(took, []bool{true, false}) {
		t.Errorf("two takes of one flash: %v, want [true false]", took)
	}

	// Idle timeout: live just before, gone (and deleted) at it.
	if _, err := touch(b, "s1", at(11*time.Minute+idle-time.Second)); err != nil {
		t.Fatalf("touch within the idle timeout: %v", err)
	}
	wantErr(t, "idle", func() error { _, err := touch(a, "s1", at(11*time.Minute+2*idle)); return err }(), store.ErrNotFound)
	if err := a.CreateDashboardSession(ctx, want, at(-idle)); err != nil {
		t.Fatalf("the idle session was not deleted: %v", err)
	}

	// Absolute expiry, however active.
	for now := at(0); now.Before(want.ExpiresAt); now = now.Add(20 * time.Minute) {
		if _, err := touch(a, "s1", now); err != nil {
			t.Fatalf("touch at %v: %v", now.Sub(at(0)), err)
		}
	}
	wantErr(t, "expired", func() error { _, err := touch(a, "s1", want.ExpiresAt); return err }(), store.ErrNotFound)

	// Logout on one replica ends it on the other.
	if err := a.CreateDashboardSession(ctx, dashSession("s2", "u-alice", at(time.Hour)), at(-idle)); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteDashboardSession(ctx, hash("s2")); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteDashboardSession(ctx, hash("s2")); err != nil {
		t.Fatalf("deleting an absent session: %v", err)
	}
	wantErr(t, "logged out", func() error { _, err := touch(a, "s2", at(time.Hour)); return err }(), store.ErrNotFound)

	// Periodic deletion removes expired and idle sessions only.
	for i, c := range []time.Time{at(0), at(2 * time.Hour), at(3 * time.Hour)} {
		if err := a.CreateDashboardSession(ctx, dashSession(fmt.Sprint("p", i), "u-alice", c), at(-idle)); err != nil {
			t.Fatal(err)
		}
	}
	now := at(3*time.Hour + time.Minute)
	n, err := b.DeleteExpiredDashboardSessions(ctx, now, now.Add(-idle))
	if err != nil || n != 2 {
		t.Errorf("DeleteExpiredDashboardSessions: %d, %v; want 2 (p0, p1)", n, err)
	}
	if _, err := touch(a, "p2", now); err != nil {
		t.Errorf("live session deleted: %v", err)
	}
}

func testDashboardSessionsBounded(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	dsn := newDSN(t)
	s := open(t, dsn)
	mustUser(t, s, user("u-alice", "alice", "operator"))
	start := at(0)
	if err := s.CreateDashboardSession(ctx, dashSession("oldest", "u-alice", start), start.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Fill up to the limit directly (one statement), with later LastSeen.
	dialect, _, _ := store.ParseDSN(dsn)
	fill := `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
		INSERT INTO dashboard_sessions (hash, user_id, created_at, last_seen, expires_at)
		SELECT randomblob(32), 'u-alice', $2, $2 + i, $3 FROM n`
	if dialect == store.DialectPostgres {
		fill = `INSERT INTO dashboard_sessions (hash, user_id, created_at, last_seen, expires_at)
		SELECT decode(lpad(to_hex(i), 64, '0'), 'hex'), 'u-alice', $2::bigint, $2::bigint + i, $3::bigint FROM generate_series(1, $1::bigint) AS i`
	}
	if _, err := rawDB(t, dsn).ExecContext(ctx, fill, store.MaxDashboardSessions-1, start.UnixMicro(), start.Add(8*time.Hour).UnixMicro()); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDashboardSession(ctx, dashSession("newest", "u-alice", start.Add(time.Minute)), start.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	now := start.Add(2 * time.Minute)
	if _, err := s.TouchDashboardSession(ctx, hash("oldest"), now, start.Add(-time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("least recently used session: %v, want evicted", err)
	}
	if _, err := s.TouchDashboardSession(ctx, hash("newest"), now, start.Add(-time.Hour)); err != nil {
		t.Errorf("new session: %v, want kept", err)
	}
	var n int
	if err := rawDB(t, dsn).QueryRowContext(ctx, `SELECT COUNT(*) FROM dashboard_sessions`).Scan(&n); err != nil || n != store.MaxDashboardSessions {
		t.Errorf("%d sessions stored (%v), want MaxDashboardSessions = %d", n, err, store.MaxDashboardSessions)
	}
}

func testTOTPAttempts(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	a, b := twoReplicas(t, newDSN)
	mustUser(t, a, user("u-a", "a", "approver"))
	const window = 5 * time.Minute
	record := func(s store.Store, now time.Time) (int64, time.Time) {
		t.Helper()
		n, first, err := s.RecordTOTPAttempt(ctx, "u-a", now, now.Add(-window))
		if err != nil {
			t.Fatal(err)
		}
		return n, first
	}
	for i, s := range []store.Store{a, b, a} {
		if n, first := record(s, at(time.Duration(i)*time.Minute)); n != int64(i+1) || !first.Equal(at(0).Truncate(time.Microsecond)) {
			t.Errorf("attempt %d: %d since %v, want %d since %v", i+1, n, first, i+1, at(0))
		}
	}
	// The window restarts with the first attempt after it passed.
	if n, first := record(b, at(window)); n != 1 || !first.Equal(at(window).Truncate(time.Microsecond)) {
		t.Errorf("after the window: %d since %v, want 1 since %v", n, first, at(window))
	}
	if err := b.ClearTOTPAttempts(ctx, "u-a"); err != nil {
		t.Fatal(err)
	}
	if n, _ := record(a, at(window+time.Second)); n != 1 {
		t.Errorf("after clearing: %d, want 1", n)
	}
	if _, _, err := a.RecordTOTPAttempt(ctx, "u-nobody", at(0), at(-window)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: %v, want ErrNotFound", err)
	}
	if err := a.ClearTOTPAttempts(ctx, "u-a"); err != nil {
		t.Fatal(err)
	}

	// Concurrent attempts on two replicas get distinct counts 1..N.
	const workers = 20
	var mu sync.Mutex
	var counts []int64
	var wg sync.WaitGroup
	for i := range workers {
		s := []store.Store{a, b}[i%2]
		wg.Go(func() {
			n, _, err := s.RecordTOTPAttempt(ctx, "u-a", at(time.Hour), at(time.Hour-window))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			counts = append(counts, n)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(counts)
	want := make([]int64, workers)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("concurrent attempt counts (-want +got):\n%s", diff)
	}
}

func testDirectorRoots(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	a, b := twoReplicas(t, newDSN)
	roots, err := a.ListDirectorRoots(ctx)
	if err != nil || len(roots) != 0 {
		t.Fatalf("ListDirectorRoots of a new database: %d, %v", len(roots), err)
	}
	if _, err := a.PutDirectorRoot(ctx, 2, []byte("v2"), at(0)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("version 2 before 1: %v, want ErrConflict", err)
	}
	for _, bad := range []struct {
		v    int64
		data []byte
	}{{0, []byte("x")}, {store.MaxDirectorRoots + 1, []byte("x")}, {1, nil}, {1, make([]byte, store.MaxDirectorRootLen+1)}} {
		if _, err := a.PutDirectorRoot(ctx, bad.v, bad.data, at(0)); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutDirectorRoot(%d, %d bytes): %v, want ErrInvalid", bad.v, len(bad.data), err)
		}
	}
	// The first writer of a version wins; the other gets its bytes.
	got, err := a.PutDirectorRoot(ctx, 1, []byte("a1"), at(0))
	if err != nil || !bytes.Equal(got, []byte("a1")) {
		t.Fatalf("PutDirectorRoot(1) on a: %q, %v", got, err)
	}
	if got, err := b.PutDirectorRoot(ctx, 1, []byte("b1"), at(0)); err != nil || !bytes.Equal(got, []byte("a1")) {
		t.Errorf("PutDirectorRoot(1) on b: %q, %v; want a's %q", got, err, "a1")
	}
	if _, err := b.PutDirectorRoot(ctx, 2, []byte("b2"), at(0)); err != nil {
		t.Fatal(err)
	}
	roots, err = a.ListDirectorRoots(ctx)
	if diff := cmp.Diff([][]byte{[]byte("a1"), []byte("b2")}, roots); err != nil || diff != "" {
		t.Errorf("ListDirectorRoots (-want +got):\n%s %v", diff, err)
	}
}
