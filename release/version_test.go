package release

import (
	"errors"
	"strings"
	"testing"
)

func TestParseVersionAcceptsSemVer(t *testing.T) {
	tests := []struct {
		in                  string
		major, minor, patch uint64
		pre, build          string
	}{
		{"0.0.0", 0, 0, 0, "", ""},
		{"1.2.3", 1, 2, 3, "", ""},
		{"10.20.30", 10, 20, 30, "", ""},
		{"1.0.0-alpha", 1, 0, 0, "alpha", ""},
		{"1.0.0-alpha.1", 1, 0, 0, "alpha.1", ""},
		{"1.0.0-0.3.7", 1, 0, 0, "0.3.7", ""},
		{"1.0.0-x.7.z.92", 1, 0, 0, "x.7.z.92", ""},
		{"1.0.0-x-y-z.--", 1, 0, 0, "x-y-z.--", ""},
		{"1.0.0-alpha+001", 1, 0, 0, "alpha", "001"},
		{"1.0.0+20130313144700", 1, 0, 0, "", "20130313144700"},
		{"1.0.0-beta+exp.sha.5114f85", 1, 0, 0, "beta", "exp.sha.5114f85"},
		{"1.0.0+21AF26D3----117B344092BD", 1, 0, 0, "", "21AF26D3----117B344092BD"},
		{"1.0.0-0A.is.legal", 1, 0, 0, "0A.is.legal", ""},
		{"18446744073709551615.0.0", 1<<64 - 1, 0, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := ParseVersion(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if v.String() != tt.in {
				t.Errorf("String() = %q, want the original %q", v.String(), tt.in)
			}
			if v.Major() != tt.major || v.Minor() != tt.minor || v.Patch() != tt.patch || v.Prerelease() != tt.pre || v.Build() != tt.build {
				t.Errorf("got %d.%d.%d pre %q build %q", v.Major(), v.Minor(), v.Patch(), v.Prerelease(), v.Build())
			}
		})
	}
}

func TestParseVersionRejectsNonSemVer(t *testing.T) {
	tests := []struct{ name, in, why string }{
		{"empty", "", "empty"},
		{"two parts", "1.2", "parts"},
		{"four parts", "1.2.3.4", "parts"},
		{"v prefix", "v1.2.3", "not a decimal"},
		{"leading zero major", "01.2.3", "leading zero"},
		{"leading zero minor", "1.02.3", "leading zero"},
		{"leading zero patch", "1.2.03", "leading zero"},
		{"leading zero numeric pre-release", "1.2.3-01", "leading zero"},
		{"empty pre-release", "1.2.3-", "empty"},
		{"empty pre-release identifier", "1.2.3-alpha..1", "empty identifier"},
		{"trailing dot pre-release", "1.2.3-alpha.", "empty identifier"},
		{"empty build", "1.2.3+", "empty"},
		{"empty build identifier", "1.2.3+a..b", "empty identifier"},
		{"two plus", "1.2.3+a+b", "character other"},
		{"underscore", "1.2.3-a_b", "character other"},
		{"space", "1.2.3 ", "not a decimal"},
		{"unicode digit", "1.2.٣", "not a decimal"},
		{"sign", "+1.2.3", "parts"},
		{"negative", "1.-2.3", "parts"},
		{"overflow", "18446744073709551616.0.0", "64 bits"},
		{"empty part", "1..3", "not a decimal"},
		{"too long", "1.0.0-" + strings.Repeat("a", MaxVersionLength), "limit"},
		{"nul", "1.0.0-a\x00", "character other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseVersion(tt.in)
			if err == nil {
				t.Fatalf("ParseVersion(%q) succeeded", tt.in)
			}
			if !errors.Is(err, ErrInvalidVersion) {
				t.Errorf("error %v does not wrap ErrInvalidVersion", err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error %q does not say %q", err, tt.why)
			}
		})
	}
}

func TestCompareFollowsSemVerPrecedence(t *testing.T) {
	// semver.org item 11, in increasing order, plus numeric edge cases.
	ordered := []string{
		"0.0.0",
		"0.9.9",
		"1.0.0-0",
		"1.0.0-2",
		"1.0.0-10",
		"1.0.0-99999999999999999999999",
		"1.0.0-alpha",
		"1.0.0-alpha.1",
		"1.0.0-alpha.beta",
		"1.0.0-beta",
		"1.0.0-beta.2",
		"1.0.0-beta.11",
		"1.0.0-rc.1",
		"1.0.0",
		"1.0.1",
		"1.1.0",
		"1.10.0",
		"2.0.0",
		"10.0.0",
	}
	for i, a := range ordered {
		for j, b := range ordered {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := Compare(MustParseVersion(a), MustParseVersion(b)); got != want {
				t.Errorf("Compare(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestCompareIgnoresBuildMetadata(t *testing.T) {
	tests := []struct{ a, b string }{
		{"1.0.0+a", "1.0.0+b"},
		{"1.0.0", "1.0.0+build.5"},
		{"1.0.0-rc.1+x", "1.0.0-rc.1"},
	}
	for _, tt := range tests {
		t.Run(tt.a+" vs "+tt.b, func(t *testing.T) {
			if got := Compare(MustParseVersion(tt.a), MustParseVersion(tt.b)); got != 0 {
				t.Errorf("Compare = %d, want 0", got)
			}
			if MustParseVersion(tt.a) == MustParseVersion(tt.b) {
				t.Errorf("== reports equal for different strings")
			}
		})
	}
}

func TestVersionTextRoundTrip(t *testing.T) {
	var v Version
	if err := v.UnmarshalText([]byte("1.2.3-rc.1+b")); err != nil {
		t.Fatal(err)
	}
	b, err := v.MarshalText()
	if err != nil || string(b) != "1.2.3-rc.1+b" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	if _, err := (Version{}).MarshalText(); err == nil {
		t.Error("zero Version marshaled")
	}
	if err := v.UnmarshalText([]byte("1.2")); err == nil {
		t.Error("UnmarshalText accepted 1.2")
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.2.3", "0.0.0", "1.0.0-alpha.1+build.7", "1.0.0-0A.is.legal", "01.0.0", "1.0.0-", "18446744073709551616.0.0"} {
		f.Add(s, "1.0.0-rc.1")
	}
	f.Fuzz(func(t *testing.T, s, other string) {
		v, err := ParseVersion(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidVersion) {
				t.Fatalf("error %v does not wrap ErrInvalidVersion", err)
			}
			return
		}
		if v.String() != s {
			t.Fatalf("String() = %q, want %q", v.String(), s)
		}
		if len(s) > MaxVersionLength {
			t.Fatalf("accepted %d bytes", len(s))
		}
		// Every strict prefix is either invalid or a different version.
		for i := range len(s) {
			if p, err := ParseVersion(s[:i]); err == nil && p == v {
				t.Fatalf("prefix %q parsed to the same version", s[:i])
			}
		}
		if Compare(v, v) != 0 {
			t.Fatal("Compare(v, v) != 0")
		}
		w, err := ParseVersion(other)
		if err != nil {
			return
		}
		if Compare(v, w) != -Compare(w, v) {
			t.Fatalf("Compare is not antisymmetric for %q and %q", s, other)
		}
	})
}
