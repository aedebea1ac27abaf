// Package audit is Airlock's tamper-evident audit log: every security-relevant
// event (keys generated, rotated or revoked; releases added, signed, approved
// and published; rollouts created, started, paused and advanced, and every
// transition of the server's rollout state machine; devices enrolled,
// updated and rolled back, and their tags; users created and disabled;
// logins and failed logins) is appended as one entry
// to a hash-chained, Merkle-tree-backed log whose tree heads are periodically
// signed.
//
// # Format
//
// A log is a directory holding
//
//   - audit.log: one canonical JSON entry per line (fixed field order, written
//     by this package's own encoder; see [ParseEntry]). Entry N carries seq N
//     and prev, the RFC 6962 leaf hash of entry N-1 (all zeros for entry 0).
//     The leaf hash of an entry is the RFC 6962 leaf hash of its line without
//     the newline, and the entries are the leaves of an RFC 6962 Merkle tree.
//   - checkpoints: one signed tree head per line, base64 of a signed note
//     (golang.org/x/mod/sumdb/note) whose text is a C2SP tlog checkpoint:
//     origin, tree size, base64 root hash, and a "time" extension line.
//   - audit-key.pub: the checkpoint public key, written by [Open] for
//     convenience. It is not a trust anchor (see below).
//
// Every append is one write(2) of a whole line to a file opened with O_APPEND,
// followed by fsync, so a crash can lose only a partially written last line.
// A checkpoint is signed only over entries already synced.
//
// # Threat model
//
// Trusted: the checkpoint signing key (an Ed25519 crypto.Signer, which may live
// in an HSM) and the public key the verifier is given out of band. Untrusted:
// everything in the log directory. An attacker who can write the directory
// but does not hold the key can
//
//   - not edit, remove, insert or reorder an entry covered by a signed
//     checkpoint without [Verify] reporting it: the Merkle root at the
//     checkpoint's size would change, and the signature cannot be redone;
//   - edit or drop entries appended after the last checkpoint, or delete the
//     newest checkpoints together with the entries they cover, which a local
//     verification cannot tell from a log that never had them. Ship
//     checkpoints off the box (to a server, a witness or a ticket system) and
//     give the latest one to [VerifyWithOptions] to close that gap, and keep
//     CheckpointEvery small;
//   - replace audit-key.pub; verify with a public key pinned elsewhere.
//
// Naive edits (one field, one line removed, two lines swapped) are also
// caught by the hash chain and the seq numbers even when no checkpoint covers
// them, and are reported as [ErrEdited], [ErrRemoved] or [ErrReordered]. A
// partial last line without a newline is the trace of a crash, not of an
// attack: [Verify] reports it in [VerifyReport.TornBytes] and [Open] moves it
// to audit.log.torn before appending again, unless a signed checkpoint covers
// it, in which case entries were removed.
//
// Entries are untrusted input when read back: [ParseEntry] accepts exactly the
// bytes the encoder produces, within the limits named by the Max constants.
package audit
