package rollout

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/airlockfw/airlock/release"
)

// Limits of device filters.
const (
	// MaxFilterLength is the longest filter string, in bytes.
	MaxFilterLength = 1024
	// MaxFilterTerms is the largest number of terms in a filter.
	MaxFilterTerms = 16
	// MaxFilterValueLength is the longest value of one term, in bytes.
	MaxFilterValueLength = 128
)

// ErrInvalidFilter is wrapped by every error returned by [ParseFilter].
var ErrInvalidFilter = errors.New("invalid filter")

// Filter fields.
const (
	FieldModel   = "model"
	FieldHWRev   = "hw_rev"
	FieldChannel = "channel"
	FieldVersion = "version"
	FieldProduct = "product"
	FieldTag     = "tag"
)

// Op is a comparison operator of a filter term.
type Op string

// Filter operators. Ordering operators apply to hw_rev (integers) and
// version (SemVer precedence) only.
const (
	OpEQ Op = "="
	OpNE Op = "!="
	OpLT Op = "<"
	OpLE Op = "<="
	OpGT Op = ">"
	OpGE Op = ">="
)

// Term is one condition of a Filter.
type Term struct {
	Field string
	Op    Op
	Value string

	hwRev   uint32          // parsed Value for hw_rev
	version release.Version // parsed Value for version
}

// String returns the term as ParseFilter accepts it.
func (t Term) String() string { return t.Field + string(t.Op) + t.Value }

// Filter selects devices: every term must hold. The zero Filter selects
// every device.
type Filter struct {
	Terms []Term
}

// Device is what a Filter looks at: a device's self-reported inventory
// and the tags the operator gave it.
type Device struct {
	Model   string
	HWRev   uint32
	Channel string   // "" means release.DefaultChannel
	Product string   // product ID
	Version string   // running version, "" if unknown (factory-fresh)
	Tags    []string // operator-assigned tags and groups
}

// ParseFilter parses a device filter: terms separated by spaces, each
// FIELD OP VALUE without spaces, all of which must hold, for example
// "model=x1 hw_rev>=2 channel=stable version<1.1.0 tag=lab". Fields are
// model, hw_rev, channel, version, product and tag. Operators are =, !=,
// <, <=, > and >=; the ordering ones only for hw_rev (a decimal uint32) and
// version (a SemVer version, compared by precedence). "tag=lab" holds when
// the device has the tag lab, "tag!=lab" when it has not. A version term
// never holds for a device whose version is unknown. The empty filter
// selects every device. At most MaxFilterTerms terms and MaxFilterLength
// bytes are accepted, and a term may appear only once.
func ParseFilter(s string) (Filter, error) {
	if len(s) > MaxFilterLength {
		return Filter{}, fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidFilter, len(s), MaxFilterLength)
	}
	fields := strings.Fields(s)
	if len(fields) > MaxFilterTerms {
		return Filter{}, fmt.Errorf("%w: %d terms, the limit is %d", ErrInvalidFilter, len(fields), MaxFilterTerms)
	}
	var f Filter
	for _, raw := range fields {
		t, err := parseTerm(raw)
		if err != nil {
			return Filter{}, fmt.Errorf("%w: term %q: %w", ErrInvalidFilter, truncate(raw), err)
		}
		if slices.ContainsFunc(f.Terms, func(o Term) bool { return o.String() == t.String() }) {
			return Filter{}, fmt.Errorf("%w: term %q appears twice", ErrInvalidFilter, truncate(raw))
		}
		f.Terms = append(f.Terms, t)
	}
	return f, nil
}

// ops in the order parseTerm tries them: two-byte operators first.
var ops = []Op{OpNE, OpLE, OpGE, OpEQ, OpLT, OpGT}

func parseTerm(raw string) (Term, error) {
	i := strings.IndexAny(raw, "=!<>")
	if i < 0 {
		return Term{}, errors.New("want FIELD OP VALUE, such as model=x1")
	}
	t := Term{Field: raw[:i]}
	for _, op := range ops {
		if strings.HasPrefix(raw[i:], string(op)) {
			t.Op, t.Value = op, raw[i+len(op):]
			break
		}
	}
	if t.Op == "" {
		return Term{}, errors.New("unknown operator (want =, !=, <, <=, > or >=)")
	}
	if t.Value == "" {
		return Term{}, errors.New("empty value")
	}
	if len(t.Value) > MaxFilterValueLength {
		return Term{}, fmt.Errorf("value is %d bytes long, the limit is %d", len(t.Value), MaxFilterValueLength)
	}
	if strings.ContainsAny(t.Value, "=!<>") {
		return Term{}, errors.New("value contains an operator character")
	}
	ordered := false
	switch t.Field {
	case FieldHWRev:
		n, err := strconv.ParseUint(t.Value, 10, 32)
		if err != nil || t.Value[0] == '+' || len(t.Value) > 1 && t.Value[0] == '0' {
			return Term{}, errors.New("hw_rev value is not a decimal uint32 without sign or leading zeros")
		}
		t.hwRev, ordered = uint32(n), true
	case FieldVersion:
		v, err := release.ParseVersion(t.Value)
		if err != nil {
			return Term{}, err
		}
		t.version, ordered = v, true
	case FieldModel:
		if !isModel(t.Value) {
			return Term{}, errors.New("model value does not match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
		}
	case FieldProduct:
		if _, err := release.ParseProduct(t.Value); err != nil {
			return Term{}, err
		}
	case FieldChannel, FieldTag:
		if !isName(t.Value, MaxTagLength) {
			return Term{}, fmt.Errorf("%s value does not match ^[a-z0-9][a-z0-9-]{0,%d}$", t.Field, MaxTagLength-1)
		}
	default:
		return Term{}, fmt.Errorf("unknown field %q (want model, hw_rev, channel, version, product or tag)", truncate(t.Field))
	}
	if !ordered && t.Op != OpEQ && t.Op != OpNE {
		return Term{}, fmt.Errorf("%s only supports = and !=", t.Field)
	}
	return t, nil
}

// MaxTagLength is the longest device tag, in bytes.
const MaxTagLength = 64

// ValidTag reports whether s is a valid device tag: ^[a-z0-9][a-z0-9-]*$,
// at most MaxTagLength bytes.
func ValidTag(s string) bool { return isName(s, MaxTagLength) }

// isModel matches release.Metadata's model rule.
func isModel(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// String returns the filter in the form ParseFilter accepts, "" for the
// filter that selects every device.
func (f Filter) String() string {
	parts := make([]string, len(f.Terms))
	for i, t := range f.Terms {
		parts[i] = t.String()
	}
	return strings.Join(parts, " ")
}

// Match reports whether every term holds for d.
func (f Filter) Match(d Device) bool {
	for _, t := range f.Terms {
		if !t.holds(d) {
			return false
		}
	}
	return true
}

func (t Term) holds(d Device) bool {
	switch t.Field {
	case FieldModel:
		return t.equality(d.Model == t.Value)
	case FieldProduct:
		return t.equality(d.Product == t.Value)
	case FieldChannel:
		ch := d.Channel
		if ch == "" {
			ch = release.DefaultChannel
		}
		return t.equality(ch == t.Value)
	case FieldTag:
		return t.equality(slices.Contains(d.Tags, t.Value))
	case FieldHWRev:
		return t.order(compareUint(d.HWRev, t.hwRev))
	case FieldVersion:
		v, err := release.ParseVersion(d.Version)
		if err != nil {
			return false
		}
		return t.order(release.Compare(v, t.version))
	}
	return false
}

func (t Term) equality(eq bool) bool {
	if t.Op == OpNE {
		return !eq
	}
	return eq
}

// order applies an ordering operator to c, the comparison of the device's
// value with the term's (-1, 0, +1).
func (t Term) order(c int) bool {
	switch t.Op {
	case OpEQ:
		return c == 0
	case OpNE:
		return c != 0
	case OpLT:
		return c < 0
	case OpLE:
		return c <= 0
	case OpGT:
		return c > 0
	case OpGE:
		return c >= 0
	}
	return false
}

func compareUint(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
