package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/server/internal/cdp"
	"github.com/airlockfw/airlock/server/store"
)

// artifactsDir is where the end-to-end test saves screenshots:
// $AIRLOCK_ARTIFACTS (CI sets it to ./artifacts), else a test temp dir.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("AIRLOCK_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// serverSPKIHashes returns the base64 SHA-256 SPKI hashes of the
// certificates the test server presents, for Chromium's
// --ignore-certificate-errors-spki-list (the test CA is not in its store).
func serverSPKIHashes(t *testing.T, e *testEnv) []string {
	t.Helper()
	conn, err := tls.Dial("tcp", e.srv.Addr().String(), &tls.Config{RootCAs: e.caPool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out []string
	for _, c := range conn.ConnectionState().PeerCertificates {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		out = append(out, base64.StdEncoding.EncodeToString(sum[:]))
	}
	return out
}

// launchBrowser starts headless Chromium for e, or skips the test when
// there is none (fails with AIRLOCK_REQUIRE_TOOLS=1).
func launchBrowser(t *testing.T, ctx context.Context, e *testEnv) *cdp.Page {
	t.Helper()
	if _, err := cdp.Find(); err != nil {
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "1" {
			t.Fatalf("AIRLOCK_REQUIRE_TOOLS=1: %v (apt-get install -y chromium)", err)
		}
		t.Skip(err)
	}
	var stderr syncBuffer
	b, err := cdp.Launch(ctx, cdp.Options{UserDataDir: t.TempDir(), SPKIHashes: serverSPKIHashes(t, e), Stderr: &stderr})
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	t.Cleanup(func() { b.Close() })
	p, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ui drives one page of the dashboard and fails the test on any error.
type ui struct {
	t   *testing.T
	ctx context.Context
	p   *cdp.Page
	e   *testEnv
	dir string
}

func (u *ui) open(path string) {
	u.t.Helper()
	if err := u.p.Navigate(u.ctx, u.e.base+path); err != nil {
		u.t.Fatal(err)
	}
}

// waitText waits until the page's text contains every want.
func (u *ui) waitText(want ...string) string {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 20*time.Second)
	defer cancel()
	var conds []string
	for _, w := range want {
		q, _ := json.Marshal(w)
		conds = append(conds, "document.body.innerText.includes("+string(q)+")")
	}
	if err := u.p.WaitFor(ctx, strings.Join(conds, " && ")); err != nil {
		txt, _ := u.p.Text(u.ctx)
		url, _ := u.p.URL(u.ctx)
		u.shot("failure")
		u.t.Fatalf("page %s does not show %q: %v\n%s", url, want, err, txt)
	}
	txt, _ := u.p.Text(u.ctx)
	return txt
}

// submit fills the fields of the form with the given id and submits it
// as a user would (requestSubmit runs the browser's own validation).
func (u *ui) submit(formID string, fields map[string]string) {
	u.t.Helper()
	id, _ := json.Marshal(formID)
	vals, _ := json.Marshal(fields)
	js := fmt.Sprintf(`(() => { const f = document.getElementById(%s); if (!f) throw new Error("no form " + %s);
		const v = %s; for (const k in v) { f.elements[k].value = v[k]; } f.requestSubmit(); return true; })()`, id, id, vals)
	if err := u.p.Eval(u.ctx, js, nil); err != nil {
		u.t.Fatal(err)
	}
	// Wait for the navigation the submission causes to finish.
	time.Sleep(200 * time.Millisecond)
}

func (u *ui) shot(name string) string {
	png, err := u.p.Screenshot(u.ctx)
	if err != nil {
		u.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(u.dir, "dashboard-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		u.t.Errorf("screenshot %s: %v", name, err)
	}
	u.t.Logf("screenshot: %s", path)
	return path
}

// TestDashboardEndToEndInChromium logs in with token + TOTP in a real
// headless Chromium, starts a rollout from its page, watches devices
// report into its progress bars, pauses it, and saves screenshots.
func TestDashboardEndToEndInChromium(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	e := startServer(t, nil)
	versions := publishTestReleases(t, e, "acme/router-x1", 2) // 1.0.0 (on the devices) and 1.0.1
	rm := e.newUser("rita", RoleReleaseManager)
	op := e.newUser("oscar", RoleOperator)
	resp, data := e.do(e.client(nil), "POST", "/api/v1/admin/releases", rm.token,
		CreateReleaseRequest{Product: "acme/router-x1", Version: versions[1], Environment: EnvStaging})
	wantStatus(t, resp, data, http.StatusCreated)
	rel := decodeRelease(t, data)

	const fleet = 6
	var devices []*http.Client
	for range fleet {
		cert, _ := e.enroll()
		c := e.client(&cert)
		resp, data := e.do(c, "POST", "/api/v1/checkin", "", deviceapi.CheckinRequest{CurrentVersion: versions[0], State: store.StateIdle, Slot: "a"})
		wantStatus(t, resp, data, http.StatusOK)
		devices = append(devices, c)
	}

	p := launchBrowser(t, ctx, e)
	u := &ui{t: t, ctx: ctx, p: p, e: e, dir: artifactsDir(t)}

	// Without a session every page leads to the login form.
	u.open("/dashboard/rollouts")
	u.waitText("Log in", "Admin API token", "TOTP code")
	// A token without the right code does not log in.
	u.submit("login", map[string]string{"token": op.token, "totp": "000000"})
	u.waitText("login failed")
	u.submit("login", map[string]string{"token": op.token, "totp": e.code(op)})
	u.waitText("Fleet", "oscar (operator)", "Devices by version", versions[0])
	u.shot("overview")

	// The release page: registered by rita, no approvals needed for staging.
	u.open("/dashboard/releases/" + rel.ID)
	u.waitText("Release acme/router-x1@"+versions[1], "rita", "0 of 0 required")

	// A rollout in draft, made with the admin API: a canary of 2, then all.
	resp, data = e.do(e.client(nil), "POST", "/api/v1/admin/rollouts", op.token, map[string]any{
		"release": "acme/router-x1@" + versions[1], "filter": "model=x1", "stages": "canary:2,100%",
		"success_threshold": "100%", "failure_threshold": "40%",
	})
	wantStatus(t, resp, data, http.StatusCreated)
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &created); err != nil || created.ID == "" {
		t.Fatalf("create rollout: %v %s", err, data)
	}

	u.open("/dashboard/rollouts")
	u.waitText("acme/router-x1@"+versions[1], "draft")
	u.open("/dashboard/rollouts/" + created.ID)
	u.waitText("draft", "canary", "No failures.")
	// Start needs a fresh TOTP code in the form: a wrong one changes nothing.
	u.submit("form-start", map[string]string{"totp": "000000"})
	u.waitText("not done", "draft")
	u.submit("form-start", map[string]string{"totp": e.code(op)})
	u.waitText("rollout start: done", "running", "operator start")

	// The devices check in; the canary ones get the assignment and report.
	var assigned []*http.Client
	for _, c := range devices {
		resp, data := e.do(c, "POST", "/api/v1/checkin", "", deviceapi.CheckinRequest{CurrentVersion: versions[0], State: store.StateIdle, Slot: "a"})
		wantStatus(t, resp, data, http.StatusOK)
		var cr struct {
			Assignment json.RawMessage `json:"assignment"`
		}
		json.Unmarshal(data, &cr)
		if len(cr.Assignment) > 0 && string(cr.Assignment) != "null" {
			assigned = append(assigned, c)
		}
	}
	if len(assigned) != 2 {
		t.Fatalf("%d devices assigned in the canary stage of 2", len(assigned))
	}
	// One canary device commits, the other is still downloading.
	for _, k := range []string{store.StateDownloading, store.StateInstalled, store.StateRebooted, store.StateCommitted} {
		resp, data := e.do(assigned[0], "POST", "/api/v1/status", "", deviceapi.StatusReport{Kind: k, Version: versions[1]})
		wantStatus(t, resp, data, http.StatusNoContent)
	}
	resp, data = e.do(assigned[1], "POST", "/api/v1/status", "", deviceapi.StatusReport{Kind: store.StateDownloading, Version: versions[1]})
	wantStatus(t, resp, data, http.StatusNoContent)
	u.open("/dashboard/rollouts/" + created.ID)
	txt := u.waitText("1 succeeded", "1 in progress")
	t.Logf("rollout page with the canary in progress:\n%s", txt)
	u.shot("rollout-progress")

	// The operator pauses the rollout from the page.
	u.submit("form-pause", map[string]string{"totp": e.code(op)})
	u.waitText("paused", "operator pause")
	u.open("/dashboard/rollouts/" + created.ID)
	txt = u.waitText("paused", "resume", "cancel")
	if strings.Contains(txt, "\npause\n") {
		t.Errorf("a paused rollout still offers pause:\n%s", txt)
	}
	png := u.shot("rollout")
	if fi, err := os.Stat(png); err != nil || fi.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", png, err)
	}
	// The dashboard's pause is the API's: the rollout is paused there too.
	resp, data = e.do(e.client(nil), "GET", "/api/v1/admin/rollouts/"+created.ID, op.token, nil)
	wantStatus(t, resp, data, http.StatusOK)
	if !strings.Contains(string(data), strconv.Quote("paused")) {
		t.Fatalf("API after the dashboard's pause: %s", data)
	}
}
