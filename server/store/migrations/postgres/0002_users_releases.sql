-- Users and roles, TOTP state, releases for deployment with their approvals,
-- and server secrets. Existing admin tokens each become a user of their own
-- ("token-<id>") with the token's role. totp_secret is sealed with the
-- key-encryption key (AES-256-GCM), which is never stored in the database.
CREATE TABLE users (
	id             TEXT PRIMARY KEY,
	name           TEXT NOT NULL UNIQUE,
	role           TEXT NOT NULL,
	created_at     BIGINT NOT NULL,
	disabled_at    BIGINT,
	totp_secret    BYTEA,
	totp_last_step BIGINT
);
INSERT INTO users (id, name, role, created_at)
	SELECT 'u-' || id, 'token-' || id, role, created_at FROM admin_tokens;
ALTER TABLE admin_tokens ADD COLUMN user_id TEXT REFERENCES users (id);
UPDATE admin_tokens SET user_id = 'u-' || id;
CREATE INDEX admin_tokens_user ON admin_tokens (user_id);

CREATE TABLE releases (
	id          TEXT PRIMARY KEY,
	product     TEXT NOT NULL,
	version     TEXT NOT NULL,
	environment TEXT NOT NULL,
	target_path TEXT NOT NULL,
	uploader    TEXT NOT NULL REFERENCES users (id),
	created_at  BIGINT NOT NULL,
	deployed_at BIGINT,
	deployed_by TEXT REFERENCES users (id),
	UNIQUE (product, version, environment)
);
CREATE INDEX releases_created ON releases (created_at DESC, id);

CREATE TABLE release_approvals (
	release_id  TEXT NOT NULL REFERENCES releases (id),
	approver    TEXT NOT NULL REFERENCES users (id),
	approved_at BIGINT NOT NULL,
	PRIMARY KEY (release_id, approver)
);

CREATE TABLE server_secrets (
	name       TEXT PRIMARY KEY,
	value      BYTEA NOT NULL,
	created_at BIGINT NOT NULL
);
