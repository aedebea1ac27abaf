package cli

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time        { return c.t }
func (c *fakeClock) add(d time.Duration)   { c.t = c.t.Add(d) }
func newFake() (*fakeClock, *bytes.Buffer) { return &fakeClock{t: time.Unix(1e9, 0)}, &bytes.Buffer{} }
func lines(b *bytes.Buffer) []string       { return strings.Split(b.String(), "\r\033[K")[1:] }
func newTestProgress(w io.Writer, c *fakeClock) *Progress {
	return &Progress{w: w, label: "verify", now: c.now}
}

func TestProgressRateETAAndFinalLine(t *testing.T) {
	c, b := newFake()
	p := newTestProgress(b, c)
	w := p.Start(64 << 20)
	c.add(100 * time.Millisecond)
	w.Write(make([]byte, 1<<20)) // before ProgressInterval: no line
	c.add(1900 * time.Millisecond)
	w.Write(make([]byte, 15<<20)) // 16 MiB in 2 s: 8 MiB/s, 48 MiB left: 6 s
	c.add(6 * time.Second)
	w.Write(make([]byte, 48<<20))
	p.Done()
	p.Done() // a second Done prints nothing
	want := []string{
		"airlock: verify: 16.0/64.0 MiB (25%), 8.0 MiB/s, 6s left",
		"airlock: verify: 64.0/64.0 MiB (100%), 8.0 MiB/s, 0s left",
		"airlock: verify: 64.0/64.0 MiB (100%), 8.0 MiB/s, done in 8s\n",
	}
	if got := lines(b); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines:\n got %q\nwant %q", got, want)
	}
}

func TestProgressThrottles(t *testing.T) {
	c, b := newFake()
	p := newTestProgress(b, c)
	w := p.Start(1000)
	// 100 writes 10 ms apart: one second, so at most 1/ProgressInterval
	// redraws.
	for range 100 {
		c.add(10 * time.Millisecond)
		w.Write(make([]byte, 10))
	}
	if n, max := len(lines(b)), int(time.Second/ProgressInterval); n > max || n < 2 {
		t.Errorf("%d lines for 1s of writes, want 2..%d:\n%q", n, max, b.String())
	}
	if strings.Contains(b.String(), "\n") {
		t.Errorf("a redraw wrote a newline: %q", b.String())
	}
}

func TestProgressStopped(t *testing.T) {
	c, b := newFake()
	p := newTestProgress(b, c)
	w := p.Start(4 << 30)
	c.add(1500 * time.Millisecond)
	w.Write(make([]byte, 3<<20))
	c.add(10 * time.Millisecond)
	p.Done()
	want := []string{
		"airlock: verify: 3.0/4096.0 MiB (0%), 2.0 MiB/s, 34m7s left",
		"airlock: verify: 3.0/4096.0 MiB (0%), 2.0 MiB/s, stopped after 1.51s\n",
	}
	if got := lines(b); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines:\n got %q\nwant %q", got, want)
	}
}

func TestProgressOffPrintsNothing(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b bytes.Buffer
	env := func(vars ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(vars); i += 2 {
				if vars[i] == k {
					return vars[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name   string
		stderr io.Writer
		getenv func(string) string
		on     bool
	}{
		{"buffer", &b, env(), false},
		{"regular file", f, env(), false},
		{"AIRLOCK_PROGRESS=0", &b, env("AIRLOCK_PROGRESS", "0"), false},
		{"AIRLOCK_PROGRESS=1", &b, env("AIRLOCK_PROGRESS", "1"), true},
		{"AIRLOCK_PROGRESS=1 beats CI", &b, env("AIRLOCK_PROGRESS", "1", "CI", "true"), true},
	} {
		e := &Env{Stderr: tc.stderr, Getenv: tc.getenv}
		if p := e.Progress("x"); (p != nil) != tc.on {
			t.Errorf("%s: progress on = %v, want %v", tc.name, p != nil, tc.on)
		}
	}
	b.Reset()
	var p *Progress
	if w := p.Start(10); w != io.Discard {
		t.Errorf("nil Progress: Start = %T, want io.Discard", w)
	}
	p.Done()
	if st, _ := f.Stat(); b.Len() != 0 || st.Size() != 0 {
		t.Errorf("progress off wrote %q", b.String())
	}
}
