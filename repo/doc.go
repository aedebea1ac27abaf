// Package repo is the vendor side of Airlock: a TUF 1.0 image repository for
// firmware releases. It creates the repository (root, targets, snapshot and
// timestamp metadata), delegates each product line to its own path-restricted
// role, adds releases (streaming the image once, optionally compressing it
// with zstd), collects k-of-n release approvals on several machines,
// publishes consistent snapshots, refreshes timestamps, rotates and revokes
// keys, and writes offline bundles.
//
// # Threat model
//
// Trusted: the operator running this package, the machine it runs on while it
// runs, and the signers (crypto.Signer: key files or HSMs) handed to it. The
// repository directory is trusted storage for the operator's own work, but
// never for private keys: no function here writes a private key, and key
// paths inside the repository are refused ([CheckKeyPath]), so publishing
// REPO/public can never leak one.
//
// Untrusted: firmware images (treated as opaque byte streams, never read into
// memory), and pending metadata carried in from other machines
// ([Repo.ImportPending]): a carried file may have been altered, so only the
// signatures that verify over the exact staged bytes with a key the
// delegation authorizes are merged, and the signed content must be identical
// to what is staged.
//
// What the repository guarantees to devices is TUF's: every published file is
// standard TUF metadata (consistent snapshots on) that go-tuf's updater
// accepts; a product role may only sign paths under its product
// ([release.Product.PathPattern]); a release is published only once its
// product role reaches its signature threshold ([Repo.Publish] refuses
// otherwise); a new root is signed by a threshold of both the old and the new
// root keys; a revoked product key's signatures stop counting at the next
// publish. What it cannot do: protect against a threshold of stolen keys of
// one role (rotate them: docs/runbooks/key-compromise.md), or make an
// unavailable server serve fresh timestamps (devices then fail closed when
// the timestamp expires).
//
// Layout of a repository directory (docs/repository.md):
//
//	REPO/airlock-repo.json        configuration (expiry, online key paths)
//	REPO/airlock-repo.lock        the repository lock (see below)
//	REPO/audit/                   the audit log, if the repository keeps one
//	REPO/public/metadata/         N.root.json, root.json, timestamp.json,
//	                              N.snapshot.json, N.targets.json, N.<role>.json
//	REPO/public/targets/          <product>/<version>/<sha256>.<file>
//	REPO/staging/                 root.json, targets.json, <role>.json (pending),
//	                              targets/<product>/<version>/<sha256>.<file>
//	REPO/deltas/                  <product>/<version>/from-<base>.delta (signed
//	                              deltas, never served; see AddDelta)
//
// Every file is written atomically (temp file, fsync, rename, fsync dir,
// through internal/durable).
//
// # Concurrency, audit and environments
//
// Every mutating operation (Init, Delegate, AddRelease, AddDelta, SignPending,
// ImportPending, Rotate, Revoke, Publish, Timestamp) holds an exclusive
// flock on REPO/airlock-repo.lock for its whole duration, so a cron
// `repo timestamp` cannot interleave with a `repo publish` (both would
// write the same timestamp version, and the timestamp could name the
// snapshot before a new release). A second mutator waits up to
// Options.LockWait (DefaultLockWait) and then fails with a *LockedError
// naming the holder's pid, command line, operation and start time, which
// the holder writes into the lock file. Read-only calls take no lock.
//
// Each mutating operation appends its own entry to the audit log (when the
// repository was created with an audit key), with Options.Actor, after it
// acted and under the lock. With Options.Keyring, every signer and every
// enrolled key is checked against the key environment registry: a key
// registered for one trust environment never signs for another.
package repo
