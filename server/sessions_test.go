package server

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/store"
)

// detailRecorder collects Config.Audit events with their details.
type detailRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

type recordedEvent struct {
	actor, action string
	details       map[string]string
}

func (a *detailRecorder) record(_ context.Context, actor, action string, details map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, recordedEvent{actor, action, maps.Clone(details)})
}

// find returns the events of actor and action whose details include want.
func (a *detailRecorder) find(actor, action string, want map[string]string) []recordedEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []recordedEvent
	for _, e := range a.events {
		if e.actor != actor || e.action != action {
			continue
		}
		ok := true
		for k, v := range want {
			if e.details[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, e)
		}
	}
	return out
}

// login logs u in with the current TOTP code (advancing the test clock one
// step first, so the code is fresh) and returns the session.
func (e *testEnv) login(u testUser, ttl time.Duration) adminapi.LoginResponse {
	e.t.Helper()
	e.clock.Advance(TOTPPeriod)
	resp, data := e.doTOTP("POST", adminapi.PathLogin, u.token, TOTPCode(u.secret, e.clock.Now()), adminapi.LoginRequest{TTLSeconds: int64(ttl / time.Second)})
	wantStatus(e.t, resp, data, http.StatusCreated)
	var lr adminapi.LoginResponse
	if err := json.Unmarshal(data, &lr); err != nil {
		e.t.Fatal(err)
	}
	if !strings.HasPrefix(lr.Session, adminapi.SessionPrefix) || lr.User != u.Name || lr.Role != u.Role || lr.ID == "" {
		e.t.Fatalf("login response %+v", lr)
	}
	return lr
}

var tokenBody = CreateEnrollmentTokenRequest{Uses: 1, TTLSeconds: 60}

// TestSessionMakesChangesWithoutANewTOTPCode is the point of sessions: two
// changes in a row within one TOTP time step, on both stores.
func TestSessionMakesChangesWithoutANewTOTPCode(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testSessionChanges(t, nil) })
	t.Run("postgres", func(t *testing.T) {
		ctx := context.Background()
		db, err := store.Open(ctx, postgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		testSessionChanges(t, db)
	})
}

func testSessionChanges(t *testing.T, db store.Store) {
	rec := &detailRecorder{}
	e := startServer(t, func(c *Config) {
		c.Audit = rec.record
		if db != nil {
			c.DB = db
		}
	})
	op := e.newUser("op", RoleOperator)
	s := e.login(op, 0)
	if got := s.ExpiresAt.Sub(e.clock.Now()); got < DefaultSessionTTL-time.Minute || got > DefaultSessionTTL {
		t.Errorf("session lifetime %v, want the default %v", got, DefaultSessionTTL)
	}
	// Same time step as the login: a TOTP code would be a replay.
	for i := range 2 {
		resp, data := e.doTOTP("POST", "/api/v1/admin/enrollment-tokens", s.Session, "", tokenBody)
		wantStatus(t, resp, data, http.StatusCreated)
		if i == 0 {
			resp, data = e.doTOTP("POST", "/api/v1/admin/enrollment-tokens", op.token, TOTPCode(op.secret, e.clock.Now()), tokenBody)
			wantStatus(t, resp, data, http.StatusUnauthorized) // the token path still refuses the code used to log in
		}
	}
	if got := rec.find("op", AuditLogin, map[string]string{"action": string(auth.ActionSessionLogin), "session": s.ID, "mfa": "totp"}); len(got) != 1 {
		t.Errorf("login audit events %v, want one with the session ID", got)
	}
	if got := rec.find("op", AuditLogin, map[string]string{"action": string(ActionEnrollTokenWrite), "session": s.ID, "mfa": "session"}); len(got) != 2 {
		t.Errorf("%d change events under the session, want 2: %v", len(got), rec.events)
	}
	// The stored row holds the hash, not the secret.
	h, err := auth.SessionHash(s.Session)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := e.db.GetAdminSessionByHash(t.Context(), h)
	if err != nil || stored.ID != s.ID || stored.Role != RoleOperator || strings.Contains(string(stored.Hash), s.Session[len(adminapi.SessionPrefix):]) {
		t.Fatalf("stored session %+v, %v", stored, err)
	}
	if strings.Contains(e.logs.String(), s.Session) {
		t.Error("the server log contains the session credential")
	}
	// Logout revokes it; the credential is then refused with a clear error.
	resp, data := e.doTOTP("POST", adminapi.PathLogout, s.Session, "", nil)
	wantStatus(t, resp, data, http.StatusOK)
	resp, data = e.doTOTP("POST", "/api/v1/admin/enrollment-tokens", s.Session, "", tokenBody)
	wantStatus(t, resp, data, http.StatusUnauthorized)
	if !strings.Contains(string(data), "logged out") {
		t.Errorf("after logout: %s, want it to say the session was logged out", data)
	}
	if got := rec.find("op", AuditLogout, map[string]string{"session": s.ID}); len(got) != 1 {
		t.Errorf("logout audit events %v", got)
	}
}

func TestSessionExpires(t *testing.T) {
	e := startServer(t, func(c *Config) { c.SessionTTL = 10 * time.Minute })
	op := e.newUser("op", RoleOperator)
	resp, data := e.doTOTP("POST", adminapi.PathLogin, op.token, TOTPCode(op.secret, e.clock.Now()), adminapi.LoginRequest{TTLSeconds: 601})
	wantStatus(t, resp, data, http.StatusBadRequest) // longer than the server allows
	s := e.login(op, time.Minute)
	if got := s.ExpiresAt.Sub(e.clock.Now()); got > time.Minute || got < 50*time.Second {
		t.Errorf("lifetime %v, want the minute asked for", got)
	}
	e.clock.Advance(59 * time.Second)
	resp, data = e.doTOTP("POST", "/api/v1/admin/enrollment-tokens", s.Session, "", tokenBody)
	wantStatus(t, resp, data, http.StatusCreated)
	e.clock.Advance(2 * time.Second)
	resp, data = e.doTOTP("POST", "/api/v1/admin/enrollment-tokens", s.Session, "", tokenBody)
	wantStatus(t, resp, data, http.StatusUnauthorized)
	if !strings.Contains(string(data), "session expired at") || !strings.Contains(string(data), "airlock login") {
		t.Errorf("expired session: %s, want a clear error", data)
	}
	// Reads are refused too, and logging out an expired session is allowed.
	resp, data = e.doTOTP("GET", "/api/v1/admin/devices", s.Session, "", nil)
	wantStatus(t, resp, data, http.StatusUnauthorized)
	resp, data = e.doTOTP("POST", adminapi.PathLogout, s.Session, "", nil)
	wantStatus(t, resp, data, http.StatusOK)
}

// TestStolenOrForgedSessionsRefused: garbage, unknown, truncated and
// token-instead-of-session credentials.
func TestStolenOrForgedSessionsRefused(t *testing.T) {
	e := startServer(t, nil)
	op := e.newUser("op", RoleOperator)
	s := e.login(op, 0)
	unknown := adminapi.SessionPrefix + strings.Repeat("A", 43)
	for name, cred := range map[string]string{
		"garbage":           adminapi.SessionPrefix + "not a session",
		"unknown":           unknown,
		"truncated":         s.Session[:len(s.Session)-1],
		"one character off": s.Session[:len(s.Session)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(s.Session, "A")],
		"prefix only":       adminapi.SessionPrefix,
		"loose base64":      s.Session[:len(s.Session)-1] + "=",
	} {
		t.Run(name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/admin/enrollment-tokens", adminapi.PathLogout} {
				resp, data := e.doTOTP("POST", path, cred, "", tokenBody)
				wantStatus(t, resp, data, http.StatusUnauthorized)
				if !strings.Contains(string(data), "session") {
					t.Errorf("%s: %s, want it to say the session was refused", path, data)
				}
			}
		})
	}
	// An admin token cannot log out, and a session cannot log in.
	resp, data := e.doTOTP("POST", adminapi.PathLogout, op.token, "", nil)
	wantStatus(t, resp, data, http.StatusUnauthorized)
	e.clock.Advance(TOTPPeriod)
	resp, data = e.doTOTP("POST", adminapi.PathLogin, s.Session, TOTPCode(op.secret, e.clock.Now()), nil)
	wantStatus(t, resp, data, http.StatusUnauthorized)
	// The real session still works.
	resp, data = e.doTOTP("POST", "/api/v1/admin/enrollment-tokens", s.Session, "", tokenBody)
	wantStatus(t, resp, data, http.StatusCreated)
}

// TestLoginNeedsAGoodTOTPCode: login is a TOTP check like any change: wrong,
// missing and replayed codes are refused and count towards the lockout.
func TestLoginNeedsAGoodTOTPCode(t *testing.T) {
	e := startServer(t, nil)
	op := e.newUser("op", RoleOperator)
	e.clock.Advance(TOTPPeriod)
	code := TOTPCode(op.secret, e.clock.Now())
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	resp, data := e.doTOTP("POST", adminapi.PathLogin, op.token, "", nil)
	wantStatus(t, resp, data, http.StatusUnauthorized)
	resp, data = e.doTOTP("POST", adminapi.PathLogin, "bad-token", code, nil)
	wantStatus(t, resp, data, http.StatusUnauthorized)
	resp, data = e.doTOTP("POST", adminapi.PathLogin, op.token, code, nil)
	wantStatus(t, resp, data, http.StatusCreated)
	resp, data = e.doTOTP("POST", adminapi.PathLogin, op.token, code, nil)
	wantStatus(t, resp, data, http.StatusUnauthorized) // replay
	for range MaxTOTPFailures {
		e.doTOTP("POST", adminapi.PathLogin, op.token, wrong, nil)
	}
	e.clock.Advance(TOTPPeriod)
	resp, data = e.doTOTP("POST", adminapi.PathLogin, op.token, TOTPCode(op.secret, e.clock.Now()), nil)
	wantStatus(t, resp, data, http.StatusTooManyRequests)
}

// TestSessionKeepsRolesAndApprovalsNeedAFreshCode: a session carries the
// role of its user, stops with the user, and approving a release (or
// managing users) still needs a fresh TOTP code.
func TestSessionKeepsRolesAndApprovalsNeedAFreshCode(t *testing.T) {
	rec := &detailRecorder{}
	e := startServer(t, func(c *Config) { c.Audit = rec.record })
	versions := publishTestReleases(t, e, "acme/router-x1", 2)
	rm := e.newUser("rm", RoleReleaseManager)
	appr := e.newUser("appr", RoleApprover)
	admin := e.newUser("boss", RoleAdmin)
	viewer := e.newUser("viewer", RoleViewer)

	vs := e.login(viewer, 0)
	resp, data := e.doTOTP("POST", "/api/v1/admin/enrollment-tokens", vs.Session, "", tokenBody)
	wantStatus(t, resp, data, http.StatusForbidden)
	resp, data = e.doTOTP("GET", "/api/v1/admin/devices", vs.Session, "", nil)
	wantStatus(t, resp, data, http.StatusOK)

	rs := e.login(rm, 0)
	resp, data = e.doTOTP("POST", "/api/v1/admin/releases", rs.Session, "", CreateReleaseRequest{Product: "acme/router-x1", Version: versions[0], Environment: EnvProd})
	wantStatus(t, resp, data, http.StatusCreated)
	var rel Release
	json.Unmarshal(data, &rel)
	if got := rec.find("rm", AuditReleaseAdded, map[string]string{"session": rs.ID}); len(got) != 1 {
		t.Errorf("release.added under a session does not name it: %v", rec.events)
	}

	as := e.login(appr, 0)
	approve := "/api/v1/admin/releases/" + rel.ID + "/approve"
	resp, data = e.doTOTP("POST", approve, as.Session, "", nil)
	wantStatus(t, resp, data, http.StatusUnauthorized)
	if !strings.Contains(string(data), "fresh TOTP code") {
		t.Errorf("approval without a code: %s", data)
	}
	e.clock.Advance(TOTPPeriod)
	resp, data = e.doTOTP("POST", approve, as.Session, TOTPCode(appr.secret, e.clock.Now()), nil)
	wantStatus(t, resp, data, http.StatusOK)
	if got := rec.find("appr", AuditLogin, map[string]string{"session": as.ID, "mfa": "session+totp"}); len(got) != 1 {
		t.Errorf("approval under a session with a code: %v", rec.events)
	}

	bs := e.login(admin, 0)
	resp, data = e.doTOTP("POST", "/api/v1/admin/rollouts", bs.Session, "", adminapi.CreateRolloutRequest{
		Release: "acme/router-x1@" + versions[0], Environment: EnvProd, Stages: "100%"})
	wantStatus(t, resp, data, http.StatusCreated)
	if got := rec.find("boss", "rollout.created", map[string]string{"session": bs.ID}); len(got) != 1 {
		t.Errorf("rollout.created under a session does not name it: %v", rec.events)
	}
	resp, data = e.doTOTP("POST", "/api/v1/admin/users", bs.Session, "", CreateUserRequest{Name: "new", Role: RoleViewer})
	wantStatus(t, resp, data, http.StatusUnauthorized)
	// Disabling the user ends their sessions.
	e.clock.Advance(TOTPPeriod)
	resp, data = e.doTOTP("POST", "/api/v1/admin/users/"+rm.ID+"/disable", bs.Session, TOTPCode(admin.secret, e.clock.Now()), nil)
	wantStatus(t, resp, data, http.StatusOK)
	resp, data = e.doTOTP("GET", "/api/v1/admin/releases", rs.Session, "", nil)
	wantStatus(t, resp, data, http.StatusUnauthorized)
}
