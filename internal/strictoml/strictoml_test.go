package strictoml

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// testConfig covers every value type Airlock's configs use (device.toml
// and agent.toml) plus a bool and narrow integers.
type testConfig struct {
	Name       string            `toml:"name"`
	HWRev      *int64            `toml:"hw_rev"`
	Size       int64             `toml:"size,omitempty"`
	Limit      int               `toml:"limit,omitempty"`
	Small      int8              `toml:"small,omitempty"`
	Flag       bool              `toml:"flag,omitempty"`
	Command    []string          `toml:"command,omitempty"`
	Untagged   string            //
	Skipped    string            `toml:"-"`
	Slots      testSlots         `toml:"slots"`
	Health     *testHealth       `toml:"health,omitempty"`
	Components map[string]string `toml:"components,omitempty"`
}

type testSlots struct {
	A    string `toml:"a"`
	B    string `toml:"b,omitempty"`
	Size int64  `toml:"size"`
}

type testHealth struct {
	Command []string `toml:"command"`
	Timeout string   `toml:"timeout,omitempty"`
}

func i64(n int64) *int64 { return &n }

func TestDecode(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     testConfig
	}{
		{"empty", "", testConfig{}},
		{"comments and blank lines", "# c\n\n  # d\nname = \"x\" # e\n\t\n", testConfig{Name: "x"}},
		{"CRLF", "name = \"x\"\r\n[slots]\r\na = 'y'\r\n", testConfig{Name: "x", Slots: testSlots{A: "y"}}},
		{"no spaces", "name=\"x\"\nsize=3", testConfig{Name: "x", Size: 3}},
		{"quoted keys", "\"name\" = \"x\"\n'size' = 1\n[components]\n\"acme/m2\" = \"1.0.0\"\n'a b' = \"2\"\n\"\" = \"e\"",
			testConfig{Name: "x", Size: 1, Components: map[string]string{"acme/m2": "1.0.0", "a b": "2", "": "e"}}},
		{"quoted table name", "[\"slots\"]\na = \"1\"", testConfig{Slots: testSlots{A: "1"}}},
		{"table header spaces and comment", "[ slots ]   # c\na = \"1\"", testConfig{Slots: testSlots{A: "1"}}},
		{"escapes", `name = "\b\t\n\f\r\"\\\u00e9\U0001F600/é"`, testConfig{Name: "\b\t\n\f\r\"\\é😀/é"}},
		{"literal string", `name = 'C:\path\"x"'`, testConfig{Name: `C:\path\"x"`}},
		{"tab in string", "name = \"a\tb\"", testConfig{Name: "a\tb"}},
		{"integers", "hw_rev = -0\nsize = +1_000\nlimit = 0x3f_F0\nsmall = -128\n[slots]\nsize = 0o17", testConfig{HWRev: i64(0), Size: 1000, Limit: 0x3ff0, Small: -128, Slots: testSlots{Size: 15}}},
		{"binary", "size = 0b1010", testConfig{Size: 10}},
		{"int64 range", "size = -9223372036854775808\n[slots]\nsize = 0x7fffffffffffffff", testConfig{Size: math.MinInt64, Slots: testSlots{Size: math.MaxInt64}}},
		{"booleans", "flag = true", testConfig{Flag: true}},
		{"arrays", "command = [ \"a\", 'b' , ]\n[health]\ncommand = [\n  \"x\", # one\n  # between\n  \"y\"\n]\ntimeout = \"1s\"",
			testConfig{Command: []string{"a", "b"}, Health: &testHealth{Command: []string{"x", "y"}, Timeout: "1s"}}},
		{"empty array", "command = []", testConfig{Command: []string{}}},
		{"empty tables", "[health]\n[components]", testConfig{Health: &testHealth{}, Components: map[string]string{}}},
		{"untagged field", `Untagged = "u"`, testConfig{Untagged: "u"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got testConfig
			if err := Decode([]byte(tt.in), 1<<10, "MaxSize", &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"unknown key", `nmae = "x"`, `line 1: unknown keys ["nmae"]`},
		{"unknown keys", "nmae = \"x\"\n[slots]\nc = 1\n[bogus]\nx = 1", `lines 1, 3, 4: unknown keys ["nmae" "slots.c" "bogus"]`},
		{"skipped field", `Skipped = "x"`, `unknown keys ["Skipped"]`},
		{"key case", `Name = "x"`, `unknown keys ["Name"]`},
		{"missing value", `name = `, "line 1: missing value"},
		{"missing equals", `name "x"`, "line 1: expected = after key name"},
		{"missing key", `= "x"`, "line 1: expected a key"},
		{"size limit", strings.Repeat("#", 1025), "config is 1025 bytes, the limit is MaxSize 1024"},
		{"dotted key", "\n\nslots.a = \"x\"", "line 3: dotted key slots.… is not supported"},
		{"dotted key spaced", "slots . a = \"x\"", "line 1: dotted key"},
		{"dotted table", "[slots.a]", "line 1: dotted table name [slots.…] is not supported"},
		{"array of tables", "[[slots]]", "line 1: arrays of tables"},
		{"inline table", "health = {command = []}", "line 1: inline tables"},
		{"float", "size = 1.5", "line 1: floating-point numbers are not supported"},
		{"float exponent", "size = 1e3", "floating-point"},
		{"inf", "size = -inf", "floating-point"},
		{"nan", "size = nan", "floating-point"},
		{"date", "name = 1979-05-27", "line 1: dates and times are not supported"},
		{"datetime", "name = 1979-05-27T07:32:00Z", "dates and times"},
		{"time", "name = 07:32:00", "dates and times"},
		{"multi-line basic", "name = \"\"\"x\"\"\"", `line 1: multi-line strings ("""...""")`},
		{"multi-line literal", "name = '''x'''", "line 1: multi-line strings ('''...''')"},
		{"duplicate key", "name = \"a\"\nname = \"b\"", `line 2: duplicate key name: it has already been defined on line 1`},
		{"duplicate key in table", "[components]\nx = \"a\"\n\"x\" = \"b\"", "line 3: duplicate key components.x"},
		{"duplicate table", "[slots]\n\n[slots]", "line 3: duplicate table [slots]: it has already been defined on line 1"},
		{"table over key", "slots = \"x\"\n[slots]", "line 2: table [slots] conflicts with key slots"},
		{"string for int", `size = "3"`, "line 1: incompatible types: size is a string, but must be an integer"},
		{"int for string", "[components]\nbootloader = 2", "line 2: incompatible types: components.bootloader is an integer, but must be a string"},
		{"table for string", "[name]", "line 1: incompatible types: name is a table, but must be a string"},
		{"string for table", `slots = "x"`, "incompatible types: slots is a string, but must be a table"},
		{"bool for string", "name = true", "incompatible types"},
		{"array for string", "name = [\"x\"]", "incompatible types"},
		{"out of range", "small = 128", "line 1: small = 128 is out of range (int8)"},
		{"overflow", "size = 9223372036854775808", `line 1: integer "9223372036854775808" does not fit in 64 bits`},
		{"hex overflow", "size = 0x8000000000000000", "does not fit in 64 bits"},
		{"leading zero", "size = 007", "leading zeros are not allowed"},
		{"signed leading zero", "size = -01", "leading zeros"},
		{"signed hex", "size = +0x10", "invalid integer"},
		{"uppercase prefix", "size = 0X10", "invalid integer"},
		{"leading underscore", "size = _1", "expected a value"},
		{"trailing underscore", "size = 1_", "underscore"},
		{"double underscore", "size = 1__0", "underscore"},
		{"underscore after prefix", "size = 0x_1", "underscore"},
		{"bad hex digit", "size = 0xg", "invalid integer"},
		{"bare word", "name = yes", "expected a value"},
		{"capital bool", "flag = True", "expected a value"},
		{"two values", `name = "a" "b"`, "line 1: unexpected"},
		{"two keys on a line", `name = "a" size = 1`, "unexpected"},
		{"junk after header", "[slots] a = 1", "unexpected"},
		{"unclosed header", "[slots", "expected ]"},
		{"bad escape", `name = "\x41"`, `line 1: invalid escape \x`},
		{"escape e", `name = "\e"`, `invalid escape \e`},
		{"short unicode escape", `name = "\u12"`, `invalid escape \u`},
		{"surrogate escape", `name = "\uD800"`, "not a Unicode scalar value"},
		{"escape beyond unicode", `name = "\U00110000"`, "not a Unicode scalar value"},
		{"signed unicode escape", `name = "\u+123"`, "invalid escape"},
		{"line continuation", "name = \"a\\\nb\"", "invalid escape"},
		{"control char", "name = \"a\x01\"", "control character"},
		{"DEL", "name = 'a\x7f'", "control character"},
		{"newline in string", "name = \"a\nb\"", "unterminated string"},
		{"unterminated string", `name = "a`, "unterminated string"},
		{"unterminated literal", `name = 'a`, "unterminated string"},
		{"control char in comment", "# a\x00", "control character"},
		{"lone CR", "name = \"a\"\rsize = 1", "carriage return"},
		{"BOM", "\xef\xbb\xbfname = \"x\"", "byte order mark"},
		{"invalid UTF-8", "name = \"a\"\n# \xff", "line 2: invalid UTF-8"},
		{"array of ints", "command = [1]", "only arrays of strings"},
		{"nested array", "command = [[\"a\"]]", "nested arrays"},
		{"unterminated array", "command = [\"a\",\n", "unterminated array"},
		{"array missing comma", "command = [\"a\" \"b\"]", "expected , or ]"},
		{"array leading comma", "command = [,]", "only arrays of strings"},
		{"array into table", "[health]\ncommand = \"x\"", "incompatible types: health.command is a string, but must be an array of strings"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c testConfig
			err := Decode([]byte(tt.in), 1<<10, "MaxSize", &c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode(%q) = %v, want %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestDecodeNeedsStructPointer(t *testing.T) {
	var c testConfig
	for _, v := range []any{nil, c, (*testConfig)(nil), new(int)} {
		if err := Decode(nil, 10, "Max", v); err == nil {
			t.Errorf("Decode into %T succeeded", v)
		}
	}
}

func TestEncode(t *testing.T) {
	c := testConfig{
		Name: "x\"\\\t\x01\x7fé", HWRev: i64(3), Command: []string{"a", "b c"},
		Slots:      testSlots{A: "a"},
		Health:     &testHealth{Command: []string{}},
		Components: map[string]string{"z": "1", "acme/m": "2", "": "3"},
	}
	want := `name = "x\"\\\t\u0001\u007fé"
hw_rev = 3
size = 0
limit = 0
small = 0
command = ["a", "b c"]
Untagged = ""

[slots]
  a = "a"
  size = 0

[health]
  command = []

[components]
  "" = "3"
  "acme/m" = "2"
  z = "1"
`
	var b bytes.Buffer
	if err := Encode(&b, &c); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	var back testConfig
	if err := Decode(b.Bytes(), 1<<20, "Max", &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestEncodeRefuses(t *testing.T) {
	type nested struct {
		T struct {
			U struct{ A string }
		}
	}
	for _, v := range []any{
		42,
		struct{ F float64 }{1},
		struct{ S string }{"\xff"},
		struct{ M map[string]string }{map[string]string{"\xff": "x"}},
		struct{ A []int }{[]int{1}},
		nested{},
	} {
		if err := Encode(&bytes.Buffer{}, v); err == nil {
			t.Errorf("Encode(%#v) succeeded", v)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c testConfig
		err := Decode(data, 1<<12, "MaxSize", &c)
		if err != nil {
			return
		}
		// What decodes encodes, and decodes to the same value.
		var b bytes.Buffer
		if err := Encode(&b, &c); err != nil {
			t.Fatalf("Encode: %v", err)
		}
		var back testConfig
		if err := Decode(b.Bytes(), 1<<20, "MaxSize", &back); err != nil {
			t.Fatalf("re-encoded config does not decode: %v\n%s", err, b.Bytes())
		}
		if diff := cmp.Diff(c, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-decoded +re-decoded):\n%s", diff)
		}
	})
}
