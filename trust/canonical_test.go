package trust

import (
	"testing"
)

func TestDecodeStrictRejectsAmbiguousJSON(t *testing.T) {
	for _, tt := range []struct{ name, in string }{
		{"duplicate key", `{"signed":{"version":1,"version":2},"signatures":[]}`},
		{"trailing data", `{"signed":{},"signatures":[]} {}`},
		{"float", `{"signed":{"version":1.0},"signatures":[]}`},
		{"exponent", `{"signed":{"version":1e3},"signatures":[]}`},
		{"invalid utf-8", "{\"signed\":{\"x\":\"\xff\"},\"signatures\":[]}"},
		{"too deep", `{"signed":` + repeat("[", MaxJSONDepth+1) + repeat("]", MaxJSONDepth+1) + `,"signatures":[]}`},
		{"truncated", `{"signed":{}`},
		{"signed not an object", `{"signed":[],"signatures":[]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := signedPayload([]byte(tt.in))
			wantErr(t, err, ErrMalformed)
		})
	}
}

func TestCanonicalForm(t *testing.T) {
	got, err := signedPayload([]byte(`{"signatures":[], "signed": {"b": "q\"\\\n", "a": [1, -2, true, null], "é": {}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "{\"a\":[1,-2,true,null],\"b\":\"q\\\"\\\\\n\",\"é\":{}}"
	if string(got) != want {
		t.Fatalf("canonical = %q, want %q", got, want)
	}
}

func TestStoreRejectsUnsafeNames(t *testing.T) {
	for _, s := range []Store{NewDirStore(nil, t.TempDir()), NewMemStore()} {
		for _, name := range []string{"", ".", "..", "../root.json", "a/b.json", `a\b`, "a\x00b"} {
			if err := s.Put(name, []byte("x")); err == nil {
				t.Errorf("%T.Put(%q) accepted an unsafe name", s, name)
			}
		}
	}
	if n := roleFileName("../x?#/é"); n != "..%2Fx%3F%23%2F%C3%A9.json" {
		t.Errorf("roleFileName = %q", n)
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}
