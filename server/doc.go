// Package server is Airlock's HTTPS update server: it serves the image
// repository's static TUF files and payloads, the device API (enrollment,
// check-in, status reports) and a token-authenticated admin API, with state
// in a [store.Store] (SQLite by default, PostgreSQL at scale).
//
// # Threat model
//
// Trusted: the operator, the machine the server runs on, the DATA directory
// (CA keys, server key, database) and the store. The server is NOT part of
// the firmware trust chain: the repository files it serves are TUF metadata
// and payloads signed offline by the vendor, which devices verify
// themselves, so a compromised server can deny or delay updates (bounded by
// TUF timestamp expiry) and misreport fleet state, but cannot make a device
// install firmware the vendor never signed.
//
// Untrusted: everything that arrives over the network. Devices are
// authenticated but not trusted: each enrolls once with a factory credential
// (a single- or few-use enrollment token, or a certificate issued by a
// manufacturing CA the operator trusts) and receives a client certificate
// from the server's device CA. From then on every device request uses mTLS;
// the device is identified only by the serial and fingerprint of that
// certificate, never by anything in the request, so a device can read and
// write only its own record (the API has no device ID in any device path,
// and unknown JSON fields such as a forged "device_id" are rejected). A
// certificate from the manufacturing CA is accepted only for enrollment.
// Admin clients are users with one role each (viewer, operator,
// release_manager, approver, admin) and present a bearer token of their
// user; tokens (admin and enrollment) are 256-bit random secrets stored only
// as SHA-256 hashes. Every admin route declares an [Action] and
// [Authorize] checks the user's current role against one table, denying by
// default. State-changing actions also need a TOTP code (RFC 6238) that is
// accepted once per user and time step (replay state in the store). A
// release for production is deployable only after k distinct approvers
// other than its uploader approved it. A stolen token alone therefore reads
// fleet state but changes nothing, and one person alone cannot push a
// release to production. The one reversible secret the server keeps, each
// user's TOTP seed, is stored only sealed with a key-encryption key ([KEK])
// that lives outside the database; the server refuses to start with a KEK
// that does not match the database. Whoever controls the server host (DATA,
// the KEK, the CLI) controls the admin API. See docs/security.md.
//
// Every request body is parsed strictly: a named size limit
// (http.MaxBytesReader, 413 when exceeded), exactly one JSON object, no
// unknown or duplicate keys, and every field validated before it reaches the
// store. Repository paths are cleaned and confined to the repository
// directory with [os.Root] (no "..", no symlinks out, no directory
// listings). Logs (log/slog, JSON) carry one line per request and never
// tokens, keys or CSRs.
//
// TLS is 1.2 or newer. Without an operator certificate the server creates a
// local CA in DATA and a server certificate for loopback and the configured
// host names; devices pin the CA by its SHA-256 fingerprint. Session
// resumption (tickets) is on so the check-in path of a large fleet costs one
// full handshake per device and one database write per check-in.
//
// # Rooms
//
// This package is the wiring: configuration, TLS, listeners, routes and the
// device API handlers. Each concern lives in its own package, which never
// imports this one (TestNoSubPackageImportsTheServer):
//
//   - server/auth: users, roles and the authorization table, tokens, TOTP,
//     the KEK, and the Authenticator the admin API and dashboard share
//   - server/pki: the TLS and device CAs, server and device certificates
//   - server/director: per-device director metadata, its keys and signing,
//     checked against the image repository
//   - server/releases: the release registry and its approvals
//   - server/rollouts: the rollout engine and rollout operations
//   - server/dashboard: the web dashboard and its templates
//   - server/repofiles: the static repository files
//   - server/store: SQLite and PostgreSQL state
//   - server/internal/httpx, server/internal/metrics: shared HTTP plumbing
//     and the Prometheus registry
//   - adminapi (top level): the admin API's wire types and typed client
//
// See docs/server.md for configuration, every endpoint's request and
// response shapes, and operation.
package server
