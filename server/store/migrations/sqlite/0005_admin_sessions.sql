-- Admin API sessions (issue 12): `airlock login` exchanges an admin token
-- and a TOTP code for a short-lived session credential. Only the SHA-256
-- of the credential is stored. role is the user's role at login; revoked_at
-- is set by logout. Rows are deleted some time after they expire.
CREATE TABLE admin_sessions (
	id         TEXT PRIMARY KEY,
	user_id    TEXT NOT NULL REFERENCES users (id),
	token_id   TEXT NOT NULL,
	role       TEXT NOT NULL,
	hash       BLOB NOT NULL UNIQUE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	revoked_at INTEGER
) STRICT;
CREATE INDEX admin_sessions_user ON admin_sessions (user_id, expires_at);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);
