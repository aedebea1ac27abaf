package tlog

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func testEntry() Entry {
	return Entry{
		Type: EntryType, Product: "acme/router-x1", Version: "1.1.0",
		Target: "acme/router-x1/1.1.0/firmware.img", TargetSHA256: strings.Repeat("ab", 32),
		Role: "acme.router-x1", RoleVersion: 3, Signers: []string{strings.Repeat("01", 32)},
		Logged: "2026-12-08T01:02:03Z",
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := testEntry()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(`{"_type":"airlock/log-entry/v1","logged":`)) {
		t.Errorf("not canonical (sorted keys): %s", b)
	}
	got, err := ParseEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Target != e.Target || got.RoleVersion != 3 || len(got.Signers) != 1 {
		t.Errorf("round trip: %+v", got)
	}
}

func TestParseEntryRefuses(t *testing.T) {
	good, err := testEntry().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, data, want string }{
		{"spaced", strings.Replace(string(good), `,"product"`, `, "product"`, 1), "canonical"},
		{"unknown field", strings.Replace(string(good), `{"_type"`, `{"x":1,"_type"`, 1), "unknown"},
		{"wrong type", strings.Replace(string(good), "log-entry/v1", "log-entry/v2", 1), "_type"},
		{"short digest", strings.Replace(string(good), strings.Repeat("ab", 32), "abab", 1), "target_sha256"},
		{"local time", strings.Replace(string(good), "01:02:03Z", "01:02:03+01:00", 1), "logged"},
		{"zero role version", strings.Replace(string(good), `"role_version":3`, `"role_version":0`, 1), "role_version"},
		{"no signers", strings.Replace(string(good), `["`+strings.Repeat("01", 32)+`"]`, `[]`, 1), "signers"},
		{"too large", string(good) + strings.Repeat(" ", MaxEntrySize), "more than"},
	} {
		_, err := ParseEntry([]byte(c.data))
		if !errors.Is(err, ErrEntry) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrEntry naming %q", c.name, err, c.want)
		}
	}
}

func TestTargetDigestCanonicalizes(t *testing.T) {
	a, err := TargetDigest([]byte(`{"length":3,"hashes":{"sha256":"aa"},"custom":{"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := TargetDigest([]byte(`{ "custom": {"x": 1}, "hashes": {"sha256": "aa"}, "length": 3 }`))
	if err != nil {
		t.Fatal(err)
	}
	if a != b || len(a) != 64 {
		t.Errorf("digests differ or malformed: %s %s", a, b)
	}
	if _, err := TargetDigest([]byte(`{"length":1.5}`)); err == nil {
		t.Error("a fraction was accepted")
	}
}

func FuzzParseEntry(f *testing.F) {
	good, _ := testEntry().Marshal()
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEntry(data)
		if err != nil {
			return
		}
		b, err := e.Marshal()
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("accepted %q but re-encodes as %q (%v)", data, b, err)
		}
	})
}
