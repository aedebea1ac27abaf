package verify

import (
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/tlog"
	"github.com/airlockfw/airlock/trust"
)

// Names of the checks, in pipeline order: the values of Error.Check. The
// device and `airlock verify` name a refusal with the same one.
const (
	CheckFormat    = "format"    // the offline bundle's framing: magic, limits, digests, trailer
	CheckState     = "state"     // device only: the device can install now (no trial pending, state readable)
	CheckMetadata  = "metadata"  // TUF refresh with the trusted state; the trust environment
	CheckTarget    = "target"    // target lookup through the delegations; the listed hashes
	CheckRelease   = "release"   // the Airlock release metadata of the target
	CheckSelection = "selection" // choosing a release of a product from a repository
	CheckPolicy    = "policy"    // environment, product, model, hw_rev, channel, dependencies, versions
	// CheckTransparency: the release is in the transparency log the trusted
	// root names, under a witnessed checkpoint consistent with the device's.
	CheckTransparency = "transparency"
	CheckSlot         = "slot"    // the installed image fits the slot, the payload the transport limit; device only: the slot can be written
	CheckPayload      = "payload" // length and digests of the streamed payload and the installed image
)

var (
	// ErrVerification is the parent of every refusal: *Error and the
	// sentinels of package trust wrap it, so a caller tells "refused" from
	// "could not fetch" with one errors.Is.
	ErrVerification = trust.ErrVerification
	// ErrEnvironment is wrapped when the offered metadata belongs to another
	// trust environment than the factory root.
	ErrEnvironment = trust.NewRefusal("metadata is from another trust environment")
	// ErrHashPolicy is wrapped when a target lists a hash of an unknown
	// algorithm, a digest of the wrong size, or neither sha256 nor sha512.
	ErrHashPolicy = trust.NewRefusal("target hashes refused")
	// ErrSlotTooSmall is wrapped when the installed (decompressed) image
	// does not fit the slot.
	ErrSlotTooSmall = trust.NewRefusal("the image does not fit the slot")
	// ErrPayloadTooLarge is wrapped when a target's payload is over the
	// transport limit (MaxPayloadSize). A bundle that declares such a
	// payload is refused earlier, by the format check (bundle.ErrLimit).
	ErrPayloadTooLarge = trust.NewRefusal("the payload is too large")
	// ErrNoRelease is wrapped when no release of the product fits (Select).
	ErrNoRelease = trust.NewRefusal("no release fits")
	// ErrNoDelta is wrapped when a delta bundle's release signs no delta
	// from the bundle's base release.
	ErrNoDelta = trust.NewRefusal("the release signs no delta from this base")
	// ErrDeltaBase is wrapped when a delta bundle is for another base
	// release than the one the device runs.
	ErrDeltaBase = trust.NewRefusal("the delta is for another running release")
)

// Error is a refusal: Check names the stage that refused and Err is the
// cause (an error of package trust, release, bundle or payload, or one of
// this package's sentinels).
type Error struct {
	Check string
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("%s check failed: %v", e.Check, e.Err) }

// Unwrap returns the cause, and ErrVerification when the input was refused
// (as opposed to a stage that could not run because the source failed: a
// network error, a deadline, a missing file).
func (e *Error) Unwrap() []error {
	if refusal(e.Err) {
		return []error{ErrVerification, e.Err}
	}
	return []error{e.Err}
}

func fail(check string, err error) error { return &Error{Check: check, Err: err} }

// ErrUnsupported is wrapped when a release asks for something this device
// does not do (an install kind).
var ErrUnsupported = trust.NewRefusal("unsupported release")

// refusals are the sentinels of the packages below the pipeline that mean
// "this input is refused". Package trust's and this package's sentinels
// wrap ErrVerification themselves.
var refusals = []error{
	release.ErrInvalidMetadata, release.ErrNoMetadata, release.ErrTargetMismatch, release.ErrInvalidProduct,
	release.ErrInvalidTargetPath, release.ErrInvalidVersion, release.ErrInvalidHWRange, release.ErrInvalidDependency,
	release.ErrUnsupportedSchema, release.ErrUnknownField, release.ErrMissingField,
	payload.ErrLength, payload.ErrHash, payload.ErrInstalledLength, payload.ErrInstalledHash, payload.ErrNoHash, payload.ErrCompression,
	payload.ErrFrame, payload.ErrFrameTable, payload.ErrDelta,
	tlog.ErrCheckpoint, tlog.ErrWitnesses, tlog.ErrConsistency, tlog.ErrInclusion, tlog.ErrNotLogged, tlog.ErrStale,
	tlog.ErrPolicy, tlog.ErrProof,
	bundle.ErrMagic, bundle.ErrVersion, bundle.ErrLimit, bundle.ErrTruncated, bundle.ErrMalformed, bundle.ErrHeaderDigest, bundle.ErrTrailer,
}

func refusal(err error) bool {
	if errors.Is(err, ErrVerification) {
		return true
	}
	if _, ok := errors.AsType[*release.PolicyError](err); ok {
		return true
	}
	for _, s := range refusals {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// isFormat reports whether err is about a bundle's framing.
func isFormat(err error) bool {
	for _, s := range []error{bundle.ErrMagic, bundle.ErrVersion, bundle.ErrLimit, bundle.ErrTruncated,
		bundle.ErrMalformed, bundle.ErrHeaderDigest, bundle.ErrTrailer} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
