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
package sim
