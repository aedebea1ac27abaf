package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/server/store"
)

func session(id, user string, created time.Time, ttl time.Duration) store.AdminSession {
	return store.AdminSession{ID: id, UserID: user, TokenID: "at-1", Role: "operator", Hash: hash(id),
		CreatedAt: created, ExpiresAt: created.Add(ttl)}
}

func testAdminSessions(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	mustUser(t, s, user("u-alice", "alice", "operator"))
	a := session("as-1", "u-alice", at(0), 15*time.Minute)
	if err := s.CreateAdminSession(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAdminSessionByHash(ctx, hash("as-1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, got, cmpOpts...); diff != "" {
		t.Errorf("GetAdminSessionByHash (-want +got):\n%s", diff)
	}
	if !got.Live(at(time.Minute)) || got.Live(at(15*time.Minute)) || got.Live(at(-time.Second)) {
		t.Errorf("Live: want live only within [created, expires)")
	}
	wantErr(t, "unknown hash", func() error { _, err := s.GetAdminSessionByHash(ctx, hash("nope")); return err }(), store.ErrNotFound)
	wantErr(t, "duplicate id", s.CreateAdminSession(ctx, session("as-1", "u-alice", at(0), time.Minute)), store.ErrExists)
	dup := session("as-2", "u-alice", at(0), time.Minute)
	dup.Hash = hash("as-1")
	wantErr(t, "duplicate hash", s.CreateAdminSession(ctx, dup), store.ErrExists)
	wantErr(t, "unknown user", s.CreateAdminSession(ctx, session("as-3", "u-nobody", at(0), time.Minute)), store.ErrNotFound)

	for name, bad := range map[string]func(*store.AdminSession){
		"short hash":        func(x *store.AdminSession) { x.Hash = x.Hash[:31] },
		"expires at create": func(x *store.AdminSession) { x.ExpiresAt = x.CreatedAt },
		"revoked at create": func(x *store.AdminSession) { x.RevokedAt = x.CreatedAt },
		"no token":          func(x *store.AdminSession) { x.TokenID = "" },
		"bad role":          func(x *store.AdminSession) { x.Role = "Admin!" },
	} {
		x := session("as-bad", "u-alice", at(0), time.Minute)
		bad(&x)
		wantErr(t, name, s.CreateAdminSession(ctx, x), store.ErrInvalid)
	}

	// Revocation is recorded once.
	if err := s.RevokeAdminSession(ctx, "as-1", at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAdminSession(ctx, "as-1", at(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetAdminSessionByHash(ctx, hash("as-1"))
	if !got.RevokedAt.Equal(at(time.Minute).Truncate(time.Microsecond)) || got.Live(at(2*time.Minute)) {
		t.Errorf("revoked session: RevokedAt %v, live %t", got.RevokedAt, got.Live(at(2*time.Minute)))
	}
	wantErr(t, "revoke unknown", s.RevokeAdminSession(ctx, "as-nope", at(0)), store.ErrNotFound)

	// Old sessions are purged after the retention; recent expired ones stay.
	later := at(store.AdminSessionRetention + 16*time.Minute)
	if err := s.CreateAdminSession(ctx, session("as-4", "u-alice", later, time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "purged session", func() error { _, err := s.GetAdminSessionByHash(ctx, hash("as-1")); return err }(), store.ErrNotFound)
	if _, err := s.GetAdminSessionByHash(ctx, hash("as-4")); err != nil {
		t.Fatal(err)
	}
}

func testAdminSessionLimit(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	mustUser(t, s, user("u-bob", "bob", "operator"), user("u-carol", "carol", "operator"))
	for i := range store.MaxAdminSessionsPerUser {
		if err := s.CreateAdminSession(ctx, session(fmt.Sprintf("as-%d", i), "u-bob", at(0), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "one session too many", s.CreateAdminSession(ctx, session("as-more", "u-bob", at(0), time.Hour)), store.ErrConflict)
	if err := s.CreateAdminSession(ctx, session("as-carol", "u-carol", at(0), time.Hour)); err != nil {
		t.Fatalf("the limit is per user: %v", err)
	}
	// A revoked or expired session no longer counts.
	if err := s.RevokeAdminSession(ctx, "as-0", at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAdminSession(ctx, session("as-more", "u-bob", at(time.Minute), time.Hour)); err != nil {
		t.Fatalf("after a logout: %v", err)
	}
	if err := s.CreateAdminSession(ctx, session("as-after", "u-bob", at(time.Hour), time.Hour)); err != nil {
		t.Fatalf("after the others expired: %v", err)
	}
}
