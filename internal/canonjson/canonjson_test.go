package canonjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
)

// genValue returns a random value of the kinds TUF metadata holds.
func genValue(r *rand.Rand, depth int) any {
	k := r.IntN(8)
	if depth > 4 {
		k = r.IntN(4)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		switch r.IntN(4) {
		case 0:
			return int64(r.IntN(100))
		case 1:
			return math.MinInt64 + r.Int64N(1000)
		case 2:
			return math.MaxInt64 - r.Int64N(1000)
		}
		return r.Int64() - r.Int64()
	case 3, 4:
		return genString(r)
	case 5:
		a := make([]any, r.IntN(5))
		for i := range a {
			a[i] = genValue(r, depth+1)
		}
		return a
	}
	m := map[string]any{}
	for range r.IntN(6) {
		m[genString(r)] = genValue(r, depth+1)
	}
	return m
}

var alphabet = []rune("aZ09_-./ \"\\\n\t\r\x00\x01\x1f\x7f<>&'é€\u2028\u2029\U0001F600\uFFFD\u00a0ſK")

func genString(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(12) {
		b.WriteRune(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// The vendor side signed with securesystemslib's cjson before; the encoder
// must produce the same bytes on every value both accept.
func TestMatchesSecuresystemslib(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		v := genValue(r, 0)
		want, err := cjson.EncodeCanonical(v)
		if err != nil {
			t.Fatalf("value %d: cjson: %v", i, err)
		}
		got, err := Marshal(v)
		if err != nil {
			t.Fatalf("value %d: Marshal: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("value %d: Marshal = %q, cjson = %q", i, got, want)
		}
	}
}

// Where the two differ, on purpose: canonjson refuses "-0", which has a
// second spelling, and accepts integers beyond 64 bits (python-tuf does);
// cjson does the opposite. Both refuse fractions and exponents.
func TestDifferencesFromSecuresystemslib(t *testing.T) {
	for _, tt := range []struct {
		in        string
		ours, sys bool // accepted
	}{
		{`{"a":-0}`, false, true},
		{`{"a":18446744073709551616}`, true, false},
		{`{"a":1.5}`, false, false},
		{`{"a":1e3}`, false, false},
		{`{"a":-9223372036854775808}`, true, true},
	} {
		_, err := Marshal(json.RawMessage(tt.in))
		_, sysErr := cjson.EncodeCanonical(json.RawMessage(tt.in))
		if (err == nil) != tt.ours || (sysErr == nil) != tt.sys {
			t.Errorf("%s: canonjson error %v, cjson error %v", tt.in, err, sysErr)
		}
	}
}

func TestParseRejectsAmbiguousJSON(t *testing.T) {
	for _, tt := range []struct{ name, in string }{
		{"duplicate key", `{"a":1,"a":2}`},
		{"trailing data", `{} {}`},
		{"trailing garbage", `{}x`},
		{"float", `1.0`},
		{"exponent", `1e3`},
		{"negative zero", `-0`},
		{"leading zero", `01`},
		{"invalid utf-8", "\"\xff\""},
		{"too deep", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)},
		{"truncated", `{"a":`},
		{"empty", ``},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.in), MaxDepth); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) = %v, want ErrMalformed", tt.in, err)
			}
		})
	}
}

func TestCanonicalForm(t *testing.T) {
	got, err := Canonicalize([]byte(` {"b": "q\"\\\n\u00e9", "a": [1, -2, true, null], "é": {}} `), MaxDepth)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\"a\":[1,-2,true,null],\"b\":\"q\\\"\\\\\né\",\"é\":{}}"
	if string(got) != want {
		t.Fatalf("canonical = %q, want %q", got, want)
	}
}

// FuzzCanonicalize: the canonical form is a fixed point, means what the
// input meant to encoding/json, and no proper prefix of it parses. A form
// with control characters in strings (written raw, as securesystemslib
// does) is a signing payload only, not JSON; those are checked for
// determinism alone.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"a":[1,{"b":null}],"c":"\u00e9"}`, `{"signed":{"_type":"root","version":1},"signatures":[]}`,
		`"\\\"\u0000"`, `[true,false,null,-12]`, `{"z":1,"a":{"y":[],"b":{}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Canonicalize(data, MaxDepth)
		if err != nil {
			return
		}
		if again, err := Canonicalize(data, MaxDepth); err != nil || !bytes.Equal(c, again) {
			t.Fatalf("Canonicalize(%q) is not deterministic", data)
		}
		if bytes.ContainsFunc(c, func(r rune) bool { return r < 0x20 }) {
			return
		}
		c2, err := Canonicalize(c, MaxDepth)
		if err != nil || !bytes.Equal(c, c2) {
			t.Fatalf("canonical form %q is not a fixed point: %q, %v", c, c2, err)
		}
		var a, b any
		da, db := json.NewDecoder(bytes.NewReader(data)), json.NewDecoder(bytes.NewReader(c))
		da.UseNumber()
		db.UseNumber()
		if da.Decode(&a) != nil || db.Decode(&b) != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("%q and its canonical form %q differ", data, c)
		}
		if c[0] == '{' || c[0] == '[' || c[0] == '"' {
			for i := range len(c) - 1 {
				if _, err := Parse(c[:i], MaxDepth); err == nil {
					t.Fatalf("prefix %q of %q parses", c[:i], c)
				}
			}
		}
	})
}

func TestIsIntegerLiteralMatchesTheGrammar(t *testing.T) {
	re := regexp.MustCompile(`^(0|-?[1-9][0-9]*)$`)
	cases := []string{"", "-", "0", "-0", "00", "01", "-01", "1", "-1", "10", "123456789012345678901234567890",
		"+1", "1.0", "1e3", "0x1", " 1", "1 ", "--1", "1-", "９"}
	for _, c := range cases {
		if got, want := isIntegerLiteral(c), re.MatchString(c); got != want {
			t.Errorf("isIntegerLiteral(%q) = %v, want %v", c, got, want)
		}
	}
}
