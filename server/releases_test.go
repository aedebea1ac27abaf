package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// publishTestReleases writes repository metadata as `airlock repo publish`
// leaves it (timestamp -> N.snapshot.json -> M.<role>.json) with n versions
// of product, and returns the versions. The server reads it live.
func publishTestReleases(t *testing.T, e *testEnv, product string, n int) []string {
	t.Helper()
	exp := time.Now().Add(24 * time.Hour)
	role := "acme.router-x1"
	tgts := metadata.Targets(exp)
	var versions []string
	for i := range n {
		v := fmt.Sprintf("1.0.%d", i)
		versions = append(versions, v)
		tp := product + "/" + v + "/fw.img"
		tgts.Signed.Targets[tp] = &metadata.TargetFiles{Length: 1, Path: tp,
			Hashes: metadata.Hashes{"sha256": make([]byte, 32)}}
	}
	// An older role version without them: the server must follow the snapshot.
	old := metadata.Targets(exp)
	snap := metadata.Snapshot(exp)
	snap.Signed.Meta[role+".json"] = metadata.MetaFile(3)
	ts := metadata.Timestamp(exp)
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(5)
	dir := filepath.Join(e.cfg.RepoDir, "public", "metadata")
	for name, md := range map[string]interface{ ToBytes(bool) ([]byte, error) }{
		"2." + role + ".json": old, "3." + role + ".json": tgts, "5.snapshot.json": snap, "timestamp.json": ts,
	} {
		data, err := md.ToBytes(true)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return versions
}

func decodeRelease(t *testing.T, data []byte) Release {
	t.Helper()
	var r Release
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	return r
}

// TestProdDeploymentNeedsKDistinctApproversNotTheUploader walks a release
// through registration, approvals and deployment with k = 2.
func TestProdDeploymentNeedsKDistinctApproversNotTheUploader(t *testing.T) {
	rec := &auditRecorder{}
	e := startServer(t, func(c *Config) { c.ProdApprovals = 2; c.Audit = rec.record })
	versions := publishTestReleases(t, e, "acme/router-x1", 3)
	rm := e.newUser("rm", RoleReleaseManager)
	a1 := e.newUser("a1", RoleApprover)
	a2 := e.newUser("a2", RoleApprover)
	op := e.newUser("op", RoleOperator)
	// An admin who registers a release is its uploader too.
	admin := e.newUser("boss", RoleAdmin)
	c := e.client(nil)

	resp, data := e.do(c, "POST", "/api/v1/admin/releases", rm.token, CreateReleaseRequest{Product: "acme/router-x1", Version: versions[1], Environment: EnvProd})
	wantStatus(t, resp, data, http.StatusCreated)
	rel := decodeRelease(t, data)
	if rel.Uploader != rm.ID || rel.TargetPath != "acme/router-x1/1.0.1/fw.img" || rel.RequiredApprovals != 2 {
		t.Fatalf("registered release: %s", data)
	}
	base := "/api/v1/admin/releases/" + rel.ID
	deploy := func(u testUser, want int) Release {
		t.Helper()
		resp, data := e.do(c, "POST", base+"/deploy", u.token, nil)
		wantStatus(t, resp, data, want)
		return decodeRelease(t, data)
	}
	approve := func(u testUser, want int) Release {
		t.Helper()
		resp, data := e.do(c, "POST", base+"/approve", u.token, nil)
		wantStatus(t, resp, data, want)
		return decodeRelease(t, data)
	}

	deploy(op, http.StatusConflict)
	got := approve(a1, http.StatusOK)
	if got.ActiveApprovals != 1 {
		t.Fatalf("after one approval: %+v", got)
	}
	t.Run("same approver twice counts once", func(t *testing.T) {
		approve(a1, http.StatusConflict)
		deploy(op, http.StatusConflict)
	})
	t.Run("the uploader cannot approve", func(t *testing.T) {
		resp, data := e.do(c, "POST", "/api/v1/admin/releases", admin.token, CreateReleaseRequest{Product: "acme/router-x1", Version: versions[2], Environment: EnvProd})
		wantStatus(t, resp, data, http.StatusCreated)
		own := decodeRelease(t, data)
		resp, data = e.do(c, "POST", "/api/v1/admin/releases/"+own.ID+"/approve", admin.token, nil)
		wantStatus(t, resp, data, http.StatusForbidden)
	})
	t.Run("deploy refused below k", func(t *testing.T) {
		resp, data := e.do(c, "POST", base+"/deploy", op.token, nil)
		wantStatus(t, resp, data, http.StatusConflict)
		if got := decodeRelease(t, data); got.DeployedAt != nil {
			t.Fatal("release marked deployed")
		}
	})
	got = approve(a2, http.StatusOK)
	if got.ActiveApprovals != 2 {
		t.Fatalf("after two approvals: %+v", got)
	}
	got = deploy(op, http.StatusOK)
	if got.DeployedAt == nil || got.DeployedBy != op.ID {
		t.Fatalf("deployed release: %+v", got)
	}
	t.Run("deploy twice refused", func(t *testing.T) { deploy(op, http.StatusConflict) })
	t.Run("approve after deploy refused", func(t *testing.T) { approve(admin, http.StatusConflict) })

	t.Run("dev and staging need no approvals", func(t *testing.T) {
		for _, env := range []string{EnvDev, EnvStaging} {
			resp, data := e.do(c, "POST", "/api/v1/admin/releases", rm.token, CreateReleaseRequest{Product: "acme/router-x1", Version: versions[1], Environment: env})
			wantStatus(t, resp, data, http.StatusCreated)
			r := decodeRelease(t, data)
			resp, data = e.do(c, "POST", "/api/v1/admin/releases/"+r.ID+"/deploy", op.token, nil)
			wantStatus(t, resp, data, http.StatusOK)
		}
	})
	t.Run("registration checks the served repository", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  CreateReleaseRequest
			want int
		}{
			{"unpublished version", CreateReleaseRequest{Product: "acme/router-x1", Version: "7.0.0", Environment: EnvProd}, http.StatusUnprocessableEntity},
			{"unknown product", CreateReleaseRequest{Product: "acme/other", Version: versions[0], Environment: EnvProd}, http.StatusUnprocessableEntity},
			{"already registered", CreateReleaseRequest{Product: "acme/router-x1", Version: versions[1], Environment: EnvProd}, http.StatusConflict},
			{"bad environment", CreateReleaseRequest{Product: "acme/router-x1", Version: versions[0], Environment: "production"}, http.StatusBadRequest},
			{"bad version", CreateReleaseRequest{Product: "acme/router-x1", Version: "v1", Environment: EnvProd}, http.StatusBadRequest},
			{"bad product", CreateReleaseRequest{Product: "../etc", Version: versions[0], Environment: EnvProd}, http.StatusBadRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, data := e.do(c, "POST", "/api/v1/admin/releases", rm.token, tc.req)
				wantStatus(t, resp, data, tc.want)
			})
		}
	})
	for _, ev := range []string{"rm " + AuditReleaseAdded, "a1 " + AuditReleaseApproved, "a2 " + AuditReleaseApproved, "op " + AuditReleaseDeployed} {
		if !rec.has(ev) {
			t.Errorf("audit event %q missing: %q", ev, rec.events)
		}
	}
}

// TestDisabledApproverNoLongerCounts: offboarding an approver withdraws
// their pending approvals.
func TestDisabledApproverNoLongerCounts(t *testing.T) {
	e := startServer(t, func(c *Config) { c.ProdApprovals = 1 })
	versions := publishTestReleases(t, e, "acme/router-x1", 1)
	rm := e.newUser("rm", RoleReleaseManager)
	a1 := e.newUser("a1", RoleApprover)
	op := e.newUser("op", RoleOperator)
	admin := e.newUser("admin", RoleAdmin)
	c := e.client(nil)
	resp, data := e.do(c, "POST", "/api/v1/admin/releases", rm.token, CreateReleaseRequest{Product: "acme/router-x1", Version: versions[0], Environment: EnvProd})
	wantStatus(t, resp, data, http.StatusCreated)
	rel := decodeRelease(t, data)
	resp, data = e.do(c, "POST", "/api/v1/admin/releases/"+rel.ID+"/approve", a1.token, nil)
	wantStatus(t, resp, data, http.StatusOK)
	resp, data = e.do(c, "POST", "/api/v1/admin/users/"+a1.ID+"/disable", admin.token, nil)
	wantStatus(t, resp, data, http.StatusOK)
	resp, data = e.do(c, "POST", "/api/v1/admin/releases/"+rel.ID+"/deploy", op.token, nil)
	wantStatus(t, resp, data, http.StatusConflict)
}
