package release

import (
	"errors"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestParseProduct(t *testing.T) {
	long := strings.Repeat("a", MaxProductSegmentLength)
	tests := []struct {
		in       string
		ok       bool
		roleName string
	}{
		{"acme", true, "acme"},
		{"acme/router-x1", true, "acme.router-x1"},
		{"a/b/c/d", true, "a.b.c.d"},
		{"0/9-x", true, "0.9-x"},
		{long + "/" + long + "/" + long + "/" + long, true, long + "." + long + "." + long + "." + long},
		{"", false, ""},
		{"a/b/c/d/e", false, ""},
		{"Acme", false, ""},
		{"acme/", false, ""},
		{"/acme", false, ""},
		{"acme//x", false, ""},
		{"acme/-x", false, ""},
		{"acme/x.y", false, ""},
		{"acme/x_y", false, ""},
		{"acme/..", false, ""},
		{"acme/x y", false, ""},
		{long + "a", false, ""},
		{"acme/ro\u00fcter", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseProduct(tt.in)
			if !tt.ok {
				if err == nil {
					t.Fatalf("ParseProduct(%q) succeeded", tt.in)
				}
				if !errors.Is(err, ErrInvalidProduct) {
					t.Errorf("error %v does not wrap ErrInvalidProduct", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tt.in || p.RoleName() != tt.roleName || p.PathPattern() != tt.in+"/*/*" {
				t.Errorf("got %q role %q pattern %q", p, p.RoleName(), p.PathPattern())
			}
		})
	}
}

func TestTargetPathRoundTrip(t *testing.T) {
	tests := []struct{ product, version, file string }{
		{"acme/router-x1", "1.1.0", "firmware.img"},
		{"acme", "2.0.0-rc.1+build.7", "fw.img.zst"},
		{"a/b/c/d", "0.0.1", "A_b-c.d"},
	}
	for _, tt := range tests {
		t.Run(tt.product, func(t *testing.T) {
			p, _ := ParseProduct(tt.product)
			path, err := TargetPath(p, MustParseVersion(tt.version), tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.product + "/" + tt.version + "/" + tt.file; path != want {
				t.Fatalf("TargetPath = %q, want %q", path, want)
			}
			gp, gv, gf, err := ParseTargetPath(path)
			if err != nil {
				t.Fatal(err)
			}
			if gp != p || gv.String() != tt.version || gf != tt.file {
				t.Errorf("ParseTargetPath = %q %q %q", gp, gv, gf)
			}
		})
	}
}

func TestTargetPathRejectsBadFileNames(t *testing.T) {
	p, _ := ParseProduct("acme/router-x1")
	v := MustParseVersion("1.0.0")
	for _, name := range []string{"", ".", "..", ".hidden", "-x", "a/b", "a b", strings.Repeat("a", MaxFileNameLength+1), "a\x00"} {
		t.Run(name, func(t *testing.T) {
			if _, err := TargetPath(p, v, name); !errors.Is(err, ErrInvalidTargetPath) {
				t.Errorf("TargetPath(%q) = %v, want ErrInvalidTargetPath", name, err)
			}
		})
	}
	if _, err := TargetPath(Product{}, v, "f"); err == nil {
		t.Error("zero product accepted")
	}
	if _, err := TargetPath(p, Version{}, "f"); err == nil {
		t.Error("zero version accepted")
	}
}

func TestParseTargetPathRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"no file", "acme/1.0.0"},
		{"too many product segments", "a/b/c/d/e/1.0.0/f"},
		{"not a version", "acme/router/latest/f"},
		{"version in product position", "acme/1.0.0/1.0.0/f"},
		{"traversal", "acme/../1.0.0/f"},
		{"traversal file", "acme/1.0.0/.."},
		{"leading slash", "/acme/1.0.0/f"},
		{"trailing slash", "acme/1.0.0/f/"},
		{"empty file", "acme/1.0.0/"},
		{"uppercase product", "ACME/1.0.0/f"},
		{"leading zero version", "acme/01.0.0/f"},
		{"too long", strings.Repeat("a", MaxTargetPathLength+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := ParseTargetPath(tt.in); !errors.Is(err, ErrInvalidTargetPath) {
				t.Errorf("ParseTargetPath(%q) = %v, want ErrInvalidTargetPath", tt.in, err)
			}
		})
	}
}

// TestPathPatternConfinesProductRole runs the real go-tuf delegation matcher:
// a product role may sign its own release paths and nothing of any other
// product, including products whose IDs share a prefix.
func TestPathPatternConfinesProductRole(t *testing.T) {
	p, _ := ParseProduct("acme/router-x1")
	role := &metadata.DelegatedRole{Name: p.RoleName(), Paths: []string{p.PathPattern()}}
	tests := []struct {
		path string
		want bool
	}{
		{"acme/router-x1/1.1.0/firmware.img", true},
		{"acme/router-x1/2.0.0-rc.1/fw.img.zst", true},
		{"acme/router-x2/1.1.0/firmware.img", false},
		{"acme/router-x1-pro/1.1.0/firmware.img", false},
		{"acme/router-x1/sub/1.1.0/firmware.img", false},
		{"acme/router-x1/firmware.img", false},
		{"acme/1.1.0/firmware.img", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := role.IsDelegatedPath(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("IsDelegatedPath(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
	// A shorter product ID's role does not reach into a longer one's paths.
	parent, _ := ParseProduct("acme")
	prole := &metadata.DelegatedRole{Name: parent.RoleName(), Paths: []string{parent.PathPattern()}}
	if ok, _ := prole.IsDelegatedPath("acme/router-x1/1.1.0/firmware.img"); ok {
		t.Error(`role "acme" may sign "acme/router-x1" releases`)
	}
}

func FuzzParseTargetPath(f *testing.F) {
	for _, s := range []string{"acme/router-x1/1.1.0/firmware.img", "a/b/c/d/1.0.0-rc.1+b/f", "acme/1.0.0/..", "x/1.0/f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, v, name, err := ParseTargetPath(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidTargetPath) {
				t.Fatalf("error %v does not wrap ErrInvalidTargetPath", err)
			}
			return
		}
		again, err := TargetPath(p, v, name)
		if err != nil {
			t.Fatalf("TargetPath of parsed %q: %v", s, err)
		}
		if again != s {
			t.Fatalf("round trip %q -> %q", s, again)
		}
		if ok, _ := (&metadata.DelegatedRole{Paths: []string{p.PathPattern()}}).IsDelegatedPath(s); !ok {
			t.Fatalf("%q is not under its own product pattern %q", s, p.PathPattern())
		}
	})
}
