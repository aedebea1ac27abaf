package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// Admin sessions: `airlock login` exchanges an admin token and a TOTP code
// for a short-lived credential that stands in for the TOTP code of
// ordinary changes until it expires or is logged out, so two changes in a
// row need not wait for the next 30-second code. The credential is a
// 256-bit random secret with SessionPrefix, shown once and stored only as
// its SHA-256. A session is bound to its user and to the user's role at
// login; it stops working when the user is disabled or the role changes.
const (
	// SessionPrefix starts every session credential, so that it is told
	// apart from an admin token (and found by secret scanners).
	SessionPrefix = adminapi.SessionPrefix
	// SessionCredentialLen is the length of a session credential.
	SessionCredentialLen = len(SessionPrefix) + EnrollmentTokenLen
	// DefaultSessionTTL is the lifetime of a session unless the server is
	// configured otherwise (Config.SessionTTL).
	DefaultSessionTTL = 15 * time.Minute
	// MinSessionTTL and MaxSessionTTL bound a session's lifetime.
	MinSessionTTL = time.Second
	MaxSessionTTL = 12 * time.Hour
	// ActionSessionLogin is the action name of a login in audit events.
	ActionSessionLogin Action = "session.login"
)

// Errors of sessions; the HTTP errors wrap them.
var (
	// ErrSessionExpired: the session's lifetime is over.
	ErrSessionExpired = errors.New("session expired")
	// ErrSessionRevoked: the session was logged out.
	ErrSessionRevoked = errors.New("session was logged out")
)

// IsSessionCredential reports whether a bearer credential is meant as a
// session (it has SessionPrefix); it says nothing about its validity.
func IsSessionCredential(s string) bool { return strings.HasPrefix(s, SessionPrefix) }

// SessionHash checks a presented session credential's format
// (SessionPrefix and 43 characters of strict unpadded base64url) and
// returns its SHA-256.
func SessionHash(cred string) ([]byte, error) {
	if len(cred) != SessionCredentialLen || !IsSessionCredential(cred) || !canonical256(cred[len(SessionPrefix):]) {
		return nil, ErrToken
	}
	h := sha256.Sum256([]byte(cred))
	return h[:], nil
}

// bearerValue returns the credential of an "Authorization: Bearer" header;
// ok is false when the header is missing or names another scheme.
func bearerValue(r *http.Request) (cred string, ok bool) {
	const prefix = "Bearer "
	auth := r.Header.Get("Authorization")
	if len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return "", false
	}
	return auth[len(prefix):], true
}

type sessionKey struct{}

// SessionFrom returns the ID of the session that authenticated the request
// of ctx, or "" when it was not made under a session.
func SessionFrom(ctx context.Context) string {
	id, _ := ctx.Value(sessionKey{}).(string)
	return id
}

// AuditWithSession returns fn, adding a "session" detail (the session ID)
// to every event of a request made under a session, so each change says
// so. A nil fn stays nil.
func AuditWithSession(fn func(ctx context.Context, actor, action string, details map[string]string)) func(ctx context.Context, actor, action string, details map[string]string) {
	if fn == nil {
		return nil
	}
	return func(ctx context.Context, actor, action string, details map[string]string) {
		if id := SessionFrom(ctx); id != "" && details["session"] == "" {
			details = maps.Clone(details)
			if details == nil {
				details = map[string]string{}
			}
			details["session"] = id
		}
		fn(ctx, actor, action, details)
	}
}

// SessionTTL returns the configured session lifetime.
func (a *Authenticator) SessionTTL() time.Duration { return a.sessionTTL }

// StartSession logs in: it checks the request's admin token (bearer) and
// a TOTP code of an
// enabled user (as a state-changing request would, lockout and replay
// included) and creates a session of ttl (0: the configured lifetime; at
// most that). It returns the credential (shown once; only its hash is
// stored), the session and its user.
func (a *Authenticator) StartSession(r *http.Request, code string, ttl time.Duration) (string, store.AdminSession, store.User, error) {
	if ttl == 0 {
		ttl = a.sessionTTL
	}
	if ttl < MinSessionTTL || ttl > a.sessionTTL {
		return "", store.AdminSession{}, store.User{}, httpx.Status(http.StatusBadRequest, "session lifetime %v outside %v..%v (the server's limit)", ttl, MinSessionTTL, a.sessionTTL)
	}
	token, _ := bearerValue(r)
	if token == "" || IsSessionCredential(token) {
		a.results.WithLabelValues("bad_token").Inc()
		return "", store.AdminSession{}, store.User{}, httpx.Status(http.StatusUnauthorized, "logging in needs an admin token (Authorization: Bearer …), not a session")
	}
	u, tok, err := a.login(r, token, code, "api", ActionSessionLogin)
	if err != nil {
		return "", store.AdminSession{}, store.User{}, err
	}
	secret, _, err := NewToken()
	if err != nil {
		return "", store.AdminSession{}, store.User{}, err
	}
	cred := SessionPrefix + secret
	hash, err := SessionHash(cred)
	if err != nil {
		return "", store.AdminSession{}, store.User{}, err
	}
	id, err := RandomID("as-")
	if err != nil {
		return "", store.AdminSession{}, store.User{}, err
	}
	now := a.now().UTC().Truncate(time.Microsecond)
	sess := store.AdminSession{ID: id, UserID: u.ID, TokenID: tok.ID, Role: u.Role, Hash: hash, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	actx := store.WithAudit(r.Context()) // the login commits with its session
	a.audit(actx, u.Name, AuditLogin, map[string]string{"action": string(ActionSessionLogin), "via": "api", "remote": r.RemoteAddr,
		"mfa": "totp", "session": id, "token_id": tok.ID, "expires_at": sess.ExpiresAt.Format(time.RFC3339)})
	if err := a.db.CreateAdminSession(actx, sess); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return "", store.AdminSession{}, store.User{}, httpx.Status(http.StatusTooManyRequests, "user %q has %d live sessions; log out of one or wait for one to expire", u.Name, store.MaxAdminSessionsPerUser)
		}
		return "", store.AdminSession{}, store.User{}, err
	}
	return cred, sess, u, nil
}

// EndSession logs out the session of the request's bearer credential,
// which must be a session (expired or not). It returns the session and its
// user.
func (a *Authenticator) EndSession(r *http.Request) (store.AdminSession, store.User, error) {
	sess, u, err := a.lookupSession(r, "session.logout", false)
	if err != nil {
		return store.AdminSession{}, store.User{}, err
	}
	actx := store.WithAudit(r.Context()) // the logout commits with the revocation
	a.audit(actx, u.Name, AuditLogout, map[string]string{"session": sess.ID, "remote": r.RemoteAddr})
	if err := a.db.RevokeAdminSession(actx, sess.ID, a.now()); err != nil {
		return store.AdminSession{}, store.User{}, err
	}
	return sess, u, nil
}

// lookupSession finds the session of the request's bearer credential and
// its user. With live, an expired or revoked session, a disabled user and
// a changed role are refused. Failures are counted and audited.
func (a *Authenticator) lookupSession(r *http.Request, action Action, live bool) (store.AdminSession, store.User, error) {
	ctx := r.Context()
	fail := func(result, actor string, err error) (store.AdminSession, store.User, error) {
		a.results.WithLabelValues(result).Inc()
		a.auditFailure(r, actor, map[string]string{"reason": result, "action": string(action), "via": "session", "remote": r.RemoteAddr})
		return store.AdminSession{}, store.User{}, err
	}
	cred, _ := bearerValue(r)
	if cred == "" {
		return fail("bad_session", "unknown", httpx.Status(http.StatusUnauthorized, "a session credential is required (Authorization: Bearer …); run airlock login"))
	}
	hash, err := SessionHash(cred)
	if err != nil {
		return fail("bad_session", "unknown", httpx.Status(http.StatusUnauthorized, "invalid session credential; run airlock login"))
	}
	sess, err := a.db.GetAdminSessionByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return fail("bad_session", "unknown", httpx.Status(http.StatusUnauthorized, "unknown session (expired long ago, or never issued); run airlock login"))
	}
	if err != nil {
		return store.AdminSession{}, store.User{}, err
	}
	if subtle.ConstantTimeCompare(sess.Hash, hash) != 1 {
		return fail("bad_session", "unknown", httpx.Status(http.StatusUnauthorized, "invalid session credential; run airlock login"))
	}
	if info := httpx.InfoFrom(r); info != nil {
		info.Admin = "session:" + sess.ID
	}
	u, err := a.db.GetUser(ctx, sess.UserID)
	if err != nil {
		return store.AdminSession{}, store.User{}, err
	}
	if !live {
		return sess, u, nil
	}
	now := a.now()
	switch {
	case !sess.RevokedAt.IsZero():
		return fail("session_expired", u.Name, httpx.Status(http.StatusUnauthorized, "%w at %s; run airlock login", ErrSessionRevoked, sess.RevokedAt.Format(time.RFC3339)))
	case !sess.Live(now):
		return fail("session_expired", u.Name, httpx.Status(http.StatusUnauthorized, "%w at %s; run airlock login", ErrSessionExpired, sess.ExpiresAt.Format(time.RFC3339)))
	case u.Disabled():
		return fail("disabled", u.Name, httpx.Status(http.StatusUnauthorized, "user %q is disabled", u.Name))
	case u.Role != sess.Role:
		return fail("bad_session", u.Name, httpx.Status(http.StatusUnauthorized, "the role of user %q changed since login (%s, now %s); run airlock login", u.Name, sess.Role, u.Role))
	}
	return sess, u, nil
}

// authenticateSession is Authenticate for a session credential: a live
// session of an enabled user whose role (at login, still current) may
// perform action. A state-changing action needs no TOTP code where
// ActionSessionSuffices, and a fresh one otherwise.
func (a *Authenticator) authenticateSession(r *http.Request, action Action) (store.User, *http.Request, error) {
	sess, u, err := a.lookupSession(r, action, true)
	if err != nil {
		return store.User{}, r, err
	}
	if !Authorize(sess.Role, action) {
		a.results.WithLabelValues("forbidden").Inc()
		return store.User{}, r, httpx.Status(http.StatusForbidden, "role %q may not %s", sess.Role, action)
	}
	r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess.ID))
	if !ActionNeedsTOTP(action) {
		a.results.WithLabelValues("ok").Inc()
		return u, r, nil
	}
	details := map[string]string{"action": string(action), "via": "session", "remote": r.RemoteAddr, "session": sess.ID}
	if ActionSessionSuffices(action) {
		a.results.WithLabelValues("ok").Inc()
		details["mfa"] = "session"
		a.audit(r.Context(), u.Name, AuditLogin, details)
		return u, r, nil
	}
	if err := a.checkTOTP(r, u, r.Header.Get(TOTPHeader), action, "session"); err != nil {
		return store.User{}, r, err
	}
	details["mfa"] = "session+totp"
	a.audit(r.Context(), u.Name, AuditLogin, details)
	return u, r, nil
}
