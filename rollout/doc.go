// Package rollout is the pure core of Airlock's staged rollouts: the
// parsers of the operator's rollout settings (stages, device filter,
// success and failure thresholds, maintenance window) and the rollout state
// machine that decides, from the fleet's reported health, when a stage
// advances, when a rollout pauses itself and how many more devices may be
// assigned now. It does no I/O: the server stores rollouts and device
// states, feeds them in, and records every returned Transition in the audit
// log.
//
// # Threat model
//
// Everything this package parses (stage lists, filters, thresholds,
// windows) comes from an authenticated operator through the admin API or
// the CLI, and may still be malformed or hostile (a stolen operator token):
// every parser is strict, bounded by the named Max* limits, never panics
// and returns errors wrapping the sentinels below. Device reports that feed
// the counts come from authenticated devices (mTLS) but are not trusted to
// be honest: a device can lie about its own health, which can stall or
// pause a rollout (denial of service) but can never install firmware.
//
// A rollout is an availability control, not an authorization: it decides
// which devices the director assigns a release to, and when. It can never
// make a device install firmware the vendor did not sign: the device
// installs only a target that the director assigns AND the image
// repository (signed with the vendor's offline keys) authorizes with the
// same length and hashes (Uptane's two-repository rule). A compromised
// server, or a wrong decision of this package, can at worst assign a
// properly signed release to the wrong devices or at the wrong time, and
// even then the device's own policy (model, hardware revision, channel,
// version and anti-rollback security version) still applies.
package rollout
