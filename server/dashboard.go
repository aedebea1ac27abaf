package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// The fleet dashboard: server-rendered HTML pages under /dashboard/ for the
// same users as the admin API (docs/dashboard.md).
//
// # Threat model
//
// The dashboard is the admin API in a browser, so it keeps the admin API's
// guarantees and adds the browser's attacks to the list:
//
//   - Login takes a user's admin API token AND a current TOTP code, checked
//     exactly like the API (token hash lookup, disabled users refused,
//     TOTP window, replay refused, lockout after MaxTOTPFailures). A stolen
//     token alone does not log in.
//   - A session is a random DashboardSessionIDSize-byte ID in an HttpOnly,
//     Secure, SameSite=Strict "__Host-" cookie; the server keeps only its
//     SHA-256, with an idle timeout (DashboardSessionIdle) and an absolute
//     one (DashboardSessionMax), in memory (a restart logs everyone out).
//     The user and role are re-read from the store on every request, so a
//     disabled user or a changed role takes effect at once.
//   - Every POST carries the session's CSRF token (compared in constant
//     time), a same-origin Origin header when the browser sends one, and
//     a form body of at most MaxDashboardFormSize bytes. The login form has
//     its own pre-session CSRF cookie (login CSRF).
//   - Every page is authorized with the admin API's [Authorize] table, and
//     every state-changing form needs a fresh TOTP code in the form: a
//     hijacked session (or an XSS, were there one) cannot change anything
//     without the second factor.
//   - Pages render only through html/template (contextual escaping of
//     everything devices and operators supplied: device IDs, versions,
//     error messages, audit details). Responses carry a strict Content
//     Security Policy (default-src 'none', styles only with the response's
//     nonce, no scripts at all, form-action 'self', frame-ancestors 'none'),
//     X-Content-Type-Options, Referrer-Policy same-origin and
//     Cache-Control no-store. There are no external assets and no
//     JavaScript; charts are CSS and inline SVG.
//
// Trusted: the server, its store and audit log (as for the admin API).
// Untrusted: the browser and everything it sends, and the device-reported
// values the pages display.

// Dashboard limits.
const (
	// DashboardSessionIDSize is the entropy of a session ID, in bytes.
	DashboardSessionIDSize = 32
	// DashboardSessionIdle ends a session that made no request for this long.
	DashboardSessionIdle = 30 * time.Minute
	// DashboardSessionMax ends a session this long after login, however active.
	DashboardSessionMax = 8 * time.Hour
	// MaxDashboardSessions bounds the live sessions; the oldest is evicted.
	MaxDashboardSessions = 10_000
	// MaxDashboardFormSize bounds a dashboard form body.
	MaxDashboardFormSize = 4 << 10
	// MaxDashboardFormFields bounds the fields of a dashboard form.
	MaxDashboardFormFields = 8
	// DashboardListLimit bounds the releases, devices and audit events a page lists.
	DashboardListLimit = 100
	// DashboardStateCountLimit bounds how many devices per state the overview
	// counts exactly; beyond it the page says "at least".
	DashboardStateCountLimit = store.MaxListLimit
	// DashboardCookie names the session cookie. The "__Host-" prefix makes
	// browsers require Secure, Path=/ and no Domain.
	DashboardCookie = "__Host-airlock-session"
	// dashboardLoginCookie holds the login form's CSRF token.
	dashboardLoginCookie = "__Host-airlock-login"
	// dashboardPrefix is where the dashboard is mounted.
	dashboardPrefix = "/dashboard/"
)

// Errors of dashboard requests.
var (
	// ErrDashboardCSRF: a POST lacked the session's CSRF token or came from
	// another origin.
	ErrDashboardCSRF = errors.New("cross-site request refused: missing or wrong csrf token or origin")
	// ErrDashboardForm: a form body failed a check.
	ErrDashboardForm = errors.New("malformed form")
)

//go:embed templates
var templateFS embed.FS

// dashboardPages are the page templates; each is parsed with layout.html.
var dashboardPages = []string{"login", "overview", "releases", "release", "rollouts", "rollout", "error"}

// dashboard serves the pages. It is created by Server.dashboardRoutes.
type dashboard struct {
	s        *Server
	sessions *sessionStore
	pages    map[string]*template.Template
	rollouts rolloutView // nil when the server has no rollout engine
}

var dashboardFuncs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"pct": func(part, whole int) int {
		if whole <= 0 || part <= 0 {
			return 0
		}
		return min(100, part*100/whole)
	},
	"add":      func(a, b int) int { return a + b },
	"progress": progress,
}

func parseDashboardTemplates() (map[string]*template.Template, error) {
	sub, err := fs.Sub(templateFS, "templates")
	if err != nil {
		return nil, err
	}
	base, err := template.New("layout.html").Funcs(dashboardFuncs).ParseFS(sub, "layout.html")
	if err != nil {
		return nil, err
	}
	out := make(map[string]*template.Template, len(dashboardPages))
	for _, p := range dashboardPages {
		t, err := template.Must(base.Clone()).ParseFS(sub, p+".html")
		if err != nil {
			return nil, err
		}
		out[p] = t
	}
	return out, nil
}

// dashboardRoutes mounts the dashboard on mux.
func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	pages, err := parseDashboardTemplates()
	if err != nil {
		panic("internal error: dashboard templates: " + err.Error()) // embedded, checked by tests
	}
	d := &dashboard{s: s, sessions: newSessionStore(), pages: pages, rollouts: s.dashboardRollouts()}
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, dashboardPrefix, http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /dashboard/login", d.handleLoginPage)
	mux.HandleFunc("POST /dashboard/login", d.handleLogin)
	mux.HandleFunc("POST /dashboard/logout", d.page(ActionFleetRead, d.handleLogout))
	mux.HandleFunc("GET /dashboard/{$}", d.page(ActionFleetRead, d.handleOverview))
	mux.HandleFunc("GET /dashboard/releases", d.page(ActionReleaseRead, d.handleReleases))
	mux.HandleFunc("GET /dashboard/releases/{id}", d.page(ActionReleaseRead, d.handleRelease))
	mux.HandleFunc("POST /dashboard/releases/{id}/approve", d.page(ActionReleaseApprove, d.handleApprove))
	mux.HandleFunc("GET /dashboard/rollouts", d.page(rolloutReadAction, d.handleRollouts))
	mux.HandleFunc("GET /dashboard/rollouts/{id}", d.page(rolloutReadAction, d.handleRollout))
	for _, verb := range rolloutVerbs {
		mux.HandleFunc("POST /dashboard/rollouts/{id}/"+verb, d.page(rolloutWriteAction, d.handleRolloutVerb(verb)))
	}
	mux.HandleFunc("/dashboard/", d.notFound)
}

// pageData is what every template gets.
type pageData struct {
	Title string
	Nav   string // the active navigation entry
	User  store.User
	CSRF  string
	Nonce string
	Flash string
	Error string
	// Can tells the template which forms to offer (the server checks again).
	Can  map[string]bool
	Body any
}

type sessionKey struct{}

// dashReq is an authenticated dashboard request.
type dashReq struct {
	sess *session
	user store.User
}

func reqFrom(r *http.Request) *dashReq {
	d, _ := r.Context().Value(sessionKey{}).(*dashReq)
	return d
}

// securityHeaders sets the headers every dashboard response carries and
// returns the style nonce of this response.
func securityHeaders(w http.ResponseWriter) string {
	var b [18]byte
	rand.Read(b[:])
	nonce := base64.RawURLEncoding.EncodeToString(b[:])
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; img-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // not no-referrer: browsers would then send "Origin: null" on our own POSTs
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	return nonce
}

// page wraps a dashboard handler: security headers, session, the user
// re-read from the store, authorization of action with the admin API's
// table, and for POST the form, CSRF and (when action needs it) TOTP checks.
func (d *dashboard) page(action Action, h func(http.ResponseWriter, *http.Request, *pageData)) http.HandlerFunc {
	if !auth.KnownAction(action) {
		panic("internal error: dashboard route declares unknown action " + string(action))
	}
	return func(w http.ResponseWriter, r *http.Request) {
		pd := &pageData{Nonce: securityHeaders(w)}
		now := d.s.now()
		sess := d.sessions.fromRequest(r, now)
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, dashboardPrefix+"login", http.StatusSeeOther)
				return
			}
			d.renderError(w, r, pd, http.StatusUnauthorized, "your session has ended; log in again")
			return
		}
		u, err := d.s.db.GetUser(r.Context(), sess.userID)
		if err != nil || u.Disabled() {
			d.sessions.delete(sess)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				d.renderError(w, r, pd, http.StatusInternalServerError, "internal error")
				return
			}
			d.renderError(w, r, pd, http.StatusUnauthorized, "your user is disabled; the session has ended")
			return
		}
		httpx.InfoFrom(r).Admin = "session:" + u.Name
		pd.User, pd.CSRF, pd.Flash = u, sess.csrf, d.sessions.takeFlash(sess)
		pd.Can = map[string]bool{"approve": Authorize(u.Role, ActionReleaseApprove), "rollout": Authorize(u.Role, rolloutWriteAction)}
		if !Authorize(u.Role, action) {
			d.s.auth.CountForbidden()
			d.renderError(w, r, pd, http.StatusForbidden, fmt.Sprintf("role %q may not %s", u.Role, action))
			return
		}
		if r.Method == http.MethodPost {
			form, err := readForm(w, r)
			if err == nil {
				err = checkCSRF(r, form, sess.csrf)
			}
			if err != nil {
				d.renderError(w, r, pd, http.StatusBadRequest, err.Error())
				return
			}
			if ActionNeedsTOTP(action) {
				if err := d.s.auth.CheckTOTP(r, u, form.Get("totp"), action, "dashboard"); err != nil {
					d.sessions.setFlash(sess, "not done: "+userMessage(err))
					http.Redirect(w, r, backTo(r), http.StatusSeeOther)
					return
				}
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, &dashReq{sess: sess, user: u})), pd)
	}
}

// backTo is where a POST redirects: the page the form is on (the request
// path without its last element).
func backTo(r *http.Request) string {
	p := r.URL.Path
	if i := strings.LastIndexByte(p, '/'); i > len(dashboardPrefix) {
		return p[:i]
	}
	return dashboardPrefix
}

// readForm reads an application/x-www-form-urlencoded body of at most
// MaxDashboardFormSize bytes with at most MaxDashboardFormFields fields,
// each given once.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	ct := r.Header.Get("Content-Type")
	if ct != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("%w: content type must be application/x-www-form-urlencoded", ErrDashboardForm)
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxDashboardFormSize)
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return nil, fmt.Errorf("%w: body over %d bytes (MaxDashboardFormSize) or unreadable", ErrDashboardForm, MaxDashboardFormSize)
	}
	return parseDashboardForm(buf.String())
}

// parseDashboardForm parses a urlencoded form strictly: at most
// MaxDashboardFormFields fields, each named [a-z_]+ and given once.
func parseDashboardForm(body string) (url.Values, error) {
	if len(body) > MaxDashboardFormSize {
		return nil, fmt.Errorf("%w: body over %d bytes (MaxDashboardFormSize)", ErrDashboardForm, MaxDashboardFormSize)
	}
	if strings.Count(body, "&") >= MaxDashboardFormFields {
		return nil, fmt.Errorf("%w: more than %d fields (MaxDashboardFormFields)", ErrDashboardForm, MaxDashboardFormFields)
	}
	form, err := url.ParseQuery(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDashboardForm, err)
	}
	for k, vs := range form {
		if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz_") != "" {
			return nil, fmt.Errorf("%w: field name %q", ErrDashboardForm, httpx.Truncate(k))
		}
		if len(vs) != 1 {
			return nil, fmt.Errorf("%w: field %q given %d times", ErrDashboardForm, k, len(vs))
		}
	}
	return form, nil
}

// checkCSRF requires the form's csrf field to equal want and a browser's
// Origin header (if sent) to be this server.
func checkCSRF(r *http.Request, form url.Values, want string) error {
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		return ErrDashboardCSRF
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return ErrDashboardCSRF
	}
	if want == "" || !constantTimeEqual(form.Get("csrf"), want) {
		return ErrDashboardCSRF
	}
	return nil
}

// render executes a page template into a buffer and writes it.
func (d *dashboard) render(w http.ResponseWriter, r *http.Request, code int, name string, pd *pageData) {
	t, ok := d.pages[name]
	if !ok {
		panic("internal error: no dashboard page " + name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", pd); err != nil {
		if info := httpx.InfoFrom(r); info != nil {
			info.Err = fmt.Errorf("failed to render %s: %w", name, err)
		}
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func (d *dashboard) renderError(w http.ResponseWriter, r *http.Request, pd *pageData, code int, msg string) {
	if info := httpx.InfoFrom(r); info != nil && info.Err == nil {
		info.Err = errors.New(msg)
	}
	pd.Title, pd.Error = http.StatusText(code), msg
	d.render(w, r, code, "error", pd)
}

func (d *dashboard) notFound(w http.ResponseWriter, r *http.Request) {
	pd := &pageData{Nonce: securityHeaders(w)}
	d.renderError(w, r, pd, http.StatusNotFound, "no such page")
}
