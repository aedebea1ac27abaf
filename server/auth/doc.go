// Package auth is the admin side's identity and authorization: users and
// their roles, the one authorization table every admin route and dashboard
// page consults, admin and enrollment tokens, TOTP second factors (RFC
// 6238), and the key-encryption key (KEK) that seals the secrets the server
// must be able to read back.
//
// # Threat model
//
// Parties: admin users (one role each: viewer, operator, release_manager,
// approver, admin), devices presenting an enrollment token once, and the
// operator who controls the server host. Anyone on the network may present
// any token or code.
//
// Keys and secrets: tokens (admin and enrollment) are 256-bit random
// secrets shown once and stored only as SHA-256 hashes, looked up by hash
// and compared in constant time; a malformed token is refused before the
// store is asked. TOTP seeds are the one reversible secret; they are stored
// only sealed with the KEK (AES-256-GCM, the purpose and record ID as
// additional data, so a sealed value moved to another record does not open).
// The KEK lives in a file outside the database (0600, never overwritten);
// [CheckKEK] makes a server with the wrong KEK refuse to start rather than
// run without its secrets. Rotation: a user gets new tokens and is disabled
// to revoke them all; re-enrolling TOTP replaces the seed.
//
// Decisions: [Authorize] denies anything not in the table. A state-changing
// action also needs a TOTP code accepted at most once per user and time step
// (the replay state is in the store, shared by replicas), and
// MaxTOTPFailures wrong codes lock the second factor for TOTPLockout. A
// stolen token alone therefore reads fleet state but changes nothing.
//
// Sessions: a token and an accepted TOTP code buy a session credential
// (StartSession; SessionPrefix and 256 random bits, stored as SHA-256 only)
// that stands in for the code until it expires (Config.SessionTTL, at most
// MaxSessionTTL) or is logged out (EndSession). It carries the user's role at
// login and dies with the user or a role change. It never stands in for the
// code of an approval or a user change ([ActionSessionSuffices]): those
// would let a stolen session outlive itself or forge the four-eyes count. Every
// refusal is counted and audited; nothing here logs a token, a seed or a
// code. Whoever holds the KEK file and the database holds every seed.
package auth
