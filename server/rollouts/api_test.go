package rollouts

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/store"
)

func newEngine(t *testing.T) (*Engine, store.Store) {
	t.Helper()
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e, err := New(Config{DB: db, RequiredApprovals: func(env string) int {
		if env == "prod" {
			return 2
		}
		return 0
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e, db
}

// TestRolloutRequestsAreRefusedBeforeTheStore: malformed requests fail with
// the input sentinels, an unregistered release with store.ErrNotFound, and
// a production release without its approvals cannot start.
func TestRolloutRequestsAreRefusedBeforeTheStore(t *testing.T) {
	e, db := newEngine(t)
	ctx := t.Context()
	op := store.User{ID: "u-op", Name: "op", Role: "operator"}
	for _, tc := range []struct {
		name string
		req  adminapi.CreateRolloutRequest
		want error
	}{
		{"no version", adminapi.CreateRolloutRequest{Release: "acme/x1", Stages: "100%"}, ErrInput},
		{"bad product", adminapi.CreateRolloutRequest{Release: "Acme X@1.0.0", Stages: "100%"}, ErrInput},
		{"unregistered", adminapi.CreateRolloutRequest{Release: "acme/x1@1.0.0", Stages: "100%"}, store.ErrNotFound},
	} {
		if _, err := e.CreateRollout(ctx, op, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := e.SetDeviceTags(ctx, op, "dev-a", []string{"Bad Tag"}); !errors.Is(err, ErrInput) {
		t.Errorf("bad tag: %v", err)
	}

	now := time.Now().UTC().Truncate(time.Second)
	rel := store.Release{ID: "rel-1", Product: "acme/x1", Version: "1.0.0", Environment: "prod",
		TargetPath: "acme/x1/fw-1.0.0.bin", Uploader: "u-rm", CreatedAt: now}
	for _, u := range []store.User{{ID: "u-rm", Name: "rm", Role: "release_manager"}, op} {
		u.CreatedAt = now
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CreateRelease(ctx, rel); err != nil {
		t.Fatal(err)
	}
	v, err := e.CreateRollout(ctx, op, adminapi.CreateRolloutRequest{Release: "acme/x1@1.0.0", Stages: "canary:1,100%"})
	if err != nil {
		t.Fatal(err)
	}
	if v.State != string(rollout.Draft) || len(v.StageViews) != 2 {
		t.Fatalf("draft view: %+v", v)
	}
	if _, err := e.ApplyRollout(ctx, v.ID, rollout.ActionStart, op, ""); !errors.Is(err, ErrApprovalsMissing) {
		t.Fatalf("start without approvals: %v", err)
	}
}
