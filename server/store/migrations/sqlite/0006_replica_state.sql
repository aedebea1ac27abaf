-- State that replicas of one server share (issue 16).
--
-- Dashboard sessions: only the SHA-256 of the cookie secret is stored.
-- A session lives until expires_at (absolute) and while last_seen is
-- recent (idle timeout, checked by the caller's query). flash is the
-- one-shot message of the next page. Expired rows are deleted at logins.
CREATE TABLE dashboard_sessions (
	hash       BLOB PRIMARY KEY,
	user_id    TEXT NOT NULL REFERENCES users (id),
	created_at INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	flash      TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX dashboard_sessions_last_seen ON dashboard_sessions (last_seen);
CREATE INDEX dashboard_sessions_user ON dashboard_sessions (user_id);

-- TOTP attempts per user in the current lockout window (first_at is the
-- window's start), counted atomically so that replicas share the lockout.
CREATE TABLE totp_attempts (
	user_id  TEXT PRIMARY KEY REFERENCES users (id),
	attempts INTEGER NOT NULL,
	first_at INTEGER NOT NULL
) STRICT;

-- The director repository's root metadata versions, signed once and
-- shared by every replica (the keys are sealed in server_secrets).
CREATE TABLE director_roots (
	version    INTEGER PRIMARY KEY,
	data       BLOB NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;
