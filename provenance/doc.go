// Package provenance reads and checks build provenance for the vendor side:
// a DSSE envelope (payload type application/vnd.in-toto+json) holding an
// in-toto Statement v1 whose predicate is SLSA provenance v1, and the
// per-product publish policy a release's provenance must satisfy.
//
// Parties and keys. The builder (a CI system) signs the envelope with its
// own key (Ed25519 or ECDSA; DSSE signer keys are not TUF keys and never
// sign metadata). The vendor's repository holds, per product, a Policy
// naming the builder identities, source repositories and build types it
// accepts and the builder signer keys of which k of n must have signed.
// `airlock release add --provenance` checks an envelope against that policy
// before the release is staged and `airlock repo publish` again before it
// becomes public; the envelope's SHA-256 is then bound into the release's
// signed metadata (custom.airlock.provenance), so anyone holding the
// repository's trusted root can check that the served envelope is the one
// the product keys approved. Rotating a builder key is a policy change
// (`airlock repo provenance-policy`), which releases staged before it must
// pass again at publish.
//
// What it does not stop: a builder whose signing key is stolen can attest
// anything, and provenance says nothing about whether the source commit is
// benign; the transparency log (docs/transparency.md) makes every release
// and its provenance digest public so that such a release can be noticed.
//
// Untrusted input is parsed strictly (internal/strictjson: one value, no
// duplicate keys, no unknown fields of the fixed structures, named size
// limits below); free-form members (externalParameters,
// internalParameters, annotations) are kept as raw JSON, bounded in size
// and depth. Specifications: DSSE v1 (envelope.md, protocol.md), in-toto
// attestation framework v1 (statement.md, resource_descriptor.md), SLSA
// provenance v1 (https://slsa.dev/spec/v1.0/provenance).
//
// The device never links this package: devices bind a release to its
// provenance through the signed digest and the transparency log only.
package provenance
