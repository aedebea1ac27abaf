// Package agent is Airlock's device agent: the daemon (or cron job) that
// polls the update server, refreshes the TUF metadata, picks the newest
// release that fits the device, downloads it with resumable HTTP range
// requests straight into the device's install pipeline (package device),
// reboots into it, runs the health check, commits or rolls back, and reports
// every step to the server.
//
// # Threat model
//
// Trusted: the device (its config, factory root, state directory and
// slots, through package device), the agent config file, the server CA file
// the operator put on the device (optionally pinned by its SHA-256), the
// device's private key in the identity directory (created here, 0600,
// never sent anywhere) and the enrollment token file (read once, never
// logged).
//
// Untrusted: everything that comes over the network. The update server is
// authenticated (TLS 1.2+, roots = server_ca only, never
// InsecureSkipVerify) but it is not part of the firmware trust chain: the
// TUF metadata and payload it serves are verified by the device against its
// factory root, and the poll interval and repository URLs it returns are
// bounded and validated. A compromised or hostile server (or CDN, or
// network path) can delay or deny updates and misreport fleet state; it
// cannot make the device install a payload the vendor did not sign.
//
// Resumed downloads never re-trust bytes: a payload is streamed through the
// install pipeline exactly once, and each byte is hashed as it passes. When
// a connection drops, the agent asks for the rest with "Range: bytes=N-"
// (N = bytes already handed to the pipeline) and an If-Range validator, and
// accepts only a 206 whose Content-Range starts at N and whose total matches
// the first response; anything else fails the attempt (the slot stays
// invalid, the next poll starts over). Over-long, endless, truncated or
// corrupted payloads are rejected by the pipeline's length and digest checks,
// and a server that stalls or trickles — metadata or payload — is cut off
// once it delivers less than min_throughput over a stall_timeout window
// (trust.ErrSlowRetrieval); every metadata file is also under
// download_timeout.
//
// # Director mode (Uptane's two-repository rule)
//
// With director_root set, the agent installs only what the server's
// director assigns to this device (verified TUF metadata of the director
// repository, rooted in the provisioned director root, refreshed into its
// own store state/director with rollback and freeze protection, fetched
// over mTLS from PathDirector) AND what the vendor's image repository
// authorizes: the assigned path must be listed there with the same length
// and the same sha256 (and every other hash both list), and the release
// policy and security version still apply. The director key is online
// (held by the server), so it is trusted only to choose among releases the
// vendor signed, never to introduce one: a stolen director key can delay,
// withhold or pick an older-but-allowed release, not install unsigned
// firmware. An assignment naming another device ID (the CN of this
// device's certificate) is refused. When the director is unreachable or
// its metadata expired, the agent keeps running its release, reports
// nothing and retries with backoff (ErrDirectorUnavailable). The
// assignment's "forced" flag never bypasses a check.
//
// Status reports are durable: each is queued in the device's state
// directory (ReportQueueFile, written crash-safely) before it is sent, and
// resent in order until the server acknowledges it; a random report ID
// lets the server record a resent report once. The queue file is read
// back as untrusted (one encoding, MaxQueuedReports, MaxReportQueueSize);
// a corrupt one is moved aside, never fatal.
//
// The device API's wire types, state names and limits are package
// deviceapi, shared with the server. Response bodies are read within
// deviceapi.MaxResponseSize and decoded strictly (deviceapi.DecodeResponse:
// one JSON object, no unknown fields, no trailing data).
package agent
