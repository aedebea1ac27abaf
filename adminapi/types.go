// Package adminapi is the one protocol package of the update server's admin
// API: its wire types, shared by the server's handlers and every client,
// and [Client], the typed client the CLI, the admin user pool (package
// server/adminpool) and the benchmarks use.
//
// # Threat model
//
// Parties: an admin user (one role each, see server/auth) holding a bearer
// token and a TOTP seed, and the update server, authenticated by TLS (1.2 or
// newer) against the roots the caller gives, never by anything weaker. The
// token is sent on every request and a fresh TOTP code on every
// state-changing one ([TOTPHeader]); neither is ever logged or put into an
// error. [Client.Login] trades them for a short-lived session credential
// ([Session], [SessionPrefix]), a secret of the same standing as the token
// that stands in for most TOTP codes until it expires. The server's answers are untrusted input: a response is read to at
// most [MaxResponseSize] bytes and decoded into the declared type only, and
// a server error message is quoted, never interpreted.
//
// This package holds no server-side code: it imports neither the store nor
// a database driver, so a client binary carries only HTTP and JSON.
package adminapi

import "time"

// TOTPHeader carries the TOTP code on state-changing admin requests.
const TOTPHeader = "X-Airlock-TOTP"

// Paths of the admin API (all under https://HOST:PORT).
const (
	PathDevices          = "/api/v1/admin/devices"
	PathEnrollmentTokens = "/api/v1/admin/enrollment-tokens"
	PathStats            = "/api/v1/admin/stats"
	PathReleases         = "/api/v1/admin/releases"
	PathUsers            = "/api/v1/admin/users"
	PathRollouts         = "/api/v1/admin/rollouts"
	PathLogin            = "/api/v1/admin/login"
	PathLogout           = "/api/v1/admin/logout"
)

// SessionPrefix starts every session credential (LoginResponse.Session),
// telling it apart from an admin token.
const SessionPrefix = "airlock_session_"

// Rollout actions (POST PathRollouts/{id}/{action}); they are the names of
// rollout.Action.
const (
	RolloutStart  = "start"
	RolloutPause  = "pause"
	RolloutResume = "resume"
	RolloutCancel = "cancel"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

// LoginRequest is the body of POST PathLogin, sent with the admin token as
// bearer and a TOTP code in TOTPHeader.
type LoginRequest struct {
	// TTLSeconds asks for a shorter session than the server's lifetime
	// (0: the server's lifetime, which is also the maximum).
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// LoginResponse is the 201 body of POST PathLogin. Session is a secret:
// send it as the bearer credential instead of the admin token until
// ExpiresAt; it then needs no TOTP code for most changes.
type LoginResponse struct {
	Session   string    `json:"session"`
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expires_at"`
}

// LogoutResponse is the 200 body of POST PathLogout, sent with the session
// as bearer.
type LogoutResponse struct {
	ID   string `json:"id"`
	User string `json:"user"`
}

// User is the JSON form of a user.
type User struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Role         string     `json:"role"`
	CreatedAt    time.Time  `json:"created_at"`
	DisabledAt   *time.Time `json:"disabled_at,omitempty"`
	TOTPEnrolled bool       `json:"totp_enrolled"`
}

// UserList is the 200 body of GET /api/v1/admin/users.
type UserList struct {
	Users []User `json:"users"`
}

// CreateUserRequest is the body of POST /api/v1/admin/users.
type CreateUserRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// CreateTokenRequest is the body of POST /api/v1/admin/users/{id}/tokens.
type CreateTokenRequest struct {
	Name string `json:"name"`
}

// TokenResponse is the 201 body of token creation. Token is shown only here.
type TokenResponse struct {
	Token  string `json:"token"`
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	Name   string `json:"name"`
}

// CreateUserResponse is the 201 body of POST /api/v1/admin/users.
type CreateUserResponse struct {
	User  User          `json:"user"`
	Token TokenResponse `json:"token"`
}

// Release is the JSON form of a release registered for deployment.
type Release struct {
	ID                string     `json:"id"`
	Product           string     `json:"product"`
	Version           string     `json:"version"`
	Environment       string     `json:"environment"`
	TargetPath        string     `json:"target_path"`
	Uploader          string     `json:"uploader"` // user ID
	CreatedAt         time.Time  `json:"created_at"`
	Approvals         []Approval `json:"approvals"`
	ActiveApprovals   int        `json:"active_approvals"`
	RequiredApprovals int        `json:"required_approvals"`
	DeployedAt        *time.Time `json:"deployed_at,omitempty"`
	DeployedBy        string     `json:"deployed_by,omitempty"`
}

// Approval is the JSON form of an approval.
type Approval struct {
	Approver         string    `json:"approver"` // user ID
	ApprovedAt       time.Time `json:"approved_at"`
	ApproverDisabled bool      `json:"approver_disabled,omitempty"`
}

// ReleaseList is the 200 body of GET /api/v1/admin/releases.
type ReleaseList struct {
	Releases []Release `json:"releases"`
}

// CreateReleaseRequest is the body of POST /api/v1/admin/releases.
type CreateReleaseRequest struct {
	Product     string `json:"product"`
	Version     string `json:"version"`
	Environment string `json:"environment"`
}

// CreateRolloutRequest is the body of POST /api/v1/admin/rollouts. The
// optional fields default to rollout.DefaultSuccessThreshold,
// rollout.DefaultFailureThreshold, no parallelism limit, no window and
// rollout.DefaultReportDeadline.
type CreateRolloutRequest struct {
	Release          string `json:"release"`               // "product@version", registered with POST /api/v1/admin/releases
	Environment      string `json:"environment,omitempty"` // needed when the release is registered for several
	Filter           string `json:"filter"`                // rollout.ParseFilter; "" selects every device of the product
	Stages           string `json:"stages"`                // rollout.ParseStages, e.g. "canary:10,5%,25%,100%"
	SuccessThreshold string `json:"success_threshold,omitempty"`
	FailureThreshold string `json:"failure_threshold,omitempty"`
	MaxParallel      int    `json:"max_parallel,omitempty"`
	Window           string `json:"window,omitempty"` // rollout.ParseWindow, e.g. "0 2 * * *,4h,Europe/Berlin"
	Forced           bool   `json:"forced,omitempty"`
	ReportDeadline   string `json:"report_deadline,omitempty"` // Go duration, e.g. "2h"
}

// RolloutView is the read model of a rollout: the admin API's JSON and
// what the dashboard shows.
type RolloutView struct {
	ID               string         `json:"id"`
	Release          string         `json:"release"` // "product@version"
	ReleaseID        string         `json:"release_id"`
	TargetPath       string         `json:"target_path"`
	Filter           string         `json:"filter"`
	Stages           string         `json:"stages"`
	SuccessThreshold string         `json:"success_threshold"`
	FailureThreshold string         `json:"failure_threshold"`
	MaxParallel      int            `json:"max_parallel"`
	Window           string         `json:"window"`
	Forced           bool           `json:"forced"`
	ReportDeadline   string         `json:"report_deadline"`
	State            string         `json:"state"`
	Stage            int            `json:"stage"` // index of the current stage
	Reason           string         `json:"reason"`
	CreatedBy        string         `json:"created_by"` // user ID
	CreatedAt        time.Time      `json:"created_at"`
	UpdatedAt        time.Time      `json:"updated_at"`
	Eligible         int            `json:"eligible"`
	StageViews       []StageView    `json:"stage_progress"`
	Total            StageCounts    `json:"total"`
	FailureReasons   map[string]int `json:"failure_reasons"`
	// AssignBlocked says why no device is being assigned now ("" when
	// devices are being assigned).
	AssignBlocked string `json:"assign_blocked,omitempty"`
}

// StageView is one stage of a rollout with its devices by outcome.
type StageView struct {
	Label  string `json:"label"`
	Spec   string `json:"spec"`   // as ParseStages accepts it, e.g. "canary:10"
	Target int    `json:"target"` // cumulative device target
	StageCounts
}

// StageCounts are devices by outcome.
type StageCounts struct {
	Assigned   int `json:"assigned"`
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`
	InProgress int `json:"in_progress"`
}

// RolloutList is the 200 body of GET /api/v1/admin/rollouts.
type RolloutList struct {
	Rollouts []RolloutView `json:"rollouts"`
}

// RolloutActionRequest is the optional body of the rollout actions.
type RolloutActionRequest struct {
	Reason string `json:"reason,omitempty"`
}

// TagsRequest is the body of POST /api/v1/admin/devices/{id}/tags: the
// device's new tags, comma-separated ("" removes them all).
type TagsRequest struct {
	Tags string `json:"tags"`
}

// Device is the JSON form of a device record (GET /api/v1/device and the
// admin API).
type Device struct {
	ID              string     `json:"id"`
	Model           string     `json:"model"`
	Product         string     `json:"product"`
	Channel         string     `json:"channel"`
	HWRev           uint32     `json:"hw_rev"`
	Tags            []string   `json:"tags"`
	CurrentVersion  string     `json:"current_version"`
	SecurityCounter uint64     `json:"security_counter"`
	State           string     `json:"state"` // a deviceapi State constant
	Slot            string     `json:"slot"`  // committed slot the device last reported: "a", "b" or "" (unknown)
	LastError       string     `json:"last_error"`
	CertSerial      string     `json:"cert_serial"`
	CertFingerprint string     `json:"cert_fingerprint"`
	EnrolledAt      time.Time  `json:"enrolled_at"`
	LastSeen        *time.Time `json:"last_seen,omitempty"`
}

// DeviceList is the 200 body of GET /api/v1/admin/devices.
type DeviceList struct {
	Devices []Device `json:"devices"`
	Limit   int      `json:"limit"`
	Offset  int      `json:"offset"`
}

// Event is the JSON form of a device event.
type Event struct {
	ID       int64     `json:"id"`
	DeviceID string    `json:"device_id"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Version  string    `json:"version"`
	Message  string    `json:"message"`
}

// EventList is the 200 body of GET /api/v1/admin/devices/{id}/events.
type EventList struct {
	Events []Event `json:"events"`
}

// CreateEnrollmentTokenRequest is the body of POST /api/v1/admin/enrollment-tokens.
type CreateEnrollmentTokenRequest struct {
	Product    string `json:"product,omitempty"`
	Model      string `json:"model,omitempty"`
	Uses       int    `json:"uses"`
	TTLSeconds int64  `json:"ttl_seconds"`
}

// CreateEnrollmentTokenResponse is its 201 body. Token is shown only here.
type CreateEnrollmentTokenResponse struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	Uses      int       `json:"uses"`
	Product   string    `json:"product,omitempty"`
	Model     string    `json:"model,omitempty"`
}

// StatsResponse is the 200 body of GET /api/v1/admin/stats.
type StatsResponse struct {
	Devices     int64          `json:"devices"`
	Events      int64          `json:"events"`
	DBSizeBytes int64          `json:"db_size_bytes"`
	Versions    map[string]int `json:"versions"`
}
