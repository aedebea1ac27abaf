package release

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxVersionLength is the longest version string accepted, in bytes.
const MaxVersionLength = 128

// ErrInvalidVersion is wrapped by every error returned by [ParseVersion].
var ErrInvalidVersion = errors.New("invalid version")

// Version is a Semantic Versioning 2.0.0 version (https://semver.org).
//
// The zero Version is not a valid version: it is what an unset field holds,
// [Version.IsZero] reports it, and String returns "". Version values are
// comparable with ==, which compares the exact strings (build metadata
// included); use [Compare] for precedence.
type Version struct {
	s                   string // the original, valid, string
	major, minor, patch uint64
	pre                 string // pre-release identifiers, without the '-'
	build               string // build metadata, without the '+'
}

// ParseVersion parses s strictly as a SemVer 2.0.0 version: MAJOR.MINOR.PATCH
// with optional -PRERELEASE and +BUILD, no leading "v", no leading zeros in
// numeric parts or numeric pre-release identifiers, no empty identifiers,
// identifiers only of [0-9A-Za-z-], numbers that fit in a uint64, and at most
// [MaxVersionLength] bytes.
func ParseVersion(s string) (Version, error) {
	if len(s) > MaxVersionLength {
		return Version{}, fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidVersion, len(s), MaxVersionLength)
	}
	fail := func(format string, args ...any) (Version, error) {
		return Version{}, fmt.Errorf("%w %q: %s", ErrInvalidVersion, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return fail("empty")
	}
	v := Version{s: s}
	rest := s
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		v.build = rest[i+1:]
		rest = rest[:i]
		if err := checkIdentifiers(v.build, false); err != nil {
			return fail("build metadata: %v", err)
		}
	}
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		v.pre = rest[i+1:]
		rest = rest[:i]
		if err := checkIdentifiers(v.pre, true); err != nil {
			return fail("pre-release: %v", err)
		}
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return fail("want MAJOR.MINOR.PATCH, got %d dot-separated parts", len(parts))
	}
	names := [3]string{"major", "minor", "patch"}
	nums := [3]*uint64{&v.major, &v.minor, &v.patch}
	for i, p := range parts {
		if !isNumeric(p) {
			return fail("%s %q is not a decimal number", names[i], p)
		}
		if len(p) > 1 && p[0] == '0' {
			return fail("%s %q has a leading zero", names[i], p)
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return fail("%s %q does not fit in 64 bits", names[i], p)
		}
		*nums[i] = n
	}
	return v, nil
}

// MustParseVersion is like [ParseVersion] but panics on error. It is meant for
// tests and constants in code, never for untrusted input.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// checkIdentifiers checks a dot-separated list of SemVer identifiers.
func checkIdentifiers(s string, pre bool) error {
	if s == "" {
		return errors.New("empty")
	}
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return errors.New("empty identifier")
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return fmt.Errorf("identifier %q has a character other than [0-9A-Za-z-]", id)
			}
		}
		// semver.org item 9: numeric pre-release identifiers MUST NOT include
		// leading zeros. Build identifiers (item 10) may.
		if pre && isNumeric(id) && len(id) > 1 && id[0] == '0' {
			return fmt.Errorf("numeric identifier %q has a leading zero", id)
		}
	}
	return nil
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String returns the version exactly as it was parsed.
func (v Version) String() string { return v.s }

// IsZero reports whether v is the zero Version (unset).
func (v Version) IsZero() bool { return v.s == "" }

// Major returns the major version number.
func (v Version) Major() uint64 { return v.major }

// Minor returns the minor version number.
func (v Version) Minor() uint64 { return v.minor }

// Patch returns the patch version number.
func (v Version) Patch() uint64 { return v.patch }

// Prerelease returns the pre-release identifiers without the leading '-',
// or "" if there are none.
func (v Version) Prerelease() string { return v.pre }

// Build returns the build metadata without the leading '+', or "".
func (v Version) Build() string { return v.build }

// MarshalText implements [encoding.TextMarshaler]. The zero Version cannot be
// marshaled.
func (v Version) MarshalText() ([]byte, error) {
	if v.IsZero() {
		return nil, fmt.Errorf("%w: zero version", ErrInvalidVersion)
	}
	return []byte(v.s), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseVersion].
func (v *Version) UnmarshalText(b []byte) error {
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// Compare returns -1, 0 or +1 as a has lower, equal or higher precedence
// than b, per semver.org item 11: major, minor and patch compare numerically;
// a pre-release has lower precedence than the release; pre-release
// identifiers compare left to right, numeric ones numerically, alphanumeric
// ones in ASCII order, numeric lower than alphanumeric, and a shorter list
// lower when all its identifiers are equal. Build metadata is ignored, so
// 1.0.0+a and 1.0.0+b compare equal.
func Compare(a, b Version) int {
	for _, p := range [3][2]uint64{{a.major, b.major}, {a.minor, b.minor}, {a.patch, b.patch}} {
		if p[0] != p[1] {
			if p[0] < p[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case a.pre == b.pre:
		return 0
	case a.pre == "":
		return 1
	case b.pre == "":
		return -1
	}
	ai, bi := strings.Split(a.pre, "."), strings.Split(b.pre, ".")
	for i := 0; i < len(ai) && i < len(bi); i++ {
		if c := compareIdentifier(ai[i], bi[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(ai) < len(bi):
		return -1
	case len(ai) > len(bi):
		return 1
	}
	return 0
}

func compareIdentifier(x, y string) int {
	xn, yn := isNumeric(x), isNumeric(y)
	switch {
	case xn && yn:
		// No leading zeros (checked when parsing), so a longer number is
		// larger and equal lengths compare as strings, without overflow.
		if len(x) != len(y) {
			if len(x) < len(y) {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	case xn:
		return -1
	case yn:
		return 1
	}
	return strings.Compare(x, y)
}
