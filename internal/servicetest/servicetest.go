// Package servicetest holds test helpers for what a service shows its
// supervisor: systemd notifications on a real $NOTIFY_SOCKET, and JSON log
// lines. It is imported by tests only.
package servicetest

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Notifications listens on a unixgram socket in a new temp directory and
// returns its path (for $NOTIFY_SOCKET) and the states received.
func Notifications(t testing.TB) (string, <-chan string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

// WaitFor waits (30 s at most) until state arrives on ch.
func WaitFor(t testing.TB, ch <-chan string, state string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case s := <-ch:
			if s == state {
				return
			}
		case <-timeout:
			t.Fatalf("no %s from the service", state)
		}
	}
}

// JSONLines checks that every line of out is a JSON object with string
// time, level and msg, and returns them.
func JSONLines(t testing.TB, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	if out == "" {
		return nil
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not a JSON object: %q (%v)", l, err)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k].(string); !ok {
				t.Fatalf("log line lacks %q: %s", k, l)
			}
		}
		recs = append(recs, m)
	}
	return recs
}
