package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func validLine(t testing.TB) []byte {
	e := sampleEntry(6) // has details
	e.Seq = 6
	e.Prev[0] = 0xab
	if err := e.validate(); err != nil {
		t.Fatal(err)
	}
	return e.Encode()
}

func TestParseEntryRoundTrip(t *testing.T) {
	for i := range 10 {
		e := sampleEntry(i)
		e.Seq = uint64(i)
		e.Time = e.Time.Add(123456789 * time.Nanosecond)
		b := e.Encode()
		got, err := ParseEntry(b)
		if err != nil {
			t.Fatalf("ParseEntry(%s) = %v", b, err)
		}
		if !bytes.Equal(got.Encode(), b) || !got.Time.Equal(e.Time) || got.Actor != e.Actor || got.Seq != e.Seq {
			t.Fatalf("round trip changed %s to %s", b, got.Encode())
		}
	}
}

// TestParseEntryRejectsNonCanonical: only the encoder's bytes are accepted,
// so one entry has exactly one encoding and one leaf hash.
func TestParseEntryRejectsNonCanonical(t *testing.T) {
	good := string(validLine(t))
	tests := []struct {
		name, line string
	}{
		{"empty", ""},
		{"not an object", `[1]`},
		{"space after colon", strings.Replace(good, `"seq":6`, `"seq": 6`, 1)},
		{"trailing space", good + " "},
		{"trailing object", good + "{}"},
		{"unknown field", strings.Replace(good, `{"seq":6,`, `{"seq":6,"x":1,`, 1)},
		{"duplicate field", strings.Replace(good, `{"seq":6,`, `{"seq":6,"seq":6,`, 1)},
		{"field order", strings.Replace(good, `"actor":"user0","action":"auth.login"`, `"action":"auth.login","actor":"user0"`, 1)},
		{"missing field", strings.Replace(good, `"device":"",`, ``, 1)},
		{"upper-case field name", strings.Replace(good, `"actor"`, `"Actor"`, 1)},
		{"null details", strings.Replace(good, `"details":{"mfa":"totp","remote_addr":"192.0.2.7"}`, `"details":null`, 1)},
		{"unsorted details", strings.Replace(good, `{"mfa":"totp","remote_addr":"192.0.2.7"}`, `{"remote_addr":"192.0.2.7","mfa":"totp"}`, 1)},
		{"duplicate detail key", strings.Replace(good, `{"mfa":"totp",`, `{"mfa":"x","mfa":"totp",`, 1)},
		{"escaped letter", strings.Replace(good, `"user0"`, `"\u0075ser0"`, 1)},
		{"non-UTC time", strings.Replace(good, `12:06:00Z`, `13:06:00+01:00`, 1)},
		{"trailing zero in fraction", strings.Replace(good, `12:06:00Z`, `12:06:00.50Z`, 1)},
		{"unknown action", strings.Replace(good, `"auth.login"`, `"auth.root"`, 1)},
		{"upper-case prev", strings.Replace(good, `"prev":"ab`, `"prev":"AB`, 1)},
		{"short prev", strings.Replace(good, `"prev":"ab`, `"prev":"`, 1)},
		{"seq with exponent", strings.Replace(good, `"seq":6`, `"seq":6e0`, 1)},
		{"negative seq", strings.Replace(good, `"seq":6`, `"seq":-6`, 1)},
		{"control character", strings.Replace(good, `"user0"`, `"user0\n"`, 1)},
		{"invalid utf-8", strings.Replace(good, `"user0"`, "\"user0\xff\"", 1)},
		{"empty actor", strings.Replace(good, `"user0"`, `""`, 1)},
		{"bad detail key", strings.Replace(good, `"mfa"`, `"MFA"`, 1)},
		{"too large", strings.Replace(good, `"192.0.2.7"`, `"`+strings.Repeat("a", MaxEntrySize)+`"`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.line == good {
				t.Fatal("test case does not change the line")
			}
			if _, err := ParseEntry([]byte(tt.line)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseEntry(%q) = %v, want ErrMalformed", tt.line, err)
			}
		})
	}
	// Every proper prefix is rejected.
	for i := range len(good) {
		if _, err := ParseEntry([]byte(good[:i])); err == nil {
			t.Fatalf("prefix %q accepted", good[:i])
		}
	}
}

func TestAppendRejectsInvalidEntries(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, newKey(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	base := Entry{Actor: "alice", Action: ReleaseSigned, Release: "acme/x1@1.0.0"}
	tests := []struct {
		name string
		edit func(e *Entry)
	}{
		{"no actor", func(e *Entry) { e.Actor = "" }},
		{"unknown action", func(e *Entry) { e.Action = "release.stolen" }},
		{"no action", func(e *Entry) { e.Action = "" }},
		{"release without version", func(e *Entry) { e.Release = "acme/x1" }},
		{"release with two @", func(e *Entry) { e.Release = "acme@x1@1" }},
		{"release with space", func(e *Entry) { e.Release = "acme/x1@1.0 beta" }},
		{"long actor", func(e *Entry) { e.Actor = strings.Repeat("a", MaxFieldLen+1) }},
		{"newline in device", func(e *Entry) { e.Device = "dev-1\nforged line" }},
		{"escape sequence in actor", func(e *Entry) { e.Actor = "\x1b[2Jalice" }},
		{"invalid utf-8", func(e *Entry) { e.Actor = "\xff" }},
		{"bad detail key", func(e *Entry) { e.Details = map[string]string{"Key ID": "x"} }},
		{"long detail value", func(e *Entry) { e.Details = map[string]string{"k": strings.Repeat("v", MaxDetailValueLen+1)} }},
		{"too many details", func(e *Entry) {
			e.Details = map[string]string{}
			for i := range MaxDetails + 1 {
				e.Details[string(rune('a'+i%26))+strings.Repeat("x", i)] = "v"
			}
		}},
		{"year 10000", func(e *Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			tt.edit(&e)
			if _, err := l.Append(t.Context(), e); !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("Append = %v, want ErrInvalidEntry", err)
			}
		})
	}
	if seq, err := l.Append(t.Context(), base); err != nil || seq != 0 {
		t.Fatalf("valid Append after rejections = %d, %v", seq, err)
	}
}

func FuzzParseEntry(f *testing.F) {
	f.Add(validLine(f))
	for i := range 7 {
		e := sampleEntry(i)
		f.Add(e.Encode())
	}
	f.Add([]byte(`{"seq":0}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseEntry(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			return
		}
		// Parse then encode returns the same bytes: one encoding per entry.
		if b := e.Encode(); !bytes.Equal(b, line) {
			t.Fatalf("ParseEntry accepted non-canonical %q (canonical %q)", line, b)
		}
		if err := e.validate(); err != nil {
			t.Fatalf("ParseEntry accepted an invalid entry: %v", err)
		}
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	s := newKey(f)
	es := []Entry{sampleEntry(0), sampleEntry(1), sampleEntry(2)}
	for i := 1; i <= 3; i++ {
		f.Add(signedCheckpoint(f, s, es, i))
	}
	pub := pubOf(s)
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := OpenCheckpoint(msg, pub)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error %v does not match ErrTampered", err)
			}
			return
		}
		if c.text() == "" || c.Size > 3 {
			t.Fatalf("accepted a checkpoint that was never signed: %+v", c)
		}
	})
}
