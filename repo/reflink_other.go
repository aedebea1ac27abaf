//go:build !linux

package repo

import "os"

// reflink is only implemented on Linux (FICLONE); elsewhere the image is
// copied.
func reflink(dst, src *os.File) bool { return false }
