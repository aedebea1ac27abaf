// Package tlog is the device side of firmware transparency: the log entry
// that records a release, the witness policy carried in signed root
// metadata, and (as it grows) the checks a device runs before installing —
// the checkpoint's log signature, k-of-n witness cosignatures, the
// release's inclusion proof and consistency with the checkpoint it holds.
// The log itself runs on transparency-dev/tessera on the vendor side.
//
// Threat model: everything this package reads (entries, checkpoints,
// proofs, tiles) comes from the network or a bundle and is untrusted; it is
// parsed strictly with named size limits and trusted only after it is
// verified against the policy, which comes from verified root metadata. A
// stolen release-signing key alone cannot make a device install a release
// the public log does not show: the release must be appended to the log,
// where monitors see it, and the checkpoint that proves it must be
// cosigned by enough independent witnesses, which refuse to sign a view of
// the log inconsistent with one they signed before. It does not stop an
// attacker who holds the log key and enough witness keys, nor a release
// that is logged but malicious (the monitor's job is to notice it).
package tlog
