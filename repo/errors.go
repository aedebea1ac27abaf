package repo

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of them, with a
// message that says which check failed.
var (
	ErrNotRepo        = errors.New("not an airlock repository")
	ErrExists         = errors.New("repository already exists")
	ErrConfig         = errors.New("invalid repository configuration")
	ErrKeyInsideRepo  = errors.New("key path is inside the repository directory")
	ErrTooLarge       = errors.New("file too large")
	ErrInvalidOptions = errors.New("invalid options")
	ErrNoDelegation   = errors.New("product has no delegation")
	// ErrUnauthorizedKey: a signer is not one of the keys of the role it
	// is asked to sign for.
	ErrUnauthorizedKey = errors.New("key is not authorized for this role")
	ErrDuplicate       = errors.New("release already exists")
	// ErrDowngrade: a release version is not greater than the newest one.
	ErrDowngrade = errors.New("version is not newer than the newest release")
	ErrNotFound  = errors.New("not found")
	// ErrBelowThreshold is wrapped by *ThresholdError.
	ErrBelowThreshold = errors.New("not enough signatures")
	// ErrPendingRoot: a root rotation is staged and must be published first.
	ErrPendingRoot = errors.New("a root rotation is already staged")
	// ErrMismatch: a carried pending file does not sign the same content as
	// the staged one.
	ErrMismatch = errors.New("pending metadata differs from the staged version")
	// ErrInvalidMetadata: a metadata file in the repository or carried in is
	// malformed or of the wrong type.
	ErrInvalidMetadata = errors.New("invalid metadata")
)

// ThresholdError reports metadata that has fewer valid signatures than its
// role's threshold.
type ThresholdError struct {
	Role string // TUF role name, e.g. "acme.router-x1" or "root"
	What string // what is being approved, e.g. "release acme/router-x1 1.1.0"
	Have int    // valid signatures by distinct authorized keys
	Need int    // the threshold
}

func (e *ThresholdError) Error() string {
	return fmt.Sprintf("%s needs %d signatures, has %d (%d missing)", e.What, e.Need, e.Have, e.Need-e.Have)
}

func (e *ThresholdError) Unwrap() error { return ErrBelowThreshold }
