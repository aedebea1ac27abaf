//go:build !linux

package sdnotify

import "errors"

// send fails: systemd runs only on Linux.
func send(addr, state string) error { return errors.New("sd_notify is supported on Linux only") }
