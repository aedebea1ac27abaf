// Package trust is the device-side TUF client: it fetches untrusted metadata
// from a Source, verifies it with the TUF 1.0.x client workflow (spec sections
// 5.3 to 5.7), keeps only verified metadata (in memory and in a Store), looks
// up targets through delegations and streams target files through a length
// limit and hashes.
//
// # Threat model
//
// Trusted: the initial root metadata already in the Store ("root.json", put
// there at manufacturing, normally the factory root), the device clock (for
// expiry only, through Config.Now), the Store's storage medium for
// availability (its content is still re-verified on every Refresh), and the
// code of this package (its metadata types, metadata.go, and the canonical
// JSON of internal/canonjson; it links no TUF library).
//
// Untrusted: everything a Source returns (metadata bytes, target bytes, HTTP
// status codes other than 404), the network, mirrors, CDNs and the repository
// server itself. An attacker controlling them may serve arbitrary bytes, old
// signed metadata (rollback, freeze), metadata from different repository
// states (mix-and-match), endless data, or validly signed metadata of roles
// they hold keys for. The package defends against these by:
//
//   - verifying each role against a threshold of distinct public keys of the
//     role that delegates to it (root for top-level roles; the delegating
//     targets role of the CURRENT lookup for delegated roles, never a copy
//     verified through another delegator);
//   - following the root rotation chain one version at a time, each new root
//     signed by a threshold of the old AND the new root keys (5.3.4);
//   - refusing version rollback of root, timestamp, snapshot and every role
//     listed in snapshot — the floors are kept in the metadata files and in
//     a second floor record (floors.go), so losing or corrupting one file
//     never lowers a floor — and checking snapshot and targets against the versions,
//     lengths and hashes that the timestamp and snapshot pin (5.4 to 5.6);
//   - refusing expired metadata when refreshing (freeze attack);
//   - cutting off a source that is too slow (slow retrieval): over HTTP every
//     metadata file is under a deadline and every response under a
//     minimum-throughput rule (watchdog.go, ErrSlowRetrieval);
//   - bounding every read (named limits below), the number of root rotations
//     per refresh, and the number of delegated roles visited per lookup;
//   - parsing strictly: one JSON value, valid UTF-8, no duplicate object keys,
//     integer numbers only, bounded nesting; signatures are checked over the
//     canonical JSON form of the received "signed" object, so unknown fields
//     are covered by signatures (spec section 4).
//
// Verified metadata is persisted with Store.Put only after every check for
// that file passed. A key holder of a role can still sign whatever that role
// may sign; delegations restrict delegated roles to their path patterns.
//
// Target bytes written by Client.Download before it returns an error are
// untrusted: Download verifies length and hashes only at the end of the
// stream, so callers write into a location that is not used until Download
// returned nil (the inactive slot, a temporary file).
//
// VerifyBootChain is the offline counterpart for the boot stage: it verifies
// stored signed metadata from the factory root without network access and
// without expiry checks (expiry is a freshness property of installing, not of
// booting); rollback of installed images is the job of the anti-rollback
// counter, not of this function.
package trust
