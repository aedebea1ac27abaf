// Package verify is the one check pipeline of Airlock: every caller that
// decides whether firmware may be installed — the device installing from a
// bundle or a repository (package device), the agent choosing what to fetch
// in repository or director mode (package agent), and anyone running
// `airlock verify` — runs the same ordered stages from this package and
// reports failures in one vocabulary (the Check* names and *Error):
//
//	source (bundle | HTTPS repository | director + repository)
//	  → format    the offline bundle's framing (OpenBundle)
//	  → metadata  TUF refresh: signatures, thresholds, versions, expiry,
//	              limits; the trust environment of the factory root (Open)
//	  → target    lookup through the delegations and their path patterns;
//	              the target's hashes are of known algorithms (Session.Check)
//	  → release   the Airlock release metadata in the target's custom field
//	  → policy    environment, product, model, hardware revision, channel,
//	              dependencies, version, security version, slot size
//	  → transparency  when the trusted root requires it: the release's
//	              entry in the log, its inclusion under a checkpoint signed
//	              by the log and cosigned by k of n witnesses, consistent
//	              with the checkpoint the device holds (package tlog)
//	  → payload   the streamed payload: length, every listed digest, the
//	              installed image's length and digest; a bundle is read to
//	              the end of its trailer (CopyPayload)
//
// The device adds its own state check before the pipeline and its commit
// (metadata, slot record, boot control) after it; nothing else.
//
// Threat model: everything but the trust anchor (Config.Root, the device's
// factory root) and the trusted metadata store (Config.Store) is untrusted:
// a bundle or repository may be forged, replayed, mixed, truncated, endless,
// signed for another trust environment, or signed by a key outside its
// delegation. A stage runs only on what the stages before it verified, so a
// payload byte is read only for a target that passed policy. Payload bytes
// are untrusted until CopyPayload returns nil: a caller that writes them
// (the device's inactive slot) must treat the destination as invalid on any
// error. Memory does not grow with the image size.
package verify
