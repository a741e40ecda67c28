DROP TABLE IF EXISTS replay_checkpoints;
ALTER TABLE events DROP COLUMN IF EXISTS headers;
