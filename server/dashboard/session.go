package dashboard

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
	id := randomToken(SessionIDSize)
	s := &session{key: sha256.Sum256([]byte(id)), userID: userID, csrf: randomToken(32), created: now, lastSeen: now}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.byID) >= MaxSessions {
		st.sweepLocked(now)
	}
	for len(st.byID) >= MaxSessions {
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
	return now.Sub(s.lastSeen) >= SessionIdle || now.Sub(s.created) >= SessionMax || now.Before(s.created)
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
	c, err := r.Cookie(Cookie)
	if err != nil || len(c.Value) != base64.RawURLEncoding.EncodedLen(SessionIDSize) {
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
	if d.sessions.fromRequest(r, d.now()) != nil {
		http.Redirect(w, r, dashboardPrefix, http.StatusSeeOther)
		return
	}
	d.renderLogin(w, r, pd, http.StatusOK, "")
}

// renderLogin shows the login form with a fresh login CSRF token.
func (d *dashboard) renderLogin(w http.ResponseWriter, r *http.Request, pd *pageData, code int, msg string) {
	pd.Title, pd.Error = "Log in", msg
	pd.CSRF = randomToken(32)
	setCookie(w, dashboardLoginCookie, pd.CSRF, int(SessionIdle/time.Second))
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
		d.renderLogin(w, r, pd, http.StatusBadRequest, ErrCSRF.Error()+"; reload the login page")
		return
	}
	u, err := d.auth.Login(r, form.Get("token"), form.Get("totp"))
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
	now := d.now()
	_, id := d.sessions.create(u.ID, now)
	setCookie(w, Cookie, id, int(SessionMax/time.Second))
	setCookie(w, dashboardLoginCookie, "", -1)
	http.Redirect(w, r, dashboardPrefix, http.StatusSeeOther)
}

func (d *dashboard) handleLogout(w http.ResponseWriter, r *http.Request, _ *pageData) {
	d.sessions.delete(reqFrom(r).sess)
	setCookie(w, Cookie, "", -1)
	http.Redirect(w, r, dashboardPrefix+"login", http.StatusSeeOther)
}
