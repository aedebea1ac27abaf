package server

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// Roles of admin API users, least privileged first. A user has exactly one.
const (
	// RoleViewer reads fleet state, releases and /metrics.
	RoleViewer = "viewer"
	// RoleOperator also deploys approved releases and creates device
	// enrollment tokens.
	RoleOperator = "operator"
	// RoleReleaseManager also registers published releases for deployment.
	RoleReleaseManager = "release_manager"
	// RoleApprover also approves releases (never their own).
	RoleApprover = "approver"
	// RoleAdmin may do everything, including managing users and tokens.
	RoleAdmin = "admin"
)

// Roles lists every role.
var Roles = []string{RoleViewer, RoleOperator, RoleReleaseManager, RoleApprover, RoleAdmin}

// ValidRole reports whether r is one of Roles.
func ValidRole(r string) bool { return slices.Contains(Roles, r) }

// Action is what an admin API route does; every route declares one.
type Action string

// The actions. docs/security.md has the same table.
const (
	ActionFleetRead        Action = "fleet.read"        // devices, events, stats, /metrics
	ActionEnrollTokenWrite Action = "enrollment.create" // POST enrollment-tokens
	ActionReleaseRead      Action = "release.read"      // GET releases
	ActionReleaseRegister  Action = "release.register"  // POST releases
	ActionReleaseApprove   Action = "release.approve"   // POST releases/{id}/approve
	ActionReleaseDeploy    Action = "release.deploy"    // POST releases/{id}/deploy
	ActionUserRead         Action = "user.read"         // GET users
	ActionUserWrite        Action = "user.write"        // POST users, tokens, disable
	ActionRolloutRead      Action = "rollout.read"      // GET rollouts
	ActionRolloutWrite     Action = "rollout.write"     // POST rollouts, start, pause, resume, cancel
	ActionDeviceTagWrite   Action = "device.tag"        // POST devices/{id}/tags
)

// permission is one row of the authorization table.
type permission struct {
	roles []string
	// totp: the action changes state and needs a TOTP code (TOTPHeader).
	totp bool
}

// permissions is the authorization table. Anything not listed is denied.
var permissions = map[Action]permission{
	ActionFleetRead:        {roles: Roles},
	ActionReleaseRead:      {roles: Roles},
	ActionEnrollTokenWrite: {roles: []string{RoleOperator, RoleAdmin}, totp: true},
	ActionReleaseRegister:  {roles: []string{RoleReleaseManager, RoleAdmin}, totp: true},
	ActionReleaseApprove:   {roles: []string{RoleApprover, RoleAdmin}, totp: true},
	ActionReleaseDeploy:    {roles: []string{RoleOperator, RoleAdmin}, totp: true},
	ActionUserRead:         {roles: []string{RoleAdmin}},
	ActionUserWrite:        {roles: []string{RoleAdmin}, totp: true},
	ActionRolloutRead:      {roles: Roles},
	ActionRolloutWrite:     {roles: []string{RoleOperator, RoleAdmin}, totp: true},
	ActionDeviceTagWrite:   {roles: []string{RoleOperator, RoleAdmin}, totp: true},
}

// Actions lists every action, in table order.
var Actions = []Action{ActionFleetRead, ActionReleaseRead, ActionEnrollTokenWrite, ActionReleaseRegister,
	ActionReleaseApprove, ActionReleaseDeploy, ActionUserRead, ActionUserWrite, ActionRolloutRead, ActionRolloutWrite,
	ActionDeviceTagWrite}

// Authorize reports whether role may perform action. Unknown roles and
// actions are denied.
func Authorize(role string, a Action) bool {
	p, ok := permissions[a]
	return ok && slices.Contains(p.roles, role)
}

// ActionNeedsTOTP reports whether action needs a TOTP code.
func ActionNeedsTOTP(a Action) bool { return permissions[a].totp }

// Audit event names passed to Config.Audit.
const (
	AuditLogin           = "auth.login"
	AuditLoginFailed     = "auth.login_failed"
	AuditReleaseAdded    = "release.added"
	AuditReleaseApproved = "release.approved"
	AuditReleaseDeployed = "release.deployed"
	AuditUserCreated     = "user.created"
	AuditUserDisabled    = "user.disabled"
	AuditUserToken       = "user.token_created"
	// Device events (from enrollment and status reports).
	AuditDeviceEnrolled   = "device.enrolled"
	AuditDeviceUpdated    = "device.updated"
	AuditDeviceRolledBack = "device.rolled_back"
	AuditDeviceFailed     = "device.failed"
)

// authState is the in-memory part of admin authentication: TOTP failure
// counting (brute-force lockout) and the metrics.
type authState struct {
	mu       sync.Mutex
	failures map[string]totpFailures // by user ID
	results  *prometheus.CounterVec
}

type totpFailures struct {
	n     int
	first time.Time
}

func newAuthState() *authState {
	return &authState{
		failures: map[string]totpFailures{},
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_admin_auth_total",
			Help: "Admin API authentications by result (ok, bad_token, disabled, forbidden, totp_missing, totp_invalid, totp_replay, totp_locked).",
		}, []string{"result"}),
	}
}

// locked reports whether user's TOTP is locked out at now.
func (a *authState) locked(user string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.failures[user]
	return f.n >= MaxTOTPFailures && now.Sub(f.first) < TOTPLockout
}

func (a *authState) fail(user string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.failures[user]
	if now.Sub(f.first) >= TOTPLockout {
		f = totpFailures{first: now}
	}
	f.n++
	a.failures[user] = f
}

func (a *authState) succeed(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.failures, user)
}

type userKey struct{}

// userFrom returns the authenticated user of an admin request.
func userFrom(r *http.Request) store.User {
	u, _ := r.Context().Value(userKey{}).(store.User)
	return u
}

// audit reports an event to Config.Audit, if set.
func (s *Server) audit(ctx context.Context, actor, action string, details map[string]string) {
	if s.cfg.Audit != nil {
		s.cfg.Audit(ctx, actor, action, details)
	}
}

// admin authenticates an admin API request (bearer token of an enabled
// user), authorizes the user's role for action, and for state-changing
// actions verifies a fresh TOTP code.
func (s *Server) admin(action Action, h http.HandlerFunc) http.HandlerFunc {
	if _, ok := permissions[action]; !ok {
		panic("internal error: route declares unknown action " + string(action))
	}
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := s.authenticate(r, action)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	}
}

func (s *Server) authenticate(r *http.Request, action Action) (store.User, error) {
	ctx := r.Context()
	fail := func(result, actor string, err error) (store.User, error) {
		s.auth.results.WithLabelValues(result).Inc()
		if result != "forbidden" {
			s.audit(ctx, actor, AuditLoginFailed, map[string]string{"reason": result, "action": string(action), "remote": r.RemoteAddr})
		}
		return store.User{}, err
	}
	tok, err := s.authAdmin(r)
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
	if !Authorize(u.Role, action) {
		return fail("forbidden", u.Name, httpx.Status(http.StatusForbidden, "role %q may not %s", u.Role, action))
	}
	if !ActionNeedsTOTP(action) {
		s.auth.results.WithLabelValues("ok").Inc()
		return u, nil
	}
	if err := s.checkTOTP(r, u, r.Header.Get(TOTPHeader), action, "api"); err != nil {
		return store.User{}, err
	}
	return u, nil
}
