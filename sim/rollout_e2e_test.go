package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server"
)

// admin drives the real server's admin API as an operator would: a bearer
// token and a TOTP code per state-changing request. The server refuses a
// replayed TOTP step per user, so each state-changing request uses a user
// of its own.
type admin struct {
	t      testing.TB
	base   string
	client *http.Client
	users  []adminUser
	reader adminUser
}

type adminUser struct {
	token  string
	secret []byte
}

func newAdmin(t testing.TB, s *testServer, dataDir string, users int) *admin {
	t.Helper()
	ctx := context.Background()
	kek, _, err := server.LoadOrCreateKEK(filepath.Join(dataDir, server.KEKFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.srv.CAPEM())
	a := &admin{t: t, base: s.url, client: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
	for i := range users + 1 {
		name := fmt.Sprintf("op%d", i)
		_, tok, _, err := server.CreateUser(ctx, s.db, name, server.RoleAdmin, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		uri, err := server.EnrollTOTP(ctx, s.db, kek, name)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(u.Query().Get("secret")))
		if err != nil {
			t.Fatal(err)
		}
		a.users = append(a.users, adminUser{token: tok, secret: secret})
	}
	a.reader, a.users = a.users[0], a.users[1:]
	return a
}

func (a *admin) do(method, path string, body, out any) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	u := a.reader
	if method != http.MethodGet {
		if len(a.users) == 0 {
			a.t.Fatal("out of admin users")
		}
		u, a.users = a.users[0], a.users[1:]
		req.Header.Set(server.TOTPHeader, server.TOTPCode(u.secret, time.Now()))
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode/100 != 2 {
		a.t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// rolloutView is the part of GET /api/v1/admin/rollouts/{id} the tests read.
type rolloutView struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Reason string `json:"reason"`
	Stage  int    `json:"stage"`
	Stages []struct {
		Label     string `json:"label"`
		Target    int    `json:"target"`
		Assigned  int    `json:"assigned"`
		Succeeded int    `json:"succeeded"`
		Failed    int    `json:"failed"`
	} `json:"stage_progress"`
}

// rolloutEnv is a server with 1.0.0 on every device and 1.1.0 published,
// a fleet in director mode and an admin.
type rolloutEnv struct {
	v     *vendor
	s     *testServer
	admin *admin
	fleet *Fleet
}

func newRolloutEnv(t *testing.T, devices int, failRate float64) *rolloutEnv {
	t.Helper()
	v := newVendor(t, filepath.Join(t.TempDir(), "repo"))
	v.release("1.1.0")
	var dataDir string
	s := startServer(t, v, devices, func(c *server.Config) { dataDir = c.DataDir })
	e := &rolloutEnv{v: v, s: s, admin: newAdmin(t, s, dataDir, 6)}
	opts := v.fleetOptions(s, devices, failRate)
	opts.DirectorRoot = directorRoot(t, dataDir)
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.fleet = f
	return e
}

// directorRoot returns director root v1 (what `airlock server
// director-root` prints) of the server's data directory.
func directorRoot(t testing.TB, dataDir string) []byte {
	t.Helper()
	b, err := server.DirectorRoot(dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startRollout registers 1.1.0 (dev environment: no approvals needed),
// creates the rollout and starts it.
func (e *rolloutEnv) startRollout(t *testing.T, stages string) string {
	t.Helper()
	e.admin.do("POST", "/api/v1/admin/releases", map[string]any{"product": testProduct, "version": "1.1.0", "environment": server.EnvDev}, nil)
	var ro rolloutView
	e.admin.do("POST", "/api/v1/admin/rollouts", map[string]any{
		"release": testProduct + "@1.1.0", "filter": "model=" + testModel, "stages": stages,
		"success_threshold": "95%", "failure_threshold": "2%", "report_deadline": "60s",
	}, &ro)
	e.admin.do("POST", "/api/v1/admin/rollouts/"+ro.ID+"/start", map[string]any{}, nil)
	return ro.ID
}

func (e *rolloutEnv) rollout(id string) rolloutView {
	var ro rolloutView
	e.admin.do("GET", "/api/v1/admin/rollouts/"+id, nil, &ro)
	return ro
}

// runRollout runs the fleet: once every device enrolled, it starts the
// rollout; once the rollout reached one of the final states it keeps the
// fleet running until settled holds on its stats (nil: at once), and
// returns the rollout and the fleet's stats. The test fails if that does
// not happen within timeout.
func (e *rolloutEnv) runRollout(t *testing.T, stages string, timeout time.Duration, settled func(Stats) bool, final ...string) (rolloutView, Stats) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.fleet.Run(ctx) }()
	defer func() { cancel(); <-done }()
	id := ""
	var ro rolloutView
	for ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		st := e.fleet.Stats()
		if id == "" {
			if st.Enrolled == len(e.fleet.devices) {
				id = e.startRollout(t, stages)
			}
			continue
		}
		ro = e.rollout(id)
		if slices.Contains(final, ro.State) && (settled == nil || settled(st)) {
			return ro, e.fleet.Stats()
		}
	}
	t.Fatalf("rollout %s did not reach %q within %v: %+v; fleet %v", id, final, timeout, ro, e.fleet.Stats())
	return ro, Stats{}
}

// TestRolloutGoodReleaseReachesWholeFleet: 1,000 simulated devices, a
// healthy release, stages canary:10,5%,25%,100%: the rollout completes and
// every device runs 1.1.0.
func TestRolloutGoodReleaseReachesWholeFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000-device end-to-end test")
	}
	const n = 1000
	e := newRolloutEnv(t, n, 0)
	// The rollout completes when the last stage reached the success
	// threshold; the devices assigned by then finish their installs.
	allUpdated := func(s Stats) bool { return s.Versions["1.1.0"] == n }
	ro, st := e.runRollout(t, "canary:10,5%,25%,100%", 120*time.Second, allUpdated, "completed", "paused", "cancelled")
	if ro.State != "completed" {
		t.Fatalf("rollout ended %q (%s), want completed; fleet %v", ro.State, ro.Reason, st)
	}
	last := ro.Stages[len(ro.Stages)-1]
	if last.Target != n || ro.Stage != len(ro.Stages)-1 {
		t.Errorf("rollout %+v: want the last stage (target %d) reached", ro, n)
	}
	if st.RollBacks != 0 || st.Versions["1.1.0"] != n {
		t.Errorf("fleet %v: want all %d devices on 1.1.0, no rollback", st, n)
	}
	t.Logf("completed (%s): %v", ro.Reason, st)
}

// TestRolloutBadReleasePausesAtCanary: a release whose health check fails
// on 20% of installs reaches the canary group only: the failure threshold
// pauses the rollout, at most the canary's devices installed it, and the
// rest of the fleet still runs 1.0.0.
func TestRolloutBadReleasePausesAtCanary(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000-device end-to-end test")
	}
	const n, canary = 1000, 10
	e := newRolloutEnv(t, n, 0.2)
	ro, st := e.runRollout(t, fmt.Sprintf("canary:%d,5%%,25%%,100%%", canary), 120*time.Second, nil, "paused", "completed", "cancelled")
	if ro.State != "paused" || ro.Stage != 0 {
		t.Fatalf("rollout %q at stage %d (%s), want paused at the canary stage 0", ro.State, ro.Stage, ro.Reason)
	}
	// Let in-flight installs of the canary finish, then check nobody else
	// was touched.
	time.Sleep(2 * time.Second)
	st = e.fleet.Stats()
	if st.Installs > canary {
		t.Errorf("%d devices installed the bad release, want at most the canary's %d", st.Installs, canary)
	}
	if st.Versions["1.0.0"] < n-canary {
		t.Errorf("fleet %v: want at least %d devices untouched on 1.0.0", st, n-canary)
	}
	if st.RollBacks == 0 {
		t.Errorf("fleet %v: the pause should come from rolled-back canary devices", st)
	}
	t.Logf("paused (%s): %v", ro.Reason, st)
}
