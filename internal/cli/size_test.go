package cli_test

import (
	"errors"
	"flag"
	"math"
	"strconv"
	"strings"
	"testing"

	. "github.com/airlockfw/airlock/internal/cli"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string // substring of the error; "" for success
	}{
		{"0", 0, ""},
		{"1", 1, ""},
		{"1048576", 1 << 20, ""},
		{"67108864", 64 << 20, ""},
		{"9223372036854775807", math.MaxInt64, ""},
		{"1KiB", 1 << 10, ""},
		{"64MiB", 64 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"1TiB", 1 << 40, ""},
		{"8388607TiB", 8388607 << 40, ""},
		{"1kB", 1000, ""},
		{"100MB", 100e6, ""},
		{"3GB", 3e9, ""},
		{"0MiB", 0, ""},
		{"1.5KiB", 1536, ""},
		{"0.5KiB", 512, ""},
		{"1.5kB", 1500, ""},
		{"0.001kB", 1, ""},
		{"1.000000000GB", 1e9, ""},
		{"0.0009765625MiB", 1 << 10, ""},
		{"0.0000000000009094947017729282379150390625TiB", 0, "more than 19"}, // 1 byte, but nobody writes it so
		{"0.5000000000000000000000KiB", 512, ""},                             // trailing zeros do not count

		{"", 0, "want a byte count"},
		{"KiB", 0, "want a byte count"},
		{"-1", 0, "want a byte count"},
		{"+1", 0, "want a byte count"},
		{"-1MiB", 0, "want a byte count"},
		{"1 MiB", 0, "want a byte count"},
		{" 1", 0, "want a byte count"},
		{"1mib", 0, "want a byte count"},
		{"1KB", 0, "want a byte count"},
		{"1kiB", 0, "want a byte count"},
		{"1Mb", 0, "want a byte count"},
		{"1B", 0, "want a byte count"},
		{"1TB", 0, "want a byte count"},
		{"1MiBMiB", 0, "want a byte count"},
		{"0x4000", 0, "want a byte count"},
		{"1e6", 0, "want a byte count"},
		{"1_000", 0, "want a byte count"},
		{".5KiB", 0, "want a byte count"},
		{"1.KiB", 0, "want a byte count"},
		{"1.2.3KiB", 0, "want a byte count"},
		{"0100", 0, "leading zeros"},
		{"01MiB", 0, "leading zeros"},
		{"1.5", 0, "no fraction"},
		{"0.1KiB", 0, "not a whole number of bytes"},
		{"1.0001kB", 0, "not a whole number of bytes"},
		{"0.00000000000045474735088646411895751953125TiB", 0, "more than 19"},
		{"0.0001KiB", 0, "not a whole number of bytes"},
		{"9223372036854775808", 0, "larger than"},
		{"8388608TiB", 0, "larger than"},
		{"99999999999999999999999999GB", 0, "larger than"},
		{strings.Repeat("1", MaxSizeLength+1), 0, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrSize) {
				t.Errorf("ParseSize(%q) = %d, %v; want an ErrSize containing %q", tt.in, got, err, tt.err)
			}
		})
	}
}

// TestSizeFlag: a size flag takes units, keeps the plain byte count working,
// and refuses a bad value as a usage error naming the flag.
func TestSizeFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	p := SizeFlag(fs, "slot-size", 65536)
	if *p != 65536 || fs.Lookup("slot-size").DefValue != "65536" {
		t.Errorf("default = %d (%q)", *p, fs.Lookup("slot-size").DefValue)
	}
	if err := fs.Parse([]string{"--slot-size", "64MiB"}); err != nil || *p != 64<<20 {
		t.Errorf("--slot-size 64MiB: %d, %v", *p, err)
	}
	if err := fs.Parse([]string{"--slot-size=1048576"}); err != nil || *p != 1<<20 {
		t.Errorf("--slot-size=1048576: %d, %v", *p, err)
	}
	err := fs.Parse([]string{"--slot-size", "64mb"})
	if err == nil || !strings.Contains(err.Error(), `invalid value "64mb" for flag -slot-size`) {
		t.Errorf("--slot-size 64mb: %v", err)
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1048576", "64MiB", "1.5KiB", "0.1KiB", "100kB", "3GB", "1TiB", "9223372036854775807", "8388608TiB", "0100", "-1", "1e3", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrSize) || n != 0 {
				t.Fatalf("ParseSize(%q) = %d, %v", s, n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d < 0", s, n)
		}
		// A plain byte count means what strconv says it means.
		if v, err := strconv.ParseInt(s, 10, 64); err == nil && v != n {
			t.Fatalf("ParseSize(%q) = %d, strconv says %d", s, n, v)
		}
		// Its form in the largest binary unit parses back to the same size.
		f := formatSize(n)
		if m, err := ParseSize(f); err != nil || m != n {
			t.Fatalf("ParseSize(formatSize(%d) = %q) = %d, %v", n, f, m, err)
		}
	})
}

// formatSize writes n in the largest binary unit that divides it ("64MiB"),
// else as a byte count.
func formatSize(n int64) string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n > 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
