package verify

import (
	"bytes"
	"fmt"

	"github.com/airlockfw/airlock/trust"
)

// ErrNotAuthorized means the image repository does not describe a target
// assigned by a director (Uptane's director repository) with the same
// path, length and hashes: the director's online key assigned an image the
// vendor never signed — the server is compromised, or the repositories are
// out of sync.
var ErrNotAuthorized = trust.NewRefusal("the image repository does not authorize the assigned target")

// SameTarget checks the two-repository rule for one target: the image
// repository's verified description img authorizes the director's dir when
// both have the same path and length, both list sha256 with the same
// digest, and every other algorithm both list has the same digest.
func SameTarget(dir, img *trust.TargetFiles) error {
	if dir == nil || img == nil {
		return fmt.Errorf("%w: missing target description", ErrNotAuthorized)
	}
	if dir.Path != img.Path {
		return fmt.Errorf("%w: path %q, image repository %q", ErrNotAuthorized, dir.Path, img.Path)
	}
	if dir.Length != img.Length {
		return fmt.Errorf("%w: %q: director length %d, image repository length %d", ErrNotAuthorized, dir.Path, dir.Length, img.Length)
	}
	if len(dir.Hashes["sha256"]) == 0 || len(img.Hashes["sha256"]) == 0 {
		return fmt.Errorf("%w: %q: both repositories must list a sha256 hash", ErrNotAuthorized, dir.Path)
	}
	for alg, d := range dir.Hashes {
		if i, ok := img.Hashes[alg]; ok && !bytes.Equal(d, i) {
			return fmt.Errorf("%w: %q: %s differs between the director and the image repository", ErrNotAuthorized, dir.Path, alg)
		}
	}
	return nil
}
