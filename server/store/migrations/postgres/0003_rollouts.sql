-- Staged rollouts (issue 6): rollouts of a registered release, the devices
-- assigned to them (a device is in at most one active rollout per product:
-- the partial unique index), the per-device version state of the director
-- repository, and nothing else: device tags already live in devices.tags.
CREATE TABLE rollouts (
	id                TEXT PRIMARY KEY,
	release_id        TEXT NOT NULL REFERENCES releases (id),
	product           TEXT NOT NULL,
	version           TEXT NOT NULL,
	target_path       TEXT NOT NULL,
	filter            TEXT NOT NULL,
	stages            TEXT NOT NULL,
	success_threshold BIGINT NOT NULL,
	failure_threshold BIGINT NOT NULL,
	max_parallel      BIGINT NOT NULL,
	window_spec       TEXT NOT NULL,
	forced            BIGINT NOT NULL,
	report_deadline   BIGINT NOT NULL,
	state             TEXT NOT NULL,
	stage             BIGINT NOT NULL,
	ack_failed        BIGINT NOT NULL,
	reason            TEXT NOT NULL,
	created_by        TEXT NOT NULL REFERENCES users (id),
	created_at        BIGINT NOT NULL,
	updated_at        BIGINT NOT NULL
);
CREATE INDEX rollouts_created ON rollouts (created_at DESC, id);
CREATE INDEX rollouts_product_state ON rollouts (product, state);

CREATE TABLE rollout_devices (
	rollout_id  TEXT NOT NULL REFERENCES rollouts (id),
	device_id   TEXT NOT NULL REFERENCES devices (id),
	product     TEXT NOT NULL,
	active      BIGINT NOT NULL,
	stage       BIGINT NOT NULL,
	state       TEXT NOT NULL,
	reason      TEXT NOT NULL,
	assigned_at BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL,
	PRIMARY KEY (rollout_id, device_id)
);
CREATE UNIQUE INDEX rollout_devices_one_active ON rollout_devices (device_id, product) WHERE active = 1;
CREATE INDEX rollout_devices_device ON rollout_devices (device_id, assigned_at DESC);
CREATE INDEX rollout_devices_progress ON rollout_devices (rollout_id, state, updated_at);

CREATE TABLE director_state (
	device_id         TEXT PRIMARY KEY REFERENCES devices (id),
	version           BIGINT NOT NULL,
	assignment        TEXT NOT NULL,
	timestamp_expires BIGINT NOT NULL,
	expires           BIGINT NOT NULL,
	updated_at        BIGINT NOT NULL
);
