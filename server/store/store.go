// Package store keeps the update server's state — enrolled devices, their
// reported status and event history, enrollment tokens and admin API tokens —
// behind one small interface, [Store], with two implementations selected by
// [Open]: SQLite (the default, pure Go, one file) and PostgreSQL (pgx) when one
// machine is outgrown.
//
// # Threat model
//
// The store is trusted server state: whoever can write the database can enroll
// devices, mint admin tokens and rewrite fleet status. It is not, however, part
// of the firmware trust chain. Devices verify every release against TUF
// metadata signed by the vendor's offline keys, so a compromised or rolled-back
// database cannot make a device install firmware the vendor never signed; the
// worst it can do is misreport fleet state, deny service or admit devices.
//
// Secrets are never stored in the clear: enrollment and admin tokens are kept
// only as the SHA-256 hash of the secret the holder presents ([HashSize]
// bytes), so a copy of the database does not grant API access. Reversible
// secrets (a user's TOTP seed, server secrets) are stored only sealed by the
// server with a key-encryption key that is never in the database; the store
// treats them as opaque bytes of at most [MaxSealedLen]. A device is identified by the
// serial number (and fingerprint) of the client certificate the server issued
// to it at enrollment, both unique.
//
// Audit events ride on the writes they describe: a context made with
// [WithAudit] carries events that the next state-changing call made with it
// inserts into the audit_outbox table in the same transaction as its
// change ([AuditOutbox]); the server copies the outbox to the
// tamper-evident audit log (package audit).
//
// Values reaching the store come from authenticated but untrusted devices and
// admins: every method validates its input at the boundary with the named
// limits below ([MaxIDLen], [MaxStringLen], [MaxMessageLen], [MaxTags], ...)
// and fails with an error wrapping [ErrInvalid] that names the field. All SQL
// is parameterized. Schema migrations are versioned and append-only; Open
// refuses a database whose schema is newer than the binary ([ErrSchemaTooNew])
// rather than risk corrupting it.
//
// Times are stored in UTC as Unix microseconds: they are returned in UTC and
// sub-microsecond parts are truncated. A zero time.Time is stored as NULL and
// returned as the zero value.
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
)

// Limits enforced at the store boundary.
const (
	// MaxIDLen bounds device, token and admin token IDs.
	MaxIDLen = 128
	// MaxStringLen bounds short strings: model, product, channel, versions,
	// states, kinds, tags, names, roles, certificate serials and fingerprints.
	MaxStringLen = 256
	// MaxMessageLen bounds free text: event messages and a device's last error.
	MaxMessageLen = 4096
	// MaxTags bounds the number of tags on a device.
	MaxTags = 16
	// HashSize is the exact size of a stored token hash (SHA-256).
	HashSize = sha256.Size
	// MaxTokenUses bounds EnrollmentToken.UsesLeft.
	MaxTokenUses = 1_000_000
	// MaxSecurityCounter is the largest storable security counter (the
	// databases store signed 64-bit integers).
	MaxSecurityCounter = 1<<63 - 1
	// DefaultListLimit is used by ListDevices and ListEvents when limit is 0.
	DefaultListLimit = 100
	// MaxListLimit bounds the limit of ListDevices and ListEvents.
	MaxListLimit = 1000
	// MaxListOffset bounds DeviceFilter.Offset.
	MaxListOffset = 10_000_000
	// MaxDSNLen bounds the data source name given to Open.
	MaxDSNLen = 4096
	// MaxSealedLen bounds a sealed (KEK-encrypted) secret: User.TOTPSecret
	// and server secrets.
	MaxSealedLen = 1024
	// MaxUsers bounds what ListUsers returns.
	MaxUsers = 10_000
	// MaxTokensPerUser bounds what ListAdminTokens returns.
	MaxTokensPerUser = 1000
	// MaxApprovals bounds the approvals stored per release.
	MaxApprovals = 100
)

// Errors callers branch on. Validation errors wrap ErrInvalid and name the
// field and the check that failed.
var (
	// ErrNotFound: no such record (or, for ConsumeEnrollmentToken, no usable one).
	ErrNotFound = errors.New("not found")
	// ErrExists: a record with the same unique key (ID, hash, certificate serial
	// or fingerprint) already exists.
	ErrExists = errors.New("already exists")
	// ErrInvalid: the input failed validation at the store boundary.
	ErrInvalid = errors.New("invalid input")
	// ErrSchemaTooNew: the database was migrated by a newer binary.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")
	// ErrUnsupportedDSN: Open could not select an implementation for the DSN.
	ErrUnsupportedDSN = errors.New("unsupported data source name")
	// ErrConflict: the change conflicts with the record's current state.
	ErrConflict = errors.New("conflicts with the current state")
	// ErrSelfApproval: the uploader of a release tried to approve it.
	ErrSelfApproval = fmt.Errorf("%w: the uploader of a release cannot approve it", ErrConflict)
	// ErrNotEnoughApprovals: a release lacks the approvals its deployment needs.
	ErrNotEnoughApprovals = fmt.Errorf("%w: not enough approvals", ErrConflict)
	// ErrAlreadyDeployed: the release was already deployed.
	ErrAlreadyDeployed = fmt.Errorf("%w: release already deployed", ErrConflict)
	// ErrDuplicateReport: AddEvent was given a report ID the device's
	// history already holds (a resent report); nothing was changed.
	ErrDuplicateReport = fmt.Errorf("%w: report id already recorded", ErrExists)
	// ErrTOTPReplay: a TOTP time step at or before the last accepted one.
	ErrTOTPReplay = errors.New("totp code already used (replay)")
)

// Device states reported by devices (Device.State, DeviceReport.State): the
// device API's states (package deviceapi), which the store keeps. An event
// whose Kind is one of them moves the device to that state.
const (
	StateIdle        = deviceapi.StateIdle
	StateDownloading = deviceapi.StateDownloading
	StateVerified    = deviceapi.StateVerified
	StateInstalled   = deviceapi.StateInstalled
	StateRebooted    = deviceapi.StateRebooted
	StateCommitted   = deviceapi.StateCommitted
	StateRolledBack  = deviceapi.StateRolledBack
	StateFailed      = deviceapi.StateFailed
)

// ValidState reports whether s is one of the State constants.
func ValidState(s string) bool { return deviceapi.ValidState(s) }

// Device is an enrolled device and what it last reported about itself.
type Device struct {
	ID              string // server-assigned, e.g. "dev-" + 16 hex chars; [A-Za-z0-9._-]
	Model           string // required
	Product         string // required
	Channel         string // release channel, may be empty
	HWRev           uint32
	Tags            []string // at most MaxTags, unique, non-empty; empty is returned as nil
	CurrentVersion  string
	SecurityCounter uint64 // at most MaxSecurityCounter
	State           string // one of the State constants; empty means StateIdle at CreateDevice
	Slot            string // committed A/B slot last reported (deviceapi.SlotA or SlotB), "" if unknown
	LastError       string
	CertSerial      string    // lowercase hex serial of the issued client certificate, unique
	CertFingerprint string    // lowercase hex SHA-256 of the certificate DER, unique
	EnrolledAt      time.Time // required
	LastSeen        time.Time // zero until the first check-in (unless set at creation)
}

// DeviceReport is what a device reports about itself at check-in.
type DeviceReport struct {
	CurrentVersion  string
	SecurityCounter uint64
	State           string // one of the State constants
	Slot            string // deviceapi.SlotA or SlotB, "" if unknown; replaces the stored slot
	LastError       string // replaces the stored last error (empty clears it)
}

// DeviceFilter selects devices for ListDevices. Empty string fields match
// everything; Limit 0 means DefaultListLimit.
type DeviceFilter struct {
	Product, Model, Channel, State, Version string
	// After, if set, lists only devices whose ID sorts after it: keyset
	// pages, which neither skip nor repeat devices when others enroll
	// meanwhile and cost the same on every page (Offset rescans the rows
	// before it).
	After         string
	Limit, Offset int
}

// EnrollmentToken lets a device enroll with a factory credential. Only the
// SHA-256 hash of the secret is stored.
type EnrollmentToken struct {
	ID        string
	Hash      []byte // SHA-256 of the secret, HashSize bytes, unique
	Product   string // optional restriction; empty allows any
	Model     string // optional restriction; empty allows any
	UsesLeft  int    // 1..MaxTokenUses at creation
	ExpiresAt time.Time
	CreatedAt time.Time
}

// Event is one entry of a device's history, newest first in ListEvents.
type Event struct {
	ID       int64 // assigned by AddEvent
	DeviceID string
	Time     time.Time // required
	Kind     string    // a State constant, or another [a-z0-9_] word such as "enrolled"
	Version  string    // release version the event is about, may be empty
	Message  string    // up to MaxMessageLen
	// ReportID is the device's ID of the status report the event records
	// (deviceapi.ValidReportID), "" for none. A device's report ID is
	// recorded once: AddEvent refuses it again with ErrDuplicateReport.
	ReportID string
}

// AdminToken authenticates the admin API as one User. Only the SHA-256 hash
// of the secret is stored.
type AdminToken struct {
	ID        string
	UserID    string // the user it authenticates, required
	Name      string // human label, required
	Role      string // the user's role when the token was made; [a-z0-9_-], required. Authorization uses User.Role.
	Hash      []byte // SHA-256 of the secret, HashSize bytes, unique
	CreatedAt time.Time
	LastUsed  time.Time // zero until TouchAdminToken
}

// Stats summarizes the store for monitoring.
type Stats struct {
	Devices   int64
	Events    int64
	SizeBytes int64 // size of the database on disk, as the database reports it
}

// Store is the update server's state. Implementations are safe for concurrent
// use. Every method validates its input (errors wrap ErrInvalid) and honours
// ctx.
type Store interface {
	// CreateEnrollmentToken stores a new enrollment token. ErrExists if the ID
	// or hash is taken.
	CreateEnrollmentToken(ctx context.Context, tok EnrollmentToken) error

	// ConsumeEnrollmentToken atomically finds the token with the given hash
	// that expires after now and has UsesLeft > 0, decrements UsesLeft and
	// returns the token as it is after the decrement. It returns ErrNotFound
	// otherwise, never revealing which condition failed. Concurrent callers
	// never consume more uses than the token had.
	ConsumeEnrollmentToken(ctx context.Context, hash []byte, now time.Time) (EnrollmentToken, error)

	// CreateDevice stores a newly enrolled device. ErrExists on a duplicate ID,
	// certificate serial or certificate fingerprint.
	CreateDevice(ctx context.Context, d Device) error

	// GetDevice returns the device with the given ID, or ErrNotFound.
	GetDevice(ctx context.Context, id string) (Device, error)

	// GetDeviceByCertSerial returns the device whose client certificate has
	// the given serial (lowercase hex), or ErrNotFound.
	GetDeviceByCertSerial(ctx context.Context, serial string) (Device, error)

	// ListDevices returns the devices matching f, ordered by ID.
	ListDevices(ctx context.Context, f DeviceFilter) ([]Device, error)

	// CountDevicesByVersion counts the devices of product (all products if
	// empty) per current version.
	CountDevicesByVersion(ctx context.Context, product string) (map[string]int, error)

	// Checkin records what a device reports about itself at check-in: its
	// current version, security counter, state, slot and last error, and sets
	// LastSeen to now. ErrNotFound if the device does not exist.
	Checkin(ctx context.Context, id string, r DeviceReport, now time.Time) error

	// TouchDevices moves the LastSeen of each device in seen forward to
	// its time (never back), in one transaction; unknown devices are
	// skipped. At most MaxTouchDevices entries.
	TouchDevices(ctx context.Context, seen map[string]time.Time) error

	// AddEvent appends an event to a device's history and returns its ID.
	// When Kind is a State constant the device's State becomes Kind; a
	// "failed" or "rolled_back" event sets LastError to Message, a "committed"
	// event clears LastError and, when Version is set, sets CurrentVersion to
	// Version. Other kinds are only recorded. ErrNotFound if the device does
	// not exist. The event and the device update are one transaction.
	// An event with a ReportID the device's history already holds changes
	// nothing and fails with ErrDuplicateReport.
	AddEvent(ctx context.Context, e Event) (int64, error)

	// ListEvents returns up to limit (0 means DefaultListLimit) events of a
	// device, newest first. ErrNotFound if the device does not exist.
	ListEvents(ctx context.Context, deviceID string, limit int) ([]Event, error)

	// CreateAdminToken stores a new admin token. ErrExists if the ID or hash
	// is taken.
	CreateAdminToken(ctx context.Context, tok AdminToken) error

	// GetAdminTokenByHash returns the admin token with the given hash, or
	// ErrNotFound.
	GetAdminTokenByHash(ctx context.Context, hash []byte) (AdminToken, error)

	// TouchAdminToken sets the token's LastUsed to now. ErrNotFound if the
	// token does not exist.
	TouchAdminToken(ctx context.Context, id string, now time.Time) error

	// CreateUser stores a new user. ErrExists if the ID or name is taken.
	CreateUser(ctx context.Context, u User) error

	// GetUser returns the user with the given ID, or ErrNotFound.
	GetUser(ctx context.Context, id string) (User, error)

	// GetUserByName returns the user with the given name, or ErrNotFound.
	GetUserByName(ctx context.Context, name string) (User, error)

	// ListUsers returns up to MaxUsers users ordered by name.
	ListUsers(ctx context.Context) ([]User, error)

	// DisableUser sets the user's DisabledAt to now (once: disabling a
	// disabled user keeps the first time). ErrNotFound if there is no such
	// user.
	DisableUser(ctx context.Context, id string, now time.Time) error

	// SetUserTOTP stores a user's sealed TOTP secret (nil removes it) and
	// resets TOTPLastStep. ErrNotFound if there is no such user.
	SetUserTOTP(ctx context.Context, id string, sealed []byte) error

	// AcceptTOTPStep atomically records step as the user's last accepted TOTP
	// time step if it is greater than the one recorded, and fails with
	// ErrTOTPReplay otherwise (RFC 6238 section 5.2: a code is accepted at
	// most once, and never after a later one). ErrNotFound if there is no
	// such user.
	AcceptTOTPStep(ctx context.Context, id string, step int64) error

	// CreateAdminSession stores a new admin session. In the same
	// transaction it deletes sessions that expired or were revoked more
	// than AdminSessionRetention before sess.CreatedAt, and refuses
	// (ErrConflict) a user who already has MaxAdminSessionsPerUser live
	// sessions. ErrExists if the ID or hash is taken; ErrNotFound if the
	// user does not exist.
	CreateAdminSession(ctx context.Context, sess AdminSession) error

	// GetAdminSessionByHash returns the admin session with the given hash,
	// expired and revoked ones included (the caller decides), or
	// ErrNotFound.
	GetAdminSessionByHash(ctx context.Context, hash []byte) (AdminSession, error)

	// RevokeAdminSession sets the session's RevokedAt to now (once: revoking
	// a revoked session keeps the first time). ErrNotFound if there is no
	// such session.
	RevokeAdminSession(ctx context.Context, id string, now time.Time) error

	// ListAdminTokens returns up to MaxTokensPerUser tokens of a user,
	// ordered by creation time.
	ListAdminTokens(ctx context.Context, userID string) ([]AdminToken, error)

	// CreateRelease registers a release for deployment. ErrExists if the ID
	// or (product, version, environment) is taken; ErrNotFound if the
	// uploader does not exist. Approvals must be empty.
	CreateRelease(ctx context.Context, r Release) error

	// GetRelease returns a release with its approvals, or ErrNotFound.
	GetRelease(ctx context.Context, id string) (Release, error)

	// ListReleases returns up to limit (0 means DefaultListLimit) releases,
	// newest first, with their approvals.
	ListReleases(ctx context.Context, limit int) ([]Release, error)

	// ApproveRelease records approver's approval of a release and returns
	// the release after it. It fails with ErrSelfApproval when approver is
	// the uploader, ErrExists when approver already approved it (approvals
	// are counted per distinct user), ErrAlreadyDeployed after deployment,
	// ErrConflict beyond MaxApprovals and ErrNotFound for an unknown release
	// or user.
	ApproveRelease(ctx context.Context, id, approver string, now time.Time) (Release, error)

	// DeployRelease atomically marks a release deployed by by at now if it
	// has at least minApprovals approvals from users who are not disabled.
	// It fails with ErrNotEnoughApprovals, ErrAlreadyDeployed or ErrNotFound.
	DeployRelease(ctx context.Context, id, by string, minApprovals int, now time.Time) (Release, error)

	// PutSecretIfAbsent stores value under name unless a value is already
	// stored, and returns the stored value (the existing one, or value).
	PutSecretIfAbsent(ctx context.Context, name string, value []byte, now time.Time) ([]byte, error)

	// RolloutStore: staged rollouts, their devices and director state.
	RolloutStore

	// ReplicaStore: state replicas share (dashboard sessions, TOTP
	// attempts, director roots).
	ReplicaStore

	// AuditOutbox: audit events committed with the state changes they
	// describe (see WithAudit).
	AuditOutbox

	// LeaseStore: named leases for work one server does at a time.
	LeaseStore

	// Stats returns record counts and the database size.
	Stats(ctx context.Context) (Stats, error)

	// Close releases the database connections.
	Close() error
}
