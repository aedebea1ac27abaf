package server

import (
	"context"
	"time"

	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/releases"
	"github.com/airlockfw/airlock/server/store"
)

// Users, roles, tokens, TOTP and the KEK live in package server/auth; these
// names keep the server's API for its callers.

// Roles of admin API users (see auth.RoleViewer…).
const (
	RoleViewer         = auth.RoleViewer
	RoleOperator       = auth.RoleOperator
	RoleReleaseManager = auth.RoleReleaseManager
	RoleApprover       = auth.RoleApprover
	RoleAdmin          = auth.RoleAdmin
)

// Roles lists every role.
var Roles = auth.Roles

// Action is what an admin API route does; every route declares one.
type Action = auth.Action

// The actions.
const (
	ActionFleetRead        = auth.ActionFleetRead
	ActionEnrollTokenWrite = auth.ActionEnrollTokenWrite
	ActionReleaseRead      = auth.ActionReleaseRead
	ActionReleaseRegister  = auth.ActionReleaseRegister
	ActionReleaseApprove   = auth.ActionReleaseApprove
	ActionReleaseDeploy    = auth.ActionReleaseDeploy
	ActionUserRead         = auth.ActionUserRead
	ActionUserWrite        = auth.ActionUserWrite
	ActionRolloutRead      = auth.ActionRolloutRead
	ActionRolloutWrite     = auth.ActionRolloutWrite
	ActionDeviceTagWrite   = auth.ActionDeviceTagWrite
)

// Actions lists every action, in table order.
var Actions = auth.Actions

// Audit event names passed to Config.Audit.
const (
	AuditLogin            = auth.AuditLogin
	AuditLoginFailed      = auth.AuditLoginFailed
	AuditLogout           = auth.AuditLogout
	AuditReleaseAdded     = auth.AuditReleaseAdded
	AuditReleaseApproved  = auth.AuditReleaseApproved
	AuditReleaseDeployed  = auth.AuditReleaseDeployed
	AuditUserCreated      = auth.AuditUserCreated
	AuditUserDisabled     = auth.AuditUserDisabled
	AuditUserToken        = auth.AuditUserToken
	AuditDeviceEnrolled   = auth.AuditDeviceEnrolled
	AuditDeviceUpdated    = auth.AuditDeviceUpdated
	AuditDeviceRolledBack = auth.AuditDeviceRolledBack
	AuditDeviceFailed     = auth.AuditDeviceFailed
)

// Token, TOTP and KEK parameters.
const (
	EnrollmentTokenLen    = auth.EnrollmentTokenLen
	MaxEnrollmentTokenTTL = auth.MaxEnrollmentTokenTTL
	TOTPHeader            = auth.TOTPHeader
	TOTPDigits            = auth.TOTPDigits
	TOTPPeriod            = auth.TOTPPeriod
	TOTPSecretSize        = auth.TOTPSecretSize
	MaxTOTPFailures       = auth.MaxTOTPFailures
	TOTPLockout           = auth.TOTPLockout
	KEKFile               = auth.KEKFile
	KEKSize               = auth.KEKSize
)

// ErrWrongKEK: the KEK file does not open what it sealed (auth.ErrWrongKEK).
var ErrWrongKEK = auth.ErrWrongKEK

// KEK is the server's key-encryption key.
type KEK = auth.KEK

// EnrollmentTokenOptions describe a new enrollment token.
type EnrollmentTokenOptions = auth.EnrollmentTokenOptions

// ValidRole is [auth.ValidRole].
func ValidRole(r string) bool { return auth.ValidRole(r) }

// Authorize is [auth.Authorize].
func Authorize(role string, a auth.Action) bool { return auth.Authorize(role, a) }

// ActionNeedsTOTP is [auth.ActionNeedsTOTP].
func ActionNeedsTOTP(a auth.Action) bool { return auth.ActionNeedsTOTP(a) }

// CreateUser is [auth.CreateUser].
func CreateUser(ctx context.Context, st store.Store, name, role string, now time.Time) (store.User, string, store.AdminToken, error) {
	return auth.CreateUser(ctx, st, name, role, now)
}

// CreateUserToken is [auth.CreateUserToken].
func CreateUserToken(ctx context.Context, st store.Store, userID, label string, now time.Time) (string, store.AdminToken, error) {
	return auth.CreateUserToken(ctx, st, userID, label, now)
}

// CreateAdminToken is [auth.CreateAdminToken].
func CreateAdminToken(ctx context.Context, st store.Store, name, role string, now time.Time) (string, store.AdminToken, error) {
	return auth.CreateAdminToken(ctx, st, name, role, now)
}

// CreateEnrollmentToken is [auth.CreateEnrollmentToken].
func CreateEnrollmentToken(ctx context.Context, st store.Store, o auth.EnrollmentTokenOptions, now time.Time) (string, store.EnrollmentToken, error) {
	return auth.CreateEnrollmentToken(ctx, st, o, now)
}

// EnrollTOTP is [auth.EnrollTOTP].
func EnrollTOTP(ctx context.Context, st store.Store, kek *auth.KEK, name string) (uri string, err error) {
	return auth.EnrollTOTP(ctx, st, kek, name)
}

// TOTPCode is [auth.TOTPCode].
func TOTPCode(secret []byte, t time.Time) string { return auth.TOTPCode(secret, t) }

// TOTPStep is [auth.TOTPStep].
func TOTPStep(t time.Time) int64 { return auth.TOTPStep(t) }

// NewTOTPSecret is [auth.NewTOTPSecret].
func NewTOTPSecret() ([]byte, error) { return auth.NewTOTPSecret() }

// OTPAuthURI is [auth.OTPAuthURI].
func OTPAuthURI(name string, secret []byte) string { return auth.OTPAuthURI(name, secret) }

// NewKEK is [auth.NewKEK].
func NewKEK(key []byte) (*auth.KEK, error) { return auth.NewKEK(key) }

// LoadKEK is [auth.LoadKEK].
func LoadKEK(path string) (*auth.KEK, error) { return auth.LoadKEK(path) }

// LoadOrCreateKEK is [auth.LoadOrCreateKEK].
func LoadOrCreateKEK(path string) (k *auth.KEK, created bool, err error) {
	return auth.LoadOrCreateKEK(path)
}

// CheckKEK is [auth.CheckKEK].
func CheckKEK(ctx context.Context, st store.Store, k *auth.KEK, now time.Time) error {
	return auth.CheckKEK(ctx, st, k, now)
}

// audit reports an event to Config.Audit, if set.
func (s *Server) audit(ctx context.Context, actor, action string, details map[string]string) {
	if s.cfg.Audit != nil {
		s.cfg.Audit(ctx, actor, action, details)
	}
}

// Deployment environments and approval thresholds (see package
// server/releases).
const (
	EnvDev               = release.EnvDev
	EnvStaging           = release.EnvStaging
	EnvProd              = release.EnvProd
	DefaultProdApprovals = releases.DefaultProdApprovals
	MaxProdApprovals     = releases.MaxProdApprovals
)

// Admin session lifetimes (see package server/auth).
const (
	DefaultSessionTTL = auth.DefaultSessionTTL
	MinSessionTTL     = auth.MinSessionTTL
	MaxSessionTTL     = auth.MaxSessionTTL
)

// Environments lists the deployment environments.
var Environments = release.Environments

// ErrReleaseNotPublished: the release is not in the served repository.
var ErrReleaseNotPublished = releases.ErrReleaseNotPublished

// requiredApprovals is how many approvals a release for env needs.
func (s *Server) requiredApprovals(env string) int { return s.releases.RequiredApprovals(env) }

// releaseJSON is the admin API's view of a release.
func (s *Server) releaseJSON(r store.Release) Release { return s.releases.View(r) }
