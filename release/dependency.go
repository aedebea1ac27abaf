package release

import (
	"errors"
	"fmt"
	"strings"
)

// Limits of dependencies.
const (
	// MaxDepends is the largest number of dependencies of one release.
	MaxDepends = 16
	// MaxComponentNameLength is the longest simple component name, in bytes.
	MaxComponentNameLength = 64
	// MaxDependencyLength is the longest "COMPONENT>=VERSION" string.
	MaxDependencyLength = MaxProductLength + 2 + MaxVersionLength
)

// ErrInvalidDependency is wrapped by errors about dependencies.
var ErrInvalidDependency = errors.New("invalid dependency")

// Dependency says that a release needs another component of the device
// (bootloader, modem firmware, another product) at MinVersion or newer.
type Dependency struct {
	// Component is a product ID ("acme/modem-m2") or a simple name matching
	// ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ("bootloader"). It is looked up,
	// exactly, in [Device.Components].
	Component string
	// MinVersion is the lowest acceptable installed version (inclusive).
	MinVersion Version
}

// String returns "COMPONENT>=VERSION", the form ParseDependency accepts.
func (d Dependency) String() string { return d.Component + ">=" + d.MinVersion.String() }

// ParseDependency parses "COMPONENT>=VERSION", e.g. "bootloader>=2.1.0".
// Only ">=" is supported, with no spaces.
func ParseDependency(s string) (Dependency, error) {
	if len(s) > MaxDependencyLength {
		return Dependency{}, fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidDependency, len(s), MaxDependencyLength)
	}
	comp, ver, ok := strings.Cut(s, ">=")
	if !ok {
		return Dependency{}, fmt.Errorf("%w %q: want COMPONENT>=VERSION (only >= is supported)", ErrInvalidDependency, s)
	}
	if err := validComponent(comp); err != nil {
		return Dependency{}, fmt.Errorf("%w %q: %w", ErrInvalidDependency, s, err)
	}
	v, err := ParseVersion(ver)
	if err != nil {
		return Dependency{}, fmt.Errorf("%w %q: %w", ErrInvalidDependency, s, err)
	}
	return Dependency{Component: comp, MinVersion: v}, nil
}

// validComponent checks a dependency component name: a product ID if it
// contains "/", else a simple name.
func validComponent(c string) error {
	if strings.Contains(c, "/") {
		if _, err := ParseProduct(c); err != nil {
			return fmt.Errorf("component: %w", err)
		}
		return nil
	}
	if !isName(c, MaxComponentNameLength) {
		return fmt.Errorf("component %q is neither a product ID nor a name matching ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", c)
	}
	return nil
}

// validate checks a Dependency built in code or decoded from JSON.
func (d Dependency) validate() error {
	if err := validComponent(d.Component); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidDependency, err)
	}
	if d.MinVersion.IsZero() {
		return fmt.Errorf("%w: component %q has no min_version", ErrInvalidDependency, d.Component)
	}
	return nil
}
