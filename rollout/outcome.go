package rollout

import (
	"strings"
	"time"
)

// DeviceState is the progress of one device in a rollout.
type DeviceState string

// Device states in a rollout. Succeeded and failed are outcomes: a later
// progress or failure report does not change them; only evidence that the
// device runs the assigned release (a committed report, or a check-in
// stating it as the current version) turns a failure into a success, since
// reports can be lost (a time-out) or stale (a failed attempt retried).
const (
	DeviceAssigned   DeviceState = "assigned"    // assigned, no report yet
	DeviceInProgress DeviceState = "in_progress" // downloading, installing, rebooting
	DeviceSucceeded  DeviceState = "succeeded"   // committed after a healthy boot
	DeviceFailed     DeviceState = "failed"      // see FailureReason
)

// Valid reports whether s is one of the DeviceState constants.
func (s DeviceState) Valid() bool {
	switch s {
	case DeviceAssigned, DeviceInProgress, DeviceSucceeded, DeviceFailed:
		return true
	}
	return false
}

// Outcome reports whether s is final (succeeded or failed).
func (s DeviceState) Outcome() bool { return s == DeviceSucceeded || s == DeviceFailed }

// FailureReason says why a device failed.
type FailureReason string

// Failure reasons.
const (
	ReasonInstallFailed      FailureReason = "install_failed"      // the install was refused or did not complete
	ReasonVerificationFailed FailureReason = "verification_failed" // metadata, signature, hash or boot verification failed
	ReasonRolledBack         FailureReason = "rolled_back"         // the device fell back to its previous slot
	ReasonHealthCheckFailed  FailureReason = "health_check_failed" // the trial boot's health check failed
	ReasonTimedOut           FailureReason = "timed_out"           // no report within the report deadline
)

// Classify maps a device status report (kind is one of the device states
// the server's device API accepts: downloading, verified, installed,
// rebooted, committed, rolled_back, failed; message is the agent's text)
// to a rollout device state and, for failures, a reason. ok is false for a
// kind that says nothing about the install (such as idle).
//
// The message is untrusted and only refines the reason of a failure the
// kind already reports: "metadata:", "release:" and "payload:" failures
// are verification failures, "health:" failures and rollbacks that mention
// the health check are health check failures, a rollback because the new
// slot did not boot is a verification failure (the boot verifier refused
// it), and anything else is an install failure or a plain rollback.
func Classify(kind, message string) (state DeviceState, reason FailureReason, ok bool) {
	switch kind {
	case "downloading", "verified", "installed", "rebooted":
		return DeviceInProgress, "", true
	case "committed":
		return DeviceSucceeded, "", true
	case "rolled_back":
		switch {
		case strings.Contains(message, "health"):
			return DeviceFailed, ReasonHealthCheckFailed, true
		case strings.Contains(message, "did not boot"):
			return DeviceFailed, ReasonVerificationFailed, true
		}
		return DeviceFailed, ReasonRolledBack, true
	case "failed":
		check, _, _ := strings.Cut(message, ":")
		switch check {
		case "metadata", "release", "payload":
			return DeviceFailed, ReasonVerificationFailed, true
		case "health":
			return DeviceFailed, ReasonHealthCheckFailed, true
		}
		return DeviceFailed, ReasonInstallFailed, true
	}
	return "", "", false
}

// Next returns the device state after a report: a success is final, a
// failure gives way only to a success, and a report never moves a device
// back to assigned.
func Next(cur, reported DeviceState) DeviceState {
	switch {
	case cur == DeviceFailed && reported == DeviceSucceeded:
		return DeviceSucceeded
	case cur.Outcome() || reported == DeviceAssigned:
		return cur
	}
	return reported
}

// TimedOut reports whether a device in state s whose last report (or
// assignment) was at since has missed the report deadline at now. Devices
// with an outcome never time out; a zero deadline never expires.
func TimedOut(s DeviceState, since time.Time, deadline time.Duration, now time.Time) bool {
	if s.Outcome() || deadline <= 0 {
		return false
	}
	return !now.Before(since.Add(deadline))
}
