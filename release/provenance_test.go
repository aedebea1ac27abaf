package release

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestProvenanceField: custom.airlock.provenance round-trips, and every
// malformed form of it is refused with the field named.
func TestProvenanceField(t *testing.T) {
	m := validMetadata()
	m.Provenance = &Provenance{Length: 1234}
	m.Provenance.SHA256[0], m.Provenance.SHA256[31] = 0xab, 0x01
	raw, err := MarshalCustom(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `"provenance":{"sha256":"ab00000000000000000000000000000000000000000000000000000000000001","length":1234}`
	if !bytes.Contains(raw, []byte(want)) {
		t.Fatalf("encoded metadata lacks %s:\n%s", want, raw)
	}
	back, err := ParseCustom(raw)
	if err != nil {
		t.Fatal(err)
	}
	if back.Provenance == nil || *back.Provenance != *m.Provenance {
		t.Fatalf("round trip: got %+v, want %+v", back.Provenance, m.Provenance)
	}
	again, err := MarshalCustom(back)
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("re-encoding differs: %v\n%s\n%s", err, again, raw)
	}

	for _, tc := range []struct{ name, from, to, field string }{
		{"uppercase hex", `"provenance":{"sha256":"ab`, `"provenance":{"sha256":"AB`, "provenance.sha256"},
		{"short digest", `"provenance":{"sha256":"ab`, `"provenance":{"sha256":"a`, "provenance.sha256"},
		{"zero length", `"length":1234}`, `"length":0}`, "provenance.length"},
		{"too long", `"length":1234}`, `"length":1048577}`, "provenance.length"},
		{"unknown key", `"length":1234}`, `"length":1234,"uri":"x"}`, "provenance.uri"},
		{"missing length", `,"length":1234}`, `}`, "provenance.length"},
		{"not an object", want, `"provenance":"ab"`, "provenance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(string(raw), tc.from, tc.to, 1)
			if bad == string(raw) {
				t.Fatal("test edit did not apply")
			}
			_, err := ParseCustom([]byte(bad))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a FieldError on %q", err, tc.field)
			}
		})
	}
	zero := validMetadata()
	zero.Provenance = &Provenance{Length: 10}
	if _, err := MarshalCustom(zero); err == nil {
		t.Fatal("an all-zero provenance digest was accepted")
	}
}
