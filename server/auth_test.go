package server

import (
	"bufio"
	"context"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/store"
)

// totpSecrets maps the admin tokens of test users to their TOTP secrets, so
// e.do can add a fresh code to state-changing requests.
var totpSecrets sync.Map

// enrollTOTP enrolls TOTP for the named user and remembers the secret for tok.
func (e *testEnv) enrollTOTP(tok, name string) []byte {
	e.t.Helper()
	uri, err := EnrollTOTP(e.t.Context(), e.db, e.srv.kek, name)
	if err != nil {
		e.t.Fatal(err)
	}
	secret := secretFromURI(e.t, uri)
	totpSecrets.Store(tok, secret)
	return secret
}

func secretFromURI(t *testing.T, uri string) []byte {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(u.Query().Get("secret"))
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// addTOTP adds a code for the next time step to a state-changing request of
// a known test user (advancing the test clock one step, so no code is ever
// reused), unless the request already carries one.
func (e *testEnv) addTOTP(req *http.Request, bearer string) {
	if req.Method == http.MethodGet || req.Header.Get(TOTPHeader) != "" {
		return
	}
	v, ok := totpSecrets.Load(bearer)
	if !ok {
		return
	}
	e.clock.Advance(TOTPPeriod)
	req.Header.Set(TOTPHeader, TOTPCode(v.([]byte), e.clock.Now()))
}

// doTOTP sends a request with an explicit TOTP header value.
func (e *testEnv) doTOTP(method, path, bearer, code string, body any) (*http.Response, []byte) {
	e.t.Helper()
	var data []byte
	if body != nil {
		data, _ = json.Marshal(body)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.base+path, strings.NewReader(string(data)))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	if code != "" {
		req.Header.Set(TOTPHeader, code)
	}
	resp, err := e.client(nil).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&buf); err != nil {
		e.t.Fatal(err)
	}
	return resp, []byte(buf.String())
}

// testUser is a user with a token and an enrolled TOTP secret.
type testUser struct {
	store.User
	token  string
	secret []byte
}

func (e *testEnv) newUser(name, role string) testUser {
	e.t.Helper()
	u, tok, _, err := CreateUser(e.t.Context(), e.db, name, role, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	secret := e.enrollTOTP(tok, name)
	return testUser{User: u, token: tok, secret: secret}
}

// auditRecorder collects Config.Audit events.
type auditRecorder struct {
	mu     sync.Mutex
	events []string // "actor action"
}

func (a *auditRecorder) record(_ context.Context, actor, action string, details map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, actor+" "+action)
}

func (a *auditRecorder) has(ev string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.events, ev)
}

// TestRoleEndpointMatrix calls every admin endpoint with every role (and a
// valid TOTP code where required) and checks that exactly the roles the
// least-privilege table allows get a 2xx, and every other role a 403.
func TestRoleEndpointMatrix(t *testing.T) {
	e := startServer(t, nil)
	versions := publishTestReleases(t, e, "acme/router-x1", 40)
	nextVersion := 0
	users := map[string]testUser{}
	for _, r := range Roles {
		users[r] = e.newUser("matrix-"+r, r)
	}
	rm := e.newUser("matrix-uploader", RoleReleaseManager)
	_, dev := e.enroll()
	ctx := t.Context()
	n := 0
	// freshRelease registers a release uploaded by rm directly in the store.
	freshRelease := func(env string) string {
		n++
		id := fmt.Sprintf("rel-matrix-%d", n)
		if err := e.db.CreateRelease(ctx, store.Release{ID: id, Product: "acme/router-x1", Version: fmt.Sprintf("9.9.%d", n),
			Environment: env, TargetPath: "acme/router-x1/9.9.0/fw.img", Uploader: rm.ID, CreatedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	victim := func() string {
		n++
		u, _, _, err := CreateUser(ctx, e.db, fmt.Sprintf("victim-%d", n), RoleViewer, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return u.ID
	}
	all := Roles
	tests := []struct {
		method, route string
		allowed       []string // written out, not derived from the code's table
		setup         func() (path string, body any)
	}{
		{"GET", "/api/v1/admin/devices", all, func() (string, any) { return "/api/v1/admin/devices", nil }},
		{"GET", "/api/v1/admin/devices/{id}", all, func() (string, any) { return "/api/v1/admin/devices/" + dev.DeviceID, nil }},
		{"GET", "/api/v1/admin/devices/{id}/events", all, func() (string, any) { return "/api/v1/admin/devices/" + dev.DeviceID + "/events", nil }},
		{"GET", "/api/v1/admin/stats", all, func() (string, any) { return "/api/v1/admin/stats", nil }},
		{"GET", "/metrics", all, func() (string, any) { return "/metrics", nil }},
		{"GET", "/api/v1/admin/releases", all, func() (string, any) { return "/api/v1/admin/releases", nil }},
		{"GET", "/api/v1/admin/releases/{id}", all, func() (string, any) { return "/api/v1/admin/releases/" + freshRelease(EnvDev), nil }},
		{"POST", "/api/v1/admin/enrollment-tokens", []string{RoleOperator, RoleAdmin}, func() (string, any) {
			return "/api/v1/admin/enrollment-tokens", CreateEnrollmentTokenRequest{Uses: 1, TTLSeconds: 60}
		}},
		{"POST", "/api/v1/admin/releases", []string{RoleReleaseManager, RoleAdmin}, func() (string, any) {
			nextVersion++
			return "/api/v1/admin/releases", CreateReleaseRequest{Product: "acme/router-x1", Version: versions[nextVersion], Environment: EnvProd}
		}},
		{"POST", "/api/v1/admin/releases/{id}/approve", []string{RoleApprover, RoleAdmin}, func() (string, any) {
			return "/api/v1/admin/releases/" + freshRelease(EnvProd) + "/approve", nil
		}},
		{"POST", "/api/v1/admin/releases/{id}/deploy", []string{RoleOperator, RoleAdmin}, func() (string, any) {
			return "/api/v1/admin/releases/" + freshRelease(EnvStaging) + "/deploy", nil
		}},
		{"GET", "/api/v1/admin/users", []string{RoleAdmin}, func() (string, any) { return "/api/v1/admin/users", nil }},
		{"POST", "/api/v1/admin/users", []string{RoleAdmin}, func() (string, any) {
			n++
			return "/api/v1/admin/users", CreateUserRequest{Name: fmt.Sprintf("new-%d", n), Role: RoleViewer}
		}},
		{"POST", "/api/v1/admin/users/{id}/tokens", []string{RoleAdmin}, func() (string, any) {
			return "/api/v1/admin/users/" + victim() + "/tokens", CreateTokenRequest{Name: "laptop"}
		}},
		{"POST", "/api/v1/admin/users/{id}/disable", []string{RoleAdmin}, func() (string, any) {
			return "/api/v1/admin/users/" + victim() + "/disable", nil
		}},
	}
	// Every admin route of the server is in the matrix.
	var covered []string
	for _, tt := range tests {
		covered = append(covered, tt.method+" "+tt.route)
	}
	for _, route := range adminRoutes(t) {
		if !slices.Contains(covered, route) {
			t.Errorf("admin route %q is missing from the role matrix", route)
		}
	}
	for _, tt := range tests {
		for _, role := range Roles {
			t.Run(tt.method+" "+tt.route+"/"+role, func(t *testing.T) {
				path, body := tt.setup()
				resp, data := e.do(e.client(nil), tt.method, path, users[role].token, body)
				if slices.Contains(tt.allowed, role) {
					if resp.StatusCode < 200 || resp.StatusCode > 299 {
						t.Fatalf("role %s: status %d, want 2xx: %s", role, resp.StatusCode, data)
					}
				} else {
					wantStatus(t, resp, data, http.StatusForbidden)
				}
			})
		}
	}
}

// adminRoutes lists the admin routes registered in routes.go and users.go
// (governanceRoutes: releases and users), read from the source so a new
// route cannot skip the matrix. The rollout routes (rollouts_api.go) are
// not in the matrix yet.
func adminRoutes(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"routes.go", "users.go"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			_, rest, ok := strings.Cut(line, `mux.HandleFunc("`)
			if !ok || !strings.Contains(line, "s.auth.Admin(") {
				continue
			}
			route, _, _ := strings.Cut(rest, `"`)
			out = append(out, route)
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d admin routes: %q", len(out), out)
	}
	return out
}

// TestTOTPRefusesMissingWrongExpiredAndReplayedCodes drives a
// state-changing endpoint with every kind of bad second factor.
func TestTOTPRefusesMissingWrongExpiredAndReplayedCodes(t *testing.T) {
	rec := &auditRecorder{}
	e := startServer(t, func(c *Config) { c.Audit = rec.record })
	op := e.newUser("op", RoleOperator)
	path := "/api/v1/admin/enrollment-tokens"
	body := CreateEnrollmentTokenRequest{Uses: 1, TTLSeconds: 60}
	code := func(d time.Duration) string { return TOTPCode(op.secret, e.clock.Now().Add(d)) }
	wrong := func(c string) string { return fmt.Sprintf("%06d", (mustAtoi(t, c)+1)%1000000) }

	e.clock.Advance(TOTPPeriod)
	ok := code(0)
	resp, data := e.doTOTP("POST", path, op.token, ok, body)
	wantStatus(t, resp, data, http.StatusCreated)
	if !rec.has("op " + AuditLogin) {
		t.Errorf("no %s audit event after a good code: %q", AuditLogin, rec.events)
	}

	for _, tc := range []struct {
		name, code string
		want       int
	}{
		{"replayed code", ok, http.StatusUnauthorized},
		{"earlier code after a later one", code(-TOTPPeriod), http.StatusUnauthorized},
		{"missing code", "", http.StatusUnauthorized},
		{"wrong code", wrong(code(TOTPPeriod)), http.StatusUnauthorized},
		{"expired code (two steps old)", code(-2 * TOTPPeriod), http.StatusUnauthorized},
		// A success also resets the failure count (MaxTOTPFailures).
		{"next step is accepted (clock skew)", code(TOTPPeriod), http.StatusCreated},
		{"code from the future (two steps ahead)", code(3 * TOTPPeriod), http.StatusUnauthorized},
		{"five digits", code(TOTPPeriod)[:5], http.StatusUnauthorized},
		{"seven digits", code(TOTPPeriod) + "0", http.StatusUnauthorized},
		{"not digits", "12345a", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, data := e.doTOTP("POST", path, op.token, tc.code, body)
			wantStatus(t, resp, data, tc.want)
			if tc.want == http.StatusUnauthorized && !strings.Contains(strings.ToLower(string(data)), "totp") {
				t.Errorf("error does not say the TOTP check failed: %s", data)
			}
		})
	}
	if !rec.has("op " + AuditLoginFailed) {
		t.Errorf("no %s audit event: %q", AuditLoginFailed, rec.events)
	}

	t.Run("replay refused after a restart", func(t *testing.T) {
		e.clock.Advance(3 * TOTPPeriod)
		c := code(0)
		resp, data := e.doTOTP("POST", path, op.token, c, body)
		wantStatus(t, resp, data, http.StatusCreated)
		if err := e.stop(); err != nil {
			t.Fatal(err)
		}
		e.start()
		resp, data = e.doTOTP("POST", path, op.token, c, body)
		wantStatus(t, resp, data, http.StatusUnauthorized)
	})

	t.Run("user without TOTP enrolled", func(t *testing.T) {
		_, tok, _, err := CreateUser(t.Context(), e.db, "nomfa", RoleOperator, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		resp, data := e.doTOTP("POST", path, tok, "123456", body)
		wantStatus(t, resp, data, http.StatusUnauthorized)
		if !strings.Contains(string(data), "not enrolled") {
			t.Errorf("error does not say TOTP is not enrolled: %s", data)
		}
	})

	t.Run("brute force locks the second factor", func(t *testing.T) {
		bf := e.newUser("bf", RoleOperator)
		e.clock.Advance(TOTPPeriod)
		good := TOTPCode(bf.secret, e.clock.Now())
		for range MaxTOTPFailures {
			resp, data := e.doTOTP("POST", path, bf.token, wrong(good), body)
			wantStatus(t, resp, data, http.StatusUnauthorized)
		}
		resp, data := e.doTOTP("POST", path, bf.token, good, body)
		wantStatus(t, resp, data, http.StatusTooManyRequests)
		e.clock.Advance(TOTPLockout)
		resp, data = e.doTOTP("POST", path, bf.token, TOTPCode(bf.secret, e.clock.Now()), body)
		wantStatus(t, resp, data, http.StatusCreated)
	})

	t.Run("disabled user is refused", func(t *testing.T) {
		if err := e.db.DisableUser(t.Context(), op.ID, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		resp, data := e.do(e.client(nil), "GET", "/api/v1/admin/devices", op.token, nil)
		wantStatus(t, resp, data, http.StatusUnauthorized)
	})

	t.Run("auth results are counted", func(t *testing.T) {
		admin := e.adminToken(RoleAdmin)
		resp, data := e.do(e.client(nil), "GET", "/metrics", admin, nil)
		wantStatus(t, resp, data, http.StatusOK)
		for _, series := range []string{`airlock_admin_auth_total{result="ok"}`, `airlock_admin_auth_total{result="totp_replay"}`,
			`airlock_admin_auth_total{result="totp_invalid"}`, `airlock_admin_auth_total{result="disabled"}`} {
			if !strings.Contains(string(data), series) {
				t.Errorf("metrics lack %s", series)
			}
		}
	})
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBadTokensDoNotGrowTheAuditLog: 300 requests with a bad token are one
// audit event, not 300 (the rest are counted: auth.FailureWindow).
func TestBadTokensDoNotGrowTheAuditLog(t *testing.T) {
	rec := &auditRecorder{}
	e := startServer(t, func(c *Config) { c.Audit = rec.record })
	c := e.client(nil)
	for range 300 {
		resp, data := e.do(c, "GET", "/api/v1/admin/devices", "not-a-token", nil)
		wantStatus(t, resp, data, http.StatusUnauthorized)
	}
	rec.mu.Lock()
	n := 0
	for _, ev := range rec.events {
		if ev == "unknown "+AuditLoginFailed {
			n++
		}
	}
	rec.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d %s events for 300 bad tokens from one client, want 1 (then one aggregated)", n, AuditLoginFailed)
	}
}
