package release

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDependency(t *testing.T) {
	tests := []struct {
		in, component, min string
	}{
		{"bootloader>=2.1.0", "bootloader", "2.1.0"},
		{"acme/modem-m2>=1.0.0-rc.1", "acme/modem-m2", "1.0.0-rc.1"},
		{"TF-A_spl.v2>=0.1.0", "TF-A_spl.v2", "0.1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDependency(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Component != tt.component || d.MinVersion.String() != tt.min || d.String() != tt.in {
				t.Errorf("got %+v, String %q", d, d.String())
			}
		})
	}
}

func TestParseDependencyRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"no operator", "bootloader"},
		{"greater than", "bootloader>2.0.0"},
		{"equals", "bootloader=2.0.0"},
		{"less or equal", "bootloader<=2.0.0"},
		{"spaces", "bootloader >= 2.0.0"},
		{"empty component", ">=2.0.0"},
		{"bad version", "bootloader>=2.0"},
		{"double operator", "bootloader>=>=2.0.0"},
		{"bad product component", "acme/Modem>=1.0.0"},
		{"dot start", ".boot>=1.0.0"},
		{"too long", strings.Repeat("a", MaxDependencyLength) + ">=1.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseDependency(tt.in); !errors.Is(err, ErrInvalidDependency) {
				t.Errorf("ParseDependency(%q) = %v, want ErrInvalidDependency", tt.in, err)
			}
		})
	}
}

func FuzzParseDependency(f *testing.F) {
	for _, s := range []string{"bootloader>=2.1.0", "acme/modem-m2>=1.0.0-rc.1", "x>1.0.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDependency(s)
		if err != nil {
			return
		}
		if d.String() != s {
			t.Fatalf("String() = %q, want %q", d.String(), s)
		}
		if err := d.validate(); err != nil {
			t.Fatalf("parsed dependency invalid: %v", err)
		}
	})
}
