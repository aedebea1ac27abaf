package devicecmd

import (
	"context"

	"github.com/airlockfw/airlock/verify"
)

// Provenance, when set, reads and checks the build provenance of a release
// that `airlock verify --repo` has just verified (rep), from the same
// repository location, and returns it as text rows and as a value for
// --json. The full airlock binary sets it (cmd/airlock: vendorcmd.ShowProvenance); in
// airlock-device it is nil, so that the device binary carries no
// provenance reader, and `verify --show-provenance` is refused there.
var Provenance func(ctx context.Context, rep *verify.Report, location string) (rows [][]string, v any, err error)
