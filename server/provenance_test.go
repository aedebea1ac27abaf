package server

import (
	"crypto"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
)

// TestDashboardShowsProvenance: a release page shows the build provenance
// read from the served repository (a real prod repository whose release
// carries an attested build) and the keys that approved the release; a
// release without provenance says so; a served envelope that is not the
// one the signed metadata binds is reported, not shown.
func TestDashboardShowsProvenance(t *testing.T) {
	v := repotest.New(t, repotest.Options{Environment: keys.EnvProd, ProductKeys: 2, ProductThreshold: 2})
	v.Release("1.0.0", 1, repotest.Image(1, 20_000), func(o *repo.ReleaseOptions) { o.Signers = []crypto.Signer(v.ProductSigners) })
	e := startServer(t, func(c *Config) { c.RepoDir = v.Repo.Dir() })
	rm := e.newUser("rm", RoleReleaseManager)
	viewer := e.newUser("view", RoleViewer)
	resp, data := e.do(e.client(nil), "POST", "/api/v1/admin/releases", rm.token, CreateReleaseRequest{Product: v.Product, Version: "1.0.0", Environment: EnvProd})
	wantStatus(t, resp, data, http.StatusCreated)
	rel := decodeRelease(t, data)

	b := e.browser()
	b.login(viewer)
	resp, page := b.get("/dashboard/releases/" + rel.ID)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("release page: %d", resp.StatusCode)
	}
	want := []string{`id="provenance"`, repotest.BuilderID, repotest.BuildType, repotest.SourceRepo + "@refs/heads/main", repotest.Commit,
		keyIDOf(t, v.Builder), keyIDOf(t, v.ProductSigners[0]), keyIDOf(t, v.ProductSigners[1]), "acme.router-x1 version 1"}
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("release page lacks %q", w)
		}
	}

	// Tamper with the served envelope: the page reports it.
	matches, _ := filepath.Glob(filepath.Join(v.Repo.PublicDir(), "targets", "acme", "router-x1", "1.0.0", "*.provenance.json"))
	if len(matches) != 1 {
		t.Fatalf("envelopes: %v", matches)
	}
	data, _ = os.ReadFile(matches[0])
	os.WriteFile(matches[0], append(data, ' '), 0o644)
	_, page = b.get("/dashboard/releases/" + rel.ID)
	if !strings.Contains(page, "the provenance could not be read") || !strings.Contains(page, "is not the one the signed release metadata binds") || strings.Contains(page, repotest.Commit) {
		t.Errorf("tampered envelope not reported:\n%s", page)
	}
}

func keyIDOf(t *testing.T, s crypto.Signer) string {
	t.Helper()
	id, err := keys.KeyID(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}
