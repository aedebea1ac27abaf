package release

import (
	"errors"
	"strings"
	"testing"
)

func TestHWRangeContains(t *testing.T) {
	tests := []struct {
		in    string
		canon string
		in_   []uint32 // revisions inside
		out   []uint32 // revisions outside
	}{
		{"*", "*", []uint32{0, 1, 1<<32 - 1}, nil},
		{"3", "=3", []uint32{3}, []uint32{0, 2, 4}},
		{"=3", "=3", []uint32{3}, []uint32{2, 4}},
		{">=2 <4", ">=2 <4", []uint32{2, 3}, []uint32{0, 1, 4, 5}},
		{"  >=2 <4 ", ">=2 <4", []uint32{2, 3}, []uint32{1, 4}},
		{"<=5", "<=5", []uint32{0, 5}, []uint32{6}},
		{">1", ">1", []uint32{2, 1<<32 - 1}, []uint32{0, 1}},
		{"!=3", "!=3", []uint32{0, 2, 4}, []uint32{3}},
		{">=1 <=4 !=2 !=3", ">=1 <=4 !=2 !=3", []uint32{1, 4}, []uint32{0, 2, 3, 5}},
		{"4294967295", "=4294967295", []uint32{1<<32 - 1}, []uint32{0}},
		{"0", "=0", []uint32{0}, []uint32{1}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseHWRange(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if r.String() != tt.canon {
				t.Errorf("String() = %q, want %q", r.String(), tt.canon)
			}
			for _, rev := range tt.in_ {
				if !r.Contains(rev) {
					t.Errorf("%q does not contain %d", tt.in, rev)
				}
			}
			for _, rev := range tt.out {
				if r.Contains(rev) {
					t.Errorf("%q contains %d", tt.in, rev)
				}
			}
		})
	}
}

func TestZeroHWRangeContainsEverything(t *testing.T) {
	var r HWRange
	if !r.IsAny() || !r.Contains(0) || !r.Contains(1<<32-1) || r.String() != "" {
		t.Errorf("zero HWRange: IsAny %v String %q", r.IsAny(), r.String())
	}
	if err := r.UnmarshalText(nil); err != nil || !r.IsAny() {
		t.Errorf("UnmarshalText(empty) = %v", err)
	}
}

func TestParseHWRangeRejects(t *testing.T) {
	tests := []struct{ name, in, why string }{
		{"empty", "", "empty"},
		{"only spaces", "   ", "empty"},
		{"double space", ">=2  <4", "empty comparator"},
		{"operator without number", ">=", "has no revision"},
		{"space after operator", ">= 2", "has no revision"},
		{"leading plus", "+3", "want an operator"},
		{"plus after operator", ">=+3", "want an operator"},
		{"negative", ">=-1", "want an operator"},
		{"leading zero", "03", "leading zero"},
		{"overflow", "4294967296", "32 bits"},
		{"huge", ">99999999999999999999", "32 bits"},
		{"double equals", "==3", "want an operator"},
		{"unknown operator", "~3", "want an operator"},
		{"junk", "abc", "want an operator"},
		{"tab separator", ">=2\t<4", "want an operator"},
		{"star with others", "* >=2", `"*" must be the only`},
		{"too many comparators", "!=1 !=2 !=3 !=4 !=5 !=6 !=7 !=8 !=9", "limit is 8"},
		{"too long", strings.Repeat(" ", MaxHWRangeLength) + "1", "limit"},
		{"unsatisfiable", ">4 <2", "no hardware revision"},
		{"less than zero", "<0", "no hardware revision"},
		{"above max", ">4294967295", "no hardware revision"},
		{"equal and not equal", "=3 !=3", "no hardware revision"},
		{"all excluded", ">=2 <=3 !=2 !=3", "no hardware revision"},
		{"two equals", "=2 =3", "no hardware revision"},
		{"unicode digit", "٣", "want an operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHWRange(tt.in)
			if err == nil {
				t.Fatalf("ParseHWRange(%q) succeeded", tt.in)
			}
			if !errors.Is(err, ErrInvalidHWRange) {
				t.Errorf("error %v does not wrap ErrInvalidHWRange", err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error %q does not say %q", err, tt.why)
			}
		})
	}
}

func FuzzParseHWRange(f *testing.F) {
	for _, s := range []string{"*", "3", ">=2 <4", "<=5", ">1", "!=3", ">=1 <=4 !=2 !=3", "+3", ">4 <2"} {
		f.Add(s, uint32(3))
	}
	f.Fuzz(func(t *testing.T, s string, rev uint32) {
		r, err := ParseHWRange(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidHWRange) {
				t.Fatalf("error %v does not wrap ErrInvalidHWRange", err)
			}
			return
		}
		again, err := ParseHWRange(r.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", r.String(), s, err)
		}
		if again.String() != r.String() {
			t.Fatalf("canonical form not stable: %q -> %q", r.String(), again.String())
		}
		if r.Contains(rev) != again.Contains(rev) {
			t.Fatalf("%q and its canonical form disagree on %d", s, rev)
		}
		if len(r.cmps) > MaxHWRangeComparators {
			t.Fatalf("%d comparators accepted", len(r.cmps))
		}
	})
}
