package trust

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/trust/trusttest"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// farFuture is a safe expiry for test metadata.
var farFuture = t0.AddDate(1, 0, 0)

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

// newRepo returns a fresh repository served on loopback.
func newRepo(t *testing.T) (*trusttest.Repo, Source) {
	t.Helper()
	r := trusttest.New(farFuture)
	md, tg := r.Serve(t)
	return r, NewHTTPSource(md, tg, nil)
}

// newClient returns a client whose store (a DirStore in a temp dir) is
// seeded with root version 1 of r.
func newClient(t *testing.T, r *trusttest.Repo, src Source, now time.Time) (*Client, Store) {
	t.Helper()
	store := NewDirStore(durable.OS, t.TempDir())
	if err := store.Put("root.json", r.RootBytes(1)); err != nil {
		t.Fatal(err)
	}
	return reopen(t, store, src, now), store
}

func reopen(t *testing.T, store Store, src Source, now time.Time) *Client {
	t.Helper()
	c, err := New(store, src, Config{Now: at(now)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func mustRefresh(t *testing.T, c *Client) {
	t.Helper()
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want one wrapping %q", err, target)
	}
}

func stored(t *testing.T, s Store, name string) []byte {
	t.Helper()
	b, err := s.Get(name)
	if err != nil {
		t.Fatalf("store %s: %v", name, err)
	}
	return b
}

func download(t *testing.T, c *Client, path string) ([]byte, error) {
	t.Helper()
	tf, err := c.Target(context.Background(), path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err = c.Download(context.Background(), tf, &buf)
	return buf.Bytes(), err
}
