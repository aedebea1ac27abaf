package cli

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// MaxSizeLength bounds the text ParseSize reads, so that a long run of
// fraction digits cannot make it do unbounded arithmetic.
const MaxSizeLength = 64

// sizeUnits are the units ParseSize accepts, case-sensitive: binary (IEC)
// and decimal (SI) multiples of a byte.
var sizeUnits = []struct {
	name string
	mult int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
}

// ErrSize is the parent of every error ParseSize returns.
var ErrSize = errors.New("invalid size")

// ParseSize parses a size in bytes: a plain decimal byte count ("1048576")
// or a number and a unit with no space between them ("64MiB", "1.5GiB",
// "100kB"). The units are KiB, MiB, GiB and TiB (powers of 1024) and kB,
// MB and GB (powers of 1000), case-sensitive. A fraction is accepted only
// if it lands on a whole byte ("0.5KiB" is 512, "0.1KiB" is refused).
// Signs, leading zeros (which the flag package read as octal), hexadecimal,
// exponents and sizes above math.MaxInt64 are refused. The error, which
// wraps ErrSize, does not repeat s (the flag package prints it).
func ParseSize(s string) (int64, error) {
	bad := func(why string) (int64, error) {
		return 0, fmt.Errorf("%w: %s", ErrSize, why)
	}
	if len(s) > MaxSizeLength {
		return 0, fmt.Errorf("%w: longer than %d characters", ErrSize, MaxSizeLength)
	}
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.name); ok {
			num, mult = n, u.mult
			break
		}
	}
	whole, frac, hasPoint := strings.Cut(num, ".")
	if whole == "" || !digits(whole) || (hasPoint && (frac == "" || !digits(frac))) {
		return bad("want a byte count or a number with a unit (KiB, MiB, GiB, TiB, kB, MB, GB), such as 64MiB")
	}
	if len(whole) > 1 && whole[0] == '0' {
		return bad("leading zeros are not allowed")
	}
	if hasPoint && mult == 1 {
		return bad("a byte count has no fraction")
	}
	// value = (whole.frac) * mult = (whole‖frac) * mult / 10^len(frac),
	// in 128-bit integer arithmetic (math/bits; the device binary carries
	// no math/big code for this). Trailing zeros of the fraction do not
	// change the value; a size has at most 19 significant digits.
	frac = strings.TrimRight(frac, "0")
	sig := strings.TrimLeft(whole+frac, "0")
	switch {
	case len(strings.TrimLeft(whole, "0")) > 19: // >= 10^19 > math.MaxInt64
		return bad(fmt.Sprintf("larger than %d bytes", int64(math.MaxInt64)))
	case len(sig) > 19 || len(frac) > 19:
		return bad("more than 19 significant digits or fraction digits")
	}
	var n uint64
	for i := 0; i < len(sig); i++ {
		n = n*10 + uint64(sig[i]-'0') // at most 19 digits: no overflow
	}
	div := uint64(1)
	for range len(frac) { // len(frac) <= 19: 10^19 < 2^64
		div *= 10
	}
	hi, lo := bits.Mul64(n, uint64(mult))
	if hi >= div {
		return bad(fmt.Sprintf("larger than %d bytes", int64(math.MaxInt64)))
	}
	q, r := bits.Div64(hi, lo, div)
	if r != 0 {
		return bad("not a whole number of bytes")
	}
	if q > math.MaxInt64 {
		return bad(fmt.Sprintf("larger than %d bytes", int64(math.MaxInt64)))
	}
	return int64(q), nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Size is a flag.Value holding a size in bytes, parsed by ParseSize.
type Size int64

// String is the byte count (flag.Value; the flag package records it as the
// default, which the help texts state themselves).
func (s *Size) String() string {
	if s == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*s), 10)
}

func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// SizeFlag defines a size flag on fs with the default value (bytes) and
// returns where its value is stored, as fs.Int64 does.
func SizeFlag(fs *flag.FlagSet, name string, value int64) *int64 {
	p := new(int64)
	*p = value
	fs.Var((*Size)(p), name, "")
	return p
}
