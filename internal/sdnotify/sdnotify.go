// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) without libsystemd: a state such as "READY=1" is one
// datagram sent to the unix socket named by $NOTIFY_SOCKET, a path or,
// with a leading '@', a name in the abstract namespace. The watchdog
// interval comes from $WATCHDOG_USEC (and $WATCHDOG_PID, when set, must
// be this process).
//
// Threat model: the environment is the service manager's; a value that
// does not parse is an error, not a guess. Nothing secret is sent.
package sdnotify

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// States a service sends.
const (
	Ready    = "READY=1"    // start-up finished
	Stopping = "STOPPING=1" // shutdown begins
	Watchdog = "WATCHDOG=1" // still healthy (within WatchdogSec=)
)

// Limits on what the environment may say.
const (
	// MaxSocketPath is the size of sun_path in struct sockaddr_un, less
	// its terminating NUL.
	MaxSocketPath = 107
	// MaxWatchdog bounds $WATCHDOG_USEC (a day).
	MaxWatchdog = 24 * time.Hour
)

// ErrEnv: $NOTIFY_SOCKET, $WATCHDOG_USEC or $WATCHDOG_PID is malformed.
var ErrEnv = errors.New("malformed systemd notification environment")

// Notifier sends states to the service manager. A nil Notifier (no
// $NOTIFY_SOCKET) sends nothing.
type Notifier struct {
	addr string
}

// New returns the Notifier for $NOTIFY_SOCKET as getenv reads it, or nil
// when it is unset or empty (not started by systemd with Type=notify).
func New(getenv func(string) string) (*Notifier, error) {
	s := getenv("NOTIFY_SOCKET")
	if s == "" {
		return nil, nil
	}
	if (s[0] != '/' && s[0] != '@') || len(s) > MaxSocketPath {
		return nil, fmt.Errorf("%w: NOTIFY_SOCKET %q is not an absolute path or an @abstract name of at most %d bytes", ErrEnv, s, MaxSocketPath)
	}
	// syscall.SockaddrUnix maps a leading '@' to the abstract namespace.
	return &Notifier{addr: s}, nil
}

// Notify sends state, such as Ready; on a nil Notifier it does nothing.
func (n *Notifier) Notify(state string) error {
	if n == nil {
		return nil
	}
	if err := send(n.addr, state); err != nil {
		return fmt.Errorf("failed to notify systemd: %w", err)
	}
	return nil
}

// WatchdogInterval returns how often to send Watchdog: half of
// $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, or 0 when the
// watchdog is off or $WATCHDOG_PID names another process.
func WatchdogInterval(getenv func(string) string) (time.Duration, error) {
	us := getenv("WATCHDOG_USEC")
	if us == "" {
		return 0, nil
	}
	if p := getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("%w: WATCHDOG_PID %q", ErrEnv, p)
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	n, err := strconv.ParseUint(us, 10, 64)
	if err != nil || n == 0 || n > uint64(MaxWatchdog/time.Microsecond) {
		return 0, fmt.Errorf("%w: WATCHDOG_USEC %q", ErrEnv, us)
	}
	return time.Duration(n) * time.Microsecond / 2, nil
}
