// Package bundle implements the Airlock offline bundle: one file that carries
// everything a device needs to install one firmware release without network
// access (USB stick, air-gapped transfer).
//
// A bundle holds, in a fixed order, the TUF metadata a device needs to verify
// the release starting from an older trusted root (the root chain, timestamp,
// snapshot, targets and the delegated roles on the path to the target), the
// TUF target path, and then the payload (the target file as published). The
// byte layout is specified in docs/bundle-format.md.
//
// # Threat model
//
// Nothing in a bundle is trusted. A bundle arrives from whoever handed the
// device the USB stick; it may be truncated, corrupted, extended, or crafted
// by an attacker to exhaust memory or confuse the parser.
//
//   - This package authenticates nothing. Authenticity, authorization and
//     freshness come from the TUF metadata signatures, which the device's TUF
//     client verifies against the root it already trusts, and the payload is
//     authenticated by the length and hashes of its TUF target, which the
//     device checks while streaming it into the inactive slot.
//   - The SHA-256 digests in the bundle (header digest and trailer) protect
//     the framing against accidental damage: truncation, bit flips, appended
//     junk. Anyone can recompute them, so they are NOT a security boundary.
//   - What this package does guarantee is strict, bounded parsing: every
//     length and count is checked against a named limit (see the Max…
//     constants and [Limits]) before anything is allocated; the header is read
//     without reading ahead, so no payload byte is consumed before the whole
//     metadata section has been read and checked; the payload is streamed and
//     never buffered; a truncated payload is an error, never a short read;
//     and there is exactly one valid encoding for any content.
//   - No name taken from a bundle is ever used to open a file. The target path
//     is only a key the device looks up in verified TUF metadata, and role
//     names are restricted to a safe character set anyway.
//
// The encoder ([Write]) is used on the vendor side; the reader ([NewReader],
// [Inspect]) is device-side code and imports nothing but the standard library.
package bundle
