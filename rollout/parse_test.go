package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseStages(t *testing.T) {
	good := []struct {
		in   string
		want []Stage
	}{
		{"canary:10,5%,25%,100%", []Stage{{Name: "canary", Count: 10}, {Percent: 500}, {Percent: 2500}, {Percent: Full}}},
		{"100%", []Stage{{Percent: Full}}},
		{"1,2,50.5%", []Stage{{Count: 1}, {Count: 2}, {Percent: 5050}}},
		{"lab:3,early:10%,all:100%", []Stage{{Name: "lab", Count: 3}, {Name: "early", Percent: 1000}, {Name: "all", Percent: Full}}},
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseStages(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
			if s := FormatStages(got); s != tc.in {
				t.Errorf("FormatStages = %q, want %q", s, tc.in)
			}
		})
	}
	bad := map[string]string{
		"empty":                "",
		"empty stage":          "10,,100%",
		"zero count":           "0,100%",
		"zero percent":         "0%,100%",
		"over 100%":            "101%",
		"decreasing percent":   "50%,25%",
		"repeated percent":     "50%,50%",
		"decreasing count":     "10,5",
		"leading zero":         "010",
		"negative":             "-5",
		"plus sign":            "+5",
		"count too large":      "10000001",
		"bad name":             "Canary:10",
		"empty name":           ":10",
		"duplicate name":       "a:1,a:2",
		"name with colon":      "a:b:1",
		"space":                "10, 100%",
		"too many stages":      "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
		"too long":             strings.Repeat("1", MaxStagesLength+1),
		"hex":                  "0x10",
		"percent without num":  "%",
		"fraction with 3 decs": "1.125%",
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseStages(in); !errors.Is(err, ErrInvalidStages) {
				t.Errorf("ParseStages(%q) = %v, want ErrInvalidStages", in, err)
			}
		})
	}
}

func TestStageTarget(t *testing.T) {
	st := mustStages(t, "canary:10,5%,25%,100%")
	for _, tc := range []struct{ stage, eligible, want int }{
		{0, 1000, 10}, {1, 1000, 50}, {2, 1000, 250}, {3, 1000, 1000},
		{0, 5, 5}, {1, 5, 5}, {3, 5, 5}, // never more than the fleet
		{1, 100, 10},  // never less than the previous stage
		{1, 1001, 51}, // rounded up
		{0, 0, 0}, {4, 1000, 0}, {-1, 1000, 0},
	} {
		if got := Target(st, tc.stage, tc.eligible); got != tc.want {
			t.Errorf("Target(stage %d, eligible %d) = %d, want %d", tc.stage, tc.eligible, got, tc.want)
		}
	}
}

func TestParseThreshold(t *testing.T) {
	for in, want := range map[string]Threshold{"0%": 0, "95%": 9500, "100%": Full, "99.5%": 9950, "0.25%": 25, "2%": 200, "12.34%": 1234} {
		got, err := ParseThreshold(in)
		if err != nil || got != want {
			t.Errorf("ParseThreshold(%q) = %d, %v; want %d", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("String() = %q, want %q", got.String(), in)
		}
	}
	for _, in := range []string{"", "95", "95 %", "-1%", "+1%", "100.5%", "101%", "1.%", ".5%", "1.50%", "1.234%", "01%", "1e2%", "½%", "95%%", "100.00%"} {
		if _, err := ParseThreshold(in); !errors.Is(err, ErrInvalidThreshold) {
			t.Errorf("ParseThreshold(%q) = %v, want ErrInvalidThreshold", in, err)
		}
	}
}

func TestParseFilter(t *testing.T) {
	devX1 := Device{Model: "x1", HWRev: 3, Channel: "stable", Product: "acme/router-x1", Version: "1.0.0", Tags: []string{"lab", "eu"}}
	devX2 := Device{Model: "x2", HWRev: 1, Channel: "beta", Product: "acme/router-x1", Version: "1.2.0"}
	fresh := Device{Model: "x1", HWRev: 3, Product: "acme/router-x1"}
	rows := []struct {
		filter             string
		x1, x2, freshMatch bool
	}{
		{"", true, true, true},
		{"model=x1", true, false, true},
		{"model!=x1", false, true, false},
		{"hw_rev>=2", true, false, true},
		{"hw_rev<2", false, true, false},
		{"hw_rev=3", true, false, true},
		{"channel=stable", true, false, true}, // "" is the default channel
		{"channel!=stable", false, true, false},
		{"version<1.1.0", true, false, false}, // unknown version never matches
		{"version>=1.1.0", false, true, false},
		{"version=1.0.0", true, false, false},
		{"version>1.0.0-rc.1", true, true, false},
		{"tag=lab", true, false, false},
		{"tag!=lab", false, true, true},
		{"product=acme/router-x1", true, true, true},
		{"model=x1 hw_rev>=2 channel=stable version<1.1.0 tag=lab", true, false, false},
		{"  model=x1   tag=eu ", true, false, false},
	}
	for _, tc := range rows {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := ParseFilter(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := [3]bool{f.Match(devX1), f.Match(devX2), f.Match(fresh)}; got != [3]bool{tc.x1, tc.x2, tc.freshMatch} {
				t.Errorf("matches x1, x2, fresh = %v, want %v", got, [3]bool{tc.x1, tc.x2, tc.freshMatch})
			}
			again, err := ParseFilter(f.String())
			if err != nil || again.String() != f.String() {
				t.Errorf("re-parse of %q: %v, %q", f.String(), err, again.String())
			}
		})
	}
	bad := []string{
		"model", "model=", "=x1", "colour=red", "model<x1", "tag>lab", "channel<=beta", "product>acme/x",
		"hw_rev>=two", "hw_rev>=-1", "hw_rev>=+1", "hw_rev>=01", "hw_rev>=4294967296", "version<1.0",
		"version<v1.0.0", "model==x1", "model=x1=y", "model=<x1", "tag=Lab", "product=Acme", "model=x1 model=x1",
		"model=" + strings.Repeat("a", 65), strings.Repeat("tag=a ", MaxFilterTerms+1), strings.Repeat(" ", MaxFilterLength+1),
		"model=x\x00",
	}
	for _, in := range bad {
		t.Run("bad "+truncate(in), func(t *testing.T) {
			if _, err := ParseFilter(in); !errors.Is(err, ErrInvalidFilter) {
				t.Errorf("ParseFilter(%q) = %v, want ErrInvalidFilter", in, err)
			}
		})
	}
}

func TestParseWindow(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	rows := []struct {
		window string
		at     string // Berlin time
		open   bool
		next   string // Berlin time of the next start after at
	}{
		{"0 2 * * *,4h,Europe/Berlin", "2025-03-01 01:59", false, "2025-03-01 02:00"},
		{"0 2 * * *,4h,Europe/Berlin", "2025-03-01 02:00", true, "2025-03-02 02:00"},
		{"0 2 * * *,4h,Europe/Berlin", "2025-03-01 05:59", true, "2025-03-02 02:00"},
		{"0 2 * * *,4h,Europe/Berlin", "2025-03-01 06:00", false, "2025-03-02 02:00"},
		{"0 2 * * *,4h,UTC", "2025-03-01 03:30", true, "2025-03-02 03:00"},               // 02:00 UTC is 03:00 in Berlin in winter
		{"30 22 * * *,3h,Europe/Berlin", "2025-03-02 00:30", true, "2025-03-02 22:30"},   // across midnight
		{"0 0 * * 6,0,24h,Europe/Berlin", "2025-03-03 00:00", false, "2025-03-08 00:00"}, // weekend: closed Monday
		{"0 0 * * 6,0,24h,Europe/Berlin", "2025-03-02 23:59", true, "2025-03-08 00:00"},
		{"*/15 9-17 * * 1-5,10m,Europe/Berlin", "2025-03-03 09:27", false, "2025-03-03 09:30"},
		{"*/15 9-17 * * 1-5,10m,Europe/Berlin", "2025-03-03 09:35", true, "2025-03-03 09:45"},
		{"0 3 1 * 0,1h,Europe/Berlin", "2025-03-02 03:30", true, "2025-03-09 03:00"},   // dom or dow when both restricted
		{"0 3 1 * 7,1h,Europe/Berlin", "2025-03-02 03:30", true, "2025-03-09 03:00"},   // 7 is Sunday
		{"30 2 * * *,1h,Europe/Berlin", "2025-03-30 03:10", false, "2025-03-31 02:30"}, // 02:30 does not exist on DST day
	}
	for _, tc := range rows {
		t.Run(tc.window+" at "+tc.at, func(t *testing.T) {
			w, err := ParseWindow(tc.window)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Open(at(tc.at)); got != tc.open {
				t.Errorf("Open = %v, want %v", got, tc.open)
			}
			if got, want := w.Next(at(tc.at)), at(tc.next); !got.Equal(want) {
				t.Errorf("Next = %v, want %v", got.In(berlin), want)
			}
			if w.String() != tc.window {
				t.Errorf("String = %q", w.String())
			}
		})
	}
	if w, err := ParseWindow(""); err != nil || !w.IsZero() || !w.Open(time.Now()) {
		t.Errorf("empty window: %v, %v", w, err)
	}
	bad := []string{
		"0 2 * * *", "0 2 * * *,4h", "0 2 * * *,4h,", "0 2 * * *,4h,Local", "0 2 * * *,4h,Mars/Olympus",
		"0 2 * * *,4h,../../etc/passwd", "0 2 * * *,0s,UTC", "0 2 * * *,169h,UTC", "0 2 * * *,-1h,UTC",
		"0 2 * *,4h,UTC", "0 2 * * * *,4h,UTC", "60 2 * * *,4h,UTC", "0 24 * * *,4h,UTC", "0 2 0 * *,4h,UTC",
		"0 2 * 13 *,4h,UTC", "0 2 * * 8,4h,UTC", "0 2 5-1 * *,4h,UTC", "0 2 */0 * *,4h,UTC", "0  2 * * *,4h,UTC",
		"0 2 31 2 *,4h,UTC", "a 2 * * *,4h,UTC", "0 2 * * *,4x,UTC", strings.Repeat("1,", 200) + "1 * * * *,1h,UTC",
	}
	for _, in := range bad {
		t.Run("bad "+truncate(in), func(t *testing.T) {
			if _, err := ParseWindow(in); !errors.Is(err, ErrInvalidWindow) {
				t.Errorf("ParseWindow(%q) = %v, want ErrInvalidWindow", in, err)
			}
		})
	}
}
