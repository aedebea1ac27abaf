package rollout

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxThresholdLength is the longest threshold string ("99.99%"), in bytes.
const MaxThresholdLength = 7

// ErrInvalidThreshold is wrapped by every error returned by [ParseThreshold].
var ErrInvalidThreshold = errors.New("invalid threshold")

// Threshold is a percentage in hundredths of a percent (basis points):
// 0 is 0%, 9500 is 95%, 10000 is 100%.
type Threshold int

// Full is 100%.
const Full Threshold = 10000

// ParseThreshold parses a percentage from "0%" to "100%" with at most two
// decimals ("99.5%", "0.25%"): decimal digits, no sign, no leading zeros
// (except "0.x"), no trailing zeros after the point, and the "%" sign.
func ParseThreshold(s string) (Threshold, error) {
	fail := func(why string) (Threshold, error) {
		return 0, fmt.Errorf("%w %q: %s", ErrInvalidThreshold, truncate(s), why)
	}
	if len(s) > MaxThresholdLength {
		return fail(fmt.Sprintf("%d bytes long, the limit is %d", len(s), MaxThresholdLength))
	}
	num, ok := strings.CutSuffix(s, "%")
	if !ok {
		return fail("want a percentage such as 95% or 99.5%")
	}
	intPart, frac, hasFrac := strings.Cut(num, ".")
	n, ok := parseDecimal(intPart, 100)
	if !ok {
		return fail("want a whole number of percent from 0 to 100, without leading zeros")
	}
	t := Threshold(n * 100)
	if hasFrac {
		if frac == "" || len(frac) > 2 || frac[len(frac)-1] == '0' {
			return fail("want one or two decimals, without trailing zeros")
		}
		for i := 0; i < len(frac); i++ {
			if frac[i] < '0' || frac[i] > '9' {
				return fail("the decimals are not digits")
			}
		}
		d, _ := strconv.Atoi(frac)
		if len(frac) == 1 {
			d *= 10
		}
		t += Threshold(d)
	}
	if t > Full {
		return fail("more than 100%")
	}
	return t, nil
}

// String returns the threshold in the form ParseThreshold accepts.
func (t Threshold) String() string {
	s := strconv.Itoa(int(t) / 100)
	if f := int(t) % 100; f != 0 {
		d := fmt.Sprintf("%02d", f)
		s += "." + strings.TrimSuffix(d, "0")
	}
	return s + "%"
}

// Of returns t of n devices, rounded up: Threshold(2500).Of(10) is 3.
func (t Threshold) Of(n int) int {
	return int((int64(n)*int64(t) + int64(Full) - 1) / int64(Full))
}

// Reached reports whether part of whole is at least t (any threshold is
// reached when whole is zero; callers check that whole is positive).
func (t Threshold) Reached(part, whole int) bool {
	return int64(part)*int64(Full) >= int64(t)*int64(whole)
}

// Exceeded reports whether part of whole is strictly more than t.
func (t Threshold) Exceeded(part, whole int) bool {
	return int64(part)*int64(Full) > int64(t)*int64(whole)
}

// MarshalText implements encoding.TextMarshaler.
func (t Threshold) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseThreshold.
func (t *Threshold) UnmarshalText(b []byte) error {
	v, err := ParseThreshold(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// truncate shortens an untrusted string for an error message.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
