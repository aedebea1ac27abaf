package pkcs11

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func slot(n uint) *uint { return &n }

func TestParseURIAcceptsRFC7512(t *testing.T) {
	tests := []struct {
		in   string
		want URI
	}{
		{"pkcs11:", URI{}},
		{"pkcs11:token=root-1;object=root%20key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
			URI{Token: "root-1", Object: "root key", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/run/pin"}},
		// RFC 7512 §3 examples (the parts this package supports).
		{"pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=private",
			URI{Token: "The Software PKCS#11 Softtoken", Manufacturer: "Snake Oil, Inc.", Model: "1.0", Object: "my-certificate", Type: "private"}},
		{"pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1",
			URI{Object: "my-sign-key", Type: "private", ModulePath: "/mnt/libmypkcs11.so.1"}},
		{"pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-source=file:/etc/token_pin",
			URI{Token: "Software PKCS#11 softtoken", Manufacturer: "Snake Oil, Inc.", PINSource: "file:/etc/token_pin"}},
		{"pkcs11:id=%01%02%fe%FF;serial=DECC0401648;slot-id=42",
			URI{ID: []byte{1, 2, 0xfe, 0xff}, Serial: "DECC0401648", SlotID: slot(42)}},
		{"pkcs11:object=a=b&c?pin-source=env:AIRLOCK_HSM_PIN",
			URI{Object: "a=b&c", PINSource: "env:AIRLOCK_HSM_PIN"}},
		{"pkcs11:object=%E2%82%AC", URI{Object: "€"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURI(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Fatalf("ParseURI (-want +got):\n%s", diff)
			}
			again, err := ParseURI(got.String())
			if err != nil {
				t.Fatalf("String() = %q does not parse: %v", got.String(), err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Fatalf("round trip through %q (-want +got):\n%s", got.String(), diff)
			}
		})
	}
}

func TestParseURIRejects(t *testing.T) {
	tests := []struct {
		name, in, msg string
	}{
		{"not pkcs11", "file:/etc/key", "does not start"},
		{"PIN on the command line", "pkcs11:token=a?pin-value=1234", "PINs never go on the command line"},
		{"PIN on the command line after other attributes", "pkcs11:token=a?module-path=/m.so&pin-value=1234", "pin-value"},
		{"truncated escape", "pkcs11:object=a%2", "malformed percent-encoding"},
		{"non-hex escape", "pkcs11:object=a%zz", "malformed percent-encoding"},
		{"raw space", "pkcs11:object=a b", "must be percent-encoded"},
		{"raw slash in path", "pkcs11:object=a/b", "must be percent-encoded"},
		{"raw percent sign", "pkcs11:object=100%", "malformed percent-encoding"},
		{"duplicate attribute", "pkcs11:object=a;object=b", "duplicate"},
		{"duplicate query attribute", "pkcs11:?module-path=/a&module-path=/b", "duplicate"},
		{"unknown path attribute", "pkcs11:colour=red", "unsupported path attribute"},
		{"vendor attribute", "pkcs11:x-vendor=1", "unsupported path attribute"},
		{"unknown query attribute", "pkcs11:?pin=1", "unsupported query attribute"},
		{"module-name", "pkcs11:?module-name=softhsm2", "module-name is not supported"},
		{"attribute without value separator", "pkcs11:token", "not name=value"},
		{"empty attribute", "pkcs11:token=a;", "not name=value"},
		{"empty query", "pkcs11:token=a?", "empty query"},
		{"fragment", "pkcs11:token=a?module-path=/m#x", "fragments"},
		{"invalid UTF-8", "pkcs11:object=%ff", "UTF-8"},
		{"control character", "pkcs11:object=a%0Ab", "control character"},
		{"token label too long", "pkcs11:token=" + strings.Repeat("a", 33), "PKCS#11 allows"},
		{"model too long", "pkcs11:model=" + strings.Repeat("a", 17), "PKCS#11 allows"},
		{"empty id", "pkcs11:id=", "id must be"},
		{"long id", "pkcs11:id=" + strings.Repeat("%00", MaxIDLength+1), "id must be"},
		{"long label", "pkcs11:object=" + strings.Repeat("a", MaxAttributeLength+1), "longer than"},
		{"long URI", "pkcs11:object=" + strings.Repeat("a", MaxURILength), "longer than"},
		{"slot-id not a number", "pkcs11:slot-id=0x1", "not a decimal"},
		{"slot-id sign", "pkcs11:slot-id=-1", "not a decimal"},
		{"slot-id overflow", "pkcs11:slot-id=99999999999999999999999", "out of range"},
		{"type certificate", "pkcs11:type=cert", "not a key type"},
		{"pin-source command", "pkcs11:?pin-source=|/bin/getpin", "file:PATH or env:NAME"},
		{"pin-source https", "pkcs11:?pin-source=https://example.com/pin", "file:PATH or env:NAME"},
		{"pin-source empty file", "pkcs11:?pin-source=file:", "no path"},
		{"pin-source bad env", "pkcs11:?pin-source=env:1PIN", "not a variable name"},
		{"pin-source env with equals", "pkcs11:?pin-source=env:A=B", "not a variable name"},
		{"empty module path", "pkcs11:?module-path=", "empty module path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURI(tt.in)
			if err == nil {
				t.Fatalf("ParseURI(%q) = %+v, want error", tt.in, u)
			}
			if !errors.Is(err, ErrURI) {
				t.Errorf("error %v does not wrap ErrURI", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
	if _, err := ParseURI("pkcs11:?pin-value=1"); !errors.Is(err, ErrPINOnCommandLine) {
		t.Errorf("pin-value error = %v, want ErrPINOnCommandLine", err)
	}
}

func TestReadPIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv(PINEnv, "")
	t.Setenv("AIRLOCK_TEST_PIN", "from-env")
	tests := []struct {
		name, source string
		env          string // value of PINEnv
		want         string
		ok           bool
		err          bool
	}{
		{"file first line", "file:" + write("a", "1234\r\nignored\n"), "", "1234", true, false},
		{"file URI", "file://" + write("b", "5678"), "", "5678", true, false},
		{"file URI with host", "file://host/etc/pin", "", "", false, true},
		{"empty file", "file:" + write("c", "\n"), "", "", false, true},
		{"oversized file", "file:" + write("d", strings.Repeat("1", MaxPINFileSize+1)), "", "", false, true},
		{"missing file", "file:" + filepath.Join(dir, "nope"), "", "", false, true},
		{"named variable", "env:AIRLOCK_TEST_PIN", "", "from-env", true, false},
		{"unset variable", "env:AIRLOCK_TEST_UNSET", "", "", false, true},
		{"default variable", "", "default", "default", true, false},
		{"no source", "", "", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(PINEnv, tt.env)
			u := &URI{PINSource: tt.source}
			pin, ok, err := u.readPIN()
			if (err != nil) != tt.err || pin != tt.want || ok != tt.ok {
				t.Fatalf("readPIN = %q, %v, %v; want %q, %v, error %v", pin, ok, err, tt.want, tt.ok, tt.err)
			}
			if err != nil && !errors.Is(err, ErrPIN) {
				t.Errorf("error %v does not wrap ErrPIN", err)
			}
		})
	}
}

// FuzzParseURI checks that ParseURI never panics, that what it accepts
// round-trips through String, and that it never accepts pin-value.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:",
		"pkcs11:token=root-1;object=root%20key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
		"pkcs11:id=%01%02%fe%FF;serial=DECC0401648;slot-id=42;type=private",
		"pkcs11:object=a=b&c;manufacturer=Snake%20Oil,%20Inc.;model=m?pin-source=env:AIRLOCK_HSM_PIN",
		"pkcs11:token=a?pin-value=1234",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		if strings.Contains(s, "pin-value=") && strings.Contains(s, "?") {
			_, query, _ := strings.Cut(s, "?")
			for _, a := range strings.Split(query, "&") {
				if strings.HasPrefix(a, "pin-value=") {
					t.Fatalf("accepted pin-value in %q", s)
				}
			}
		}
		out := u.String()
		again, err := ParseURI(out)
		if err != nil {
			t.Fatalf("String() of %q = %q, which does not parse: %v", s, out, err)
		}
		if diff := cmp.Diff(u, again); diff != "" {
			t.Fatalf("round trip %q -> %q (-want +got):\n%s", s, out, diff)
		}
		if again.String() != out {
			t.Fatalf("String is not stable: %q then %q", out, again.String())
		}
	})
}
