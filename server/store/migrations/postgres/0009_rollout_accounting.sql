-- Rollout accounting in the database (issue 16): several servers on one
-- database admit assignments with a conditional update of the rollout's
-- counters, so a stage is never overshot, and read the health-gate counts
-- from rollout_counts instead of per-process memory.
--
-- rollouts.eligible is the eligible-fleet count the rollout ticker last
-- computed and stage_target the current stage's cumulative target derived
-- from it (package rollout's Target); assigned counts every device of the
-- rollout and in_flight those without an outcome (assigned or in progress).
-- rollout_counts holds the devices of a rollout by stage, outcome ('assigned'
-- for no outcome yet, 'succeeded', 'failed') and failure reason; both are
-- maintained in the transaction of every rollout_devices change.
--
-- leases holds named leases (the rollout ticker's): one holder until
-- expires_at (microseconds since the epoch).
ALTER TABLE rollouts ADD COLUMN eligible BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN stage_target BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN assigned BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN in_flight BIGINT NOT NULL DEFAULT 0;

CREATE TABLE rollout_counts (
	rollout_id TEXT NOT NULL REFERENCES rollouts (id),
	stage      BIGINT NOT NULL,
	state      TEXT NOT NULL,
	reason     TEXT NOT NULL,
	n          BIGINT NOT NULL,
	PRIMARY KEY (rollout_id, stage, state, reason)
);

INSERT INTO rollout_counts (rollout_id, stage, state, reason, n)
	SELECT rollout_id, stage, CASE WHEN state IN ('assigned', 'in_progress') THEN 'assigned' ELSE state END, reason, COUNT(*)
	FROM rollout_devices
	GROUP BY rollout_id, stage, CASE WHEN state IN ('assigned', 'in_progress') THEN 'assigned' ELSE state END, reason;

UPDATE rollouts SET
	assigned = (SELECT COUNT(*) FROM rollout_devices rd WHERE rd.rollout_id = rollouts.id),
	in_flight = (SELECT COUNT(*) FROM rollout_devices rd WHERE rd.rollout_id = rollouts.id AND rd.state IN ('assigned', 'in_progress'));
-- Until the ticker recounts: the devices assigned so far, and no room.
UPDATE rollouts SET eligible = assigned, stage_target = assigned;

CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at BIGINT NOT NULL
);
