//go:build !unix

package audit

import "os"

// lockFile does nothing on systems without flock; do not open one log from
// two processes there.
func lockFile(*os.File) error { return nil }
