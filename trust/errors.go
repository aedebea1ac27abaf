package trust

import (
	"errors"
	"fmt"
)

// ErrVerification is the parent of every verification failure of this
// package (and of package verify): errors.Is(err, ErrVerification) tells a
// refused input from a failure to fetch it (ErrNotFound, a network error).
var ErrVerification = errors.New("verification failed")

// refusal is a sentinel that wraps ErrVerification without changing its
// message.
type refusal struct {
	msg    string
	parent error
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.parent }

// NewRefusal returns a new sentinel error with message msg that wraps
// ErrVerification: packages above trust (verify) add their refusals to the
// one hierarchy with it.
func NewRefusal(msg string) error { return &refusal{msg: msg, parent: ErrVerification} }

// Sentinel errors. Errors returned by this package wrap one of them (and a
// message saying which role and which check failed); test with errors.Is.
var (
	// ErrMalformed means metadata could not be parsed or violates the format
	// (duplicate JSON keys, wrong _type, unsupported spec_version, bad field).
	ErrMalformed = NewRefusal("malformed metadata")
	// ErrSignature means a signature check failed.
	ErrSignature = NewRefusal("signature verification failed")
	// ErrThreshold means fewer distinct trusted keys than the role threshold
	// produced valid signatures. It wraps ErrSignature.
	ErrThreshold = fmt.Errorf("signature threshold not met: %w", ErrSignature)
	// ErrExpired means metadata is expired at the reference time (freeze attack?).
	ErrExpired = NewRefusal("metadata expired")
	// ErrRollback means a version is lower than one already trusted.
	ErrRollback = NewRefusal("version rollback")
	// ErrMixAndMatch means a version differs from the one pinned by the
	// timestamp or snapshot (metadata from different repository states).
	ErrMixAndMatch = NewRefusal("version does not match pinned version (mix-and-match?)")
	// ErrLength means data is longer or shorter than its declared length.
	ErrLength = NewRefusal("length mismatch")
	// ErrTooLarge means data exceeded a size limit (endless data attack?). It
	// wraps ErrLength.
	ErrTooLarge = fmt.Errorf("size limit exceeded: %w", ErrLength)
	// ErrHash means data does not match its declared hash.
	ErrHash = NewRefusal("hash mismatch")
	// ErrUnsupportedHash means no declared hash algorithm is supported, so the
	// data cannot be verified.
	ErrUnsupportedHash = NewRefusal("no supported hash algorithm")
	// ErrNotFound means the Source has no such file (HTTP 404). Sources must
	// return an error wrapping it. It is not a verification failure.
	ErrNotFound = errors.New("not found")
	// ErrTargetNotFound means no trusted role lists the target path.
	ErrTargetNotFound = NewRefusal("target not found")
	// ErrOutsideDelegation means the target is listed only by a role whose
	// delegation does not cover its path: a delegated key signed outside its
	// namespace, which the lookup never trusts (spec 5.6.7.2).
	ErrOutsideDelegation = NewRefusal("target is outside the signer's delegation")
	// ErrNotRefreshed means Client.Refresh has not completed successfully.
	ErrNotRefreshed = errors.New("metadata not refreshed")
	// ErrInvalidName means a store name, role name or target path is unsafe.
	ErrInvalidName = NewRefusal("invalid name")
)
