package repo

import (
	"os"

	"golang.org/x/sys/unix"
)

// reflink makes dst (an empty file) a copy-on-write clone of src with the
// FICLONE ioctl, and reports whether it did. It fails, and the caller
// copies, when the filesystem has no reflinks (EOPNOTSUPP, ENOTTY,
// EINVAL), the files are on different filesystems (EXDEV), or for any other
// reason: a copy is always correct, a reflink is only faster.
func reflink(dst, src *os.File) bool {
	sc, err := src.SyscallConn()
	if err != nil {
		return false
	}
	dc, err := dst.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	err = sc.Control(func(sfd uintptr) {
		dc.Control(func(dfd uintptr) {
			ok = unix.IoctlFileClone(int(dfd), int(sfd)) == nil
		})
	})
	return err == nil && ok
}
