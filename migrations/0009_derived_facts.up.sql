-- The DORA model derived at write time (docs/metrics.md, "How the metrics are computed").
--
-- The writer keeps these derived facts beside the base facts, in the same transaction, for
-- exactly the keys a batch touches (dora_derive, below):
--   * changes.change_id: which change a commit belongs to. Commits that change_links ties
--     together (a merged pull request's head and merge commit) are one change, named by the
--     smallest of their ids;
--   * change_deployments: each change's first successful deployment to each environment, with
--     the change's own times, which is all lead time needs;
--   * incidents.cause_source/cause_key: the deployment that an incident's cause commit names,
--     (the first successful deployment to the incident's environment that shipped it);
--   * deployments.named and deployments.rework: an incident names the attempt as its cause
--     (by deployment id or by cause commit), and it succeeded while an incident of its
--     pipeline and environment was open;
--   * lead_time_days: each pipeline's lead time values per environment and UTC day, so that
--     a window of many pipelines reads a row per pipeline and day.
-- The read functions are then aggregates over indexed rows. Derivation depends only on the
-- facts of one pipeline, and writers serialize per pipeline (an advisory lock per pipeline,
-- taken in order at the start of each batch, pkg/store), so several writers give the rows one
-- writer gives.

-- A pull request's merge approves its change when no review did: kept apart from approvals so
-- that an approving review, even one made after the merge, is the change's approval (DORA.md).
ALTER TABLE changes ADD COLUMN merged_at timestamptz;
ALTER TABLE changes ADD COLUMN change_id text;
UPDATE changes SET change_id = commit_id;
ALTER TABLE changes ALTER COLUMN change_id SET NOT NULL;
CREATE INDEX changes_by_change ON changes (pipeline_id, change_id);
-- A pull request's head commits over time (opened, then each push to its branch).
CREATE INDEX changes_by_pull_request ON changes (pipeline_id, pull_request_id) WHERE pull_request_id IS NOT NULL;

-- The resolved cause of an incident that names a commit: the deployment's source and key.
ALTER TABLE incidents ADD COLUMN cause_source text;
ALTER TABLE incidents ADD COLUMN cause_key text;
-- Causes by commit, byte-ordered, so that the causes a commit's prefixes spell are one range.
CREATE INDEX incidents_cause_prefix ON incidents (pipeline_id, (cause_commit_id COLLATE "C"));

DROP VIEW change_deployments;

-- A change's first successful deployment to an environment, and the change's times: the
-- earliest of its commits' (approved_at: the earliest approval, else the earliest merge).
CREATE TABLE change_deployments (
    pipeline_id  text        NOT NULL,
    change_id    text        NOT NULL,
    environment  text        NOT NULL,
    deployed_at  timestamptz NOT NULL,
    first_at     timestamptz,
    submitted_at timestamptz,
    approved_at  timestamptz,
    PRIMARY KEY (pipeline_id, change_id, environment)
);
CREATE INDEX change_deployments_env_time ON change_deployments (environment, deployed_at)
    INCLUDE (pipeline_id, first_at, submitted_at, approved_at);
CREATE INDEX change_deployments_window ON change_deployments (pipeline_id, environment, deployed_at)
    INCLUDE (first_at, submitted_at, approved_at);

-- What DORA asks of each attempt besides its status: an incident names it as its cause, and
-- it succeeded while an incident of its pipeline and environment was open (rework).
ALTER TABLE deployments ADD COLUMN named boolean NOT NULL DEFAULT false;
ALTER TABLE deployments ADD COLUMN rework boolean NOT NULL DEFAULT false;
CREATE INDEX deployments_named ON deployments (pipeline_id, environment) WHERE named;
CREATE INDEX incidents_cause_key ON incidents (pipeline_id, environment, cause_source, cause_key)
    WHERE cause_key IS NOT NULL;

-- The lead time values of each pipeline's changes first deployed to an environment on a UTC day,
-- as arrays, so that a window of many pipelines reads a row per pipeline and day rather than
-- one per change (dora_lead_time reads whole days here and the window's partial days from
-- change_deployments). The three arrays are aligned, one element per change with a positive
-- lead time; reviews and deploys hold NULL where a time is unknown. Rows are recomputed from
-- change_deployments for the days a batch touched (dora_derive marks them dirty).
CREATE TABLE lead_time_days (
    pipeline_id text    NOT NULL,
    environment text    NOT NULL,
    day         date    NOT NULL,
    dirty       boolean NOT NULL DEFAULT false,
    leads       float8[],
    reviews     float8[],
    deploys     float8[],
    PRIMARY KEY (pipeline_id, environment, day)
);
CREATE INDEX lead_time_days_env_day ON lead_time_days (environment, day);
CREATE INDEX lead_time_days_dirty ON lead_time_days (pipeline_id) WHERE dirty;

-- A change's lead time and its review and deployment parts, in seconds, for the changes of a
-- the pipelines named (all when NULL) first deployed to p_env in [p_from, p_to): one definition for the
-- day rows and the partial days, so both give the same values. Zero or negative lead times
-- are left out (DORA.md).
CREATE FUNCTION dora_lead_time_values(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (deployed_at timestamptz, lead float8, review float8, deploy float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT cd.deployed_at,
           extract(epoch FROM cd.deployed_at - cd.first_at)::float8,
           extract(epoch FROM cd.approved_at - cd.submitted_at)::float8,
           extract(epoch FROM cd.deployed_at - cd.approved_at)::float8
    FROM change_deployments cd
    -- all pipelines, or the pipelines named: two branches rather than "IS NULL OR = ANY",
    -- which no index serves when p_pipelines is not a constant (dora_derive passes each dirty
    -- day's pipeline); the branch whose first condition is false is never run
    WHERE p_pipelines IS NULL AND cd.environment = p_env
      AND cd.deployed_at >= p_from AND cd.deployed_at < p_to AND cd.deployed_at > cd.first_at
    UNION ALL
    SELECT cd.deployed_at,
           extract(epoch FROM cd.deployed_at - cd.first_at)::float8,
           extract(epoch FROM cd.approved_at - cd.submitted_at)::float8,
           extract(epoch FROM cd.deployed_at - cd.approved_at)::float8
    FROM change_deployments cd
    WHERE cd.pipeline_id = ANY (p_pipelines) AND cd.environment = p_env
      AND cd.deployed_at >= p_from AND cd.deployed_at < p_to AND cd.deployed_at > cd.first_at
$$;

-- Counting deployments by time reads the index alone.
DROP INDEX deployments_env_time;
CREATE INDEX deployments_env_time ON deployments (environment, deployed_at) INCLUDE (pipeline_id, status, named, rework);
DROP INDEX deployments_window;
CREATE INDEX deployments_window ON deployments (pipeline_id, environment, deployed_at) INCLUDE (status, named, rework);

-- The commits whose derived facts a batch may change: those it named (p_pipelines/p_commits:
-- changes, link ends, push heads and commits), every commit its deployment attempts ship
-- (p_deployments: [{"s": source, "p": pipeline, "e": environment, "key": key}, ...]; a new
-- report can change an attempt's status for every commit it ships), and the commits of the
-- pushes whose head is one of those (a deployment of the head ships them).
CREATE FUNCTION dora_touched_commits(p_pipelines text[], p_commits text[], p_deployments jsonb)
RETURNS TABLE (pipeline_id text, commit_id text)
LANGUAGE sql STABLE AS $$
    WITH named AS (
        SELECT t.p AS pipeline_id, t.c AS commit_id FROM unnest(p_pipelines, p_commits) AS t(p, c)
        UNION
        SELECT dc.pipeline_id, dc.commit_id
        FROM jsonb_to_recordset(p_deployments) AS k(s text, p text, e text, key text)
        JOIN deployment_commits dc ON dc.source = k.s AND dc.pipeline_id = k.p AND dc.environment = k.e
            AND dc.deployment_key = k.key
    )
    SELECT pipeline_id, commit_id FROM named
    UNION
    SELECT pc.pipeline_id, pc.commit_id
    FROM named t
    JOIN push_commits pc ON pc.pipeline_id = t.pipeline_id AND pc.head_id = t.commit_id
$$;

-- The successful deployments of a pipeline's commit to each environment: those that list it,
-- and those that list the head of a push that brought it.
CREATE FUNCTION dora_commit_deployments(p_pipeline text, p_commit text)
RETURNS TABLE (source text, environment text, deployment_key text, deployed_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT d.source, d.environment, d.deployment_key, d.deployed_at
    FROM (
        SELECT dc.source, dc.environment, dc.deployment_key
        FROM deployment_commits dc
        WHERE dc.pipeline_id = p_pipeline AND dc.commit_id = p_commit
        UNION
        SELECT dc.source, dc.environment, dc.deployment_key
        FROM push_commits pc
        JOIN deployment_commits dc ON dc.pipeline_id = pc.pipeline_id AND dc.commit_id = pc.head_id
        WHERE pc.pipeline_id = p_pipeline AND pc.commit_id = p_commit
    ) s
    JOIN deployments d ON d.source = s.source AND d.pipeline_id = p_pipeline
        AND d.environment = s.environment AND d.deployment_key = s.deployment_key
    WHERE d.status = 'success'
$$;

-- The known commit of a pipeline that an incident's cause names: itself when known, else the
-- one known commit it is a prefix of, when it is at least 7 hex characters (DORA.md).
CREATE FUNCTION dora_resolve_commit(p_pipeline text, p_name text)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM changes WHERE pipeline_id = p_pipeline AND commit_id = p_name) THEN p_name
        WHEN length(p_name) >= 7 AND p_name ~ '^[0-9a-fA-F]+$' THEN (
            SELECT min(commit_id) FROM changes
            WHERE pipeline_id = p_pipeline AND starts_with(commit_id, p_name)
            HAVING count(*) = 1)
    END
$$;

-- The changes (pipeline, change id) of the commits touched.
CREATE FUNCTION dora_touched_changes(p_pipelines text[], p_commits text[], p_deployments jsonb)
RETURNS TABLE (pipeline_id text, change_id text)
LANGUAGE sql STABLE AS $$
    WITH commits AS (
        SELECT c.* FROM dora_touched_commits(p_pipelines, p_commits, p_deployments) t
        JOIN changes c ON c.pipeline_id = t.pipeline_id AND c.commit_id = t.commit_id
    )
    SELECT pipeline_id, change_id FROM commits
    UNION
    -- the changes of the same pull request's heads: a squash merge takes their pushes' times
    SELECT pr.pipeline_id, pr.change_id
    FROM commits c
    JOIN changes pr ON pr.pipeline_id = c.pipeline_id AND pr.pull_request_id = c.pull_request_id
$$;

-- What change_deployments holds for the changes named: one row per environment each change
-- was successfully deployed to. A change's times are the earliest of its commits' and, after
-- a squash or rebase merge, of the commits that the merge replaced: those of the pushes whose
-- head was one of the pull request's heads (its head when opened and after each push to its
-- branch: the commits that carry its number). A merge is told to be one when no push brings
-- both ends of one of the change's links (a merge commit's push to main brings the head too:
-- then the branch's commits are changes of their own, shipped by that push).
CREATE FUNCTION dora_change_deployment_rows(p_pipelines text[], p_changes text[])
RETURNS TABLE (pipeline_id text, change_id text, environment text, deployed_at timestamptz,
               first_at timestamptz, submitted_at timestamptz, approved_at timestamptz)
LANGUAGE sql STABLE AS $$
    WITH members AS (
        SELECT c.* FROM unnest(p_pipelines, p_changes) AS t(p, id)
        JOIN changes c ON c.pipeline_id = t.p AND c.change_id = t.id
    ), squashed AS (
        SELECT DISTINCT m.pipeline_id, m.change_id
        FROM members m
        JOIN change_links l ON l.pipeline_id = m.pipeline_id AND l.commit_id = m.commit_id
        WHERE NOT EXISTS (
            SELECT 1 FROM members m2
            JOIN change_links l2 ON l2.pipeline_id = m2.pipeline_id AND l2.commit_id = m2.commit_id
            JOIN push_commits a ON a.pipeline_id = l2.pipeline_id AND a.commit_id = l2.commit_id
            JOIN push_commits b ON b.pipeline_id = a.pipeline_id AND b.head_id = a.head_id
                AND b.commit_id = l2.linked_id
            WHERE m2.pipeline_id = m.pipeline_id AND m2.change_id = m.change_id)
    ), heads AS (
        SELECT s.pipeline_id, s.change_id, m.commit_id AS head_id
        FROM squashed s
        JOIN members m ON m.pipeline_id = s.pipeline_id AND m.change_id = s.change_id
        UNION
        SELECT s.pipeline_id, s.change_id, h.commit_id
        FROM squashed s
        JOIN members m ON m.pipeline_id = s.pipeline_id AND m.change_id = s.change_id
        JOIN changes h ON h.pipeline_id = m.pipeline_id AND h.pull_request_id = m.pull_request_id
    ), replaced AS (
        SELECT h.pipeline_id, h.change_id, c.committed_at, c.submitted_at, c.approved_at, c.merged_at
        FROM heads h
        JOIN push_commits pc ON pc.pipeline_id = h.pipeline_id AND pc.head_id = h.head_id
        JOIN changes c ON c.pipeline_id = pc.pipeline_id AND c.commit_id = pc.commit_id
    ), times AS (
        SELECT x.pipeline_id, x.change_id,
               min(x.committed_at) AS committed_at, min(x.submitted_at) AS submitted_at,
               coalesce(min(x.approved_at), min(x.merged_at)) AS approved_at
        FROM (SELECT m.pipeline_id, m.change_id, m.committed_at, m.submitted_at, m.approved_at, m.merged_at
              FROM members m
              UNION ALL
              SELECT * FROM replaced) x
        GROUP BY x.pipeline_id, x.change_id
    ), firsts AS (
        SELECT m.pipeline_id, m.change_id, d.environment, min(d.deployed_at) AS deployed_at
        FROM members m
        CROSS JOIN LATERAL dora_commit_deployments(m.pipeline_id, m.commit_id) d
        GROUP BY m.pipeline_id, m.change_id, d.environment
    )
    SELECT f.pipeline_id, f.change_id, f.environment, f.deployed_at,
           least(t.committed_at, t.submitted_at, t.approved_at), t.submitted_at, t.approved_at
    FROM firsts f
    JOIN times t USING (pipeline_id, change_id)
$$;

-- The incidents whose derived facts a batch may change: those it named, and those whose cause
-- is a touched commit or a prefix of one (a new commit can make a prefix ambiguous; a new
-- deployment can ship the commit first).
CREATE FUNCTION dora_touched_incidents(p_pipelines text[], p_commits text[], p_deployments jsonb,
                                       p_incident_sources text[], p_incident_ids text[])
RETURNS TABLE (source text, incident_id text)
LANGUAGE sql STABLE AS $$
    SELECT i.source, i.incident_id
    FROM unnest(p_incident_sources, p_incident_ids) AS k(s, id)
    JOIN incidents i ON i.source = k.s AND i.incident_id = k.id
    UNION
    SELECT i.source, i.incident_id
    FROM dora_touched_commits(p_pipelines, p_commits, p_deployments) t
    JOIN incidents i ON i.pipeline_id = t.pipeline_id
        AND (i.cause_commit_id COLLATE "C") >= left(t.commit_id, 7) COLLATE "C"
        AND (i.cause_commit_id COLLATE "C") <= t.commit_id COLLATE "C"
        AND starts_with(t.commit_id, i.cause_commit_id)
$$;

-- dora_derive brings the derived facts up to date for what a batch touched: the commits it
-- named (changes, link ends, push heads and commits) in p_pipelines/p_commits, the deployment
-- attempts it reported (see dora_touched_commits) and the incidents it named. Each step
-- recomputes its rows from the base facts, so running it again changes nothing. PL/pgSQL
-- rather than SQL so that each connection plans its statements once: a SQL function's are
-- planned on every call, which cost more than running them (110 of 190 ms a batch at 10M
-- events; with the generic plans below, 16 ms). Cached plans follow search_path, which
-- rebuild sets to its own schema.
CREATE FUNCTION dora_derive(p_pipelines text[], p_commits text[], p_deployments jsonb,
                            p_incident_sources text[], p_incident_ids text[])
RETURNS void
LANGUAGE plpgsql VOLATILE
-- Plan each statement once per connection: a custom plan per call costs more than the call
-- (a rebuild's or a replay's connections would replan for their first calls, and Postgres
-- keeps replanning when it prices the generic plan of array arguments above the custom ones).
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- what the batch touched, worked out once (steps 2 to 4 read it)
    touched_change_pipelines text[];
    touched_change_ids text[];
    touched_incident_sources text[];
    touched_incident_ids text[];
BEGIN
    -- 1. Changes: each named commit's component over change_links, named by its smallest id
    --    (links come with the batch's own commits; deployments change no component).
    WITH RECURSIVE component(pipeline_id, root, commit_id) AS (
        SELECT t.p, t.c, t.c FROM unnest(p_pipelines, p_commits) AS t(p, c)
        UNION
        SELECT k.pipeline_id, k.root, l.linked_id
        FROM component k
        JOIN change_links l ON l.pipeline_id = k.pipeline_id AND l.commit_id = k.commit_id
    ), named AS (
        SELECT pipeline_id, root, min(commit_id COLLATE "C") AS change_id
        FROM component GROUP BY pipeline_id, root
    )
    UPDATE changes c SET change_id = n.change_id
    FROM component k JOIN named n USING (pipeline_id, root)
    WHERE c.pipeline_id = k.pipeline_id AND c.commit_id = k.commit_id
      AND c.change_id IS DISTINCT FROM n.change_id;

    SELECT array_agg(t.pipeline_id), array_agg(t.change_id) INTO touched_change_pipelines, touched_change_ids
    FROM dora_touched_changes(p_pipelines, p_commits, p_deployments) t;
    SELECT array_agg(t.source), array_agg(t.incident_id) INTO touched_incident_sources, touched_incident_ids
    FROM dora_touched_incidents(p_pipelines, p_commits, p_deployments, p_incident_sources, p_incident_ids) t;

    -- 2. change_deployments of the touched changes. A merge of two changes leaves the rows of
    --    the one whose name went; their names are among the members' commit ids. The days
    --    of lead_time_days that the rows leave are marked dirty first, those they arrive in
    --    as they are written; step 5 recomputes the dirty days.
    INSERT INTO lead_time_days (pipeline_id, environment, day, dirty)
    SELECT DISTINCT cd.pipeline_id, cd.environment, (cd.deployed_at AT TIME ZONE 'UTC')::date, true
    FROM unnest(touched_change_pipelines, touched_change_ids) AS t(pipeline_id, change_id)
    JOIN changes m ON m.pipeline_id = t.pipeline_id AND m.change_id = t.change_id
    JOIN change_deployments cd ON cd.pipeline_id = m.pipeline_id AND cd.change_id = m.commit_id
    ON CONFLICT (pipeline_id, environment, day) DO UPDATE SET dirty = true;

    WITH touched AS (
        SELECT touched_change_pipelines AS ps, touched_change_ids AS ids
    ), fresh AS (
        SELECT r.* FROM touched, dora_change_deployment_rows(touched.ps, touched.ids) r
    ), stale AS (
        SELECT cd.pipeline_id, cd.change_id, cd.environment
        FROM touched
        CROSS JOIN unnest(touched.ps, touched.ids) AS t(p, id)
        JOIN changes m ON m.pipeline_id = t.p AND m.change_id = t.id
        JOIN change_deployments cd ON cd.pipeline_id = m.pipeline_id AND cd.change_id = m.commit_id
        EXCEPT
        SELECT pipeline_id, change_id, environment FROM fresh
    )
    DELETE FROM change_deployments cd
    USING stale s
    WHERE cd.pipeline_id = s.pipeline_id AND cd.change_id = s.change_id AND cd.environment = s.environment;

    WITH touched AS (
        SELECT touched_change_pipelines AS ps, touched_change_ids AS ids
    ), written AS (
        INSERT INTO change_deployments AS cd
        SELECT r.* FROM touched, dora_change_deployment_rows(touched.ps, touched.ids) r
        ON CONFLICT (pipeline_id, change_id, environment) DO UPDATE SET
            deployed_at = EXCLUDED.deployed_at, first_at = EXCLUDED.first_at,
            submitted_at = EXCLUDED.submitted_at, approved_at = EXCLUDED.approved_at
        WHERE (cd.deployed_at, cd.first_at, cd.submitted_at, cd.approved_at)
            IS DISTINCT FROM (EXCLUDED.deployed_at, EXCLUDED.first_at, EXCLUDED.submitted_at, EXCLUDED.approved_at)
        RETURNING cd.pipeline_id, cd.environment, cd.deployed_at
    )
    INSERT INTO lead_time_days (pipeline_id, environment, day, dirty)
    SELECT DISTINCT pipeline_id, environment, (deployed_at AT TIME ZONE 'UTC')::date, true FROM written
    ON CONFLICT (pipeline_id, environment, day) DO UPDATE SET dirty = true;

    -- 3. The deployment each cause commit names, for the touched incidents
    --    (dora_touched_incidents).
    WITH candidates AS (
        SELECT * FROM unnest(touched_incident_sources, touched_incident_ids) AS t(source, incident_id)
    ), resolved AS (
        SELECT i.source, i.incident_id, f.source AS cause_source, f.deployment_key AS cause_key
        FROM candidates
        JOIN incidents i USING (source, incident_id)
        LEFT JOIN LATERAL (
            SELECT d.source, d.deployment_key
            FROM dora_commit_deployments(i.pipeline_id, dora_resolve_commit(i.pipeline_id, i.cause_commit_id)) d
            WHERE d.environment = i.environment
            ORDER BY d.deployed_at, d.source COLLATE "C", d.deployment_key COLLATE "C"
            LIMIT 1
        ) f ON i.cause_commit_id IS NOT NULL
    )
    UPDATE incidents i SET cause_source = r.cause_source, cause_key = r.cause_key
    FROM resolved r
    WHERE i.source = r.source AND i.incident_id = r.incident_id
      AND (i.cause_source, i.cause_key) IS DISTINCT FROM (r.cause_source, r.cause_key);

    -- 4. The flags of the attempts whose flags may have changed: those the batch reported, and
    --    around each touched incident, those it names or named (named ones of its pipeline and
    --    environment) and those made since its opening (an opening only moves earlier, so the
    --    interval before and after the batch both start there).
    WITH incidents_touched AS (
        SELECT i.* FROM unnest(touched_incident_sources, touched_incident_ids) AS t(source, incident_id)
        JOIN incidents i USING (source, incident_id)
    ), attempts AS (
        SELECT k.s AS source, k.p AS pipeline_id, k.e AS environment, k.key AS deployment_key
        FROM jsonb_to_recordset(p_deployments) AS k(s text, p text, e text, key text)
        UNION
        SELECT d.source, d.pipeline_id, d.environment, d.deployment_key
        FROM incidents_touched i
        JOIN deployments d ON d.pipeline_id = i.pipeline_id AND d.environment = i.environment
            AND d.deployed_at >= i.opened_at
        UNION
        SELECT d.source, d.pipeline_id, d.environment, d.deployment_key
        FROM incidents_touched i
        JOIN deployments d ON d.pipeline_id = i.pipeline_id AND d.environment = i.environment
            AND d.deployment_id = i.cause_deployment_id
        UNION
        SELECT d.source, d.pipeline_id, d.environment, d.deployment_key
        FROM incidents_touched i
        JOIN deployments d ON d.source = i.cause_source AND d.pipeline_id = i.pipeline_id
            AND d.environment = i.environment AND d.deployment_key = i.cause_key
        UNION
        SELECT d.source, d.pipeline_id, d.environment, d.deployment_key
        FROM (SELECT DISTINCT pipeline_id, environment FROM incidents_touched) i
        JOIN deployments d ON d.pipeline_id = i.pipeline_id AND d.environment = i.environment AND d.named
    ), flags AS (
        SELECT d.source, d.pipeline_id, d.environment, d.deployment_key,
            EXISTS (SELECT 1 FROM incidents i
                    WHERE i.pipeline_id = d.pipeline_id AND i.environment = d.environment
                      AND i.cause_deployment_id = d.deployment_id)
            OR EXISTS (SELECT 1 FROM incidents i
                       WHERE i.pipeline_id = d.pipeline_id AND i.environment = d.environment
                         AND i.cause_source = d.source AND i.cause_key = d.deployment_key) AS named,
            d.status = 'success' AND EXISTS (
                SELECT 1 FROM incidents i
                WHERE i.pipeline_id = d.pipeline_id AND i.environment = d.environment
                  AND i.opened_at <= d.deployed_at AND (i.resolved_at IS NULL OR d.deployed_at < i.resolved_at)) AS rework
        FROM attempts a
        JOIN deployments d USING (source, pipeline_id, environment, deployment_key)
    )
    UPDATE deployments d SET named = f.named, rework = f.rework
    FROM flags f
    WHERE d.source = f.source AND d.pipeline_id = f.pipeline_id AND d.environment = f.environment
      AND d.deployment_key = f.deployment_key
      AND (d.named, d.rework) IS DISTINCT FROM (f.named, f.rework);

    -- 5. The dirty days of lead_time_days, from change_deployments. A dirty row is made and
    --    cleaned in the same transaction, under its pipeline's lock: no other writer sees one.
    UPDATE lead_time_days l
    SET dirty = false, leads = f.leads, reviews = f.reviews, deploys = f.deploys
    FROM (
        SELECT d.pipeline_id, d.environment, d.day,
               coalesce(array_agg(v.lead ORDER BY v.lead, v.review, v.deploy) FILTER (WHERE v.lead IS NOT NULL), '{}') AS leads,
               coalesce(array_agg(v.review ORDER BY v.lead, v.review, v.deploy) FILTER (WHERE v.lead IS NOT NULL), '{}') AS reviews,
               coalesce(array_agg(v.deploy ORDER BY v.lead, v.review, v.deploy) FILTER (WHERE v.lead IS NOT NULL), '{}') AS deploys
        FROM lead_time_days d
        LEFT JOIN LATERAL dora_lead_time_values(ARRAY[d.pipeline_id], d.environment,
            d.day::timestamp AT TIME ZONE 'UTC', (d.day + 1)::timestamp AT TIME ZONE 'UTC') v ON true
        WHERE d.dirty
        GROUP BY d.pipeline_id, d.environment, d.day
    ) f
    WHERE l.pipeline_id = f.pipeline_id AND l.environment = f.environment AND l.day = f.day;
END
$$;

-- dora_derive_pipeline derives everything of one pipeline: what the tables held before this
-- migration, and what a bulk load (make bench's COPY) wrote without the writer.
CREATE FUNCTION dora_derive_pipeline(p_pipeline text)
RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT dora_derive(
        (SELECT array_agg(pipeline_id) FROM changes WHERE pipeline_id = p_pipeline),
        (SELECT array_agg(commit_id) FROM changes WHERE pipeline_id = p_pipeline),
        NULL,
        (SELECT array_agg(source) FROM incidents WHERE pipeline_id = p_pipeline),
        (SELECT array_agg(incident_id) FROM incidents WHERE pipeline_id = p_pipeline))
$$;

SELECT dora_derive_pipeline(p)
FROM (SELECT pipeline_id FROM changes UNION SELECT pipeline_id FROM incidents ORDER BY 1) AS t(p);

-- The bucket a time falls in: the window's start for 'all', else the calendar start (UTC) of
-- its day, ISO week or month, as dora_buckets names them.
CREATE FUNCTION dora_bucket(p_unit text, p_from timestamptz, t timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_unit = 'all' THEN p_from
                ELSE date_trunc(p_unit, t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END
$$;

-- The deployment attempts to p_env whose time is in the window, with what DORA asks of each
-- (failed: status failure or named as an incident's cause; rework: successful while an
-- incident of its pipeline and environment was open): the flags dora_derive keeps.
CREATE OR REPLACE FUNCTION dora_deployment_facts(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (pipeline_id text, deployed_at timestamptz, success boolean, failed boolean, rework boolean)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT d.pipeline_id, d.deployed_at, d.status = 'success', d.status = 'failure' OR d.named,
           d.status = 'success' AND d.rework
    FROM deployments d
    WHERE d.environment = p_env
      AND (p_pipelines IS NULL OR d.pipeline_id = ANY (p_pipelines))
      AND d.deployed_at >= p_from AND d.deployed_at < p_to
$$;

-- Deployment frequency, change failure rate and rework rate, per bucket and (start NULL) for
-- the whole window: counts over the deployments' time index, which holds the flags.
CREATE OR REPLACE FUNCTION dora_deployments(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz, p_unit text DEFAULT 'all')
RETURNS TABLE (start timestamptz, deployments bigint, per_day numeric, per_week numeric,
               attempts bigint, failed bigint, change_failure_rate numeric, rework bigint, rework_rate numeric)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH facts AS (
        SELECT dora_bucket(p_unit, p_from, f.deployed_at) AS start,
               count(*) AS attempts,
               count(*) FILTER (WHERE f.success) AS deployments,
               count(*) FILTER (WHERE f.failed) AS failed,
               count(*) FILTER (WHERE f.rework) AS rework
        FROM dora_deployment_facts(p_pipelines, p_env, p_from, p_to) f
        GROUP BY 1
    ), counted AS (
        SELECT b.start, min(b.lo) AS lo, max(b.hi) AS hi,
               coalesce(sum(f.deployments), 0)::bigint AS deployments,
               coalesce(sum(f.attempts), 0)::bigint AS attempts,
               coalesce(sum(f.failed), 0)::bigint AS failed,
               coalesce(sum(f.rework), 0)::bigint AS rework
        FROM dora_buckets(p_from, p_to, p_unit) b
        LEFT JOIN facts f ON f.start = b.start
        GROUP BY GROUPING SETS ((b.start), ())
    )
    SELECT start, deployments,
           round(deployments / (extract(epoch FROM hi - lo) / 86400), 4),
           round(deployments * 7 / (extract(epoch FROM hi - lo) / 86400), 4),
           attempts, failed,
           round(failed::numeric / nullif(attempts, 0), 4),
           rework,
           round(rework::numeric / nullif(deployments, 0), 4)
    FROM counted
    ORDER BY start NULLS FIRST
$$;

-- The changes whose first successful deployment to p_env is in the window, named by their
-- change id (the smallest commit id of the change), with that time and the change's times.
CREATE OR REPLACE FUNCTION dora_change_facts(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (pipeline_id text, commit_id text, deployed_at timestamptz, first_at timestamptz,
               submitted_at timestamptz, approved_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT cd.pipeline_id, cd.change_id, cd.deployed_at, cd.first_at, cd.submitted_at, cd.approved_at
    FROM change_deployments cd
    WHERE cd.environment = p_env
      AND (p_pipelines IS NULL OR cd.pipeline_id = ANY (p_pipelines))
      AND cd.deployed_at >= p_from AND cd.deployed_at < p_to
$$;

-- Lead time for changes, with its review and deployment parts, per bucket and (start NULL)
-- for the whole window. Zero or negative lead times are left out (DORA.md). median_exact is
-- the median before rounding, which the tiers are rated on.
DROP FUNCTION dora_lead_time(text[], text, timestamptz, timestamptz, text);
CREATE FUNCTION dora_lead_time(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz, p_unit text DEFAULT 'all')
RETURNS TABLE (start timestamptz, changes bigint, median_seconds bigint, p90_seconds bigint, mean_seconds bigint,
               review_median_seconds bigint, deploy_median_seconds bigint, median_exact double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    -- Whole UTC days of the window from lead_time_days, the partial days at its ends from
    -- change_deployments.
    WITH days AS (
        SELECT CASE WHEN (p_from AT TIME ZONE 'UTC')::time = '00:00' THEN (p_from AT TIME ZONE 'UTC')::date
                    ELSE (p_from AT TIME ZONE 'UTC')::date + 1 END AS first_day,
               (p_to AT TIME ZONE 'UTC')::date AS end_day
    ), whole AS (
        SELECT first_day, end_day,
               first_day::timestamp AT TIME ZONE 'UTC' AS lo, end_day::timestamp AT TIME ZONE 'UTC' AS hi
        FROM days WHERE first_day < end_day
    ), lt AS (
        SELECT dora_bucket(p_unit, p_from, l.day::timestamp AT TIME ZONE 'UTC') AS start, v.lead, v.review, v.deploy
        FROM whole
        JOIN lead_time_days l ON l.day >= whole.first_day AND l.day < whole.end_day
        CROSS JOIN LATERAL unnest(l.leads, l.reviews, l.deploys) AS v(lead, review, deploy)
        WHERE l.environment = p_env AND (p_pipelines IS NULL OR l.pipeline_id = ANY (p_pipelines))
        UNION ALL
        SELECT dora_bucket(p_unit, p_from, v.deployed_at), v.lead, v.review, v.deploy
        FROM (SELECT p_from AS lo, coalesce((SELECT lo FROM whole), p_to) AS hi
              UNION ALL
              SELECT hi, p_to FROM whole) r
        CROSS JOIN LATERAL dora_lead_time_values(p_pipelines, p_env, r.lo, r.hi) v
    ), stats AS (
        -- the whole window (start NULL), and each bucket unless the one bucket is the window
        SELECT NULL::timestamptz AS start, count(lt.lead) AS changes,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lt.lead) AS median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY lt.lead) AS p90,
               avg(lt.lead) AS mean,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lt.review) AS review,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lt.deploy) AS deploy
        FROM lt
        UNION ALL
        SELECT lt.start, count(lt.lead),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lt.lead),
               percentile_cont(0.9) WITHIN GROUP (ORDER BY lt.lead),
               avg(lt.lead),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lt.review),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lt.deploy)
        FROM lt
        WHERE p_unit <> 'all'
        GROUP BY lt.start
    )
    SELECT b.start, coalesce(s.changes, 0),
           round(s.median::numeric)::bigint, round(s.p90::numeric)::bigint, round(s.mean::numeric)::bigint,
           round(s.review::numeric)::bigint, round(s.deploy::numeric)::bigint, s.median
    FROM (SELECT b.start FROM dora_buckets(p_from, p_to, p_unit) b UNION ALL SELECT NULL) b
    LEFT JOIN stats s ON s.start IS NOT DISTINCT FROM CASE WHEN p_unit = 'all' THEN NULL ELSE b.start END
    ORDER BY b.start NULLS FIRST
$$;

-- Time to restore: incidents resolved in the window, per bucket and (start NULL) overall.
DROP FUNCTION dora_time_to_restore(text[], text, timestamptz, timestamptz, text);
CREATE FUNCTION dora_time_to_restore(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz, p_unit text DEFAULT 'all')
RETURNS TABLE (start timestamptz, incidents bigint, median_seconds bigint, p90_seconds bigint, mean_seconds bigint,
               median_exact double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH r AS (
        SELECT dora_bucket(p_unit, p_from, i.resolved_at) AS start,
               extract(epoch FROM i.resolved_at - i.opened_at)::float8 AS restore
        FROM incidents i
        WHERE i.environment = p_env
          AND (p_pipelines IS NULL OR i.pipeline_id = ANY (p_pipelines))
          AND i.resolved_at >= p_from AND i.resolved_at < p_to
    ), stats AS (
        SELECT r.start, count(r.restore) AS incidents,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY r.restore) AS median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY r.restore) AS p90,
               avg(r.restore) AS mean
        FROM r
        GROUP BY GROUPING SETS ((r.start), ())
    )
    SELECT b.start, coalesce(s.incidents, 0),
           round(s.median::numeric)::bigint, round(s.p90::numeric)::bigint, round(s.mean::numeric)::bigint,
           s.median
    FROM (SELECT b.start FROM dora_buckets(p_from, p_to, p_unit) b UNION ALL SELECT NULL) b
    LEFT JOIN stats s ON s.start IS NOT DISTINCT FROM b.start
    ORDER BY b.start NULLS FIRST
$$;

-- The queries above replace it.
DROP VIEW shipped_commits;
