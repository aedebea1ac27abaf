package trust

import (
	"fmt"
	"time"
)

// Default limits. Every read of untrusted data is bounded by one of them.
const (
	// MaxRootSize bounds one root metadata file.
	MaxRootSize = 512 << 10
	// MaxTimestampSize bounds the timestamp metadata file.
	MaxTimestampSize = 16 << 10
	// MaxSnapshotSize bounds the snapshot metadata file.
	MaxSnapshotSize = 2 << 20
	// MaxTargetsSize bounds targets and each delegated targets metadata file.
	MaxTargetsSize = 5 << 20
	// MaxRootRotations bounds the new root versions fetched by one Refresh.
	MaxRootRotations = 256
	// MaxDelegations bounds the roles visited by one target lookup.
	MaxDelegations = 32

	// MaxJSONDepth bounds object/array nesting in metadata.
	MaxJSONDepth = 64
	// MaxRoleNameLength bounds delegated role names (bytes), so that the
	// escaped store file name stays below common file name limits.
	MaxRoleNameLength = 80
	// MaxRootChainLength bounds the root chain kept by Client.Chain and
	// accepted by VerifyBootChain.
	MaxRootChainLength = 1024
	// MaxTargetPathLength bounds target paths (bytes).
	MaxTargetPathLength = 4096

	// DefaultMetadataTimeout bounds the retrieval of one metadata file by
	// an HTTP source, from the request to the last byte.
	DefaultMetadataTimeout = 10 * time.Minute
	// DefaultMinThroughput is the minimum rate, in bytes per second
	// averaged over DefaultThroughputWindow, of every HTTP response
	// (metadata and targets): a slower mirror is cut with
	// ErrSlowRetrieval. With the size limits above it bounds how long one
	// file can take (MaxTimestampSize: 16 s).
	DefaultMinThroughput = 1 << 10
	// DefaultThroughputWindow is the period the minimum rate is averaged
	// over; a response silent for this long is cut.
	DefaultThroughputWindow = 30 * time.Second
	// DefaultThroughputGrace lengthens the first window, which also covers
	// connection set-up, the TLS handshake and the response headers.
	DefaultThroughputGrace = 30 * time.Second
)

// Limits overrides the default limits. A zero field means the default.
type Limits struct {
	RootSize      int64 // default MaxRootSize
	TimestampSize int64 // default MaxTimestampSize
	SnapshotSize  int64 // default MaxSnapshotSize
	TargetsSize   int64 // default MaxTargetsSize
	RootRotations int   // default MaxRootRotations
	Delegations   int   // default MaxDelegations
}

func (l Limits) withDefaults() (Limits, error) {
	if l.RootSize < 0 || l.TimestampSize < 0 || l.SnapshotSize < 0 || l.TargetsSize < 0 ||
		l.RootRotations < 0 || l.Delegations < 0 {
		return l, fmt.Errorf("invalid limits: negative value in %+v", l)
	}
	def := func(v, d int64) int64 {
		if v == 0 {
			return d
		}
		return v
	}
	l.RootSize = def(l.RootSize, MaxRootSize)
	l.TimestampSize = def(l.TimestampSize, MaxTimestampSize)
	l.SnapshotSize = def(l.SnapshotSize, MaxSnapshotSize)
	l.TargetsSize = def(l.TargetsSize, MaxTargetsSize)
	l.RootRotations = int(def(int64(l.RootRotations), MaxRootRotations))
	l.Delegations = int(def(int64(l.Delegations), MaxDelegations))
	return l, nil
}

// Limits of the rollback floor record (floors.go).
const (
	// MaxFloorsSize bounds the rollback floor record. A name escaped in
	// the record takes at most three times its bytes in the snapshot, and
	// two lines of MaxFloorSigners fingerprints take under 256 KiB, so the
	// record of any snapshot within MaxSnapshotSize fits.
	MaxFloorsSize = 3*MaxSnapshotSize + 256<<10
	// MaxFloorSigners bounds the key fingerprints kept per floor: a floor
	// of a role whose threshold is higher is not kept in the record (only
	// in its metadata file).
	MaxFloorSigners = 1024
)
