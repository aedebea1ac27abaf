package server

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/server/repofiles"
)

// TestPushCarriesTheLogBeforeTheMetadata: repo push copies log/ after the
// payloads, its checkpoint last of the log and before any metadata, and
// never tessera's dot-named state.
func TestPushCarriesTheLogBeforeTheMetadata(t *testing.T) {
	ctx := context.Background()
	v := repotest.New(t, repotest.Options{})
	v.Release("1.0.0", 1, repotest.Image(1, 4096), nil)
	logDir := filepath.Join(v.Repo.PublicDir(), "log")
	for name, data := range map[string]string{
		"checkpoint": "cp\n", "tile/0/000.p/1": "h", "tile/entries/000.p/1": "e", "history": "1 x\n",
		"releases/" + strings.Repeat("b", 64): `{"index":0}`, ".state/treeState": "state",
	} {
		p := filepath.Join(logDir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, err := objstore.OpenDir(v.Repo.PublicDir())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := objstore.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	res, err := repofiles.Push(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	names := res.Uploaded
	cp := slices.Index(names, "log/checkpoint")
	if cp < 0 {
		t.Fatalf("log/checkpoint not pushed: %q", names)
	}
	for i, n := range names {
		switch {
		case strings.HasPrefix(n, "log/.state"):
			t.Errorf("pushed tessera's state %s", n)
		case strings.HasPrefix(n, "log/") && n != "log/checkpoint" && i > cp:
			t.Errorf("%s pushed after the checkpoint", n)
		case strings.HasPrefix(n, "metadata/") && i < cp:
			t.Errorf("%s pushed before the log's checkpoint", n)
		case strings.HasPrefix(n, "targets/") && i > cp:
			t.Errorf("payload %s pushed after the log", n)
		}
	}
	checkPushOrder(t, names)
	if !slices.Contains(names, "log/releases/"+strings.Repeat("b", 64)) || !slices.Contains(names, "log/tile/entries/000.p/1") {
		t.Errorf("log files missing: %q", names)
	}
}
