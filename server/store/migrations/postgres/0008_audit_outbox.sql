-- Audit outbox (issue 16): audit events written in the same transaction as
-- the state change they describe, then appended to the file-based audit log
-- (package audit) by the one process that holds it, and deleted. details is
-- a JSON object of strings.
CREATE TABLE audit_outbox (
	id      BIGSERIAL PRIMARY KEY,
	time    BIGINT NOT NULL,
	actor   TEXT NOT NULL,
	action  TEXT NOT NULL,
	details TEXT NOT NULL
);
