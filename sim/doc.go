// Package sim is Airlock's fleet simulator: N simulated devices in one
// process, each a real agent.Agent operating a real device (package device:
// TUF client, verified install pipeline, A/B slots, boot control,
// anti-rollback counter) on its own in-memory filesystem (durable.Mem),
// with its own key, certificate and state, sharing nothing with the other
// devices. They enroll with the update server, poll it (with jitter),
// install what the server's director assigns (or the newest release in
// repository mode), boot into it and run a health check that fails with a
// seeded probability per install, then commit or roll back and report,
// exactly as real agents do.
//
// A bounded worker pool (Options.Concurrency) runs poll cycles; idle
// devices are entries in a timer heap, not goroutines, so 10,000 devices
// cost their in-memory state (two small slots, metadata, key) and nothing
// else.
//
// # Light devices
//
// LightFleet (NewLight) simulates a fleet too large for real agents
// (100,000 devices in a few processes): a light device holds only its
// identity (a P-256 key and the certificate the server's real enrollment
// API issued for it, about 1 KiB with its state), its version and its
// schedule. It speaks the real device API over mutual TLS, one keep-alive
// connection per poll cycle and TLS sessions resumed from a cache keyed by
// device (a session is never resumed under another device's identity): a
// check-in each cycle; on an assignment it fetches the director's
// timestamp, snapshot and targets and the assigned payload from the
// repository path, as an agent does, and reports downloading, installed
// and committed (or rolled_back, drawn with FailRate), then states the new
// version on its next check-in. The server's path is the real one; the
// device's is not: device API responses are decoded strictly
// (deviceapi.DecodeResponse and its validators) and bounded, but director
// metadata is read without signature checks and the payload is checked
// only against the director's length and SHA-256, and nothing is
// installed. Request latencies go into bounded histograms (Histogram),
// which merge across processes. Unlike a real agent, a light device
// fetches director metadata only when its check-in names an assignment.
//
// # Threat model
//
// The simulator is a test and benchmark tool, run by the operator against
// their own server. Trusted: its options (server URL and CA, enrollment
// token, factory and director roots, initial bundle). Untrusted: the
// server, exactly as for a real device: every response goes through the
// agent's strict decoding and every metadata file and payload through the
// device's TUF verification. The simulated devices' private keys live in
// process memory only and are discarded at exit; the enrollment token is
// copied into each device's in-memory filesystem and never logged.
// Light devices trust the server more than real devices do (see above):
// they exercise the server, they say nothing about the device's
// verification; their keys, too, live in process memory only.
package sim
