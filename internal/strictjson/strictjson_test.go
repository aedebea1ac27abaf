package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type record struct {
	Name  string         `json:"name"`
	Count int            `json:"count"`
	Tags  map[string]int `json:"tags"`
	List  []string       `json:"list"`
}

func TestUnmarshalRefuses(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		invalid  bool // wraps ErrInvalid (not a decoding error)
	}{
		{"duplicate key", `{"name":"a","name":"b"}`, true},
		{"duplicate key in a map", `{"tags":{"x":1,"x":2}}`, true},
		{"trailing value", `{} {}`, true},
		{"trailing bracket", `{}]`, true},
		{"trailing garbage", `{}x`, true},
		{"invalid utf-8", "{\"name\":\"\xff\"}", true},
		{"too deep", `{"list":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`, true},
		{"truncated", `{"name":`, true},
		{"empty", ``, true},
		{"too large", `{"name":"` + strings.Repeat("a", MaxSize) + `"}`, true},
		{"unknown field", `{"nme":"a"}`, false},
		{"wrong type", `{"count":"1"}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r record
			err := Unmarshal([]byte(tt.in), &r)
			if err == nil {
				t.Fatalf("accepted %.80q", tt.in)
			}
			if errors.Is(err, ErrInvalid) != tt.invalid {
				t.Fatalf("error %v: wraps ErrInvalid = %v, want %v", err, !tt.invalid, tt.invalid)
			}
		})
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	var r record
	if err := Unmarshal([]byte(" {\"name\":\"é\",\"count\":2,\"tags\":{\"a\":1},\"list\":[\"x\"]}\n"), &r); err != nil {
		t.Fatal(err)
	}
	if r.Name != "é" || r.Count != 2 || r.Tags["a"] != 1 || len(r.List) != 1 {
		t.Fatalf("decoded %+v", r)
	}
}

func TestLimits(t *testing.T) {
	l := Limits{Size: 10, Depth: 2, Key: func(k string) error {
		if k != strings.ToLower(k) {
			return errors.New("uppercase key")
		}
		return nil
	}}
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{`{"a":[1]}`, true},
		{`{"a":[[1]]}`, false},
		{`{"A":1}`, false},
		{`{"a":"0123456789"}`, false},
	} {
		var v any
		if err := l.Unmarshal([]byte(tt.in), &v); (err == nil) != tt.ok {
			t.Errorf("%s: %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

// FuzzUnmarshal: what Check accepts encoding/json reads as one value
// (numbers as json.Number, as Check reads them), and
// re-encoding it gives input Check accepts; no proper prefix of an
// accepted object or array is accepted.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"name":"a","count":1,"tags":{"x":1},"list":["y"]}`, `[1,{"a":null}]`, `{"a":{"a":{}}}`, `"x"`, `{"a":1,"a":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r record
		_ = Unmarshal(data, &r) // must not panic
		if err := (Limits{}).Check(data); err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("Check accepted invalid JSON %q", data)
		}
		// Check judges numbers by their syntax, as it decodes them
		// (json.Number): 1e700 is JSON, a typed field says if it fits.
		var v any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := (Limits{}).Check(again); err != nil {
			t.Fatalf("re-encoding %q of %q refused: %v", again, data, err)
		}
		trimmed := bytes.TrimSpace(data)
		if trimmed[0] == '{' || trimmed[0] == '[' {
			for i := range len(trimmed) - 1 {
				if (Limits{}).Check(trimmed[:i]) == nil {
					t.Fatalf("prefix %q of %q accepted", trimmed[:i], data)
				}
			}
		}
	})
}
