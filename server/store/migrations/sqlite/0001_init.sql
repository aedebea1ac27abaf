-- Devices, enrollment tokens, events and admin tokens. Times are Unix
-- microseconds (UTC); hashes are SHA-256 of the secret, never the secret.
CREATE TABLE devices (
	id               TEXT PRIMARY KEY,
	model            TEXT NOT NULL,
	product          TEXT NOT NULL,
	channel          TEXT NOT NULL,
	hw_rev           INTEGER NOT NULL CHECK (hw_rev >= 0),
	tags             TEXT NOT NULL,
	current_version  TEXT NOT NULL,
	security_counter INTEGER NOT NULL CHECK (security_counter >= 0),
	state            TEXT NOT NULL,
	last_error       TEXT NOT NULL,
	cert_serial      TEXT NOT NULL UNIQUE,
	cert_fingerprint TEXT NOT NULL UNIQUE,
	enrolled_at      INTEGER NOT NULL,
	last_seen        INTEGER
) STRICT;
CREATE INDEX devices_product_version ON devices (product, current_version);
CREATE INDEX devices_state ON devices (state);

CREATE TABLE enrollment_tokens (
	id         TEXT PRIMARY KEY,
	hash       BLOB NOT NULL UNIQUE,
	product    TEXT NOT NULL,
	model      TEXT NOT NULL,
	uses_left  INTEGER NOT NULL CHECK (uses_left >= 0),
	expires_at INTEGER NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	device_id   TEXT NOT NULL REFERENCES devices (id),
	occurred_at INTEGER NOT NULL,
	kind        TEXT NOT NULL,
	version     TEXT NOT NULL,
	message     TEXT NOT NULL
) STRICT;
CREATE INDEX events_device_time ON events (device_id, occurred_at DESC, id DESC);

CREATE TABLE admin_tokens (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL,
	hash       BLOB NOT NULL UNIQUE,
	created_at INTEGER NOT NULL,
	last_used  INTEGER
) STRICT;
