package sdnotify

import "syscall"

// send writes one datagram to the unix socket at addr. It uses syscall
// rather than package net: the device binary pays for net's unix sockets.
func send(addr, state string) error {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Sendto(fd, []byte(state), 0, &syscall.SockaddrUnix{Name: addr})
}
