//go:build unix

package durable

import "syscall"

// NoFollow is an OpenFile flag: if the last element of the name is a
// symbolic link, the open fails instead of following it (O_NOFOLLOW).
const NoFollow = syscall.O_NOFOLLOW
