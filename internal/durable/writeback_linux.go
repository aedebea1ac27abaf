//go:build linux

package durable

import "golang.org/x/sys/unix"

// StartWriteback asks the kernel to start writing the given byte range of f
// to disk now, without waiting (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE). It is a performance hint for long sequential
// writes, so that the final Sync has little left to flush; it gives no
// durability guarantee and is a no-op for files that are not OS files.
func StartWriteback(f File, off, n int64) {
	if of, ok := f.(interface{ Fd() uintptr }); ok {
		unix.SyncFileRange(int(of.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
	}
}
