package release

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits of hardware-revision ranges.
const (
	// MaxHWRangeComparators is the largest number of comparators in a range.
	MaxHWRangeComparators = 8
	// MaxHWRangeLength is the longest range string, in bytes.
	MaxHWRangeLength = 128
)

// ErrInvalidHWRange is wrapped by every error returned by [ParseHWRange].
var ErrInvalidHWRange = errors.New("invalid hardware revision range")

type hwOp uint8

const (
	opAny hwOp = iota // "*"
	opEQ              // "=" or bare number
	opNE              // "!="
	opLT              // "<"
	opLE              // "<="
	opGT              // ">"
	opGE              // ">="
)

var hwOpStrings = [...]string{opAny: "*", opEQ: "=", opNE: "!=", opLT: "<", opLE: "<=", opGT: ">", opGE: ">="}

type hwComparator struct {
	op  hwOp
	rev uint32
}

func (c hwComparator) String() string {
	if c.op == opAny {
		return "*"
	}
	return hwOpStrings[c.op] + strconv.FormatUint(uint64(c.rev), 10)
}

func (c hwComparator) holds(rev uint32) bool {
	switch c.op {
	case opEQ:
		return rev == c.rev
	case opNE:
		return rev != c.rev
	case opLT:
		return rev < c.rev
	case opLE:
		return rev <= c.rev
	case opGT:
		return rev > c.rev
	case opGE:
		return rev >= c.rev
	}
	return true // opAny
}

// HWRange is a set of hardware revisions (non-negative integers): a list of
// comparators that must all hold. The zero HWRange contains every revision.
type HWRange struct {
	cmps []hwComparator
}

// ParseHWRange parses a hardware-revision range: comparators separated by
// single spaces (leading and trailing spaces are trimmed), each one of
// ">=N", ">N", "<=N", "<N", "=N", "!=N", "N" (same as "=N"), or "*" (any
// revision, only on its own). N is a decimal uint32 without sign or leading
// zeros. At most [MaxHWRangeComparators] comparators and [MaxHWRangeLength]
// bytes are accepted, and a range no revision can satisfy (">4 <2") is
// rejected as a mistake.
func ParseHWRange(s string) (HWRange, error) {
	if len(s) > MaxHWRangeLength {
		return HWRange{}, fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidHWRange, len(s), MaxHWRangeLength)
	}
	fail := func(format string, args ...any) (HWRange, error) {
		return HWRange{}, fmt.Errorf("%w %q: %s", ErrInvalidHWRange, s, fmt.Sprintf(format, args...))
	}
	t := strings.Trim(s, " ")
	if t == "" {
		return fail(`empty (use "*" for any revision)`)
	}
	parts := strings.Split(t, " ")
	if len(parts) > MaxHWRangeComparators {
		return fail("%d comparators, the limit is %d", len(parts), MaxHWRangeComparators)
	}
	r := HWRange{cmps: make([]hwComparator, 0, len(parts))}
	for _, p := range parts {
		if p == "" {
			return fail("empty comparator (comparators are separated by one space)")
		}
		if p == "*" {
			if len(parts) != 1 {
				return fail(`"*" must be the only comparator`)
			}
			r.cmps = append(r.cmps, hwComparator{op: opAny})
			continue
		}
		var c hwComparator
		num := p
		switch {
		case strings.HasPrefix(p, ">="):
			c.op, num = opGE, p[2:]
		case strings.HasPrefix(p, "<="):
			c.op, num = opLE, p[2:]
		case strings.HasPrefix(p, "!="):
			c.op, num = opNE, p[2:]
		case strings.HasPrefix(p, ">"):
			c.op, num = opGT, p[1:]
		case strings.HasPrefix(p, "<"):
			c.op, num = opLT, p[1:]
		case strings.HasPrefix(p, "="):
			c.op, num = opEQ, p[1:]
		default:
			c.op = opEQ
		}
		if num == "" {
			return fail("comparator %q has no revision (write the operator and number without a space)", p)
		}
		if !isNumeric(num) {
			return fail("comparator %q: want an operator (>=, >, <=, <, =, !=) and a decimal revision", p)
		}
		if len(num) > 1 && num[0] == '0' {
			return fail("comparator %q: revision has a leading zero", p)
		}
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return fail("comparator %q: revision does not fit in 32 bits", p)
		}
		c.rev = uint32(n)
		r.cmps = append(r.cmps, c)
	}
	if !r.satisfiable() {
		return fail("no hardware revision satisfies it")
	}
	return r, nil
}

// satisfiable reports whether some uint32 satisfies every comparator.
func (r HWRange) satisfiable() bool {
	lo, hi := uint64(0), uint64(1<<32-1)
	for _, c := range r.cmps {
		v := uint64(c.rev)
		switch c.op {
		case opEQ:
			lo, hi = max(lo, v), min(hi, v)
		case opGE:
			lo = max(lo, v)
		case opGT:
			lo = max(lo, v+1)
		case opLE:
			hi = min(hi, v)
		case opLT:
			if v == 0 {
				return false
			}
			hi = min(hi, v-1)
		}
	}
	if lo > hi {
		return false
	}
	// The interval [lo, hi] is empty only if the != comparators exclude all
	// of it, which needs at least hi-lo+1 distinct excluded values in it.
	excluded := map[uint32]bool{}
	for _, c := range r.cmps {
		if c.op == opNE && uint64(c.rev) >= lo && uint64(c.rev) <= hi {
			excluded[c.rev] = true
		}
	}
	return uint64(len(excluded)) < hi-lo+1
}

// Contains reports whether rev satisfies every comparator of r. The zero
// HWRange contains every revision.
func (r HWRange) Contains(rev uint32) bool {
	for _, c := range r.cmps {
		if !c.holds(rev) {
			return false
		}
	}
	return true
}

// IsAny reports whether r contains every revision without restriction: the
// zero HWRange or "*".
func (r HWRange) IsAny() bool {
	return len(r.cmps) == 0 || len(r.cmps) == 1 && r.cmps[0].op == opAny
}

// String returns the canonical form of r: comparators with explicit
// operators, separated by single spaces ("3" becomes "=3"). The zero HWRange
// returns "", "*" returns "*". ParseHWRange(r.String()) returns r.
func (r HWRange) String() string {
	s := make([]string, len(r.cmps))
	for i, c := range r.cmps {
		s[i] = c.String()
	}
	return strings.Join(s, " ")
}

// MarshalText implements [encoding.TextMarshaler], returning String.
func (r HWRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler]: an empty text is the
// zero (any) range, anything else goes through [ParseHWRange].
func (r *HWRange) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = HWRange{}
		return nil
	}
	p, err := ParseHWRange(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}
