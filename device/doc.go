// Package device is the device side of Airlock: the device config, the A/B
// slots and their records, the verified install pipeline, the verified-boot
// stage with trial boots and fallback, the health check that commits a slot,
// and status.
//
// # Threat model
//
// Trusted: the factory root metadata (cfg.Root; read-only, standing in for
// ROM or a secure element), the code of this package and of the packages it
// uses, the device config, and the device clock (only for metadata expiry
// when installing). The state directory is trusted for availability only:
// everything in it that decides what runs (slot records, trusted metadata)
// is verified again, from the factory root, before it is used; the boot
// environment and the counter are parsed strictly and fail closed.
//
// Untrusted: every update offered to the device (an offline bundle or an
// online repository: metadata bytes, payload bytes), and the contents of the
// slots (flash may rot, an attacker with storage access may flip bytes).
//
// What the package guarantees:
//
//   - Install verifies the TUF metadata with the device's trusted state in an
//     in-memory overlay (rollback and freeze of metadata are refused, nothing
//     is persisted for a refused update), checks the release policy (product,
//     model, hardware revision, channel, dependencies, strictly newer version
//     unless the release's signed allow_downgrade AND the operator's
//     AllowDowngrade both say so, security version at least the
//     anti-rollback counter) before any payload byte is read, then streams
//     the payload into the INACTIVE slot with constant memory, checking
//     length and digests of the transport file and of the installed image.
//     A refused install leaves the active slot, the trusted metadata and the
//     counter byte-for-byte unchanged.
//   - Boot re-verifies the chosen slot (stored signed metadata from the
//     factory root, anti-rollback counter, SHA-256 of the image read back)
//     and falls back when it fails or a trial is exhausted. Expiry is not
//     checked at boot: a device must never brick over time.
//   - Every persistent write goes through internal/durable, ordered so that
//     a power cut at any point leaves a device that boots a verified image,
//     old or new (proven by the power-cut tests of this package).
//
// Not protected: an attacker who can write the device's storage can delete
// or roll back the counter file and the trusted metadata (use a hardware
// counter and a read-only root), or mark slots bad (denial of service); they
// can never make the device run an image that does not verify. Keys revoked
// after a release was installed do not make that installed release
// unbootable (see docs/device.md, "Anchoring boot in the factory root").
package device
