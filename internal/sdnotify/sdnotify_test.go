package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a unixgram socket like systemd's notify socket.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestNotifyReachesTheSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	abstract := fmt.Sprintf("@airlock-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	for _, name := range []string{filepath.Join(dir, "notify"), abstract} {
		t.Run(name, func(t *testing.T) {
			c := listen(t, name)
			n, err := New(env("NOTIFY_SOCKET", name))
			if err != nil || n == nil {
				t.Fatalf("New = %v, %v", n, err)
			}
			for _, s := range []string{Ready, Watchdog, Stopping} {
				if err := n.Notify(s); err != nil {
					t.Fatal(err)
				}
				if got := recv(t, c); got != s {
					t.Fatalf("received %q, want %q", got, s)
				}
			}
		})
	}
}

func TestNotifyWithoutSocketIsSilent(t *testing.T) {
	n, err := New(env())
	if err != nil || n != nil {
		t.Fatalf("New without NOTIFY_SOCKET = %v, %v", n, err)
	}
	if err := n.Notify(Ready); err != nil {
		t.Fatal(err)
	}
}

func TestNotifyToAMissingSocketFails(t *testing.T) {
	n, err := New(env("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent")))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err == nil {
		t.Fatal("notify to a missing socket succeeded")
	}
}

func TestNewRejectsMalformedSockets(t *testing.T) {
	for _, s := range []string{"relative/path", "vsock:2:1234", "/" + strings.Repeat("a", MaxSocketPath)} {
		if _, err := New(env("NOTIFY_SOCKET", s)); !errors.Is(err, ErrEnv) {
			t.Errorf("NOTIFY_SOCKET=%q: err = %v, want ErrEnv", s, err)
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	for _, tt := range []struct {
		usec, pid string
		want      time.Duration
		bad       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 15 * time.Second, false},
		{"30000000", me, 15 * time.Second, false},
		{"30000000", strconv.Itoa(os.Getpid() + 1), 0, false}, // meant for another process
		{"2000", me, time.Millisecond, false},
		{"0", "", 0, true},
		{"-5", "", 0, true},
		{"1e6", "", 0, true},
		{"86400000001", "", 0, true},
		{"30000000", "x", 0, true},
		{"30000000", "0", 0, true},
	} {
		got, err := WatchdogInterval(env("WATCHDOG_USEC", tt.usec, "WATCHDOG_PID", tt.pid))
		if got != tt.want || (err != nil) != tt.bad || (err != nil && !errors.Is(err, ErrEnv)) {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v (error %v)", tt.usec, tt.pid, got, err, tt.want, tt.bad)
		}
	}
}
