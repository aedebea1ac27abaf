package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/server/store"
)

func testEnrollmentTokenLifecycle(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	tok := store.EnrollmentToken{ID: "tok-1", Hash: hash("secret-1"), Product: "acme/router", Model: "x1",
		UsesLeft: 2, ExpiresAt: at(time.Hour), CreatedAt: at(0)}
	if err := s.CreateEnrollmentToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "duplicate id", s.CreateEnrollmentToken(ctx, store.EnrollmentToken{ID: "tok-1", Hash: hash("other"),
		UsesLeft: 1, ExpiresAt: at(time.Hour), CreatedAt: at(0)}), store.ErrExists)
	wantErr(t, "duplicate hash", s.CreateEnrollmentToken(ctx, store.EnrollmentToken{ID: "tok-2", Hash: hash("secret-1"),
		UsesLeft: 1, ExpiresAt: at(time.Hour), CreatedAt: at(0)}), store.ErrExists)

	for left := 1; left >= 0; left-- {
		got, err := s.ConsumeEnrollmentToken(ctx, hash("secret-1"), at(time.Minute))
		if err != nil {
			t.Fatalf("consume with %d left after: %v", left, err)
		}
		want := tok
		want.UsesLeft = left
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Errorf("consumed token (-want +got):\n%s", diff)
		}
	}
	// Every failure is the same ErrNotFound, whatever the reason.
	exp := store.EnrollmentToken{ID: "tok-exp", Hash: hash("expiring"), UsesLeft: 5, ExpiresAt: at(time.Hour), CreatedAt: at(0)}
	if err := s.CreateEnrollmentToken(ctx, exp); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		hash []byte
		now  time.Time
	}{
		{"used up", hash("secret-1"), at(time.Minute)},
		{"expired", hash("expiring"), at(2 * time.Hour)},
		{"expires exactly now", hash("expiring"), at(time.Hour)},
		{"unknown secret", hash("guess"), at(time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ConsumeEnrollmentToken(ctx, tc.hash, tc.now)
			wantErr(t, "consume", err, store.ErrNotFound)
		})
	}
	// The expired attempts did not spend uses.
	got, err := s.ConsumeEnrollmentToken(ctx, hash("expiring"), at(time.Minute))
	if err != nil || got.UsesLeft != 4 {
		t.Fatalf("consume after failed attempts: %+v, %v; want 4 uses left", got, err)
	}
	for _, tc := range []struct {
		name string
		tok  store.EnrollmentToken
	}{
		{"short hash", store.EnrollmentToken{ID: "a", Hash: []byte("short"), UsesLeft: 1, ExpiresAt: at(1), CreatedAt: at(0)}},
		{"zero uses", store.EnrollmentToken{ID: "a", Hash: hash("a"), UsesLeft: 0, ExpiresAt: at(1), CreatedAt: at(0)}},
		{"too many uses", store.EnrollmentToken{ID: "a", Hash: hash("a"), UsesLeft: store.MaxTokenUses + 1, ExpiresAt: at(1), CreatedAt: at(0)}},
		{"no expiry", store.EnrollmentToken{ID: "a", Hash: hash("a"), UsesLeft: 1, CreatedAt: at(0)}},
		{"bad id", store.EnrollmentToken{ID: "a'; DROP TABLE devices; --", Hash: hash("a"), UsesLeft: 1, ExpiresAt: at(1), CreatedAt: at(0)}},
		{"long product", store.EnrollmentToken{ID: "a", Hash: hash("a"), Product: strings.Repeat("p", store.MaxStringLen+1), UsesLeft: 1, ExpiresAt: at(1), CreatedAt: at(0)}},
	} {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			wantErr(t, "create", s.CreateEnrollmentToken(ctx, tc.tok), store.ErrInvalid)
		})
	}
	_, err = s.ConsumeEnrollmentToken(ctx, []byte("short"), at(0))
	wantErr(t, "consume short hash", err, store.ErrInvalid)
}

func testConcurrentConsume(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	const uses, workers = 10, 50
	if err := s.CreateEnrollmentToken(ctx, store.EnrollmentToken{ID: "batch", Hash: hash("batch"),
		UsesLeft: uses, ExpiresAt: at(time.Hour), CreatedAt: at(0)}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, workers)
	start := make(chan struct{})
	for range workers {
		go func() {
			<-start
			_, err := s.ConsumeEnrollmentToken(ctx, hash("batch"), at(time.Minute))
			errs <- err
		}()
	}
	close(start)
	ok := 0
	for range workers {
		switch err := <-errs; {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrNotFound):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != uses {
		t.Fatalf("%d of %d concurrent consumers succeeded, want exactly %d", ok, workers, uses)
	}
}

func testAdminTokens(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	mustUser(t, s, user("u-alice", "alice", "admin"))
	tok := store.AdminToken{ID: "adm-1", UserID: "u-alice", Name: "Alice's laptop", Role: "admin", Hash: hash("admin-secret"), CreatedAt: at(0)}
	if err := s.CreateAdminToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "duplicate id", s.CreateAdminToken(ctx, store.AdminToken{ID: "adm-1", UserID: "u-alice", Name: "x", Role: "viewer",
		Hash: hash("x"), CreatedAt: at(0)}), store.ErrExists)
	wantErr(t, "duplicate hash", s.CreateAdminToken(ctx, store.AdminToken{ID: "adm-2", UserID: "u-alice", Name: "x", Role: "viewer",
		Hash: hash("admin-secret"), CreatedAt: at(0)}), store.ErrExists)
	wantErr(t, "unknown user", s.CreateAdminToken(ctx, store.AdminToken{ID: "adm-3", UserID: "u-nobody", Name: "x", Role: "viewer",
		Hash: hash("nobody"), CreatedAt: at(0)}), store.ErrNotFound)
	got, err := s.GetAdminTokenByHash(ctx, hash("admin-secret"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tok, got, cmpOpts...); diff != "" {
		t.Errorf("GetAdminTokenByHash (-want +got):\n%s", diff)
	}
	if err := s.TouchAdminToken(ctx, "adm-1", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetAdminTokenByHash(ctx, hash("admin-secret"))
	if err != nil {
		t.Fatal(err)
	}
	tok.LastUsed = at(time.Hour)
	if diff := cmp.Diff(tok, got, cmpOpts...); diff != "" {
		t.Errorf("after TouchAdminToken (-want +got):\n%s", diff)
	}
	_, err = s.GetAdminTokenByHash(ctx, hash("wrong"))
	wantErr(t, "unknown hash", err, store.ErrNotFound)
	wantErr(t, "touch unknown", s.TouchAdminToken(ctx, "adm-9", at(0)), store.ErrNotFound)
	_, err = s.GetAdminTokenByHash(ctx, nil)
	wantErr(t, "nil hash", err, store.ErrInvalid)
	for _, tc := range []struct {
		name string
		tok  store.AdminToken
	}{
		{"no name", store.AdminToken{ID: "a", UserID: "u-alice", Role: "admin", Hash: hash("a"), CreatedAt: at(0)}},
		{"no user", store.AdminToken{ID: "a", Name: "a", Role: "admin", Hash: hash("a"), CreatedAt: at(0)}},
		{"bad role", store.AdminToken{ID: "a", UserID: "u-alice", Name: "a", Role: "Admin!", Hash: hash("a"), CreatedAt: at(0)}},
		{"long hash", store.AdminToken{ID: "a", UserID: "u-alice", Name: "a", Role: "admin", Hash: make([]byte, 33), CreatedAt: at(0)}},
		{"zero created", store.AdminToken{ID: "a", UserID: "u-alice", Name: "a", Role: "admin", Hash: hash("a")}},
	} {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			wantErr(t, "CreateAdminToken", s.CreateAdminToken(ctx, tc.tok), store.ErrInvalid)
		})
	}
}
