package release

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testDigest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// validCustom exercises every field of schema 1.
const validCustom = `{
  "airlock": {
    "schema": 1,
    "product": "acme/router-x1",
    "models": ["x1", "x1-pro"],
    "hw_rev": ">=2 <4",
    "version": "1.1.0",
    "security_version": 3,
    "channel": "beta",
    "depends": [{"component": "bootloader", "min_version": "2.0.0"}],
    "install": {"kind": "raw", "compression": "zstd"},
    "installed": {"length": 16777216, "sha256": "` + testDigest + `"},
    "created": "2025-01-02T03:04:05Z",
    "notes": "Fixes the DHCP crash.\nUpgrade soon.",
    "allow_downgrade": true
  },
  "other-tool": {"anything": [1, null, {"x": true}]}
}`

// canonicalCustom is what MarshalCustom writes for validCustom.
const canonicalCustom = `{"airlock":{"schema":1,"product":"acme/router-x1","models":["x1","x1-pro"],"hw_rev":">=2 <4","version":"1.1.0","security_version":3,"channel":"beta","depends":[{"component":"bootloader","min_version":"2.0.0"}],"install":{"kind":"raw","compression":"zstd"},"installed":{"length":16777216,"sha256":"` + testDigest + `"},"created":"2025-01-02T03:04:05Z","notes":"Fixes the DHCP crash.\nUpgrade soon.","allow_downgrade":true}}`

const minimalCustom = `{"airlock":{"schema":1,"product":"acme/router-x1","models":["x1"],"version":"1.0.0","security_version":0,"install":{"kind":"raw","compression":"none"},"installed":{"length":1,"sha256":"` + testDigest + `"}}}`

var cmpOpts = cmp.AllowUnexported(Product{}, Version{}, HWRange{}, hwComparator{})

func testSHA256() [sha256.Size]byte {
	return sha256.Sum256([]byte("test"))
}

func validMetadata() *Metadata {
	return &Metadata{
		Schema:          SchemaV1,
		Product:         mustProduct("acme/router-x1"),
		Models:          []string{"x1", "x1-pro"},
		HWRev:           mustHWRange(">=2 <4"),
		Version:         MustParseVersion("1.1.0"),
		SecurityVersion: 3,
		Channel:         "beta",
		Depends:         []Dependency{{Component: "bootloader", MinVersion: MustParseVersion("2.0.0")}},
		Install:         Install{Kind: InstallRaw, Compression: CompressionZstd},
		Installed:       Installed{Length: 16 << 20, SHA256: testSHA256()},
		Created:         time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Notes:           "Fixes the DHCP crash.\nUpgrade soon.",
		AllowDowngrade:  true,
	}
}

func mustProduct(s string) Product {
	p, err := ParseProduct(s)
	if err != nil {
		panic(err)
	}
	return p
}

func mustHWRange(s string) HWRange {
	r, err := ParseHWRange(s)
	if err != nil {
		panic(err)
	}
	return r
}

func TestParseCustomReadsEveryField(t *testing.T) {
	if fmt.Sprintf("%x", testSHA256()) != testDigest {
		t.Fatal("test digest constant is wrong")
	}
	m, err := ParseCustom([]byte(validCustom))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(validMetadata(), m, cmpOpts); diff != "" {
		t.Errorf("ParseCustom mismatch (-want +got):\n%s", diff)
	}
	out, err := MarshalCustom(m)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(canonicalCustom, string(out)); diff != "" {
		t.Errorf("MarshalCustom mismatch (-want +got):\n%s", diff)
	}
}

func TestParseCustomAppliesDefaults(t *testing.T) {
	m, err := ParseCustom([]byte(minimalCustom))
	if err != nil {
		t.Fatal(err)
	}
	if m.Channel != DefaultChannel || !m.HWRev.IsAny() || m.Depends != nil || !m.Created.IsZero() || m.Notes != "" || m.AllowDowngrade {
		t.Errorf("defaults not applied: %+v", m)
	}
	// Explicit empty optional strings mean the same as absent ones.
	m2, err := ParseCustom([]byte(strings.Replace(minimalCustom, `"schema":1,`, `"schema":1,"hw_rev":"","channel":"","notes":"","depends":[],"allow_downgrade":false,`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, m2, cmpOpts); diff != "" {
		t.Errorf("explicit empty fields differ from absent ones (-want +got):\n%s", diff)
	}
}

func TestParseCustomIgnoresOtherToolsKeys(t *testing.T) {
	in := `{"zz":{"deep":[[[["x"]]]]},` + minimalCustom[1:len(minimalCustom)-1] + `,"aa":null}`
	if _, err := ParseCustom([]byte(in)); err != nil {
		t.Fatal(err)
	}
}

func TestMarshalCustomRoundTripsGoValues(t *testing.T) {
	m := validMetadata()
	m.Created = time.Date(2025, 1, 2, 4, 4, 5, 123000000, time.FixedZone("CET", 3600))
	m.Channel = ""
	m.HWRev = HWRange{}
	raw, err := MarshalCustom(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"created":"2025-01-02T03:04:05.123Z"`)) || !bytes.Contains(raw, []byte(`"channel":"stable"`)) || bytes.Contains(raw, []byte("hw_rev")) {
		t.Errorf("unexpected encoding %s", raw)
	}
	got, err := ParseCustom(raw)
	if err != nil {
		t.Fatal(err)
	}
	m.Channel = DefaultChannel
	if diff := cmp.Diff(m, got, cmpOpts); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestParseCustomRejects(t *testing.T) {
	sub := func(old, new string) string {
		if !strings.Contains(validCustom, old) {
			panic("fixture does not contain " + old)
		}
		return strings.Replace(validCustom, old, new, 1)
	}
	tooMany := func(n int, f func(i int) string) string {
		s := make([]string, n)
		for i := range s {
			s[i] = f(i)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name  string
		in    string
		want  error
		field string // FieldError.Field, if one is expected
		msg   string // substring of the message
	}{
		// Framing.
		{"too large", `{"pad":"` + strings.Repeat("a", MaxCustomSize) + `",` + validCustom[1:], ErrInvalidMetadata, "", "limit is MaxCustomSize"},
		{"invalid utf-8", sub("DHCP", "DH\xffCP"), ErrInvalidMetadata, "", "UTF-8"},
		{"not an object", `[` + validCustom + `]`, ErrInvalidMetadata, "", "not a JSON object"},
		{"empty", ``, ErrInvalidMetadata, "", "truncated"},
		{"truncated", validCustom[:len(validCustom)-1], ErrInvalidMetadata, "", "truncated"},
		{"trailing object", validCustom + `{}`, ErrInvalidMetadata, "", "trailing data"},
		{"trailing junk", validCustom + `x`, ErrInvalidMetadata, "", "trailing data"},
		{"malformed", `{"airlock" 1}`, ErrInvalidMetadata, "", "malformed JSON"},
		{"too deep", `{"x":` + strings.Repeat("[", MaxCustomDepth) + strings.Repeat("]", MaxCustomDepth) + `,` + validCustom[1:], ErrInvalidMetadata, "", "nested deeper"},
		// Duplicate and look-alike keys.
		{"duplicate airlock", `{"airlock":{},` + validCustom[1:], ErrInvalidMetadata, "", `duplicate key "airlock"`},
		{"duplicate field", sub(`"version": "1.1.0",`, `"version": "1.1.0", "version": "9.9.9",`), ErrInvalidMetadata, "", `duplicate key "version"`},
		{"duplicate escaped field", sub(`"version": "1.1.0",`, `"version": "1.1.0", "versio\u006e": "9.9.9",`), ErrInvalidMetadata, "", `duplicate key "version"`},
		{"duplicate nested field", sub(`"kind": "raw",`, `"kind": "raw", "kind": "raw",`), ErrInvalidMetadata, "", `duplicate key "kind"`},
		{"duplicate key in other tool", sub(`"x": true`, `"x": true, "x": false`), ErrInvalidMetadata, "", `duplicate key "x"`},
		{"case-folded field", sub(`"version": "1.1.0",`, `"Version": "1.1.0",`), ErrUnknownField, "Version", ""},
		{"unicode-folded field", sub(`"security_version": 3,`, `"ſecurity_version": 3,`), ErrUnknownField, "ſecurity_version", ""},
		{"unknown field", sub(`"schema": 1,`, `"schema": 1, "target_slot": "b",`), ErrUnknownField, "target_slot", ""},
		{"unknown nested field", sub(`"kind": "raw",`, `"kind": "raw", "slot": "b",`), ErrUnknownField, "install.slot", ""},
		{"unknown dependency field", sub(`"min_version": "2.0.0"`, `"min_version": "2.0.0", "max_version": "3.0.0"`), ErrUnknownField, "depends[0].max_version", ""},
		// Presence and nulls.
		{"no airlock", `{"other":1}`, ErrNoMetadata, "", ""},
		{"airlock null", `{"airlock":null}`, ErrInvalidMetadata, "", "null value"},
		{"airlock not object", `{"airlock":[1]}`, ErrInvalidMetadata, "airlock", "want a JSON object"},
		{"null field", sub(`"notes": "Fixes the DHCP crash.\nUpgrade soon."`, `"notes": null`), ErrInvalidMetadata, "", "null value"},
		{"missing schema", sub(`"schema": 1,`, ``), ErrMissingField, "schema", ""},
		{"missing version", sub(`"version": "1.1.0",`, ``), ErrMissingField, "version", ""},
		{"missing security_version", sub(`"security_version": 3,`, ``), ErrMissingField, "security_version", ""},
		{"missing install.compression", sub(`, "compression": "zstd"`, ``), ErrMissingField, "install.compression", ""},
		{"missing installed.sha256", sub(`, "sha256": "`+testDigest+`"`, ``), ErrMissingField, "installed.sha256", ""},
		{"missing depends min_version", sub(`, "min_version": "2.0.0"`, ``), ErrMissingField, "depends[0].min_version", ""},
		// Schema.
		{"schema 3 with new fields", sub(`"schema": 1,`, `"schema": 3, "delta": {},`), ErrUnsupportedSchema, "schema", "unsupported schema 3"},
		{"schema 0", sub(`"schema": 1,`, `"schema": 0,`), ErrUnsupportedSchema, "schema", ""},
		{"schema string", sub(`"schema": 1,`, `"schema": "1",`), ErrInvalidMetadata, "schema", ""},
		{"schema float", sub(`"schema": 1,`, `"schema": 1.0,`), ErrInvalidMetadata, "schema", ""},
		// Field values.
		{"bad product", sub(`"acme/router-x1"`, `"acme/Router"`), ErrInvalidProduct, "product", ""},
		{"models empty", sub(`["x1", "x1-pro"]`, `[]`), ErrInvalidMetadata, "models", "0 models"},
		{"models too many", sub(`["x1", "x1-pro"]`, `[`+tooMany(MaxModels+1, func(i int) string { return fmt.Sprintf(`"m%d"`, i) })+`]`), ErrInvalidMetadata, "models", "17 models"},
		{"model bad", sub(`"x1-pro"`, `"x1 pro"`), ErrInvalidMetadata, "models[1]", "does not match"},
		{"model too long", sub(`"x1-pro"`, `"`+strings.Repeat("m", MaxModelLength+1)+`"`), ErrInvalidMetadata, "models[1]", "does not match"},
		{"model duplicate", sub(`"x1-pro"`, `"x1"`), ErrInvalidMetadata, "models[1]", "duplicate"},
		{"models not array", sub(`["x1", "x1-pro"]`, `"x1"`), ErrInvalidMetadata, "models", "want []string"},
		{"bad hw_rev", sub(`">=2 <4"`, `">=2 <x"`), ErrInvalidHWRange, "hw_rev", ""},
		{"bad version", sub(`"1.1.0"`, `"1.1"`), ErrInvalidVersion, "version", ""},
		{"security_version negative", sub(`"security_version": 3`, `"security_version": -1`), ErrInvalidMetadata, "security_version", "want uint32"},
		{"security_version overflow", sub(`"security_version": 3`, `"security_version": 4294967296`), ErrInvalidMetadata, "security_version", "want uint32"},
		{"security_version fraction", sub(`"security_version": 3`, `"security_version": 3.5`), ErrInvalidMetadata, "security_version", "want uint32"},
		{"channel uppercase", sub(`"beta"`, `"Beta"`), ErrInvalidMetadata, "channel", "does not match"},
		{"channel too long", sub(`"beta"`, `"`+strings.Repeat("c", MaxChannelLength+1)+`"`), ErrInvalidMetadata, "channel", "does not match"},
		{"depends too many", sub(`[{"component": "bootloader", "min_version": "2.0.0"}]`, `[`+tooMany(MaxDepends+1, func(i int) string { return fmt.Sprintf(`{"component":"c%d","min_version":"1.0.0"}`, i) })+`]`), ErrInvalidMetadata, "depends", "17 dependencies"},
		{"depends bad component", sub(`"bootloader"`, `"boot loader"`), ErrInvalidDependency, "depends[0].component", ""},
		{"depends bad version", sub(`"2.0.0"`, `"2.0"`), ErrInvalidVersion, "depends[0].min_version", ""},
		{"depends duplicate", sub(`"min_version": "2.0.0"}`, `"min_version": "2.0.0"}, {"component": "bootloader", "min_version": "3.0.0"}`), ErrInvalidDependency, "depends[1]", "duplicate component"},
		{"depends on itself", sub(`"bootloader"`, `"acme/router-x1"`), ErrInvalidDependency, "depends[0]", "its own product"},
		{"install kind archive", sub(`"raw"`, `"archive"`), ErrInvalidMetadata, "install.kind", `unsupported install kind "archive"`},
		{"compression gzip", sub(`"zstd"`, `"gzip"`), ErrInvalidMetadata, "install.compression", `unsupported compression "gzip"`},
		{"length zero", sub(`16777216`, `0`), ErrInvalidMetadata, "installed.length", "want > 0"},
		{"length negative", sub(`16777216`, `-5`), ErrInvalidMetadata, "installed.length", "want > 0"},
		{"length string", sub(`16777216`, `"16777216"`), ErrInvalidMetadata, "installed.length", "want int64"},
		{"sha256 uppercase", sub(testDigest, strings.ToUpper(testDigest)), ErrInvalidMetadata, "installed.sha256", "lowercase hex"},
		{"sha256 short", sub(testDigest, testDigest[2:]), ErrInvalidMetadata, "installed.sha256", "lowercase hex"},
		{"sha256 zero", sub(testDigest, strings.Repeat("0", 64)), ErrInvalidMetadata, "installed.sha256", "all zero"},
		{"created offset", sub(`"2025-01-02T03:04:05Z"`, `"2025-01-02T04:04:05+01:00"`), ErrInvalidMetadata, "created", "UTC"},
		{"created date only", sub(`"2025-01-02T03:04:05Z"`, `"2025-01-02"`), ErrInvalidMetadata, "created", "RFC 3339"},
		{"created lowercase z", sub(`"2025-01-02T03:04:05Z"`, `"2025-01-02T03:04:05z"`), ErrInvalidMetadata, "created", "RFC 3339"},
		{"notes too long", sub(`"Fixes the DHCP crash.\nUpgrade soon."`, `"`+strings.Repeat("n", MaxNotesSize+1)+`"`), ErrInvalidMetadata, "notes", "limit is 1024"},
		{"notes terminal escape", sub(`DHCP`, `\u001b[31mDHCP`), ErrInvalidMetadata, "notes", "control character"},
		{"allow_downgrade string", sub(`"allow_downgrade": true`, `"allow_downgrade": "yes"`), ErrInvalidMetadata, "allow_downgrade", "want bool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseCustom([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseCustom succeeded: %+v", m)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q does not wrap %q", err, tt.want)
			}
			if tt.want != ErrNoMetadata && !errors.Is(err, ErrInvalidMetadata) {
				t.Errorf("error %q does not wrap ErrInvalidMetadata", err)
			}
			if tt.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("error %q is not a *FieldError", err)
				}
				if fe.Field != tt.field {
					t.Errorf("FieldError.Field = %q, want %q (error %q)", fe.Field, tt.field, err)
				}
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

// TestParseCustomRejectsEveryPrefix stops truncation attacks: no prefix of
// valid metadata is itself valid.
func TestParseCustomRejectsEveryPrefix(t *testing.T) {
	for _, in := range []string{canonicalCustom, minimalCustom} {
		for i := range len(in) {
			if _, err := ParseCustom([]byte(in[:i])); err == nil {
				t.Fatalf("prefix %q accepted", in[:i])
			}
		}
	}
}

func TestValidateRejectsGoValues(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(m *Metadata)
		field string
	}{
		{"zero schema", func(m *Metadata) { m.Schema = 0 }, "schema"},
		{"zero product", func(m *Metadata) { m.Product = Product{} }, "product"},
		{"zero version", func(m *Metadata) { m.Version = Version{} }, "version"},
		{"no models", func(m *Metadata) { m.Models = nil }, "models"},
		{"zero dependency version", func(m *Metadata) { m.Depends[0].MinVersion = Version{} }, "depends[0]"},
		{"empty install", func(m *Metadata) { m.Install = Install{} }, "install.kind"},
		{"zero digest", func(m *Metadata) { m.Installed.SHA256 = [32]byte{} }, "installed.sha256"},
		{"year 10000", func(m *Metadata) { m.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "created"},
		{"notes invalid utf-8", func(m *Metadata) { m.Notes = "\xff" }, "notes"},
		{"notes C1 control", func(m *Metadata) { m.Notes = "\u009b31m" }, "notes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validMetadata()
			tt.edit(m)
			_, err := MarshalCustom(m)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("MarshalCustom error = %v, want a FieldError for %q", err, tt.field)
			}
		})
	}
	if err := (*Metadata)(nil).Validate(); !errors.Is(err, ErrInvalidMetadata) {
		t.Errorf("nil Validate = %v", err)
	}
}

func TestCheckTargetPathBindsProductAndVersion(t *testing.T) {
	m := validMetadata()
	tests := []struct {
		path string
		want error
	}{
		{"acme/router-x1/1.1.0/firmware.img.zst", nil},
		{"acme/router-x2/1.1.0/firmware.img.zst", ErrTargetMismatch},
		{"acme/1.1.0/firmware.img.zst", ErrTargetMismatch},
		{"acme/router-x1/1.1.1/firmware.img.zst", ErrTargetMismatch},
		{"acme/router-x1/1.1.0+other/firmware.img.zst", ErrTargetMismatch},
		{"acme/router-x1/v1.1.0/firmware.img.zst", ErrInvalidTargetPath},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if err := CheckTargetPath(m, tt.path); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("CheckTargetPath = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzParseCustom(f *testing.F) {
	for _, s := range []string{validCustom, canonicalCustom, minimalCustom, indexedCustom, indexedRawCustom, withDeltas, `{"airlock":{"schema":2}}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseCustom(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidMetadata) && !errors.Is(err, ErrNoMetadata) {
				t.Fatalf("error %v wraps neither ErrInvalidMetadata nor ErrNoMetadata", err)
			}
			return
		}
		out, err := MarshalCustom(m)
		if err != nil {
			t.Fatalf("MarshalCustom of parsed metadata: %v", err)
		}
		m2, err := ParseCustom(out)
		if err != nil {
			t.Fatalf("ParseCustom of %s: %v", out, err)
		}
		if diff := cmp.Diff(m, m2, cmpOpts); diff != "" {
			t.Fatalf("parse, marshal, parse is not stable (-first +second):\n%s", diff)
		}
		out2, err := MarshalCustom(m2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("marshal is not stable: %s vs %s (%v)", out, out2, err)
		}
	})
}
