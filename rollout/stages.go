package rollout

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits of stage lists.
const (
	// MaxStages is the largest number of stages in a rollout.
	MaxStages = 16
	// MaxStagesLength is the longest stage list string, in bytes.
	MaxStagesLength = 512
	// MaxStageNameLength is the longest stage name, in bytes.
	MaxStageNameLength = 32
	// MaxStageCount is the largest absolute device count of a stage.
	MaxStageCount = 10_000_000
)

// ErrInvalidStages is wrapped by every error returned by [ParseStages].
var ErrInvalidStages = errors.New("invalid stages")

// Stage is one step of a rollout. Its size is cumulative: the number of
// devices of the rollout (this stage and every earlier one) once the stage
// is fully assigned. It is either an absolute Count ("canary:10": ten
// devices in total) or a Percent of the eligible fleet ("25%": a quarter of
// the devices that match the filter). Exactly one of Count and Percent is
// non-zero.
type Stage struct {
	Name    string    // [a-z0-9][a-z0-9-]*, at most MaxStageNameLength bytes; "" if unnamed
	Count   int       // absolute cumulative device count, 1 to MaxStageCount
	Percent Threshold // cumulative share of the eligible fleet, above 0%
}

// String returns the stage in the form ParseStages accepts.
func (s Stage) String() string {
	v := s.Percent.String()
	if s.Count > 0 {
		v = strconv.Itoa(s.Count)
	}
	if s.Name != "" {
		return s.Name + ":" + v
	}
	return v
}

// Label returns the stage's name, or "stage N" (1-based) when it has none.
func (s Stage) Label(index int) string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("stage %d", index+1)
}

// Target returns the cumulative number of devices the stage at index i
// wants, given the number of eligible devices (those matching the filter):
// its Count, or its Percent of eligible rounded up, never more than
// eligible and never less than the previous stage's target.
func Target(stages []Stage, i, eligible int) int {
	if i < 0 || i >= len(stages) || eligible <= 0 {
		return 0
	}
	var t int
	if s := stages[i]; s.Count > 0 {
		t = s.Count
	} else {
		t = s.Percent.Of(eligible)
	}
	if i > 0 {
		t = max(t, Target(stages, i-1, eligible))
	}
	return min(t, eligible)
}

// ParseStages parses a comma-separated stage list such as
// "canary:10,5%,25%,100%". Each stage is an optional "NAME:" followed by a
// device count (a decimal integer, 1 to MaxStageCount) or a percentage of
// the eligible fleet (see ParseThreshold; above 0%). Counts must strictly
// increase from one count stage to the next, and percentages from one
// percentage stage to the next; names must be unique. At most MaxStages
// stages and MaxStagesLength bytes are accepted.
func ParseStages(s string) ([]Stage, error) {
	if len(s) > MaxStagesLength {
		return nil, fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidStages, len(s), MaxStagesLength)
	}
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidStages)
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxStages {
		return nil, fmt.Errorf("%w: %d stages, the limit is %d", ErrInvalidStages, len(parts), MaxStages)
	}
	stages := make([]Stage, 0, len(parts))
	lastCount, lastPercent := 0, Threshold(0)
	for i, p := range parts {
		fail := func(format string, args ...any) ([]Stage, error) {
			return nil, fmt.Errorf("%w: stage %d %q: %s", ErrInvalidStages, i+1, p, fmt.Sprintf(format, args...))
		}
		var st Stage
		v := p
		if name, rest, ok := strings.Cut(p, ":"); ok {
			if !isName(name, MaxStageNameLength) {
				return fail("name does not match ^[a-z0-9][a-z0-9-]{0,%d}$", MaxStageNameLength-1)
			}
			for _, prev := range stages {
				if prev.Name == name {
					return fail("duplicate stage name")
				}
			}
			st.Name, v = name, rest
		}
		if strings.HasSuffix(v, "%") {
			pct, err := ParseThreshold(v)
			if err != nil {
				return fail("%v", err)
			}
			if pct == 0 {
				return fail("a stage of 0%% assigns no device")
			}
			if pct <= lastPercent {
				return fail("%s is not more than the previous percentage %s", pct, lastPercent)
			}
			st.Percent, lastPercent = pct, pct
		} else {
			n, ok := parseDecimal(v, MaxStageCount)
			if !ok || n == 0 {
				return fail("want a device count from 1 to %d or a percentage such as 25%%", MaxStageCount)
			}
			if n <= lastCount {
				return fail("%d devices is not more than the previous count %d", n, lastCount)
			}
			st.Count, lastCount = n, n
		}
		stages = append(stages, st)
	}
	return stages, nil
}

// FormatStages returns stages in the form ParseStages accepts.
func FormatStages(stages []Stage) string {
	parts := make([]string, len(stages))
	for i, s := range stages {
		parts[i] = s.String()
	}
	return strings.Join(parts, ",")
}

// parseDecimal parses a decimal integer of at most max, without sign or
// leading zeros.
func parseDecimal(s string, max int) (int, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' || len(s) > len(strconv.Itoa(max)) {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return 0, false
	}
	return n, true
}

// isName reports whether s matches ^[a-z0-9][a-z0-9-]*$ and has at most max
// bytes.
func isName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return false
		}
	}
	return true
}
