package auth

import "slices"

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
	// session: a live session (airlock login) stands in for the TOTP code.
	// Without it the action needs a fresh code even under a session.
	session bool
}

// permissions is the authorization table. Anything not listed is denied.
// Approving a release and managing users and tokens need a fresh TOTP code
// even under a session (docs/security.md, "Sessions"): an approval is one
// person's deliberate consent, and a token minted with a stolen session
// would outlive it.
var permissions = map[Action]permission{
	ActionFleetRead:        {roles: Roles},
	ActionReleaseRead:      {roles: Roles},
	ActionEnrollTokenWrite: {roles: []string{RoleOperator, RoleAdmin}, totp: true, session: true},
	ActionReleaseRegister:  {roles: []string{RoleReleaseManager, RoleAdmin}, totp: true, session: true},
	ActionReleaseApprove:   {roles: []string{RoleApprover, RoleAdmin}, totp: true},
	ActionReleaseDeploy:    {roles: []string{RoleOperator, RoleAdmin}, totp: true, session: true},
	ActionUserRead:         {roles: []string{RoleAdmin}},
	ActionUserWrite:        {roles: []string{RoleAdmin}, totp: true},
	ActionRolloutRead:      {roles: Roles},
	ActionRolloutWrite:     {roles: []string{RoleOperator, RoleAdmin}, totp: true, session: true},
	ActionDeviceTagWrite:   {roles: []string{RoleOperator, RoleAdmin}, totp: true, session: true},
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

// KnownAction reports whether a is in the authorization table.
func KnownAction(a Action) bool {
	_, ok := permissions[a]
	return ok
}

// ActionNeedsTOTP reports whether action needs a TOTP code (or, where
// [ActionSessionSuffices], a session).
func ActionNeedsTOTP(a Action) bool { return permissions[a].totp }

// ActionSessionSuffices reports whether a live session stands in for the
// TOTP code of a state-changing action.
func ActionSessionSuffices(a Action) bool { return permissions[a].totp && permissions[a].session }

// Audit event names passed to Config.Audit.
const (
	AuditLogin           = "auth.login"
	AuditLoginFailed     = "auth.login_failed"
	AuditLogout          = "auth.logout"
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
