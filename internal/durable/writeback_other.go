//go:build !linux

package durable

// StartWriteback is a no-op on systems without sync_file_range(2).
func StartWriteback(f File, off, n int64) {}
