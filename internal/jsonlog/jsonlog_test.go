package jsonlog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSameLinesAsSlog: for the values the agent logs, a record is the line
// slog's JSONHandler writes for it, byte for byte (the time fixed).
func TestSameLinesAsSlog(t *testing.T) {
	at := time.Date(2026, 12, 7, 18, 30, 1, 234567891, time.UTC)
	records := []struct {
		lv   Level
		msg  string
		args []any
	}{
		{Info, "poll done", []any{"action", "committed", "version", "1.1.0", "next_in", 90 * time.Second}},
		{Error, `update "failed" <now> & then`, []any{"error", errors.New("boom: \"x\"\n"), "count", 3, "ok", true}},
		{Warn, "sizes", []any{"received", int64(1 << 40), "total", uint64(7), "sv", uint32(2)}},
		{Debug, "odd", []any{"dangling"}},
		{Info, "unicode ✓ \u2028 \x01", []any{"k\"ey", "v\tal", "list", []string{"a", "b"}}},
		{Info, "bad \xff utf-8 \\ back", []any{"k", "\xc3", "ok", "\ufffd"}},
	}
	var mine, theirs bytes.Buffer
	l := New(&mine, Debug)
	l.now = func() time.Time { return at }
	s := slog.New(slog.NewJSONHandler(&theirs, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			a.Value = slog.TimeValue(at)
		}
		return a
	}}))
	for _, r := range records {
		l.log(r.lv, r.msg, r.args)
		s.Log(t.Context(), slog.Level(r.lv), r.msg, r.args...)
	}
	got, want := strings.Split(mine.String(), "\n"), strings.Split(theirs.String(), "\n")
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[min(i, len(got)-1)], want[i])
		}
	}
}

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Level
	}{{"", Info}, {"debug", Debug}, {"info", Info}, {"warn", Warn}, {"error", Error}} {
		if got, err := ParseLevel(tc.name); err != nil || got != tc.want {
			t.Errorf("ParseLevel(%q) = %v, %v", tc.name, got, err)
		}
	}
	if _, err := ParseLevel("loud"); !errors.Is(err, ErrLevel) {
		t.Errorf("ParseLevel(loud) = %v", err)
	}
	var b bytes.Buffer
	l := New(&b, Warn)
	l.Debug("d")
	l.Info("i")
	l.Warn("w")
	l.Error("e")
	if n := strings.Count(b.String(), "\n"); n != 2 || !strings.Contains(b.String(), `"level":"WARN","msg":"w"`) || !strings.Contains(b.String(), `"level":"ERROR","msg":"e"`) {
		t.Errorf("at Warn:\n%s", b.String())
	}
	var nilLogger *Logger
	nilLogger.Info("nothing") // a nil Logger logs nothing
}

// TestConcurrentLinesStayWhole: records from many goroutines never
// interleave within a line.
func TestConcurrentLinesStayWhole(t *testing.T) {
	var b bytes.Buffer
	l := New(&b, Info)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				l.Info("record", "g", g, "i", i, "pad", strings.Repeat("x", 100))
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines, want 1600", len(lines))
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, `{"time":"`) || !strings.HasSuffix(line, `"}`) {
			t.Fatalf("broken line %q", line)
		}
	}
}

// FuzzSameAsSlog: any message, key and string value give slog's line.
func FuzzSameAsSlog(f *testing.F) {
	f.Add("msg", "key", "value")
	f.Add("\xff\xfe<&>\u2028", "\x00", "\\u003c")
	f.Fuzz(func(t *testing.T, msg, key, val string) {
		at := time.Unix(1, 0).UTC()
		var mine, theirs bytes.Buffer
		l := New(&mine, Debug)
		l.now = func() time.Time { return at }
		s := slog.New(slog.NewJSONHandler(&theirs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				a.Value = slog.TimeValue(at)
			}
			return a
		}}))
		l.Info(msg, key, val)
		s.Info(msg, key, val)
		if mine.String() != theirs.String() {
			t.Fatalf("\n got %s\nwant %s", mine.String(), theirs.String())
		}
	})
}
