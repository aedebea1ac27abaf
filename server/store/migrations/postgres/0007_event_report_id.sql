-- Durable device reports (issue 16): the agent resends a status report until
-- the server acknowledges it, each with a random report id. The id is stored
-- with the event ('' for reports without one, from older agents), and a
-- device's report id is recorded once: a resent report adds no second event.
ALTER TABLE events ADD COLUMN report_id TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX events_device_report ON events (device_id, report_id) WHERE report_id <> '';
