package release

import (
	"errors"
	"fmt"
)

// Names of the policy checks, in the order Check runs them. They are the
// values of PolicyError.Check.
const (
	CheckEnvironment     = "environment"
	CheckProduct         = "product"
	CheckModel           = "model"
	CheckHWRev           = "hw_rev"
	CheckChannel         = "channel"
	CheckDependency      = "dependency"
	CheckDowngrade       = "version"
	CheckSecurityVersion = "security_version"
)

// Sentinels wrapped by *PolicyError, one per check.
var (
	ErrEnvironment     = errors.New("release is signed for another trust environment")
	ErrProduct         = errors.New("release is for another product")
	ErrModel           = errors.New("release is not for this device model")
	ErrHWRev           = errors.New("release does not support this hardware revision")
	ErrChannel         = errors.New("release is on another channel")
	ErrDependency      = errors.New("release dependency not satisfied")
	ErrDowngrade       = errors.New("release is not newer than the running version")
	ErrSecurityVersion = errors.New("release security version is below the anti-rollback counter")
)

// PolicyError is a failed policy check. It wraps the check's sentinel
// (ErrModel for CheckModel, and so on).
type PolicyError struct {
	Check string // one of the Check* constants
	Msg   string // what the release requires and what the device has
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("policy check %q failed: %s", e.Check, e.Msg)
}

// Unwrap returns the sentinel of e.Check, or nil for an unknown check.
func (e *PolicyError) Unwrap() error {
	switch e.Check {
	case CheckEnvironment:
		return ErrEnvironment
	case CheckProduct:
		return ErrProduct
	case CheckModel:
		return ErrModel
	case CheckHWRev:
		return ErrHWRev
	case CheckChannel:
		return ErrChannel
	case CheckDependency:
		return ErrDependency
	case CheckDowngrade:
		return ErrDowngrade
	case CheckSecurityVersion:
		return ErrSecurityVersion
	}
	return nil
}

// Device is the state of a device that Check compares a release against.
// It comes from the device itself and is trusted.
type Device struct {
	Model           string
	HWRev           uint32
	Channel         string             // "" means DefaultChannel
	Product         string             // the product ID the device belongs to
	Current         *Version           // running version, nil if none (factory-fresh)
	SecurityCounter uint64             // anti-rollback counter value
	Components      map[string]Version // installed versions of other components (for depends)
	Environment     string             // the environment of the device's root ("" = not recorded)
}

// CheckOptions are the device operator's choices for one Check. The zero
// value is the safe default.
type CheckOptions struct {
	// AllowReinstallOrDowngrade permits installing a version that is not
	// newer than the running one. It is only honoured when the signed
	// metadata also sets AllowDowngrade: the vendor's signature must
	// authorize the downgrade, the operator's flag alone never does. It
	// never bypasses the security version check.
	AllowReinstallOrDowngrade bool
}

// Check decides whether device d may install the release described by m.
// A device runs it on verified metadata BEFORE it reads any payload byte.
//
// The checks run in a fixed order and the first failure is returned as a
// *PolicyError: product, model, hw_rev, channel, dependency, version
// (strictly newer than the running version, unless m.AllowDowngrade and
// opt.AllowReinstallOrDowngrade are both set), security_version (at least
// the anti-rollback counter; never overridable). Invalid metadata (see
// Metadata.Validate) is rejected first with an error wrapping
// ErrInvalidMetadata.
func Check(m *Metadata, d Device, opt CheckOptions) error {
	if err := m.Validate(); err != nil {
		return err
	}
	fail := func(check, format string, args ...any) error {
		return &PolicyError{Check: check, Msg: fmt.Sprintf(format, args...)}
	}
	if m.Environment != "" && d.Environment != "" && m.Environment != d.Environment {
		return fail(CheckEnvironment, "release is signed for the %s environment, this device trusts only %s", m.Environment, d.Environment)
	}
	if m.Product.String() != d.Product {
		return fail(CheckProduct, "release is for product %q, device is %q", m.Product, d.Product)
	}
	found := false
	for _, model := range m.Models {
		if model == d.Model {
			found = true
			break
		}
	}
	if !found {
		return fail(CheckModel, "release is for models %q, device is %q", m.Models, d.Model)
	}
	if !m.HWRev.Contains(d.HWRev) {
		return fail(CheckHWRev, "release is for hardware revisions %q, device is %d", m.HWRev, d.HWRev)
	}
	devChannel := d.Channel
	if devChannel == "" {
		devChannel = DefaultChannel
	}
	if m.ChannelOrDefault() != devChannel {
		return fail(CheckChannel, "release is on channel %q, device follows %q", m.ChannelOrDefault(), devChannel)
	}
	for _, dep := range m.Depends {
		have, ok := d.Components[dep.Component]
		if !ok {
			return fail(CheckDependency, "release requires %q >= %q, device has no such component", dep.Component, dep.MinVersion)
		}
		if Compare(have, dep.MinVersion) < 0 {
			return fail(CheckDependency, "release requires %q >= %q, device has %q", dep.Component, dep.MinVersion, have)
		}
	}
	if d.Current != nil && Compare(m.Version, *d.Current) <= 0 {
		if !m.AllowDowngrade || !opt.AllowReinstallOrDowngrade {
			why := "the metadata does not allow downgrade"
			if m.AllowDowngrade {
				why = "the metadata allows downgrade but the device did not ask for it"
			}
			return fail(CheckDowngrade, "release version %q is not newer than running version %q and %s", m.Version, d.Current, why)
		}
	}
	if uint64(m.SecurityVersion) < d.SecurityCounter {
		return fail(CheckSecurityVersion, "release security version %d is below the device anti-rollback counter %d (this is a rollback attempt or a mis-signed release; it cannot be overridden)", m.SecurityVersion, d.SecurityCounter)
	}
	return nil
}
