package server

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/server/store"
)

// browser is an HTTPS client with a cookie jar that does not follow
// redirects, like a browser session the tests can inspect.
type browser struct {
	e      *testEnv
	c      *http.Client
	origin string // Origin header of POSTs; "" sends none
}

func (e *testEnv) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := e.client(nil)
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, c: c, origin: e.base}
}

func (b *browser) get(path string) (*http.Response, string) {
	b.e.t.Helper()
	resp, err := b.c.Get(b.e.base + path)
	if err != nil {
		b.e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.e.t.Helper()
	req, err := http.NewRequestWithContext(b.e.t.Context(), "POST", b.e.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([A-Za-z0-9_-]+)"`)

// csrf returns the CSRF token of the forms on a page.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field on the page:\n%s", page)
	}
	return m[1]
}

// code returns a fresh TOTP code of u (the test clock moves one step on,
// so no code is ever reused by accident).
func (e *testEnv) code(u testUser) string {
	e.clock.Advance(TOTPPeriod)
	return TOTPCode(u.secret, e.clock.Now())
}

// login logs b in as u and returns the overview page.
func (b *browser) login(u testUser) string {
	b.e.t.Helper()
	_, page := b.get("/dashboard/login")
	resp, body := b.post("/dashboard/login", url.Values{"csrf": {csrfOf(b.e.t, page)}, "token": {u.token}, "totp": {b.e.code(u)}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/" {
		b.e.t.Fatalf("login: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	resp, body = b.get("/dashboard/")
	if resp.StatusCode != http.StatusOK {
		b.e.t.Fatalf("overview after login: %d\n%s", resp.StatusCode, body)
	}
	return body
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == DashboardCookie {
			return c
		}
	}
	return nil
}

func TestDashboardLoginNeedsTokenAndFreshTOTP(t *testing.T) {
	rec := &auditRecorder{}
	e := startServer(t, func(c *Config) { c.Audit = rec.record })
	alice := e.newUser("alice", RoleViewer)
	gone := e.newUser("gone", RoleAdmin)
	if err := e.db.DisableUser(t.Context(), gone.ID, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, tokNoTOTP, _, err := CreateUser(t.Context(), e.db, "nototp", RoleAdmin, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	replayed := e.code(alice)
	b0 := e.browser()
	b0.login(alice) // with a later code: the earlier one is now a replay
	for _, tc := range []struct {
		name       string
		token, otp func() string
		csrf       func(page string) string
		origin     string
		want       int
	}{
		{name: "wrong token", token: func() string { return strings.Repeat("A", EnrollmentTokenLen) }, otp: func() string { return e.code(alice) }, want: 401},
		{name: "malformed token", token: func() string { return "x' OR 1=1" }, otp: func() string { return e.code(alice) }, want: 401},
		{name: "token without totp", token: func() string { return alice.token }, otp: func() string { return "" }, want: 401},
		{name: "wrong totp", token: func() string { return alice.token }, otp: func() string { return "000000" }, want: 401},
		{name: "replayed totp", token: func() string { return alice.token }, otp: func() string { return replayed }, want: 401},
		{name: "disabled user", token: func() string { return gone.token }, otp: func() string { return e.code(gone) }, want: 401},
		{name: "user without totp", token: func() string { return tokNoTOTP }, otp: func() string { return "123456" }, want: 401},
		{name: "no login csrf", token: func() string { return alice.token }, otp: func() string { return e.code(alice) },
			csrf: func(string) string { return "" }, want: 400},
		{name: "forged login csrf", token: func() string { return alice.token }, otp: func() string { return e.code(alice) },
			csrf: func(string) string { return strings.Repeat("a", 43) }, want: 400},
		{name: "cross-origin login", token: func() string { return alice.token }, otp: func() string { return e.code(alice) },
			origin: "https://evil.example", want: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser()
			if tc.origin != "" {
				b.origin = tc.origin
			}
			_, page := b.get("/dashboard/login")
			csrf := csrfOf(t, page)
			if tc.csrf != nil {
				csrf = tc.csrf(page)
			}
			resp, body := b.post("/dashboard/login", url.Values{"csrf": {csrf}, "token": {tc.token()}, "totp": {tc.otp()}})
			if resp.StatusCode != tc.want || sessionCookie(resp) != nil && sessionCookie(resp).MaxAge >= 0 {
				t.Fatalf("status %d (want %d), cookie %v\n%s", resp.StatusCode, tc.want, sessionCookie(resp), body)
			}
			if strings.Contains(body, tc.token()) && len(tc.token()) > 8 {
				t.Fatal("the login page echoes the token")
			}
			if resp, _ := b.get("/dashboard/"); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("overview without a session: %d, want a redirect to login", resp.StatusCode)
			}
		})
	}
	if !rec.has("unknown "+AuditLoginFailed) || !rec.has("alice "+AuditLoginFailed) || !rec.has("alice "+AuditLogin) {
		t.Fatalf("audit events: %q", rec.events)
	}
}

func TestDashboardSessionCookieIsHostOnlySecureStrict(t *testing.T) {
	e := startServer(t, nil)
	u := e.newUser("op", RoleOperator)
	b := e.browser()
	_, page := b.get("/dashboard/login")
	resp, _ := b.post("/dashboard/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {u.token}, "totp": {e.code(u)}})
	c := sessionCookie(resp)
	if c == nil {
		t.Fatal("no session cookie")
	}
	raw := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
	for _, want := range []string{"__Host-airlock-session=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(raw, want) {
			t.Errorf("Set-Cookie lacks %q: %s", want, raw)
		}
	}
	if strings.Contains(raw, "Domain=") || len(c.Value) != 43 {
		t.Errorf("cookie %q: want a host-only 32-byte random ID", raw)
	}
}

func TestDashboardSessionEndsAfterIdleAndAbsoluteTimeout(t *testing.T) {
	e := startServer(t, nil)
	u := e.newUser("viewer", RoleViewer)
	t.Run("idle", func(t *testing.T) {
		b := e.browser()
		b.login(u)
		e.clock.Advance(DashboardSessionIdle - time.Minute)
		if resp, _ := b.get("/dashboard/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("before the idle timeout: %d", resp.StatusCode)
		}
		e.clock.Advance(DashboardSessionIdle)
		if resp, _ := b.get("/dashboard/"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("after the idle timeout: %d, want a redirect to login", resp.StatusCode)
		}
	})
	t.Run("absolute", func(t *testing.T) {
		b := e.browser()
		b.login(u)
		const step = 20 * time.Minute // < DashboardSessionIdle: the session stays active
		start := e.clock.Now()
		for e.clock.Now().Sub(start) < DashboardSessionMax-step {
			e.clock.Advance(step)
			if resp, _ := b.get("/dashboard/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("active session after %v: %d", e.clock.Now().Sub(start), resp.StatusCode)
			}
		}
		e.clock.Advance(step)
		if resp, _ := b.get("/dashboard/"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("after %v: %d, want a redirect to login", DashboardSessionMax, resp.StatusCode)
		}
	})
	t.Run("logout", func(t *testing.T) {
		b := e.browser()
		page := b.login(u)
		resp, _ := b.post("/dashboard/logout", url.Values{"csrf": {csrfOf(t, page)}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: %d", resp.StatusCode)
		}
		if resp, _ := b.get("/dashboard/"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("after logout: %d", resp.StatusCode)
		}
	})
	t.Run("disabled user", func(t *testing.T) {
		v2 := e.newUser("viewer2", RoleViewer)
		b := e.browser()
		b.login(v2)
		if err := e.db.DisableUser(t.Context(), v2.ID, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if resp, body := b.get("/dashboard/"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "disabled") {
			t.Fatalf("disabled user's session: %d", resp.StatusCode)
		}
	})
}

// TestDashboardApproveNeedsCSRFFreshTOTPAndRole walks the release approval
// form through the attacks it must stop.
func TestDashboardApproveNeedsCSRFFreshTOTPAndRole(t *testing.T) {
	rec := &auditRecorder{}
	e := startServer(t, func(c *Config) { c.ProdApprovals = 1; c.Audit = rec.record })
	versions := publishTestReleases(t, e, "acme/router-x1", 1)
	rm := e.newUser("rm", RoleReleaseManager)
	approver := e.newUser("appr", RoleApprover)
	viewer := e.newUser("view", RoleViewer)
	resp, data := e.do(e.client(nil), "POST", "/api/v1/admin/releases", rm.token, CreateReleaseRequest{Product: "acme/router-x1", Version: versions[0], Environment: EnvProd})
	wantStatus(t, resp, data, http.StatusCreated)
	rel := decodeRelease(t, data)
	path := "/dashboard/releases/" + rel.ID

	approvals := func() int {
		r, err := e.db.GetRelease(t.Context(), rel.ID)
		if err != nil {
			t.Fatal(err)
		}
		return r.ActiveApprovals()
	}

	b := e.browser()
	page := b.login(approver)
	_, page = b.get(path)
	csrf := csrfOf(t, page)
	if !strings.Contains(page, `action="`+path+`/approve"`) {
		t.Fatalf("approver sees no approve form:\n%s", page)
	}
	replayed := e.code(approver)
	if err := e.db.AcceptTOTPStep(t.Context(), approver.ID, TOTPStep(e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		origin string
		ctype  string
		want   int
	}{
		{name: "no csrf", form: url.Values{"totp": {e.code(approver)}}, want: 400},
		{name: "wrong csrf", form: url.Values{"csrf": {strings.Repeat("b", 43)}, "totp": {e.code(approver)}}, want: 400},
		{name: "cross origin", form: url.Values{"csrf": {csrf}, "totp": {e.code(approver)}}, origin: "https://evil.example", want: 400},
		{name: "duplicate field", form: url.Values{"csrf": {csrf, csrf}, "totp": {e.code(approver)}}, want: 400},
		{name: "unknown field name", form: url.Values{"csrf": {csrf}, "totp": {e.code(approver)}, "X-Evil": {"1"}}, want: 400},
		{name: "no totp", form: url.Values{"csrf": {csrf}}, want: 303},
		{name: "wrong totp", form: url.Values{"csrf": {csrf}, "totp": {"999999"}}, want: 303},
		{name: "replayed totp", form: url.Values{"csrf": {csrf}, "totp": {replayed}}, want: 303},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.origin != "" {
				b.origin = tc.origin
				defer func() { b.origin = e.base }()
			}
			resp, body := b.post(path+"/approve", tc.form)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d\n%s", resp.StatusCode, tc.want, body)
			}
			if n := approvals(); n != 0 {
				t.Fatalf("the release got %d approvals", n)
			}
			if tc.want == 303 {
				if _, page := b.get(path); !strings.Contains(page, "not done") {
					t.Fatalf("no failure message after a refused approval:\n%s", page)
				}
			}
		})
	}

	t.Run("viewer may not approve", func(t *testing.T) {
		bv := e.browser()
		page := bv.login(viewer)
		_, page = bv.get(path)
		if strings.Contains(page, "/approve") {
			t.Fatal("viewer is offered the approve form")
		}
		resp, _ := bv.post(path+"/approve", url.Values{"csrf": {csrfOf(t, page)}, "totp": {e.code(viewer)}})
		if resp.StatusCode != http.StatusForbidden || approvals() != 0 {
			t.Fatalf("viewer approve: %d, approvals %d", resp.StatusCode, approvals())
		}
	})

	t.Run("uploader may not approve", func(t *testing.T) {
		admin := e.newUser("boss", RoleAdmin)
		resp, data := e.do(e.client(nil), "POST", "/api/v1/admin/releases", admin.token, CreateReleaseRequest{Product: "acme/router-x1", Version: versions[0], Environment: EnvStaging})
		wantStatus(t, resp, data, http.StatusCreated)
		own := decodeRelease(t, data)
		ba := e.browser()
		page := ba.login(admin)
		ba.post("/dashboard/releases/"+own.ID+"/approve", url.Values{"csrf": {csrfOf(t, page)}, "totp": {e.code(admin)}})
		if _, page := ba.get("/dashboard/releases/" + own.ID); !strings.Contains(page, "uploader of a release cannot approve it") {
			t.Fatalf("self-approval not refused:\n%s", page)
		}
	})

	t.Run("fresh totp approves", func(t *testing.T) {
		resp, _ := b.post(path+"/approve", url.Values{"csrf": {csrf}, "totp": {e.code(approver)}})
		if resp.StatusCode != http.StatusSeeOther || approvals() != 1 {
			t.Fatalf("approve: %d, approvals %d", resp.StatusCode, approvals())
		}
		_, page := b.get(path)
		if !strings.Contains(page, "approved acme/router-x1@"+versions[0]) || !strings.Contains(page, "1 of 1 required") {
			t.Fatalf("release page after approval:\n%s", page)
		}
		if !rec.has("appr " + AuditReleaseApproved) {
			t.Fatalf("audit: %q", rec.events)
		}
	})
}

func TestDashboardPagesHaveStrictSecurityHeadersAndNoExternalAssets(t *testing.T) {
	e := startServer(t, nil)
	publishTestReleases(t, e, "acme/router-x1", 1)
	u := e.newUser("adm", RoleAdmin)
	b := e.browser()
	b.login(u)
	anon := e.browser()
	for _, path := range []string{"/dashboard/login", "/dashboard/", "/dashboard/releases", "/dashboard/rollouts", "/dashboard/nope", "/dashboard/releases/nope"} {
		t.Run(path, func(t *testing.T) {
			b := b
			if path == "/dashboard/login" {
				b = anon
			}
			resp, body := b.get(path)
			h := resp.Header
			csp := h.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "style-src 'nonce-"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") || strings.Contains(csp, "script-src") {
				t.Errorf("CSP %q allows scripts or unsafe sources", csp)
			}
			for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
				"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Type": "text/html; charset=utf-8"} {
				if got := h.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			low := strings.ToLower(body)
			for _, bad := range []string{"<script", "http://", "https://", "src=\"//", "href=\"//", "<link"} {
				if strings.Contains(low, bad) {
					t.Errorf("page contains %q", bad)
				}
			}
			nonce := strings.TrimSuffix(strings.SplitN(strings.SplitN(csp, "'nonce-", 2)[1], "'", 2)[0], "'")
			if !strings.Contains(body, `<style nonce="`+nonce+`">`) {
				t.Errorf("style block does not carry the CSP nonce %q", nonce)
			}
		})
	}
}

// TestDashboardEscapesDeviceSuppliedText: a device reports markup in its
// error message and version; the pages show it as text.
func TestDashboardEscapesDeviceSuppliedText(t *testing.T) {
	e := startServer(t, nil)
	versions := publishTestReleases(t, e, "acme/router-x1", 1)
	rm := e.newUser("rm", RoleReleaseManager)
	resp, data := e.do(e.client(nil), "POST", "/api/v1/admin/releases", rm.token, CreateReleaseRequest{Product: "acme/router-x1", Version: versions[0], Environment: EnvDev})
	wantStatus(t, resp, data, http.StatusCreated)
	rel := decodeRelease(t, data)
	cert, _ := e.enroll()
	dc := e.client(&cert)
	const evil = `<script>alert(1)</script><img src=x onerror=alert(2)>`
	resp, data = e.do(dc, "POST", "/api/v1/status", "", deviceapi.StatusReport{Kind: store.StateFailed, Version: versions[0], Message: evil})
	wantStatus(t, resp, data, http.StatusNoContent)

	b := e.browser()
	b.login(e.newUser("v", RoleViewer))
	for _, path := range []string{"/dashboard/", "/dashboard/releases/" + rel.ID} {
		_, page := b.get(path)
		if strings.Contains(page, "<script>") || strings.Contains(page, "<img") {
			t.Fatalf("%s renders device-supplied markup:\n%s", path, page)
		}
	}
	_, page := b.get("/dashboard/releases/" + rel.ID)
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatalf("the failed device's message is not shown escaped:\n%s", page)
	}
}

func TestDashboardTOTPLockoutAppliesToLogin(t *testing.T) {
	e := startServer(t, nil)
	u := e.newUser("mallory-target", RoleAdmin)
	b := e.browser()
	for range MaxTOTPFailures {
		_, page := b.get("/dashboard/login")
		b.post("/dashboard/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {u.token}, "totp": {"000000"}})
	}
	_, page := b.get("/dashboard/login")
	resp, body := b.post("/dashboard/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {u.token}, "totp": {e.code(u)}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "too many wrong TOTP codes") {
		t.Fatalf("right code during lockout: %d\n%s", resp.StatusCode, body)
	}
	// The API shares the lockout.
	req, _ := http.NewRequestWithContext(t.Context(), "POST", e.base+"/api/v1/admin/users", strings.NewReader(`{"name":"x","role":"viewer"}`))
	req.Header.Set("Authorization", "Bearer "+u.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TOTPHeader, e.code(u))
	r2, err := e.client(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("API during dashboard lockout: %d", r2.StatusCode)
	}
}

// TestDashboardRolloutPageShowsStagesCountsAndFailureReasons stores a
// running rollout with devices in each outcome and reads its pages.
func TestDashboardRolloutPageShowsStagesCountsAndFailureReasons(t *testing.T) {
	e := startServer(t, nil)
	versions := publishTestReleases(t, e, "acme/router-x1", 2)
	rm := e.newUser("rm", RoleReleaseManager)
	resp, data := e.do(e.client(nil), "POST", "/api/v1/admin/releases", rm.token, CreateReleaseRequest{Product: "acme/router-x1", Version: versions[1], Environment: EnvDev})
	wantStatus(t, resp, data, http.StatusCreated)
	rel := decodeRelease(t, data)
	now := e.clock.Now()
	ro := store.Rollout{ID: "ro-1", ReleaseID: rel.ID, Product: rel.Product, Version: rel.Version, TargetPath: rel.TargetPath,
		Filter: "model=x1", Stages: "canary:4,100%", SuccessThreshold: 9500, FailureThreshold: 2000,
		ReportDeadline: time.Hour, State: store.RolloutRunning, Reason: "operator start: <b>go</b>", CreatedBy: rm.ID, CreatedAt: now, UpdatedAt: now,
		Eligible: 4, Target: 4}
	if err := e.db.CreateRollout(t.Context(), ro); err != nil {
		t.Fatal(err)
	}
	outcomes := []struct{ state, reason string }{
		{store.RolloutDeviceSucceeded, ""}, {store.RolloutDeviceSucceeded, ""},
		{store.RolloutDeviceFailed, "health_check_failed"}, {store.RolloutDeviceInProgress, ""},
	}
	for _, o := range outcomes {
		_, er := e.enroll()
		if err := e.db.AssignRolloutDevice(t.Context(), store.RolloutDevice{RolloutID: ro.ID, DeviceID: er.DeviceID, State: store.RolloutDeviceAssigned, AssignedAt: now}); err != nil {
			t.Fatal(err)
		}
		if err := e.db.UpdateRolloutDevice(t.Context(), store.RolloutDeviceUpdate{RolloutID: ro.ID, DeviceID: er.DeviceID,
			State: o.state, Reason: o.reason, Now: now}); err != nil {
			t.Fatal(err)
		}
	}
	op := e.newUser("op", RoleOperator)
	b := e.browser()
	b.login(op)
	_, list := b.get("/dashboard/rollouts")
	for _, want := range []string{"acme/router-x1@" + versions[1], "running", "2 ok / 1 failed / 4 assigned", "&lt;b&gt;go&lt;/b&gt;"} {
		if !strings.Contains(list, want) {
			t.Errorf("rollouts list lacks %q", want)
		}
	}
	_, page := b.get("/dashboard/rollouts/ro-1")
	for _, want := range []string{
		"2 succeeded, 1 failed, 1 in progress, 4 assigned", "health_check_failed", "canary", "success 95%, failure 20%",
		`<rect x="0" width="50"`, // canary: 2 of 4 succeeded
		`action="/dashboard/rollouts/ro-1/pause"`, `action="/dashboard/rollouts/ro-1/cancel"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("rollout page lacks %q", want)
		}
	}
	if strings.Contains(page, `/ro-1/start"`) || strings.Contains(page, `/ro-1/resume"`) {
		t.Error("a running rollout offers start or resume")
	}
	if t.Failed() {
		t.Log(page)
	}
	viewer := e.newUser("v", RoleViewer)
	bv := e.browser()
	bv.login(viewer)
	if _, page := bv.get("/dashboard/rollouts/ro-1"); strings.Contains(page, "/pause") {
		t.Error("a viewer is offered the pause form")
	}
	if _, page := bv.get("/dashboard/rollouts/nope"); !strings.Contains(page, "no such rollout") {
		t.Error("unknown rollout is not a 404 page")
	}
}
