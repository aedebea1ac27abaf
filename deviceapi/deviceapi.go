// Package deviceapi is the device API between the agent (package agent) and
// the update server (package server): its URL paths, request and response
// bodies, device state names, size limits and the checks both sides run on
// them. Both sides import it, so the two ends cannot drift apart; it imports
// nothing from Airlock. docs/server.md describes the wire format.
//
// # Threat model
//
// Parties: the agent on a device and the update server, over HTTPS. A device
// enrolls once (POST [PathEnroll], with an enrollment token or a factory
// certificate) and from then on authenticates every request with the client
// certificate it received (mTLS); it is identified by that certificate
// only, never by anything in a body.
//
// The server treats every request as untrusted: whoever holds a device key,
// or an enrollment token, can send any bytes. A request body is read within
// its limit ([MaxEnrollRequestSize], [MaxCheckinRequestSize],
// [MaxStatusRequestSize]), decoded as exactly one flat JSON object without
// unknown or duplicate keys, and checked with its Validate method (text
// within [MaxStringLength] or [MaxMessageLength], no control characters, a
// known [State], a known slot, a counter within [MaxSecurityCounter])
// before anything reaches the store.
//
// The agent treats every response as untrusted: the server, or whoever holds
// its TLS key, is not part of the firmware trust chain. A response is read
// within [MaxResponseSize] and decoded with [DecodeResponse] (one JSON
// object, no unknown or duplicate keys, nesting within [MaxDepth]), and the
// agent acts only on bounded values: the poll interval (checked by
// [PollInterval]) and the repository URLs, which only locate metadata and
// payloads the device verifies against the vendor's signatures. The
// check-in's [Assignment] is informational; the signed director metadata
// decides. A compromised server can therefore deny or delay updates and
// misreport fleet state, but it cannot make a device install firmware the
// vendor never signed.
//
// Nothing in this API is signed: signed data (TUF metadata, director
// metadata, payloads) travels through the repository paths
// ([PathRepoMetadata], [PathRepoTargets], [PathDirector]).
package deviceapi

import (
	"errors"
	"time"
)

// URL paths of the device API, relative to the server's base URL.
const (
	// PathEnroll: POST an [EnrollRequest], 201 with an [EnrollResponse].
	// No client certificate, or a factory certificate.
	PathEnroll = "/api/v1/enroll"
	// PathCheckin: POST a [CheckinRequest] (mTLS), 200 with a
	// [CheckinResponse].
	PathCheckin = "/api/v1/checkin"
	// PathStatus: POST a [StatusReport] (mTLS), 204.
	PathStatus = "/api/v1/status"
	// PathDevice: GET the caller's own device record (mTLS).
	PathDevice = "/api/v1/device"
	// PathDirector is the directory of the device's director metadata
	// (GET, mTLS): signed TUF metadata naming what this device installs.
	PathDirector = "/api/v1/director/"
	// PathRepoMetadata and PathRepoTargets are the directories of the image
	// repository's signed metadata and payloads (GET, no authentication),
	// the defaults of [Repository].
	PathRepoMetadata = "/repo/metadata/"
	PathRepoTargets  = "/repo/targets/"
)

// Size limits of the device API. A request limit covers the worst case of
// a valid request: every text field at its limit and escaped by
// encoding/json at 6 bytes per byte ('<' becomes \u003c).
const (
	// MaxEnrollRequestSize bounds POST PathEnroll; it carries a CSR of at
	// most MaxCSRSize bytes.
	MaxEnrollRequestSize = 16 << 10
	// MaxCheckinRequestSize bounds POST PathCheckin.
	MaxCheckinRequestSize = 32 << 10
	// MaxStatusRequestSize bounds POST PathStatus.
	MaxStatusRequestSize = 32 << 10
	// MaxResponseSize bounds every device API response body.
	MaxResponseSize = 1 << 20
	// MaxCSRSize bounds the PEM certificate request of an enrollment.
	MaxCSRSize = 8 << 10
	// MaxStringLength bounds a short text field: model, product, channel,
	// versions.
	MaxStringLength = 256
	// MaxMessageLength bounds free text: a status message and a check-in's
	// last error.
	MaxMessageLength = 4 << 10
	// MaxSecurityCounter is the largest security counter a device may
	// report (it must fit a signed 64-bit database column).
	MaxSecurityCounter = 1<<63 - 1
	// MaxDepth bounds the nesting of JSON objects and arrays in a response.
	MaxDepth = 8
	// MaxKeyLength bounds a JSON object key.
	MaxKeyLength = 64
	// ReportIDLength is the length of a status report ID: 16 random bytes
	// as lowercase hex.
	ReportIDLength = 32
)

// MinPollInterval and MaxPollInterval bound the poll interval a server may
// tell its devices (poll_interval_seconds).
const (
	MinPollInterval = time.Second
	MaxPollInterval = 7 * 24 * time.Hour
)

// Device states: what the server stores as a device's state
// (CheckinRequest.State) and what a status report moves it to
// (StatusReport.Kind, every state but StateIdle), in the order a
// successful update passes through them.
const (
	// StateIdle: running a committed slot, no update under way.
	StateIdle = "idle"
	// StateDownloading: fetching a release's payload.
	StateDownloading = "downloading"
	// StateVerified: the payload matched its signed target.
	StateVerified = "verified"
	// StateInstalled: the release is written to the inactive slot and
	// waits for the reboot.
	StateInstalled = "installed"
	// StateRebooted: the device booted the new slot on trial; its health
	// check is pending.
	StateRebooted = "rebooted"
	// StateCommitted: the health check passed and the new slot is the
	// committed one.
	StateCommitted = "committed"
	// StateRolledBack: the new slot failed (boot or health check) and the
	// device runs the old one again.
	StateRolledBack = "rolled_back"
	// StateFailed: an update step failed before the reboot.
	StateFailed = "failed"
)

// States returns every device state, in the order of the constants.
func States() []string {
	return []string{StateIdle, StateDownloading, StateVerified, StateInstalled,
		StateRebooted, StateCommitted, StateRolledBack, StateFailed}
}

// ValidState reports whether s is one of the State constants.
func ValidState(s string) bool {
	switch s {
	case StateIdle, StateDownloading, StateVerified, StateInstalled,
		StateRebooted, StateCommitted, StateRolledBack, StateFailed:
		return true
	}
	return false
}

// ValidKind reports whether s is a status report kind: a State other than
// StateIdle.
func ValidKind(s string) bool { return s != StateIdle && ValidState(s) }

// Slot names of CheckinRequest.Slot: the device's committed
// (last-known-good) A/B slot.
const (
	SlotA = "a"
	SlotB = "b"
)

// ValidSlot reports whether s is SlotA or SlotB.
func ValidSlot(s string) bool { return s == SlotA || s == SlotB }

// ValidReportID reports whether s is a status report ID: exactly
// ReportIDLength lowercase hex digits.
func ValidReportID(s string) bool {
	if len(s) != ReportIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ErrInvalid is wrapped by every error of this package: a message that does
// not decode or carries an out-of-range value.
var ErrInvalid = errors.New("invalid device API message")
