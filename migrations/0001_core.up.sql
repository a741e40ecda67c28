-- The core tables. `events` keeps every message as the source said it; the other tables are
-- derived from it with commutative upserts (see pkg/store), so that the same events in any
-- order, any number of times, give the same rows.

CREATE TABLE events (
    id              text        PRIMARY KEY,
    source          text        NOT NULL,
    kind            text        NOT NULL,
    pipeline_id     text,
    environment     text,
    commit_id       text,
    commits         text[],
    incident_id     text,
    deployment_id   text,
    pull_request_id bigint,
    status          text,
    occurred_at     timestamptz NOT NULL,
    -- true when the source gave no time and occurred_at is the receive time
    time_inferred   boolean     NOT NULL DEFAULT false,
    received_at     timestamptz NOT NULL,
    stream_seq      bigint      NOT NULL,
    payload         jsonb       NOT NULL
);
CREATE INDEX events_occurred_at ON events (occurred_at, id);
CREATE INDEX events_pipeline_occurred_at ON events (pipeline_id, occurred_at, id);

-- A change is a commit of a pipeline, with the earliest known time of each step.
CREATE TABLE changes (
    pipeline_id     text        NOT NULL,
    commit_id       text        NOT NULL,
    pull_request_id bigint,
    committed_at    timestamptz,
    submitted_at    timestamptz,
    approved_at     timestamptz,
    -- the change's earliest known time, where its lead time starts (LEAST ignores NULLs)
    first_at        timestamptz GENERATED ALWAYS AS (LEAST(committed_at, submitted_at, approved_at)) STORED,
    PRIMARY KEY (pipeline_id, commit_id)
);

-- A deployment is one deploy attempt to one environment. `deployment_key` is the source's
-- deployment id, or the event id when the source gave none. `event_id` is the event that set
-- the row's current status: the latest by (deployed_at, failure first, event_id).
CREATE TABLE deployments (
    source          text        NOT NULL,
    pipeline_id     text        NOT NULL,
    environment     text        NOT NULL,
    deployment_key  text        NOT NULL,
    deployment_id   text,
    status          text        NOT NULL CHECK (status IN ('success', 'failure')),
    deployed_at     timestamptz NOT NULL,
    commit_id       text,
    event_id        text        NOT NULL,
    PRIMARY KEY (source, pipeline_id, environment, deployment_key)
);
CREATE INDEX deployments_window ON deployments (pipeline_id, environment, deployed_at);
CREATE INDEX deployments_by_id ON deployments (pipeline_id, environment, deployment_id) WHERE deployment_id IS NOT NULL;

-- Every commit a deployment ships, its head commit included.
CREATE TABLE deployment_commits (
    source          text NOT NULL,
    pipeline_id     text NOT NULL,
    environment     text NOT NULL,
    deployment_key  text NOT NULL,
    commit_id       text NOT NULL,
    PRIMARY KEY (source, pipeline_id, environment, deployment_key, commit_id),
    FOREIGN KEY (source, pipeline_id, environment, deployment_key)
        REFERENCES deployments (source, pipeline_id, environment, deployment_key) ON DELETE CASCADE
);
CREATE INDEX deployment_commits_by_commit ON deployment_commits (pipeline_id, commit_id, environment);

-- An incident opens at its earliest failure and is resolved by its latest success, provided
-- that comes after the opening (DORA.md).
CREATE TABLE incidents (
    source              text        NOT NULL,
    incident_id         text        NOT NULL,
    pipeline_id         text        NOT NULL,
    environment         text        NOT NULL,
    opened_at           timestamptz,
    last_resolved_at    timestamptz,
    resolved_at         timestamptz GENERATED ALWAYS AS (
                            CASE WHEN last_resolved_at > opened_at THEN last_resolved_at END) STORED,
    cause_deployment_id text,
    cause_commit_id     text,
    PRIMARY KEY (source, incident_id)
);
CREATE INDEX incidents_window ON incidents (pipeline_id, environment, opened_at);

-- The first successful deployment of each change to each environment: where lead time ends.
CREATE VIEW change_deployments AS
SELECT dc.pipeline_id, dc.commit_id, dc.environment, min(d.deployed_at) AS first_deployed_at
FROM deployment_commits dc
JOIN deployments d USING (source, pipeline_id, environment, deployment_key)
WHERE d.status = 'success'
GROUP BY dc.pipeline_id, dc.commit_id, dc.environment;

-- Messages the writer could not write, with the reason; one row per stream message.
CREATE TABLE dead_letters (
    stream_seq  bigint      PRIMARY KEY,
    subject     text        NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}',
    data        bytea       NOT NULL,
    reason      text        NOT NULL,
    deliveries  integer     NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
