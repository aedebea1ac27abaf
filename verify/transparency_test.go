package verify

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/tlog"
	"github.com/airlockfw/airlock/tlog/tlogtest"
	"github.com/airlockfw/airlock/trust"
)

func TestTransparencyOnlineAndBundle(t *testing.T) {
	f := newFixture(t, 1)
	lr := tlogtest.NewRepo(t, f.rt)
	f.r = f.rt.Repo // reopened: the harness keeps the log
	f.release("1.1.0", "", f.product1)
	idx := lr.LogRelease("1.1.0")

	srv := httptest.NewTLSServer(http.FileServer(http.Dir(filepath.Join(f.dir, "public"))))
	defer srv.Close()
	o := f.opts()
	o.HTTPClient = srv.Client()
	o.Version = "1.1.0"
	for _, loc := range []string{f.dir, srv.URL} {
		rep, err := Repo(context.Background(), loc, o)
		if err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		if !rep.Logged || rep.LogIndex != idx || !slices.Contains(rep.Checks, CheckTransparency) {
			t.Fatalf("%s: report %+v", loc, rep)
		}
	}
	// The bundle carries the log proof (format 3).
	b := f.bundle("1.1.0")
	m, p := repotest.ParseBundle(t, b)
	if m.LogProof == nil {
		t.Fatal("the bundle carries no log proof")
	}
	rep, err := Bundle(context.Background(), bytes.NewReader(b), f.opts())
	if err != nil || !rep.Logged {
		t.Fatalf("bundle: %v %+v", err, rep)
	}
	// Without it, the release is refused as not logged.
	m.LogProof = nil
	_, err = Bundle(context.Background(), bytes.NewReader(repotest.BuildBundle(t, m, p)), f.opts())
	expectErr(t, err, CheckTransparency, tlog.ErrNotLogged)
	if !strings.Contains(err.Error(), "release acme/router-x1@1.1.0 is not in the transparency log") {
		t.Fatalf("err = %v", err)
	}
}

func TestTransparencyNotLogged(t *testing.T) {
	f := newFixture(t, 1)
	tlogtest.NewRepo(t, f.rt)
	f.r = f.rt.Repo                    // reopened: the harness keeps the log
	f.release("1.1.0", "", f.product1) // validly signed, never logged
	_, err := Repo(context.Background(), f.dir, f.opts())
	expectErr(t, err, CheckTransparency, tlog.ErrNotLogged)
	if !strings.Contains(err.Error(), "transparency check failed: release acme/router-x1@1.1.0 is not in the transparency log (transparency: not logged") {
		t.Fatalf("err = %v", err)
	}
	// A bundle cannot even be made of it.
	var b bytes.Buffer
	if err := f.r.CreateBundle(&b, product, "1.1.0"); err == nil {
		t.Fatal("a bundle of an unlogged release was made")
	}
}

func TestTransparencyHeldCheckpoint(t *testing.T) {
	f := newFixture(t, 1)
	lr := tlogtest.NewRepo(t, f.rt)
	f.r = f.rt.Repo // reopened: the harness keeps the log
	f.release("1.1.0", "", f.product1)
	lr.LogRelease("1.1.0")
	old := f.bundle("1.1.0") // proves from no earlier size
	f.release("1.2.0", "", f.product1)
	lr.LogRelease("1.2.0")
	// A verifier holding the newer checkpoint refuses the older bundle.
	st := trust.NewMemStore()
	if err := st.Put("root.json", f.rootJSON); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(trust.LogCheckpointFile, lr.Log.Checkpoint()); err != nil {
		t.Fatal(err)
	}
	o := f.opts()
	o.Store = st
	_, err := Bundle(context.Background(), bytes.NewReader(old), o)
	expectErr(t, err, CheckTransparency, tlog.ErrStale)
	// A new bundle of the same release proves consistency from size 1.
	if _, err := Bundle(context.Background(), bytes.NewReader(f.bundle("1.1.0")), o); err != nil {
		t.Fatal(err)
	}
}

func TestBundleWithoutLogIsFormat1(t *testing.T) {
	f := newFixture(t, 1)
	b := f.bundle("1.0.0")
	if v := int(b[len(bundle.Magic)])<<8 | int(b[len(bundle.Magic)+1]); v != bundle.FormatVersion {
		t.Fatalf("format %d, want %d", v, bundle.FormatVersion)
	}
}
