package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// session is a logged-in dashboard user, as one request sees it. The
// store keeps it under the SHA-256 of the cookie value (shared by every
// replica of the server); the cookie value itself is not kept.
type session struct {
	hash   []byte
	userID string
	csrf   string // derived from the cookie value (csrfToken)
	flash  string // the flash message stored when the request began
}

// sessionStore keeps the dashboard sessions in the server's store, so that
// replicas behind a load balancer share them: a login on one is valid on
// all, a logout on one ends the session on all.
type sessionStore struct {
	db store.Store
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

// csrfContext separates the CSRF token's derivation from other uses of the
// cookie value.
const csrfContext = "airlock dashboard csrf token v1"

// csrfToken is the session's CSRF token: an HMAC of a fixed string keyed
// with the cookie value. It needs no storage, differs per session and
// cannot be computed from what the store holds (the cookie's hash).
func csrfToken(cookie string) string {
	m := hmac.New(sha256.New, []byte(cookie))
	m.Write([]byte(csrfContext))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// idleSince is the oldest last use of a session still live at now.
func idleSince(now time.Time) time.Time { return now.Add(-SessionIdle) }

// DeleteExpiredSessions deletes the dashboard sessions of db that expired
// at now (idle or past SessionMax) and returns how many.
func DeleteExpiredSessions(ctx context.Context, db store.Store, now time.Time) (int64, error) {
	return db.DeleteExpiredDashboardSessions(ctx, now, idleSince(now))
}

// create starts a session for user and returns it with the cookie value.
func (st *sessionStore) create(ctx context.Context, userID string, now time.Time) (*session, string, error) {
	id := randomToken(SessionIDSize)
	h := sha256.Sum256([]byte(id))
	s := &session{hash: h[:], userID: userID, csrf: csrfToken(id)}
	err := st.db.CreateDashboardSession(ctx, store.DashboardSession{Hash: s.hash, UserID: userID,
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(SessionMax)}, idleSince(now))
	if err != nil {
		return nil, "", err
	}
	return s, id, nil
}

// fromRequest returns the live session of the request's cookie and marks
// it used, or nil. An expired session is deleted.
func (st *sessionStore) fromRequest(r *http.Request, now time.Time) (*session, error) {
	c, err := r.Cookie(Cookie)
	if err != nil || len(c.Value) != base64.RawURLEncoding.EncodedLen(SessionIDSize) {
		return nil, nil
	}
	h := sha256.Sum256([]byte(c.Value))
	ds, err := st.db.TouchDashboardSession(r.Context(), h[:], now, idleSince(now))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(ds.Hash, h[:]) != 1 {
		return nil, nil
	}
	return &session{hash: ds.Hash, userID: ds.UserID, csrf: csrfToken(c.Value), flash: ds.Flash}, nil
}

func (st *sessionStore) delete(ctx context.Context, s *session) error {
	return st.db.DeleteDashboardSession(ctx, s.hash)
}

// setFlash stores the message the session's next page shows.
func (st *sessionStore) setFlash(r *http.Request, s *session, msg string) {
	if err := st.db.SetDashboardSessionFlash(r.Context(), s.hash, flashText(msg)); err != nil {
		if info := httpx.InfoFrom(r); info != nil && info.Err == nil {
			info.Err = fmt.Errorf("failed to store the flash message: %w", err)
		}
	}
}

// takeFlash returns the flash message the request began with and clears
// it, unless a concurrent request (on any replica) took it first.
func (st *sessionStore) takeFlash(r *http.Request, s *session) string {
	if s.flash == "" {
		return ""
	}
	ok, err := st.db.TakeDashboardSessionFlash(r.Context(), s.hash, s.flash)
	if err != nil || !ok {
		return ""
	}
	return s.flash
}

// flashText makes msg storable: valid UTF-8 without control characters,
// at most store.MaxMessageLen bytes.
func flashText(msg string) string {
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(msg, "?"))
	for len(msg) > store.MaxMessageLen {
		_, n := utf8.DecodeLastRuneInString(msg)
		msg = msg[:len(msg)-n]
	}
	return msg
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
	if s, err := d.sessions.fromRequest(r, d.now()); err == nil && s != nil {
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
	_, id, err := d.sessions.create(r.Context(), u.ID, d.now())
	if err != nil {
		if info := httpx.InfoFrom(r); info != nil {
			info.Err = err
		}
		d.renderLogin(w, r, pd, http.StatusInternalServerError, "internal error")
		return
	}
	setCookie(w, Cookie, id, int(SessionMax/time.Second))
	setCookie(w, dashboardLoginCookie, "", -1)
	http.Redirect(w, r, dashboardPrefix, http.StatusSeeOther)
}

func (d *dashboard) handleLogout(w http.ResponseWriter, r *http.Request, pd *pageData) {
	if err := d.sessions.delete(r.Context(), reqFrom(r).sess); err != nil {
		d.renderError(w, r, pd, http.StatusInternalServerError, "internal error: the session was not ended")
		return
	}
	setCookie(w, Cookie, "", -1)
	http.Redirect(w, r, dashboardPrefix+"login", http.StatusSeeOther)
}
