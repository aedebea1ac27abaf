-- The A/B slot a device reports at check-in (issue 10): "a", "b", or ''
-- when unknown (devices that have not checked in since this migration).
ALTER TABLE devices ADD COLUMN slot TEXT NOT NULL DEFAULT '';
