package server

import (
	"bytes"
	"context"
	"crypto"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/director"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/trust"

	_ "modernc.org/sqlite"
)

const testProduct = "acme/router-x1"

// signedRepo makes a real image repository (repo.Init, a product
// delegation, releases 1.1.0 and 1.2.0 signed and published) like the
// vendor's, and returns its directory.
func signedRepo(t *testing.T) string {
	t.Helper()
	gen := func() crypto.Signer {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	root, targets, snap, ts, prod := gen(), gen(), gen(), gen(), gen()
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := repo.Init(dir, repo.InitOptions{RootKeys: []crypto.PublicKey{root.Public()}, RootThreshold: 1,
		RootSigners: []crypto.Signer{root}, Targets: targets, Snapshot: snap, Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delegate(testProduct, []crypto.PublicKey{prod.Public()}, 1, targets); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"1.1.0", "1.2.0"} {
		img := filepath.Join(t.TempDir(), "fw.img")
		if err := os.WriteFile(img, bytes.Repeat([]byte{byte(i + 1)}, 4096+i), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := r.AddRelease(repo.ReleaseOptions{Product: testProduct, ImagePath: img, Version: v, SecurityVersion: 1,
			Models: []string{"x1"}, Compress: repo.CompressNone, Signers: []crypto.Signer{prod}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Publish(snap, ts); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rolloutEnv is a server over a signed repository with an audit hook.
type rolloutEnv struct {
	*testEnv
	op    string // operator token
	mu    sync.Mutex
	audit []map[string]string
}

func startRolloutServer(t *testing.T, mod func(*Config)) *rolloutEnv {
	t.Helper()
	dir := signedRepo(t)
	re := &rolloutEnv{}
	re.testEnv = startServer(t, func(c *Config) {
		c.RepoDir = dir
		c.RolloutTick = time.Hour // the tests run the engine with EvaluateRollouts
		c.Audit = func(ctx context.Context, actor, action string, details map[string]string) {
			re.mu.Lock()
			defer re.mu.Unlock()
			d := map[string]string{"actor": actor, "action": action}
			for k, v := range details {
				d[k] = v
			}
			re.audit = append(re.audit, d)
		}
		if mod != nil {
			mod(c)
		}
	})
	re.op = re.adminToken(RoleOperator)
	return re
}

// api calls the admin API and decodes a 2xx answer into out.
func (re *rolloutEnv) api(method, path, token string, body, out any, want int) {
	re.t.Helper()
	resp, data := re.do(re.client(nil), method, path, token, body)
	if resp.StatusCode != want {
		re.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			re.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// register registers version of the test product for env as a release
// manager.
func (re *rolloutEnv) register(version, env string) Release {
	re.t.Helper()
	var rel Release
	re.api("POST", "/api/v1/admin/releases", re.adminToken(RoleReleaseManager),
		CreateReleaseRequest{Product: testProduct, Version: version, Environment: env}, &rel, http.StatusCreated)
	return rel
}

// device is an enrolled test device.
type testDevice struct {
	id     string
	client *http.Client
}

func (re *rolloutEnv) device() testDevice {
	cert, er := re.enroll()
	return testDevice{id: er.DeviceID, client: re.client(&cert)}
}

func (re *rolloutEnv) checkin(d testDevice) deviceapi.CheckinResponse {
	re.t.Helper()
	resp, data := re.do(d.client, "POST", "/api/v1/checkin", "", deviceapi.CheckinRequest{CurrentVersion: "1.0.0", State: store.StateIdle})
	if resp.StatusCode != http.StatusOK {
		re.t.Fatalf("checkin: %d %s", resp.StatusCode, data)
	}
	var cr deviceapi.CheckinResponse
	if err := json.Unmarshal(data, &cr); err != nil {
		re.t.Fatal(err)
	}
	return cr
}

func (re *rolloutEnv) report(d testDevice, kind, version, msg string) {
	re.t.Helper()
	resp, data := re.do(d.client, "POST", "/api/v1/status", "", deviceapi.StatusReport{Kind: kind, Version: version, Message: msg})
	if resp.StatusCode != http.StatusNoContent {
		re.t.Fatalf("status: %d %s", resp.StatusCode, data)
	}
}

// directorClient refreshes the director repository as device d would:
// its own trust.Client anchored in director root v1, over mTLS.
func (re *rolloutEnv) directorTargets(d testDevice) (*trust.Metadata[trust.TargetsType], error) {
	re.t.Helper()
	root, err := DirectorRoot(re.cfg.DataDir, "")
	if err != nil {
		re.t.Fatal(err)
	}
	st := trust.NewMemStore()
	if err := st.Put("root.json", root); err != nil {
		re.t.Fatal(err)
	}
	c, err := trust.New(st, trust.NewHTTPSource(re.base+DirectorPath, "", d.client), trust.Config{Now: re.clock.Now})
	if err != nil {
		re.t.Fatal(err)
	}
	if err := c.Refresh(re.t.Context()); err != nil {
		return nil, err
	}
	return c.Trusted().Targets, nil
}

// imageTarget looks path up in the image repository as a device would.
func (re *rolloutEnv) imageTarget(path string) *trust.TargetFiles {
	re.t.Helper()
	meta := filepath.Join(re.cfg.RepoDir, "public", "metadata")
	root, err := os.ReadFile(filepath.Join(meta, "1.root.json"))
	if err != nil {
		re.t.Fatal(err)
	}
	st := trust.NewMemStore()
	st.Put("root.json", root)
	c, err := trust.New(st, director.MetadataSource{Root: re.srv.metaFS}, trust.Config{})
	if err != nil {
		re.t.Fatal(err)
	}
	if err := c.Refresh(re.t.Context()); err != nil {
		re.t.Fatal(err)
	}
	tf, err := c.Target(re.t.Context(), path)
	if err != nil {
		re.t.Fatal(err)
	}
	return tf
}

func (re *rolloutEnv) createRollout(req CreateRolloutRequest) RolloutView {
	re.t.Helper()
	var v RolloutView
	re.api("POST", "/api/v1/admin/rollouts", re.op, req, &v, http.StatusCreated)
	return v
}

func (re *rolloutEnv) action(id string, a rollout.Action, want int) RolloutView {
	re.t.Helper()
	var v RolloutView
	var out any = &v
	if want != http.StatusOK {
		out = nil
	}
	re.api("POST", "/api/v1/admin/rollouts/"+id+"/"+string(a), re.op, RolloutActionRequest{Reason: "test"}, out, want)
	return v
}

func (re *rolloutEnv) view(id string) RolloutView {
	re.t.Helper()
	var v RolloutView
	re.api("GET", "/api/v1/admin/rollouts/"+id, re.op, nil, &v, http.StatusOK)
	return v
}

// TestDirectorServesEachDeviceOnlyItsOwnAssignment proves that the
// director metadata a device fetches (same URL for every device) is
// generated for the calling device only, verifies with director root v1,
// and copies the image repository's length and hashes exactly.
func TestDirectorServesEachDeviceOnlyItsOwnAssignment(t *testing.T) {
	re := startRolloutServer(t, nil)
	re.register("1.1.0", EnvDev)
	a, b := re.device(), re.device()
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Filter: "model=x1", Stages: "canary:1,100%"})
	re.action(ro.ID, rollout.ActionStart, http.StatusOK)

	// Before any check-in nothing is assigned: the director lists nothing.
	tg, err := re.directorTargets(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Signed.Targets) != 0 {
		t.Fatalf("unassigned device got targets %v", tg.Signed.Targets)
	}
	// a joins the one-device canary; b finds it full.
	if cr := re.checkin(a); cr.Assignment == nil || cr.Assignment.RolloutID != ro.ID || cr.Assignment.Release != testProduct+"@1.1.0" {
		t.Fatalf("a's check-in assignment = %+v", cr.Assignment)
	}
	if cr := re.checkin(b); cr.Assignment != nil {
		t.Fatalf("b joined a full canary: %+v", cr.Assignment)
	}

	tg, err = re.directorTargets(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Signed.Targets) != 1 {
		t.Fatalf("a's director targets: %d, want 1", len(tg.Signed.Targets))
	}
	img := re.imageTarget(ro.TargetPath)
	got := tg.Signed.Targets[ro.TargetPath]
	if got == nil || got.Length != img.Length || len(got.Hashes) != len(img.Hashes) {
		t.Fatalf("director target %+v, image repository %+v", got, img)
	}
	for alg, h := range img.Hashes {
		if !bytes.Equal(got.Hashes[alg], h) {
			t.Errorf("hash %s: director %x, image repository %x", alg, got.Hashes[alg], h)
		}
	}
	var custom map[string]director.Custom
	if err := json.Unmarshal(*got.Custom, &custom); err != nil {
		t.Fatal(err)
	}
	if c := custom[DirectorCustomKey]; c.Device != a.id || c.Rollout != ro.ID {
		t.Errorf("custom = %+v, want device %s rollout %s", c, a.id, ro.ID)
	}

	// b, asking the very same URLs, gets its own (empty) metadata, never a's.
	tg, err = re.directorTargets(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Signed.Targets) != 0 {
		t.Fatalf("b received a's assignment: %v", tg.Signed.Targets)
	}
	// Without a client certificate there is no director metadata at all.
	resp, _ := re.do(re.client(nil), "GET", DirectorPath+"timestamp.json", "", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous director fetch: %d, want 401", resp.StatusCode)
	}
	// Versions are per device and monotonic: a cancelled rollout re-signs
	// a's metadata with a higher version and no target.
	before, _ := re.db.GetDirectorState(t.Context(), a.id)
	re.action(ro.ID, rollout.ActionCancel, http.StatusOK)
	tg, err = re.directorTargets(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Signed.Targets) != 0 || tg.Signed.Version <= before.Version {
		t.Errorf("after cancel: %d targets at version %d (was %d)", len(tg.Signed.Targets), tg.Signed.Version, before.Version)
	}
}

// TestDirectorNeverAssignsWhatTheImageRepositoryDoesNotSign proves that a
// tampered assignment (a rollout row pointing at a target the vendor never
// signed, as a compromised database would hold) yields no target at all:
// the director copies hashes only from verified image metadata.
func TestDirectorNeverAssignsWhatTheImageRepositoryDoesNotSign(t *testing.T) {
	re := startRolloutServer(t, nil)
	rel := re.register("1.1.0", EnvDev)
	a := re.device()
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Stages: "100%"})
	re.action(ro.ID, rollout.ActionStart, http.StatusOK)
	re.checkin(a)
	tg, err := re.directorTargets(a)
	if err != nil || len(tg.Signed.Targets) != 1 {
		t.Fatalf("honest assignment: %v, %v", tg, err)
	}
	// The attacker rewrites the rollout's target path in the database.
	db := rawSQLite(t, re.cfg.DataDir)
	evil := testProduct + "/6.6.6/evil.img"
	if _, err := db.Exec(`UPDATE rollouts SET target_path = ? WHERE id = ?`, evil, ro.ID); err != nil {
		t.Fatal(err)
	}
	tg, err = re.directorTargets(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Signed.Targets) != 0 {
		t.Fatalf("director signed an unsigned image: %v", tg.Signed.Targets)
	}
	if !strings.Contains(re.logs.String(), "does not verify in the image repository") {
		t.Error("the refusal was not logged")
	}
	_ = rel
}

// rawSQLite opens the server's SQLite database directly (an attacker with
// database access).
func rawSQLite(t *testing.T, dataDir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dataDir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
