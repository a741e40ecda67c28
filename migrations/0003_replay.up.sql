-- Replay and rebuild (devopstic replay, devopstic rebuild; docs/operating.md).

-- Each event's message headers as the stream delivered them: the receive time to the nanosecond
-- (received_at keeps microseconds, and an event without a timestamp hashes its receive time into
-- its id), and whatever a source needs besides its body (a webhook's event name). With them,
-- rebuilding from this table maps every event exactly as replaying the stream does. NULL in
-- rows written before this migration: rebuild then falls back to received_at.
ALTER TABLE events ADD COLUMN headers jsonb;

-- How far each replay got, so that an interrupted one resumes where it stopped. One row per
-- replayed range (its --from, --to and --subjects); finished_at is set when it completes.
CREATE TABLE replay_checkpoints (
    name        text        PRIMARY KEY,
    start_seq   bigint      NOT NULL,
    end_seq     bigint      NOT NULL,
    last_seq    bigint      NOT NULL,
    applied     bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
