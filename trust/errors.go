package trust

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of them (and a
// message saying which role and which check failed); test with errors.Is.
var (
	// ErrMalformed means metadata could not be parsed or violates the format
	// (duplicate JSON keys, wrong _type, unsupported spec_version, bad field).
	ErrMalformed = errors.New("malformed metadata")
	// ErrSignature means a signature check failed.
	ErrSignature = errors.New("signature verification failed")
	// ErrThreshold means fewer distinct trusted keys than the role threshold
	// produced valid signatures. It wraps ErrSignature.
	ErrThreshold = fmt.Errorf("signature threshold not met: %w", ErrSignature)
	// ErrExpired means metadata is expired at the reference time (freeze attack?).
	ErrExpired = errors.New("metadata expired")
	// ErrRollback means a version is lower than one already trusted.
	ErrRollback = errors.New("version rollback")
	// ErrMixAndMatch means a version differs from the one pinned by the
	// timestamp or snapshot (metadata from different repository states).
	ErrMixAndMatch = errors.New("version does not match pinned version (mix-and-match?)")
	// ErrLength means data is longer or shorter than its declared length.
	ErrLength = errors.New("length mismatch")
	// ErrTooLarge means data exceeded a size limit (endless data attack?). It
	// wraps ErrLength.
	ErrTooLarge = fmt.Errorf("size limit exceeded: %w", ErrLength)
	// ErrHash means data does not match its declared hash.
	ErrHash = errors.New("hash mismatch")
	// ErrUnsupportedHash means no declared hash algorithm is supported, so the
	// data cannot be verified.
	ErrUnsupportedHash = errors.New("no supported hash algorithm")
	// ErrNotFound means the Source has no such file (HTTP 404). Sources must
	// return an error wrapping it.
	ErrNotFound = errors.New("not found")
	// ErrTargetNotFound means no trusted role lists the target path.
	ErrTargetNotFound = errors.New("target not found")
	// ErrNotRefreshed means Client.Refresh has not completed successfully.
	ErrNotRefreshed = errors.New("metadata not refreshed")
	// ErrInvalidName means a store name, role name or target path is unsafe.
	ErrInvalidName = errors.New("invalid name")
)
