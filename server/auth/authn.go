package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures an Authenticator.
type Config struct {
	// DB holds users, tokens and the TOTP replay state. Required.
	DB store.Store
	// KEK opens the users' sealed TOTP seeds. Required.
	KEK *KEK
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives warnings; nil means discard.
	Log *slog.Logger
	// Audit, when set, receives the Audit* events of logins and failed
	// logins. It must not block.
	Audit func(ctx context.Context, actor, action string, details map[string]string)
	// SessionTTL is the lifetime of an admin session (StartSession): the
	// default and the longest a client may ask for. 0 means
	// DefaultSessionTTL; at most MaxSessionTTL.
	SessionTTL time.Duration
}

// Authenticator authenticates admin API requests and dashboard logins and
// authorizes them with the role table. The TOTP lockout counters and
// replay state are in the store, so replicas of one server share them.
type Authenticator struct {
	sessionTTL time.Duration
	db         store.Store
	kek        *KEK
	now        func() time.Time
	log        *slog.Logger
	auditFn    func(ctx context.Context, actor, action string, details map[string]string)
	fails      failureLog
	authState
}

// New returns an Authenticator. It fails only on a SessionTTL outside
// MinSessionTTL..MaxSessionTTL.
func New(cfg Config) (*Authenticator, error) {
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.SessionTTL < MinSessionTTL || cfg.SessionTTL > MaxSessionTTL {
		return nil, fmt.Errorf("admin session lifetime %v outside %v..%v", cfg.SessionTTL, MinSessionTTL, MaxSessionTTL)
	}
	a := &Authenticator{db: cfg.DB, kek: cfg.KEK, now: cfg.Now, log: cfg.Log, auditFn: cfg.Audit, authState: newAuthState(),
		sessionTTL: cfg.SessionTTL}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a, nil
}

// Collector returns the airlock_admin_auth_total counter, to register.
func (a *Authenticator) Collector() prometheus.Collector { return a.results }

// CountForbidden counts an authorization refusal made outside Authenticate
// (the dashboard's pages).
func (a *Authenticator) CountForbidden() { a.results.WithLabelValues("forbidden").Inc() }

func (a *Authenticator) audit(ctx context.Context, actor, action string, details map[string]string) {
	if a.auditFn != nil {
		a.auditFn(ctx, actor, action, details)
	}
}

// authState is the in-memory part of admin authentication: the metrics.
// The TOTP lockout counters and replay state are in the store, so that
// replicas of one server share them.
type authState struct {
	results *prometheus.CounterVec
}

func newAuthState() authState {
	return authState{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_admin_auth_total",
			Help: "Admin API authentications by result (ok, bad_token, bad_session, session_expired, disabled, forbidden, totp_missing, totp_invalid, totp_replay, totp_locked).",
		}, []string{"result"}),
	}
}

type userKey struct{}

// UserFrom returns the authenticated user of an admin request.
func UserFrom(r *http.Request) store.User {
	u, _ := r.Context().Value(userKey{}).(store.User)
	return u
}

// Admin wraps h: it authenticates an admin API request (bearer token of an enabled
// user), authorizes the user's role for action, and for state-changing
// actions verifies a fresh TOTP code.
func (a *Authenticator) Admin(action Action, h http.HandlerFunc) http.HandlerFunc {
	if _, ok := permissions[action]; !ok {
		panic("internal error: route declares unknown action " + string(action))
	}
	return func(w http.ResponseWriter, r *http.Request) {
		u, r, err := a.authenticate(r, action)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	}
}

// Authenticate authenticates an admin API request for action: the bearer
// token of an enabled user whose role may perform action, and for
// state-changing actions a fresh TOTP code in TOTPHeader; or a live
// session of such a user (see StartSession), which stands in for the code
// where ActionSessionSuffices.
func (a *Authenticator) Authenticate(r *http.Request, action Action) (store.User, error) {
	u, _, err := a.authenticate(r, action)
	return u, err
}

// authenticate is Authenticate; it also returns r with the session ID in
// its context when a session authenticated it (SessionFrom).
func (a *Authenticator) authenticate(r *http.Request, action Action) (store.User, *http.Request, error) {
	if cred, _ := bearerValue(r); IsSessionCredential(cred) {
		return a.authenticateSession(r, action)
	}
	u, err := a.authenticateToken(r, action)
	return u, r, err
}

func (a *Authenticator) authenticateToken(r *http.Request, action Action) (store.User, error) {
	ctx := r.Context()
	fail := func(result, actor string, err error) (store.User, error) {
		a.results.WithLabelValues(result).Inc()
		if result != "forbidden" {
			a.auditFailure(r, actor, map[string]string{"reason": result, "action": string(action), "remote": r.RemoteAddr})
		}
		return store.User{}, err
	}
	tok, err := a.bearer(r)
	if err != nil {
		var he *httpx.Error
		if errors.As(err, &he) {
			return fail("bad_token", "unknown", err)
		}
		return store.User{}, err
	}
	httpx.InfoFrom(r).Admin = tok.ID
	if tok.UserID == "" {
		return fail("bad_token", "unknown", httpx.Status(http.StatusUnauthorized, "invalid admin token"))
	}
	u, err := a.db.GetUser(ctx, tok.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return fail("bad_token", "unknown", httpx.Status(http.StatusUnauthorized, "invalid admin token"))
	}
	if err != nil {
		return store.User{}, err
	}
	if u.Disabled() {
		return fail("disabled", u.Name, httpx.Status(http.StatusUnauthorized, "user %q is disabled", u.Name))
	}
	if !Authorize(u.Role, action) {
		return fail("forbidden", u.Name, httpx.Status(http.StatusForbidden, "role %q may not %s", u.Role, action))
	}
	if !ActionNeedsTOTP(action) {
		a.results.WithLabelValues("ok").Inc()
		return u, nil
	}
	if err := a.CheckTOTP(r, u, r.Header.Get(TOTPHeader), action, "api"); err != nil {
		return store.User{}, err
	}
	return u, nil
}

// bearer finds the admin token of the request's "Authorization: Bearer"
// header.
func (a *Authenticator) bearer(r *http.Request) (store.AdminToken, error) {
	if r.Header.Get("Authorization") == "" {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "admin token required (Authorization: Bearer …)")
	}
	cred, ok := bearerValue(r)
	if !ok {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "authorization scheme must be Bearer")
	}
	return a.adminToken(r.Context(), cred)
}

// adminToken finds the admin token of a presented credential.
func (a *Authenticator) adminToken(ctx context.Context, cred string) (store.AdminToken, error) {
	hash, err := TokenHash(cred)
	if err != nil {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "invalid admin token")
	}
	tok, err := a.db.GetAdminTokenByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "invalid admin token")
	}
	if err != nil {
		return store.AdminToken{}, err
	}
	if subtle.ConstantTimeCompare(tok.Hash, hash) != 1 {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "invalid admin token")
	}
	if now := a.now(); now.Sub(tok.LastUsed) > AdminTouchInterval {
		if err := a.db.TouchAdminToken(ctx, tok.ID, now); err != nil {
			a.log.Warn("failed to update admin token last use", "admin_token_id", tok.ID, "err", err)
		}
	}
	return tok, nil
}

// Login authenticates a dashboard login: the admin token exactly as
// the admin API's bearer token, the user (enabled), and a TOTP
// code (CheckTOTP), whatever the role.
func (a *Authenticator) Login(r *http.Request, token, code string) (store.User, error) {
	u, _, err := a.login(r, token, code, "dashboard", "dashboard.login")
	if err != nil {
		return store.User{}, err
	}
	a.audit(r.Context(), u.Name, AuditLogin, map[string]string{"action": "dashboard.login", "via": "dashboard", "remote": r.RemoteAddr, "mfa": "totp"})
	return u, nil
}

// login checks an admin token and a TOTP code of its (enabled) user and
// returns both; failures are counted and audited, a success is counted
// but not audited (the caller says what the login was for).
func (a *Authenticator) login(r *http.Request, token, code, via string, action Action) (store.User, store.AdminToken, error) {
	ctx := r.Context()
	fail := func(result, actor string, err error) (store.User, store.AdminToken, error) {
		a.results.WithLabelValues(result).Inc()
		a.auditFailure(r, actor, map[string]string{"reason": result, "via": via, "action": string(action), "remote": r.RemoteAddr})
		return store.User{}, store.AdminToken{}, err
	}
	tok, err := a.adminToken(ctx, token)
	if err != nil {
		var he *httpx.Error
		if errors.As(err, &he) {
			return fail("bad_token", "unknown", err)
		}
		return store.User{}, store.AdminToken{}, err
	}
	if info := httpx.InfoFrom(r); info != nil {
		info.Admin = tok.ID
	}
	if tok.UserID == "" {
		return fail("bad_token", "unknown", httpx.Status(http.StatusUnauthorized, "invalid admin token"))
	}
	u, err := a.db.GetUser(ctx, tok.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return fail("bad_token", "unknown", httpx.Status(http.StatusUnauthorized, "invalid admin token"))
	}
	if err != nil {
		return store.User{}, store.AdminToken{}, err
	}
	if u.Disabled() {
		return fail("disabled", u.Name, httpx.Status(http.StatusUnauthorized, "user %q is disabled", u.Name))
	}
	if err := a.checkTOTP(r, u, code, action, via); err != nil {
		return store.User{}, store.AdminToken{}, err
	}
	return u, tok, nil
}

// CheckTOTP verifies a TOTP code of u for the admin API and the dashboard
// alike (via says which): the lockout after MaxTOTPFailures, the RFC 6238
// window, and the store's refusal of a replayed or older time step. Every
// outcome is counted and audited.
func (a *Authenticator) CheckTOTP(r *http.Request, u store.User, code string, action Action, via string) error {
	if err := a.checkTOTP(r, u, code, action, via); err != nil {
		return err
	}
	a.audit(r.Context(), u.Name, AuditLogin, map[string]string{"action": string(action), "via": via, "remote": r.RemoteAddr, "mfa": "totp"})
	return nil
}

// checkTOTP is CheckTOTP without the audit event of a success.
func (a *Authenticator) checkTOTP(r *http.Request, u store.User, code string, action Action, via string) error {
	ctx := r.Context()
	fail := func(result string, err error) error {
		a.results.WithLabelValues(result).Inc()
		a.auditFailure(r, u.Name, map[string]string{"reason": result, "action": string(action), "via": via, "remote": r.RemoteAddr})
		return err
	}
	now := a.now()
	switch {
	case code == "" && via == "session":
		return fail("totp_missing", httpx.Status(http.StatusUnauthorized, "%s needs a fresh TOTP code in the %s header even under a session", action, TOTPHeader))
	case code == "" && via == "api":
		return fail("totp_missing", httpx.Status(http.StatusUnauthorized, "this action needs a TOTP code in the %s header", TOTPHeader))
	case code == "":
		return fail("totp_missing", httpx.Status(http.StatusUnauthorized, "this action needs a TOTP code"))
	case u.TOTPSecret == nil:
		return fail("totp_missing", httpx.Status(http.StatusUnauthorized, "%w: enroll with 'airlock server user totp --name %s'", ErrTOTPNotEnrolled, u.Name))
	}
	// Every attempt is counted before the code is checked, atomically in
	// the store: concurrent attempts on any number of replicas check at
	// most MaxTOTPFailures codes per lockout window. A success clears
	// the count.
	n, first, err := a.db.RecordTOTPAttempt(ctx, u.ID, now, now.Add(-TOTPLockout))
	if err != nil {
		return err
	}
	if n > MaxTOTPFailures {
		return fail("totp_locked", httpx.Status(http.StatusTooManyRequests, "too many wrong TOTP codes for user %q; try again in %v",
			u.Name, max(time.Second, first.Add(TOTPLockout).Sub(now)).Round(time.Second)))
	}
	secret, err := a.kek.Open(TOTPPurpose, u.ID, u.TOTPSecret)
	if err != nil {
		return err
	}
	step, err := verifyTOTP(secret, code, now)
	clear(secret)
	if err != nil {
		return fail("totp_invalid", httpx.Status(http.StatusUnauthorized, "%w", err))
	}
	if err := a.db.AcceptTOTPStep(ctx, u.ID, step); err != nil {
		if errors.Is(err, store.ErrTOTPReplay) {
			return fail("totp_replay", httpx.Status(http.StatusUnauthorized, "totp code already used; wait for the next code"))
		}
		return err
	}
	if err := a.db.ClearTOTPAttempts(ctx, u.ID); err != nil {
		return err
	}
	a.results.WithLabelValues("ok").Inc()
	return nil
}
