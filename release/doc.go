// Package release defines what an Airlock firmware release is: the schema of
// the firmware rules a vendor signs into a TUF target's "custom" field, the
// target path convention, semantic versions, hardware-revision ranges,
// dependencies, and the policy a device applies before it reads a single
// payload byte.
//
// # Threat model
//
// Trusted: nothing that arrives over the network is trusted by this package.
// A [Metadata] value is only as trustworthy as the TUF target it came from;
// callers (the device-side trust client) must verify the TUF signatures,
// thresholds, delegations and freshness before they act on it. The device
// state passed to [Check] ([Device]) comes from the device itself and is
// trusted.
//
// Untrusted: the bytes given to [ParseCustom], [ParseVersion],
// [ParseHWRange], [ParseProduct], [ParseTargetPath] and [ParseDependency].
// They may come from a compromised server, mirror or bundle, or from a
// delegated product role whose key was stolen. Every parser here therefore
// bounds its input with a named limit (MaxCustomSize, MaxVersionLength, ...),
// accepts exactly one form (no duplicate JSON keys, no case-folded key
// matches, no unknown fields, no trailing data, no leading zeros), never
// panics, and returns an error that says which check failed and wraps a
// sentinel callers can test with [errors.Is].
//
// What this package defends against, given valid TUF signatures:
//
//   - a release for another product, model, hardware revision or channel
//     (cross-installation): [Check] and [CheckTargetPath];
//   - a product role signing metadata that claims another product: the target
//     path (which TUF restricts to the role's [Product.PathPattern]) must agree
//     with the metadata ([CheckTargetPath]);
//   - rollback to an older version (freeze/downgrade): [Check] refuses unless
//     the signed metadata itself sets allow_downgrade and the operator asks;
//   - rollback below the anti-rollback epoch: security_version is compared
//     with the device counter and can never be overridden;
//   - parser confusion between tools (two JSON decoders seeing different
//     values): strict, single-encoding parsing.
//
// What it does not do: verify signatures (package trust, go-tuf), check
// payload digests (the install pipeline streams and hashes the image against
// [Installed]), or store counters (package device/counter).
//
// The schema is documented for vendors in docs/release-metadata.md.
package release
