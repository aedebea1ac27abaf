// Package dashboard is the fleet dashboard: server-rendered HTML pages
// under /dashboard/ for the same users as the admin API (docs/dashboard.md).
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
//   - A session is a random SessionIDSize-byte ID in an HttpOnly,
//     Secure, SameSite=Strict "__Host-" cookie; the server keeps only its
//     SHA-256, with an idle timeout (SessionIdle) and an absolute
//     one (SessionMax), in the server's database, so that every replica
//     of the server shares the sessions (a login on one is valid on all,
//     a logout on one ends it on all, a restart logs no one out). The
//     session's CSRF token is an HMAC keyed with the cookie value, so the
//     database holds nothing that forges a request.
//     The user and role are re-read from the store on every request, so a
//     disabled user or a changed role takes effect at once.
//   - Every POST carries the session's CSRF token (compared in constant
//     time), a same-origin Origin header when the browser sends one, and
//     a form body of at most MaxFormSize bytes. The login form has
//     its own pre-session CSRF cookie (login CSRF).
//   - Every page is authorized with the admin API's [auth.Authorize] table, and
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
package dashboard

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

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// Dashboard limits.
const (
	// SessionIDSize is the entropy of a session ID, in bytes.
	SessionIDSize = 32
	// SessionIdle ends a session that made no request for this long.
	SessionIdle = 30 * time.Minute
	// SessionMax ends a session this long after login, however active.
	SessionMax = 8 * time.Hour
	// MaxSessions bounds the stored sessions; the least recently used
	// is evicted.
	MaxSessions = store.MaxDashboardSessions
	// MaxFormSize bounds a dashboard form body.
	MaxFormSize = 4 << 10
	// MaxFormFields bounds the fields of a dashboard form.
	MaxFormFields = 8
	// ListLimit bounds the releases, devices and audit events a page lists.
	ListLimit = 100
	// StateCountLimit bounds how many devices per state the overview
	// counts exactly; beyond it the page says "at least".
	StateCountLimit = store.MaxListLimit
	// Cookie names the session cookie. The "__Host-" prefix makes
	// browsers require Secure, Path=/ and no Domain.
	Cookie = "__Host-airlock-session"
	// dashboardLoginCookie holds the login form's CSRF token.
	dashboardLoginCookie = "__Host-airlock-login"
	// dashboardPrefix is where the dashboard is mounted.
	dashboardPrefix = "/dashboard/"
)

// Errors of dashboard requests.
var (
	// ErrCSRF: a POST lacked the session's CSRF token or came from
	// another origin.
	ErrCSRF = errors.New("cross-site request refused: missing or wrong csrf token or origin")
	// ErrForm: a form body failed a check.
	ErrForm = errors.New("malformed form")
)

//go:embed templates
var templateFS embed.FS

// dashboardPages are the page templates; each is parsed with layout.html.
var dashboardPages = []string{"login", "overview", "releases", "release", "rollouts", "rollout", "error"}

// Rollouts is what the dashboard needs of the server's rollout engine: the
// admin API's read model and operator actions (state machine, governance,
// audit log), so the dashboard and the API cannot disagree.
type Rollouts interface {
	// ListRolloutViews returns up to limit rollouts, newest first.
	ListRolloutViews(ctx context.Context, limit int) ([]adminapi.RolloutView, error)
	// RolloutView returns a rollout, or an error wrapping store.ErrNotFound.
	RolloutView(ctx context.Context, id string) (adminapi.RolloutView, error)
	// ApplyRollout performs an operator action as actor; an action the
	// state does not allow wraps rollout.ErrInvalidTransition.
	ApplyRollout(ctx context.Context, id string, a rollout.Action, actor store.User, reason string) (adminapi.RolloutView, error)
}

// Releases is what the dashboard needs of the release registry
// (releases.Registry), so that an approval from a page and from the admin
// API run the same code.
type Releases interface {
	View(store.Release) adminapi.Release
	Approve(ctx context.Context, actor store.User, id, via string) (store.Release, error)
}

// Config configures the dashboard.
type Config struct {
	// DB is the server's store. Required.
	DB store.Store
	// Auth authenticates logins and TOTP codes exactly as the admin API
	// does. Required.
	Auth *auth.Authenticator
	// Rollouts is the rollout engine; nil shows the rollout pages as
	// unavailable.
	Rollouts Rollouts
	// Releases is the release registry (views with the approvals each
	// environment needs, and approvals). Required.
	Releases Releases
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Audit, when set, receives security events (auth.Audit*).
	Audit func(ctx context.Context, actor, action string, details map[string]string)
	// AuditDir, when set, is the audit log directory a release page reads
	// its audit trail from.
	AuditDir string
	// Provenance, when set, returns the build provenance of a published
	// release (nil and no error: the release binds none), which its page
	// shows; the server reads it from the repository (server/provenance.go).
	Provenance func(ctx context.Context, product, version string) (*Provenance, error)
}

// Provenance is what a release page shows of the release's build
// provenance and of who approved it.
type Provenance struct {
	SHA256, Builder, BuildType, Source, Commit, InvocationID string
	Length                                                   int64
	// DSSESigners are the key IDs the envelope's signatures name (checked
	// against the vendor's policy at publish, not here).
	DSSESigners []string
	// Role, RoleVersion and Approvers: the product role version that
	// lists the release and the key IDs whose signatures on it are valid.
	Role        string
	RoleVersion int64
	Approvers   []string
}

// dashboard serves the pages.
type dashboard struct {
	db       store.Store
	auth     *auth.Authenticator
	now      func() time.Time
	auditFn  func(ctx context.Context, actor, action string, details map[string]string)
	auditDir string
	releases Releases
	sessions *sessionStore
	pages    map[string]*template.Template
	rollouts rolloutView // nil when the server has no rollout engine
	prov     func(ctx context.Context, product, version string) (*Provenance, error)
}

func (d *dashboard) audit(ctx context.Context, actor, action string, details map[string]string) {
	if d.auditFn != nil {
		d.auditFn(ctx, actor, action, details)
	}
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

// Routes mounts the dashboard on mux.
func Routes(mux *http.ServeMux, cfg Config) {
	if cfg.DB == nil || cfg.Auth == nil || cfg.Releases == nil {
		panic("internal error: dashboard needs DB, Auth and Releases")
	}
	pages, err := parseDashboardTemplates()
	if err != nil {
		panic("internal error: dashboard templates: " + err.Error()) // embedded, checked by tests
	}
	d := &dashboard{db: cfg.DB, auth: cfg.Auth, now: cfg.Now, auditFn: cfg.Audit, auditDir: cfg.AuditDir, prov: cfg.Provenance,
		releases: cfg.Releases, sessions: &sessionStore{db: cfg.DB}, pages: pages}
	if d.now == nil {
		d.now = time.Now
	}
	if cfg.Rollouts != nil {
		d.rollouts = engineRollouts{cfg.Rollouts}
	}
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, dashboardPrefix, http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /dashboard/login", d.handleLoginPage)
	mux.HandleFunc("POST /dashboard/login", d.handleLogin)
	mux.HandleFunc("POST /dashboard/logout", d.page(auth.ActionFleetRead, d.handleLogout))
	mux.HandleFunc("GET /dashboard/{$}", d.page(auth.ActionFleetRead, d.handleOverview))
	mux.HandleFunc("GET /dashboard/releases", d.page(auth.ActionReleaseRead, d.handleReleases))
	mux.HandleFunc("GET /dashboard/releases/{id}", d.page(auth.ActionReleaseRead, d.handleRelease))
	mux.HandleFunc("POST /dashboard/releases/{id}/approve", d.page(auth.ActionReleaseApprove, d.handleApprove))
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
func (d *dashboard) page(action auth.Action, h func(http.ResponseWriter, *http.Request, *pageData)) http.HandlerFunc {
	if !auth.KnownAction(action) {
		panic("internal error: dashboard route declares unknown action " + string(action))
	}
	return func(w http.ResponseWriter, r *http.Request) {
		pd := &pageData{Nonce: securityHeaders(w)}
		now := d.now()
		sess, err := d.sessions.fromRequest(r, now)
		if err != nil {
			httpx.InfoFrom(r).Err = err
			d.renderError(w, r, pd, http.StatusInternalServerError, "internal error")
			return
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, dashboardPrefix+"login", http.StatusSeeOther)
				return
			}
			d.renderError(w, r, pd, http.StatusUnauthorized, "your session has ended; log in again")
			return
		}
		u, err := d.db.GetUser(r.Context(), sess.userID)
		if err != nil || u.Disabled() {
			if derr := d.sessions.delete(r.Context(), sess); derr != nil && err == nil {
				err = derr
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				d.renderError(w, r, pd, http.StatusInternalServerError, "internal error")
				return
			}
			d.renderError(w, r, pd, http.StatusUnauthorized, "your user is disabled; the session has ended")
			return
		}
		httpx.InfoFrom(r).Admin = "session:" + u.Name
		pd.User, pd.CSRF, pd.Flash = u, sess.csrf, d.sessions.takeFlash(r, sess)
		pd.Can = map[string]bool{"approve": auth.Authorize(u.Role, auth.ActionReleaseApprove), "rollout": auth.Authorize(u.Role, rolloutWriteAction)}
		if !auth.Authorize(u.Role, action) {
			d.auth.CountForbidden()
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
			if auth.ActionNeedsTOTP(action) {
				if err := d.auth.CheckTOTP(r, u, form.Get("totp"), action, "dashboard"); err != nil {
					d.sessions.setFlash(r, sess, "not done: "+userMessage(err))
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
// MaxFormSize bytes with at most MaxFormFields fields,
// each given once.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	ct := r.Header.Get("Content-Type")
	if ct != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("%w: content type must be application/x-www-form-urlencoded", ErrForm)
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormSize)
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return nil, fmt.Errorf("%w: body over %d bytes (MaxFormSize) or unreadable", ErrForm, MaxFormSize)
	}
	return parseDashboardForm(buf.String())
}

// parseDashboardForm parses a urlencoded form strictly: at most
// MaxFormFields fields, each named [a-z_]+ and given once.
func parseDashboardForm(body string) (url.Values, error) {
	if len(body) > MaxFormSize {
		return nil, fmt.Errorf("%w: body over %d bytes (MaxFormSize)", ErrForm, MaxFormSize)
	}
	if strings.Count(body, "&") >= MaxFormFields {
		return nil, fmt.Errorf("%w: more than %d fields (MaxFormFields)", ErrForm, MaxFormFields)
	}
	form, err := url.ParseQuery(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrForm, err)
	}
	for k, vs := range form {
		if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz_") != "" {
			return nil, fmt.Errorf("%w: field name %q", ErrForm, httpx.Truncate(k))
		}
		if len(vs) != 1 {
			return nil, fmt.Errorf("%w: field %q given %d times", ErrForm, k, len(vs))
		}
	}
	return form, nil
}

// checkCSRF requires the form's csrf field to equal want and a browser's
// Origin header (if sent) to be this server.
func checkCSRF(r *http.Request, form url.Values, want string) error {
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		return ErrCSRF
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return ErrCSRF
	}
	if want == "" || !constantTimeEqual(form.Get("csrf"), want) {
		return ErrCSRF
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
