package storetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/server/store"
)

func user(id, name, role string) store.User {
	return store.User{ID: id, Name: name, Role: role, CreatedAt: at(0)}
}

func mustUser(t testing.TB, s store.Store, users ...store.User) {
	t.Helper()
	for _, u := range users {
		if err := s.CreateUser(context.Background(), u); err != nil {
			t.Fatalf("CreateUser(%s): %v", u.Name, err)
		}
	}
}

func testUsers(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	alice := user("u-alice", "alice", "admin")
	bob := user("u-bob", "bob", "viewer")
	mustUser(t, s, bob, alice)
	wantErr(t, "duplicate id", s.CreateUser(ctx, user("u-alice", "other", "viewer")), store.ErrExists)
	wantErr(t, "duplicate name", s.CreateUser(ctx, user("u-other", "alice", "viewer")), store.ErrExists)

	got, err := s.GetUser(ctx, "u-alice")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(alice, got, cmpOpts...); diff != "" {
		t.Errorf("GetUser (-want +got):\n%s", diff)
	}
	got, err = s.GetUserByName(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(bob, got, cmpOpts...); diff != "" {
		t.Errorf("GetUserByName (-want +got):\n%s", diff)
	}
	list, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.User{alice, bob}, list, cmpOpts...); diff != "" {
		t.Errorf("ListUsers (-want +got):\n%s", diff)
	}

	if err := s.DisableUser(ctx, "u-bob", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableUser(ctx, "u-bob", at(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetUser(ctx, "u-bob")
	if !got.Disabled() || !got.DisabledAt.Equal(at(time.Hour)) {
		t.Errorf("disabled twice: DisabledAt %v, want the first time %v", got.DisabledAt, at(time.Hour))
	}
	wantErr(t, "disable unknown", s.DisableUser(ctx, "u-nobody", at(0)), store.ErrNotFound)
	_, err = s.GetUser(ctx, "u-nobody")
	wantErr(t, "get unknown", err, store.ErrNotFound)
	_, err = s.GetUserByName(ctx, "nobody")
	wantErr(t, "get unknown name", err, store.ErrNotFound)

	tok := store.AdminToken{ID: "at-1", UserID: "u-alice", Name: "laptop", Role: "admin", Hash: hash("t1"), CreatedAt: at(time.Minute)}
	tok2 := store.AdminToken{ID: "at-2", UserID: "u-alice", Name: "ci", Role: "admin", Hash: hash("t2"), CreatedAt: at(2 * time.Minute)}
	for _, tk := range []store.AdminToken{tok2, tok} {
		if err := s.CreateAdminToken(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	toks, err := s.ListAdminTokens(ctx, "u-alice")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.AdminToken{tok, tok2}, toks, cmpOpts...); diff != "" {
		t.Errorf("ListAdminTokens (-want +got):\n%s", diff)
	}
	if toks, err := s.ListAdminTokens(ctx, "u-bob"); err != nil || len(toks) != 0 {
		t.Errorf("ListAdminTokens(bob) = %v, %v; want none", toks, err)
	}

	for _, tc := range []struct {
		name string
		u    store.User
	}{
		{"no id", user("", "x", "viewer")},
		{"name with space", user("u-x", "x y", "viewer")},
		{"name injection", user("u-x", "x'; DROP TABLE users; --", "viewer")},
		{"long name", user("u-x", strings.Repeat("n", store.MaxIDLen+1), "viewer")},
		{"no role", user("u-x", "x", "")},
		{"bad role", user("u-x", "x", "Admin!")},
		{"zero created", store.User{ID: "u-x", Name: "x", Role: "viewer"}},
		{"huge sealed secret", store.User{ID: "u-x", Name: "x", Role: "viewer", CreatedAt: at(0), TOTPSecret: make([]byte, store.MaxSealedLen+1)}},
	} {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			wantErr(t, "CreateUser", s.CreateUser(ctx, tc.u), store.ErrInvalid)
		})
	}
}

func testTOTPSecret(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	mustUser(t, s, user("u-a", "a", "approver"))
	sealed := bytes.Repeat([]byte{0xA5}, 60)
	if err := s.SetUserTOTP(ctx, "u-a", sealed); err != nil {
		t.Fatal(err)
	}
	if err := s.AcceptTOTPStep(ctx, "u-a", 100); err != nil {
		t.Fatal(err)
	}
	u, err := s.GetUser(ctx, "u-a")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(u.TOTPSecret, sealed) || u.TOTPLastStep != 100 {
		t.Fatalf("user after SetUserTOTP: secret %x, last step %d", u.TOTPSecret, u.TOTPLastStep)
	}
	// Re-enrolling resets the replay state; removing clears the secret.
	if err := s.SetUserTOTP(ctx, "u-a", sealed[:30]); err != nil {
		t.Fatal(err)
	}
	if u, _ = s.GetUser(ctx, "u-a"); u.TOTPLastStep != 0 || !bytes.Equal(u.TOTPSecret, sealed[:30]) {
		t.Fatalf("after re-enrollment: secret %x, last step %d", u.TOTPSecret, u.TOTPLastStep)
	}
	if err := s.SetUserTOTP(ctx, "u-a", nil); err != nil {
		t.Fatal(err)
	}
	if u, _ = s.GetUser(ctx, "u-a"); u.TOTPSecret != nil {
		t.Fatalf("after removal: secret %x", u.TOTPSecret)
	}
	wantErr(t, "unknown user", s.SetUserTOTP(ctx, "u-nobody", sealed), store.ErrNotFound)
	wantErr(t, "oversize", s.SetUserTOTP(ctx, "u-a", make([]byte, store.MaxSealedLen+1)), store.ErrInvalid)
}

func testTOTPReplay(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	mustUser(t, s, user("u-a", "a", "approver"), user("u-b", "b", "approver"))
	if err := s.AcceptTOTPStep(ctx, "u-a", 1000); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		step int64
		want error
	}{
		{"same step replayed", 1000, store.ErrTOTPReplay},
		{"older step after a newer one", 999, store.ErrTOTPReplay},
		{"next step", 1001, nil},
		{"replay of the next step", 1001, store.ErrTOTPReplay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AcceptTOTPStep(ctx, "u-a", tc.step)
			if !errors.Is(err, tc.want) {
				t.Fatalf("AcceptTOTPStep(%d) = %v, want %v", tc.step, err, tc.want)
			}
		})
	}
	// Per user: b's steps are independent of a's.
	if err := s.AcceptTOTPStep(ctx, "u-b", 1000); err != nil {
		t.Fatalf("other user's step: %v", err)
	}
	wantErr(t, "unknown user", s.AcceptTOTPStep(ctx, "u-nobody", 5), store.ErrNotFound)
	wantErr(t, "zero step", s.AcceptTOTPStep(ctx, "u-a", 0), store.ErrInvalid)
}

func testTOTPConcurrent(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	mustUser(t, s, user("u-a", "a", "approver"))
	const workers = 20
	errs := make(chan error, workers)
	start := make(chan struct{})
	for range workers {
		go func() {
			<-start
			errs <- s.AcceptTOTPStep(ctx, "u-a", 42)
		}()
	}
	close(start)
	ok := 0
	for range workers {
		switch err := <-errs; {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrTOTPReplay):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent uses of one TOTP step succeeded, want exactly 1", ok)
	}
}

func release(id, env, uploader string) store.Release {
	return store.Release{ID: id, Product: "acme/router-x1", Version: "1.2.0", Environment: env,
		TargetPath: "acme/router-x1/1.2.0/fw.img", Uploader: uploader, CreatedAt: at(time.Minute)}
}

func approvalUsers(t *testing.T, s store.Store) {
	mustUser(t, s, user("u-rm", "rm", "release_manager"), user("u-a1", "a1", "approver"),
		user("u-a2", "a2", "approver"), user("u-a3", "a3", "approver"), user("u-op", "op", "operator"))
}

func testApprovals(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	approvalUsers(t, s)
	rel := release("rel-1", "prod", "u-rm")
	if err := s.CreateRelease(ctx, rel); err != nil {
		t.Fatal(err)
	}
	dup := release("rel-2", "prod", "u-rm")
	wantErr(t, "same product, version and environment", s.CreateRelease(ctx, dup), store.ErrExists)
	if err := s.CreateRelease(ctx, release("rel-2", "staging", "u-rm")); err != nil {
		t.Fatalf("same release for another environment: %v", err)
	}
	wantErr(t, "unknown uploader", s.CreateRelease(ctx, release("rel-3", "dev", "u-nobody")), store.ErrNotFound)

	_, err := s.ApproveRelease(ctx, "rel-1", "u-rm", at(time.Hour))
	wantErr(t, "self-approval", err, store.ErrSelfApproval)
	got, err := s.ApproveRelease(ctx, "rel-1", "u-a1", at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.ApproveRelease(ctx, "rel-1", "u-a1", at(2*time.Hour))
	wantErr(t, "same approver twice", err, store.ErrExists)
	got, err = s.GetRelease(ctx, "rel-1")
	if err != nil {
		t.Fatal(err)
	}
	want := rel
	want.Approvals = []store.Approval{{Approver: "u-a1", ApprovedAt: at(time.Hour)}}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("release after approvals (-want +got):\n%s", diff)
	}
	_, err = s.ApproveRelease(ctx, "rel-9", "u-a1", at(time.Hour))
	wantErr(t, "unknown release", err, store.ErrNotFound)
	_, err = s.ApproveRelease(ctx, "rel-1", "u-nobody", at(time.Hour))
	wantErr(t, "unknown approver", err, store.ErrNotFound)

	list, err := s.ListReleases(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "rel-1" && list[1].ID != "rel-1" {
		t.Fatalf("ListReleases: %+v", list)
	}
	for _, r := range list {
		if r.ID == "rel-1" && len(r.Approvals) != 1 {
			t.Errorf("ListReleases lost the approvals of rel-1: %+v", r)
		}
	}
}

func testDeploy(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	approvalUsers(t, s)
	if err := s.CreateRelease(ctx, release("rel-1", "prod", "u-rm")); err != nil {
		t.Fatal(err)
	}
	_, err := s.DeployRelease(ctx, "rel-1", "u-op", 2, at(time.Hour))
	wantErr(t, "no approvals", err, store.ErrNotEnoughApprovals)
	for _, a := range []string{"u-a1", "u-a2"} {
		if _, err := s.ApproveRelease(ctx, "rel-1", a, at(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// An approver disabled after approving no longer counts.
	if err := s.DisableUser(ctx, "u-a2", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, err = s.DeployRelease(ctx, "rel-1", "u-op", 2, at(time.Hour))
	wantErr(t, "one active approval of two", err, store.ErrNotEnoughApprovals)
	wantErr(t, "not enough is a conflict", err, store.ErrConflict)
	if _, err := s.ApproveRelease(ctx, "rel-1", "u-a3", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := s.DeployRelease(ctx, "rel-1", "u-op", 2, at(2*time.Hour))
	if err != nil {
		t.Fatalf("deploy with 2 active approvals: %v", err)
	}
	if !got.DeployedAt.Equal(at(2*time.Hour)) || got.DeployedBy != "u-op" || got.ActiveApprovals() != 2 || len(got.Approvals) != 3 {
		t.Fatalf("deployed release: %+v", got)
	}
	_, err = s.DeployRelease(ctx, "rel-1", "u-op", 2, at(3*time.Hour))
	wantErr(t, "deploy twice", err, store.ErrAlreadyDeployed)
	_, err = s.ApproveRelease(ctx, "rel-1", "u-a1", at(3*time.Hour))
	wantErr(t, "approve after deploy", err, store.ErrConflict)
	_, err = s.DeployRelease(ctx, "rel-9", "u-op", 0, at(time.Hour))
	wantErr(t, "unknown release", err, store.ErrNotFound)

	if err := s.CreateRelease(ctx, release("rel-dev", "dev", "u-rm")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeployRelease(ctx, "rel-dev", "u-op", 0, at(time.Hour)); err != nil {
		t.Fatalf("deploy needing no approvals: %v", err)
	}
	_, err = s.DeployRelease(ctx, "rel-dev", "u-op", -1, at(time.Hour))
	wantErr(t, "negative threshold", err, store.ErrInvalid)
}

func testReleaseValidation(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	approvalUsers(t, s)
	mod := func(f func(*store.Release)) store.Release {
		r := release("rel-x", "prod", "u-rm")
		f(&r)
		return r
	}
	for _, tc := range []struct {
		name string
		r    store.Release
	}{
		{"no product", mod(func(r *store.Release) { r.Product = "" })},
		{"no version", mod(func(r *store.Release) { r.Version = "" })},
		{"bad environment", mod(func(r *store.Release) { r.Environment = "Prod Env" })},
		{"no target path", mod(func(r *store.Release) { r.TargetPath = "" })},
		{"bad id", mod(func(r *store.Release) { r.ID = "rel/1" })},
		{"preset approvals", mod(func(r *store.Release) { r.Approvals = []store.Approval{{Approver: "u-a1", ApprovedAt: at(0)}} })},
		{"preset deployment", mod(func(r *store.Release) { r.DeployedAt, r.DeployedBy = at(0), "u-op" })},
		{"zero created", mod(func(r *store.Release) { r.CreatedAt = time.Time{} })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, "CreateRelease", s.CreateRelease(ctx, tc.r), store.ErrInvalid)
		})
	}
}

func testSecrets(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	got, err := s.PutSecretIfAbsent(ctx, "kek-check", []byte("first"), at(0))
	if err != nil || string(got) != "first" {
		t.Fatalf("first put: %q, %v", got, err)
	}
	got, err = s.PutSecretIfAbsent(ctx, "kek-check", []byte("second"), at(time.Hour))
	if err != nil || string(got) != "first" {
		t.Fatalf("second put returned %q, %v; want the first value kept", got, err)
	}
	_, err = s.PutSecretIfAbsent(ctx, "kek-check", nil, at(0))
	wantErr(t, "empty value", err, store.ErrInvalid)
	_, err = s.PutSecretIfAbsent(ctx, "x", make([]byte, store.MaxSealedLen+1), at(0))
	wantErr(t, "oversize value", err, store.ErrInvalid)
}
