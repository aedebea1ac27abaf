package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// session is a logged-in dashboard user. The store keeps it under the
// SHA-256 of the cookie value; the cookie value itself is not kept.
type session struct {
	key      [sha256.Size]byte
	userID   string
	csrf     string
	created  time.Time
	lastSeen time.Time
	flash    string
}

// sessionStore holds the dashboard sessions in memory.
type sessionStore struct {
	mu   sync.Mutex
	byID map[[sha256.Size]byte]*session
}

func newSessionStore() *sessionStore {
	return &sessionStore{byID: map[[sha256.Size]byte]*session{}}
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("internal error: crypto/rand failed: " + err.Error()) // never returns an error since Go 1.24
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// create starts a session for user and returns it with the cookie value.
func (st *sessionStore) create(userID string, now time.Time) (*session, string) {
	id := randomToken(DashboardSessionIDSize)
	s := &session{key: sha256.Sum256([]byte(id)), userID: userID, csrf: randomToken(32), created: now, lastSeen: now}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.byID) >= MaxDashboardSessions {
		st.sweepLocked(now)
	}
	for len(st.byID) >= MaxDashboardSessions {
		var oldest *session
		for _, o := range st.byID {
			if oldest == nil || o.lastSeen.Before(oldest.lastSeen) {
				oldest = o
			}
		}
		delete(st.byID, oldest.key)
	}
	st.byID[s.key] = s
	return s, id
}

func (s *session) expired(now time.Time) bool {
	return now.Sub(s.lastSeen) >= DashboardSessionIdle || now.Sub(s.created) >= DashboardSessionMax || now.Before(s.created)
}

func (st *sessionStore) sweepLocked(now time.Time) {
	for k, s := range st.byID {
		if s.expired(now) {
			delete(st.byID, k)
		}
	}
}

// fromRequest returns the live session of the request's cookie and marks
// it used, or nil. An expired session is deleted.
func (st *sessionStore) fromRequest(r *http.Request, now time.Time) *session {
	c, err := r.Cookie(DashboardCookie)
	if err != nil || len(c.Value) != base64.RawURLEncoding.EncodedLen(DashboardSessionIDSize) {
		return nil
	}
	key := sha256.Sum256([]byte(c.Value))
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.byID[key]
	if s == nil {
		return nil
	}
	if s.expired(now) {
		delete(st.byID, key)
		return nil
	}
	s.lastSeen = now
	return s
}

func (st *sessionStore) delete(s *session) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.byID, s.key)
}

// deleteUser ends every session of a user.
func (st *sessionStore) deleteUser(userID string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, s := range st.byID {
		if s.userID == userID {
			delete(st.byID, k)
		}
	}
}

func (st *sessionStore) setFlash(s *session, msg string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s.flash = msg
}

func (st *sessionStore) takeFlash(s *session) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	f := s.flash
	s.flash = ""
	return f
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

// loginPage is the body of the login template.
type loginPage struct {
	Token bool // a token was given (keeps nothing; only for the message)
}

func (d *dashboard) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	pd := &pageData{Nonce: securityHeaders(w), Title: "Log in"}
	if d.sessions.fromRequest(r, d.s.now()) != nil {
		http.Redirect(w, r, dashboardPrefix, http.StatusSeeOther)
		return
	}
	d.renderLogin(w, r, pd, http.StatusOK, "")
}

// renderLogin shows the login form with a fresh login CSRF token.
func (d *dashboard) renderLogin(w http.ResponseWriter, r *http.Request, pd *pageData, code int, msg string) {
	pd.Title, pd.Error = "Log in", msg
	pd.CSRF = randomToken(32)
	setCookie(w, dashboardLoginCookie, pd.CSRF, int(DashboardSessionIdle/time.Second))
	pd.Body = loginPage{}
	d.render(w, r, code, "login", pd)
}

// errLoginFailed is what a failed login shows, whatever failed (the
// reason is in the audit log and the metrics).
var errLoginFailed = errors.New("login failed: wrong token or TOTP code, or the user is disabled")

// handleLogin checks the login form: the login CSRF cookie, then the admin
// token (as the admin API does), the user, and a TOTP code (as the admin
// API does for state-changing actions, with replay refusal and lockout).
func (d *dashboard) handleLogin(w http.ResponseWriter, r *http.Request) {
	pd := &pageData{Nonce: securityHeaders(w)}
	form, err := readForm(w, r)
	if err != nil {
		d.renderLogin(w, r, pd, http.StatusBadRequest, err.Error())
		return
	}
	c, cerr := r.Cookie(dashboardLoginCookie)
	if cerr != nil || checkCSRF(r, form, c.Value) != nil {
		d.renderLogin(w, r, pd, http.StatusBadRequest, ErrDashboardCSRF.Error()+"; reload the login page")
		return
	}
	u, err := d.s.loginUser(r, form.Get("token"), form.Get("totp"))
	if err != nil {
		var he *httpx.Error
		msg := errLoginFailed.Error()
		if errors.As(err, &he) && he.Code == http.StatusTooManyRequests {
			msg = he.Error()
		} else if !errors.As(err, &he) {
			if info := httpx.InfoFrom(r); info != nil {
				info.Err = err
			}
			msg = "internal error"
		}
		d.renderLogin(w, r, pd, http.StatusUnauthorized, msg)
		return
	}
	now := d.s.now()
	_, id := d.sessions.create(u.ID, now)
	setCookie(w, DashboardCookie, id, int(DashboardSessionMax/time.Second))
	setCookie(w, dashboardLoginCookie, "", -1)
	http.Redirect(w, r, dashboardPrefix, http.StatusSeeOther)
}

// loginUser authenticates a dashboard login: the admin token exactly as
// the admin API's bearer token (authAdmin), the user (enabled), and a TOTP
// code (checkTOTP), whatever the role.
func (s *Server) loginUser(r *http.Request, token, code string) (store.User, error) {
	ctx := r.Context()
	fail := func(result, actor string, err error) (store.User, error) {
		s.auth.results.WithLabelValues(result).Inc()
		s.audit(ctx, actor, AuditLoginFailed, map[string]string{"reason": result, "via": "dashboard", "remote": r.RemoteAddr})
		return store.User{}, err
	}
	ar := r.Clone(ctx)
	ar.Header = http.Header{"Authorization": {"Bearer " + token}}
	tok, err := s.authAdmin(ar)
	if err != nil {
		var he *httpx.Error
		if errors.As(err, &he) {
			return fail("bad_token", "unknown", err)
		}
		return store.User{}, err
	}
	if info := httpx.InfoFrom(r); info != nil {
		info.Admin = tok.ID
	}
	if tok.UserID == "" {
		return fail("bad_token", "unknown", httpx.Status(http.StatusUnauthorized, "invalid admin token"))
	}
	u, err := s.db.GetUser(ctx, tok.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return fail("bad_token", "unknown", httpx.Status(http.StatusUnauthorized, "invalid admin token"))
	}
	if err != nil {
		return store.User{}, err
	}
	if u.Disabled() {
		return fail("disabled", u.Name, httpx.Status(http.StatusUnauthorized, "user %q is disabled", u.Name))
	}
	if err := s.checkTOTP(r, u, code, "dashboard.login", "dashboard"); err != nil {
		return store.User{}, err
	}
	return u, nil
}

// checkTOTP verifies a TOTP code of u for the admin API and the dashboard
// alike (via says which): the lockout after MaxTOTPFailures, the RFC 6238
// window, and the store's refusal of a replayed or older time step. Every
// outcome is counted and audited.
func (s *Server) checkTOTP(r *http.Request, u store.User, code string, action Action, via string) error {
	ctx := r.Context()
	fail := func(result string, err error) error {
		s.auth.results.WithLabelValues(result).Inc()
		s.audit(ctx, u.Name, AuditLoginFailed, map[string]string{"reason": result, "action": string(action), "via": via, "remote": r.RemoteAddr})
		return err
	}
	now := s.now()
	switch {
	case code == "" && via == "api":
		return fail("totp_missing", httpx.Status(http.StatusUnauthorized, "this action needs a TOTP code in the %s header", TOTPHeader))
	case code == "":
		return fail("totp_missing", httpx.Status(http.StatusUnauthorized, "this action needs a TOTP code"))
	case u.TOTPSecret == nil:
		return fail("totp_missing", httpx.Status(http.StatusUnauthorized, "%w: enroll with 'airlock server user totp --name %s'", ErrTOTPNotEnrolled, u.Name))
	case s.auth.locked(u.ID, now):
		return fail("totp_locked", httpx.Status(http.StatusTooManyRequests, "too many wrong TOTP codes for user %q; try again in %v", u.Name, TOTPLockout))
	}
	secret, err := s.kek.Open(totpPurpose, u.ID, u.TOTPSecret)
	if err != nil {
		return err
	}
	step, err := verifyTOTP(secret, code, now)
	clear(secret)
	if err != nil {
		s.auth.fail(u.ID, now)
		return fail("totp_invalid", httpx.Status(http.StatusUnauthorized, "%w", err))
	}
	if err := s.db.AcceptTOTPStep(ctx, u.ID, step); err != nil {
		if errors.Is(err, store.ErrTOTPReplay) {
			s.auth.fail(u.ID, now)
			return fail("totp_replay", httpx.Status(http.StatusUnauthorized, "totp code already used; wait for the next code"))
		}
		return err
	}
	s.auth.succeed(u.ID)
	s.auth.results.WithLabelValues("ok").Inc()
	s.audit(ctx, u.Name, AuditLogin, map[string]string{"action": string(action), "via": via, "remote": r.RemoteAddr, "mfa": "totp"})
	return nil
}

func (d *dashboard) handleLogout(w http.ResponseWriter, r *http.Request, _ *pageData) {
	d.sessions.delete(reqFrom(r).sess)
	setCookie(w, DashboardCookie, "", -1)
	http.Redirect(w, r, dashboardPrefix+"login", http.StatusSeeOther)
}
