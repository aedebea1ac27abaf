package rollout

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Limits of maintenance windows.
const (
	// MaxWindowLength is the longest window string, in bytes.
	MaxWindowLength = 256
	// MaxWindowDuration is the longest window duration.
	MaxWindowDuration = 7 * 24 * time.Hour
	// MinWindowDuration is the shortest window duration.
	MinWindowDuration = time.Minute
	// MaxCronListItems is the largest number of comma-separated items in
	// one cron field.
	MaxCronListItems = 60
)

// ErrInvalidWindow is wrapped by every error returned by [ParseWindow].
var ErrInvalidWindow = errors.New("invalid window")

// Window is a recurring maintenance window: it opens at every minute its
// cron schedule matches, in its time zone, and stays open for Duration.
// The zero Window is always open (no window).
type Window struct {
	spec     string // the original string
	fields   [5]uint64
	dom, dow bool // day of month, day of week restricted (not "*")
	Duration time.Duration
	Location *time.Location
}

// cron field bounds: minute, hour, day of month, month, day of week.
var cronBounds = [5]struct {
	name     string
	min, max int
}{{"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 7}}

// ParseWindow parses a maintenance window "CRON,DURATION,TZ", for example
// "0 2 * * *,4h,Europe/Berlin": windows open at 02:00 Berlin time every day
// and last four hours. CRON is a standard five-field schedule (minute hour
// day-of-month month day-of-week; each field "*", a number, a range "a-b",
// a step "*/n" or "a-b/n", or a comma list of those; day of week 0-7 with
// 0 and 7 Sunday; when both day fields are restricted either may match, as
// in cron). DURATION is a Go duration from MinWindowDuration to
// MaxWindowDuration. TZ is an IANA time zone name ("UTC", "Europe/Berlin")
// loaded with time.LoadLocation; "Local" is refused, because the server's
// zone is not the operator's. The empty string is the zero Window.
func ParseWindow(s string) (Window, error) {
	if s == "" {
		return Window{}, nil
	}
	if len(s) > MaxWindowLength {
		return Window{}, fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidWindow, len(s), MaxWindowLength)
	}
	fail := func(format string, args ...any) (Window, error) {
		return Window{}, fmt.Errorf("%w %q: %s", ErrInvalidWindow, truncate(s), fmt.Sprintf(format, args...))
	}
	i := strings.LastIndexByte(s, ',')
	if i < 0 {
		return fail("want CRON,DURATION,TZ such as \"0 2 * * *,4h,UTC\"")
	}
	rest, tz := s[:i], s[i+1:]
	j := strings.LastIndexByte(rest, ',')
	if j < 0 {
		return fail("want CRON,DURATION,TZ such as \"0 2 * * *,4h,UTC\"")
	}
	cron, dur := rest[:j], rest[j+1:]
	w := Window{spec: s}
	d, err := time.ParseDuration(dur)
	if err != nil {
		return fail("duration: %v", err)
	}
	if d < MinWindowDuration || d > MaxWindowDuration {
		return fail("duration %s is outside %s to %s", d, MinWindowDuration, MaxWindowDuration)
	}
	w.Duration = d
	if tz == "" || tz == "Local" || strings.ContainsAny(tz, " \\") || strings.Contains(tz, "..") {
		return fail("time zone %q: want an IANA name such as UTC or Europe/Berlin", tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return fail("time zone: %v", err)
	}
	w.Location = loc
	fs := strings.Split(cron, " ")
	if len(fs) != 5 {
		return fail("cron %q has %d space-separated fields, want 5 (minute hour day-of-month month day-of-week)", cron, len(fs))
	}
	for k, f := range fs {
		bits, err := parseCronField(f, cronBounds[k].min, cronBounds[k].max)
		if err != nil {
			return fail("cron %s field %q: %v", cronBounds[k].name, f, err)
		}
		w.fields[k] = bits
	}
	if w.fields[4]&(1<<7) != 0 { // 7 is Sunday too
		w.fields[4] |= 1
		w.fields[4] &^= 1 << 7
	}
	w.dom, w.dow = !strings.HasPrefix(fs[2], "*"), !strings.HasPrefix(fs[4], "*") // as Vixie cron
	if !w.canMatch() {
		return fail("cron %q never matches a date", cron)
	}
	return w, nil
}

func parseCronField(f string, lo, hi int) (uint64, error) {
	items := strings.Split(f, ",")
	if len(items) > MaxCronListItems {
		return 0, fmt.Errorf("%d list items, the limit is %d", len(items), MaxCronListItems)
	}
	var bits uint64
	for _, it := range items {
		rng, stepStr, hasStep := strings.Cut(it, "/")
		step := 1
		if hasStep {
			n, ok := parseDecimal(stepStr, hi)
			if !ok || n == 0 {
				return 0, fmt.Errorf("step %q is not a number from 1 to %d", stepStr, hi)
			}
			step = n
		}
		var a, b int
		switch {
		case rng == "*":
			a, b = lo, hi
		case strings.Contains(rng, "-"):
			as, bs, _ := strings.Cut(rng, "-")
			var ok1, ok2 bool
			a, ok1 = parseDecimal(as, hi)
			b, ok2 = parseDecimal(bs, hi)
			if !ok1 || !ok2 || a < lo || b < a {
				return 0, fmt.Errorf("range %q is not a-b with %d <= a <= b <= %d", rng, lo, hi)
			}
		default:
			n, ok := parseDecimal(rng, hi)
			if !ok || n < lo {
				return 0, fmt.Errorf("%q is not a number from %d to %d", rng, lo, hi)
			}
			a, b = n, n
			if hasStep {
				b = hi // "a/n" means from a to the end, every n
			}
		}
		for v := a; v <= b; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

// canMatch reports whether some date matches the day and month fields (so
// that "0 0 31 2 *" is refused rather than silently never opening).
func (w Window) canMatch() bool {
	if w.dow {
		return true // every month has every weekday
	}
	days := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if w.fields[3]&(1<<uint(m)) == 0 {
			continue
		}
		for d := 1; d <= days[m]; d++ {
			if w.fields[2]&(1<<uint(d)) != 0 {
				return true
			}
		}
	}
	return false
}

// IsZero reports whether w is the zero Window (always open).
func (w Window) IsZero() bool { return w.Duration == 0 }

// String returns the window as it was parsed, "" for the zero Window.
func (w Window) String() string { return w.spec }

// dayMatches reports whether the local date of t matches the day fields.
func (w Window) dayMatches(t time.Time) bool {
	if w.fields[3]&(1<<uint(t.Month())) == 0 {
		return false
	}
	dom := w.fields[2]&(1<<uint(t.Day())) != 0
	dow := w.fields[4]&(1<<uint(t.Weekday())) != 0
	if w.dom && w.dow {
		return dom || dow
	}
	return dom && dow
}

// Open reports whether the window is open at t: some start time the
// schedule matches lies in (t-Duration, t]. The zero Window is always open.
func (w Window) Open(t time.Time) bool {
	if w.IsZero() {
		return true
	}
	_, ok := w.lastStart(t)
	return ok
}

// lastStart returns the latest start time in (t-Duration, t].
func (w Window) lastStart(t time.Time) (time.Time, bool) {
	end := t.Add(-w.Duration)
	c := t.In(w.Location).Truncate(time.Minute)
	// Walk back in whole local days, hours and minutes, skipping what cannot
	// match. The walk is bounded: each step moves back at least a minute and
	// the span is at most MaxWindowDuration.
	for c.After(end) {
		l := c.In(w.Location)
		h, m := l.Hour(), l.Minute()
		switch {
		case !w.dayMatches(l):
			c = c.Add(-time.Duration(h*60+m+1) * time.Minute)
		case w.fields[1]&(1<<uint(h)) == 0:
			c = c.Add(-time.Duration(m+1) * time.Minute)
		case w.fields[0]&(1<<uint(m)) == 0:
			c = c.Add(-time.Minute)
		default:
			return c, true
		}
	}
	return time.Time{}, false
}

// Next returns the first start time of the window after t, or the zero
// time if there is none within MaxWindowSearch (the zero Window has none).
func (w Window) Next(t time.Time) time.Time {
	if w.IsZero() {
		return time.Time{}
	}
	limit := t.Add(MaxWindowSearch)
	c := t.In(w.Location).Truncate(time.Minute).Add(time.Minute)
	for !c.After(limit) {
		l := c.In(w.Location)
		h, m := l.Hour(), l.Minute()
		switch {
		case !w.dayMatches(l):
			c = c.Add(time.Duration((23-h)*60+(60-m)) * time.Minute)
		case w.fields[1]&(1<<uint(h)) == 0:
			c = c.Add(time.Duration(60-m) * time.Minute)
		case w.fields[0]&(1<<uint(m)) == 0:
			c = c.Add(time.Minute)
		default:
			return c
		}
	}
	return time.Time{}
}

// MaxWindowSearch bounds Window.Next.
const MaxWindowSearch = 5 * 366 * 24 * time.Hour
