package verify

import (
	"context"
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/trust"
)

// Offline bundles and freshness (docs/bundle-format.md, "Freshness").
//
// A bundle is a copy of the repository's metadata made at one time. Online,
// the timestamp (one day by default) bounds how long an attacker can hide
// new releases from a device (a freeze attack); a bundle carried on a USB
// stick would die with it. So by default a bundle is verified with every
// TUF check except the expiry of its timestamp and snapshot: it installs
// until its root, targets or release role expires (months), never below the
// device's rollback floors or anti-rollback counter. Config.RequireTimestamp
// (device config bundle_freshness = "timestamp") restores the online rule.
//
// A bundle older than what the device already trusts (its metadata fails
// with a version rollback) is not refused outright: its release is looked
// up in the trusted metadata, and if that still lists it, the payload is
// checked against the trusted target. Otherwise the bundle is stale.

var (
	// ErrBundleExpired is wrapped when a bundle's metadata has expired: it
	// must be re-created from a re-signed repository.
	ErrBundleExpired = trust.NewRefusal("the bundle is too old")
	// ErrStaleBundle is wrapped when a bundle's metadata is older than the
	// device's and the device's metadata no longer lists its release.
	ErrStaleBundle = trust.NewRefusal("the bundle predates the metadata this device trusts")
)

// bundleError explains a refusal of a bundle in the operator's terms; the
// cause stays in the chain.
type bundleError struct {
	sentinel error
	advice   string
	cause    error
}

func (e *bundleError) Error() string {
	return fmt.Sprintf("%v: %v; %s", e.sentinel, e.cause, e.advice)
}

func (e *bundleError) Unwrap() []error { return []error{e.sentinel, e.cause} }

// recreate is the advice for a bundle that cannot be installed as it is.
const recreate = "re-create it from the current repository (airlock bundle create --force)"

// explainBundle turns the refusal of a bundle's release into the operator's
// terms: its metadata expired ("too old"), or it is stale and the trusted
// metadata does not list targetPath.
func (s *Session) explainBundle(targetPath string, err error) error {
	switch {
	case s.bundle == nil:
		return err
	case errors.Is(err, trust.ErrExpired):
		return &bundleError{ErrBundleExpired, "renew the expired role (airlock repo renew), publish, and " + recreate, err}
	case s.stale != nil && errors.Is(err, trust.ErrTargetNotFound):
		return &bundleError{ErrStaleBundle, recreate, fmt.Errorf("%w, and the metadata this device trusts does not list %s", s.stale, targetPath)}
	case s.stale != nil && errors.Is(err, ErrVerification):
		return &bundleError{ErrStaleBundle, recreate, fmt.Errorf("%w, and %s does not verify against the metadata this device trusts: %w", s.stale, targetPath, err)}
	}
	return err
}

// openTrusted replaces the session's client with one that verifies the
// bundle's release against the trusted metadata in st (the bundle serves
// only the payload), after the bundle's own metadata was refused as older
// (stale). It fails when the trusted metadata cannot be re-verified.
func (s *Session) openTrusted(ctx context.Context, st trust.Store, cfg trust.Config, stale error) error {
	c, err := trust.New(st, trust.TrustedSource(st, s.bundle), cfg)
	if err == nil {
		err = c.Refresh(ctx)
	}
	if err != nil {
		return &bundleError{ErrStaleBundle, recreate, fmt.Errorf("%w (and the trusted metadata does not verify: %w)", stale, err)}
	}
	s.client, s.stale = c, stale
	return nil
}
