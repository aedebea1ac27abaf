package rollout

import (
	"testing"
	"time"
)

// The parsers take operator input: they must never panic, and what they
// accept must print back to a string that parses to the same value.

func FuzzParseStages(f *testing.F) {
	for _, s := range []string{"canary:10,5%,25%,100%", "100%", "1,2,50.5%", "a:1,b:2%", "0%", ",", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseStages(s)
		if err != nil {
			return
		}
		if out := FormatStages(st); out != s {
			t.Fatalf("ParseStages(%q) prints as %q", s, out)
		}
		for i := range st {
			if Target(st, i, 1000) > 1000 || (i > 0 && Target(st, i, 1000) < Target(st, i-1, 1000)) {
				t.Fatalf("targets of %q not monotonic within the fleet", s)
			}
		}
	})
}

func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{"95%", "0%", "100%", "99.5%", "0.25%", "1.50%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseThreshold(s)
		if err != nil {
			return
		}
		if v < 0 || v > Full || v.String() != s {
			t.Fatalf("ParseThreshold(%q) = %d, prints %q", s, v, v.String())
		}
	})
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"model=x1 hw_rev>=2 channel=stable version<1.1.0 tag=lab", "", "product=acme/router-x1", "tag!=lab version>=1.0.0-rc.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFilter(s)
		if err != nil {
			return
		}
		again, err := ParseFilter(fl.String())
		if err != nil || again.String() != fl.String() {
			t.Fatalf("ParseFilter(%q) prints as %q which re-parses as %q, %v", s, fl.String(), again.String(), err)
		}
		fl.Match(Device{Model: "x1", HWRev: 2, Version: "1.0.0", Tags: []string{"lab"}})
	})
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"0 2 * * *,4h,Europe/Berlin", "*/15 9-17 * * 1-5,10m,UTC", "0 3 1 * 7,1h,UTC", "0 0 * * 6,0,48h,UTC"} {
		f.Add(s)
	}
	t0 := time.Date(2025, 3, 30, 1, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			return
		}
		if w.String() != s {
			t.Fatalf("String = %q, want %q", w.String(), s)
		}
		next := w.Next(t0)
		if !next.IsZero() && (!next.After(t0) || !w.Open(next)) {
			t.Fatalf("window %q: next start %v after %v is not open", s, next, t0)
		}
		w.Open(t0)
	})
}
