-- Derivation at the speed of the data (issue 18), and derivation deferred for bulk writes.
--
-- 1. dora_change_deployment_rows works change by change (LATERAL, every lookup an index scan),
--    whatever the planner guesses of its array arguments: the set-at-once form joined every
--    successful deployment of a pipeline to every member commit, and its cost grew with the
--    pipeline rather than with the batch (282 ms for 1,866 changes against 28 ms now).
-- 2. dora_derive works out the rows change_deployments should hold once, not twice (for the
--    stale rows and for the upsert).
-- 3. A write may defer derivation: dora_defer queues what a batch touched, and
--    dora_derive_queued derives the queue of some pipelines later, in one pass. Replay and
--    rebuild write this way (pkg/store: Deferred, Rebuild), and each key is derived once
--    however many batches touched it. Deriving the union of what batches touched gives what
--    deriving after each batch gives: every step recomputes its rows from the base facts.
--    The queue is written in the batch's transaction, so a crash loses none of it.
-- 4. A day of lead_time_days without values has no row, whatever order the facts came in.
-- 5. Step 4 of dora_derive reads a touched incident's window and the attempts flagged rework,
--    not every attempt since its opening.

-- What change_deployments holds for the changes named (see 0009 for the rules), change by
-- change: each change's first successful deployment per environment, from its commits and
-- the pushes whose head they are, and its times, from its commits and, after a squash or
-- rebase merge, the commits of the pushes of its pull request's heads.
CREATE OR REPLACE FUNCTION dora_change_deployment_rows(p_pipelines text[], p_changes text[])
RETURNS TABLE (pipeline_id text, change_id text, environment text, deployed_at timestamptz,
               first_at timestamptz, submitted_at timestamptz, approved_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT t.p, t.id, f.environment, f.deployed_at,
           least(x.committed_at, x.submitted_at, x.approved_at), x.submitted_at, x.approved_at
    FROM (SELECT DISTINCT p, id FROM unnest(p_pipelines, p_changes) AS u(p, id)) AS t
    CROSS JOIN LATERAL (
        SELECT d.environment, min(d.deployed_at) AS deployed_at
        FROM changes m
        CROSS JOIN LATERAL (
            SELECT dc.source, dc.environment, dc.deployment_key
            FROM deployment_commits dc
            WHERE dc.pipeline_id = t.p AND dc.commit_id = m.commit_id
            UNION ALL
            SELECT dc.source, dc.environment, dc.deployment_key
            FROM push_commits pc
            JOIN deployment_commits dc ON dc.pipeline_id = t.p AND dc.commit_id = pc.head_id
            WHERE pc.pipeline_id = t.p AND pc.commit_id = m.commit_id
        ) s
        JOIN deployments d ON d.source = s.source AND d.pipeline_id = t.p AND d.environment = s.environment
            AND d.deployment_key = s.deployment_key
        WHERE m.pipeline_id = t.p AND m.change_id = t.id AND d.status = 'success'
        GROUP BY d.environment
    ) f
    CROSS JOIN LATERAL (
        SELECT min(v.committed_at) AS committed_at, min(v.submitted_at) AS submitted_at,
               coalesce(min(v.approved_at), min(v.merged_at)) AS approved_at
        FROM (
            SELECT m.committed_at, m.submitted_at, m.approved_at, m.merged_at
            FROM changes m
            WHERE m.pipeline_id = t.p AND m.change_id = t.id
            UNION ALL
            SELECT c.committed_at, c.submitted_at, c.approved_at, c.merged_at
            FROM (
                SELECT m.commit_id AS head_id
                FROM changes m
                WHERE m.pipeline_id = t.p AND m.change_id = t.id
                UNION
                SELECT h.commit_id
                FROM changes m
                JOIN changes h ON h.pipeline_id = t.p AND h.pull_request_id = m.pull_request_id
                WHERE m.pipeline_id = t.p AND m.change_id = t.id
            ) h
            JOIN push_commits pc ON pc.pipeline_id = t.p AND pc.head_id = h.head_id
            JOIN changes c ON c.pipeline_id = t.p AND c.commit_id = pc.commit_id
            WHERE EXISTS (
                SELECT 1 FROM changes m
                JOIN change_links l ON l.pipeline_id = t.p AND l.commit_id = m.commit_id
                WHERE m.pipeline_id = t.p AND m.change_id = t.id)
              AND NOT EXISTS (
                SELECT 1 FROM changes m
                JOIN change_links l ON l.pipeline_id = t.p AND l.commit_id = m.commit_id
                JOIN push_commits a ON a.pipeline_id = t.p AND a.commit_id = l.commit_id
                JOIN push_commits b ON b.pipeline_id = t.p AND b.head_id = a.head_id AND b.commit_id = l.linked_id
                WHERE m.pipeline_id = t.p AND m.change_id = t.id)
        ) v
    ) x
$$;

-- dora_derive as in 0009, with step 2's rows worked out once (fresh_*).
CREATE OR REPLACE FUNCTION dora_derive(p_pipelines text[], p_commits text[], p_deployments jsonb,
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
    -- the rows change_deployments should hold for the touched changes, worked out once
    fresh_pipelines text[];
    fresh_changes text[];
    fresh_envs text[];
    fresh_deployed timestamptz[];
    fresh_first timestamptz[];
    fresh_submitted timestamptz[];
    fresh_approved timestamptz[];
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

    SELECT array_agg(r.pipeline_id), array_agg(r.change_id), array_agg(r.environment), array_agg(r.deployed_at),
           array_agg(r.first_at), array_agg(r.submitted_at), array_agg(r.approved_at)
    INTO fresh_pipelines, fresh_changes, fresh_envs, fresh_deployed, fresh_first, fresh_submitted, fresh_approved
    FROM dora_change_deployment_rows(touched_change_pipelines, touched_change_ids) r;

    WITH stale AS (
        SELECT cd.pipeline_id, cd.change_id, cd.environment
        FROM unnest(touched_change_pipelines, touched_change_ids) AS t(p, id)
        JOIN changes m ON m.pipeline_id = t.p AND m.change_id = t.id
        JOIN change_deployments cd ON cd.pipeline_id = m.pipeline_id AND cd.change_id = m.commit_id
        EXCEPT
        SELECT * FROM unnest(fresh_pipelines, fresh_changes, fresh_envs)
    )
    DELETE FROM change_deployments cd
    USING stale s
    WHERE cd.pipeline_id = s.pipeline_id AND cd.change_id = s.change_id AND cd.environment = s.environment;

    WITH written AS (
        INSERT INTO change_deployments AS cd
        SELECT * FROM unnest(fresh_pipelines, fresh_changes, fresh_envs, fresh_deployed, fresh_first,
                             fresh_submitted, fresh_approved)
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
    --    environment), those in its window now (opened, resolved), and those flagged rework
    --    since its opening. (An opening only moves earlier and a last resolution later, so an
    --    attempt the incident made rework before, and no longer does, is flagged and after the
    --    opening. 0009 took every attempt since the opening: incidents times attempts for a
    --    pipeline with many incidents, 60 s of a 100,000-event rebuild.)
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
            AND d.deployed_at >= i.opened_at AND (i.resolved_at IS NULL OR d.deployed_at < i.resolved_at)
        UNION
        SELECT d.source, d.pipeline_id, d.environment, d.deployment_key
        FROM (SELECT pipeline_id, environment, min(opened_at) AS opened_at FROM incidents_touched
              GROUP BY pipeline_id, environment) i
        JOIN deployments d ON d.pipeline_id = i.pipeline_id AND d.environment = i.environment
            AND d.rework AND d.deployed_at >= i.opened_at
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
    --    A day left without values loses its row, so that which rows exist does not depend on
    --    the order the facts came in (a change first deployed on a day, then found to have
    --    been deployed earlier, would leave an empty row behind).
    WITH f AS (
        SELECT d.pipeline_id, d.environment, d.day,
               coalesce(array_agg(v.lead ORDER BY v.lead, v.review, v.deploy) FILTER (WHERE v.lead IS NOT NULL), '{}') AS leads,
               coalesce(array_agg(v.review ORDER BY v.lead, v.review, v.deploy) FILTER (WHERE v.lead IS NOT NULL), '{}') AS reviews,
               coalesce(array_agg(v.deploy ORDER BY v.lead, v.review, v.deploy) FILTER (WHERE v.lead IS NOT NULL), '{}') AS deploys
        FROM lead_time_days d
        LEFT JOIN LATERAL dora_lead_time_values(ARRAY[d.pipeline_id], d.environment,
            d.day::timestamp AT TIME ZONE 'UTC', (d.day + 1)::timestamp AT TIME ZONE 'UTC') v ON true
        WHERE d.dirty
        GROUP BY d.pipeline_id, d.environment, d.day
    ), emptied AS (
        DELETE FROM lead_time_days l
        USING f
        WHERE l.pipeline_id = f.pipeline_id AND l.environment = f.environment AND l.day = f.day
          AND cardinality(f.leads) = 0
    )
    UPDATE lead_time_days l
    SET dirty = false, leads = f.leads, reviews = f.reviews, deploys = f.deploys
    FROM f
    WHERE l.pipeline_id = f.pipeline_id AND l.environment = f.environment AND l.day = f.day
      AND cardinality(f.leads) > 0;
END
$$;


-- Days without values have no row (step 5 above); drop those the old step 5 left.
DELETE FROM lead_time_days WHERE cardinality(leads) = 0;

-- The attempts flagged rework, by time: step 4 reads those after a touched incident's opening.
CREATE INDEX deployments_rework ON deployments (pipeline_id, environment, deployed_at) WHERE rework;

-- What writes that defer derivation touched, until dora_derive_queued derives it: commits,
-- deployment attempts and incidents, each with its pipeline (the lock that derives it).
CREATE TABLE derive_queue_commits (
    pipeline_id text NOT NULL,
    commit_id   text NOT NULL,
    PRIMARY KEY (pipeline_id, commit_id)
);
CREATE TABLE derive_queue_attempts (
    pipeline_id    text NOT NULL,
    source         text NOT NULL,
    environment    text NOT NULL,
    deployment_key text NOT NULL,
    PRIMARY KEY (pipeline_id, source, environment, deployment_key)
);
CREATE TABLE derive_queue_incidents (
    pipeline_id text NOT NULL,
    source      text NOT NULL,
    incident_id text NOT NULL,
    PRIMARY KEY (pipeline_id, source, incident_id)
);

-- dora_defer queues what dora_derive would derive now (same arguments; p_incident_pipelines
-- are the named incidents' pipelines).
CREATE FUNCTION dora_defer(p_pipelines text[], p_commits text[], p_deployments jsonb,
                           p_incident_pipelines text[], p_incident_sources text[], p_incident_ids text[])
RETURNS void
LANGUAGE sql VOLATILE AS $$
    INSERT INTO derive_queue_commits
    SELECT DISTINCT * FROM unnest(p_pipelines, p_commits)
    ON CONFLICT DO NOTHING;
    INSERT INTO derive_queue_attempts
    SELECT DISTINCT k.p, k.s, k.e, k.key FROM jsonb_to_recordset(p_deployments) AS k(s text, p text, e text, key text)
    ON CONFLICT DO NOTHING;
    INSERT INTO derive_queue_incidents
    SELECT DISTINCT * FROM unnest(p_incident_pipelines, p_incident_sources, p_incident_ids)
    ON CONFLICT DO NOTHING;
$$;

-- dora_derive_queued derives, and takes off the queue, what is queued for p_pipelines: the
-- caller holds their locks (pkg/store). It returns how many keys it derived.
CREATE FUNCTION dora_derive_queued(p_pipelines text[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    commit_pipelines text[];
    commit_ids text[];
    attempts jsonb;
    incident_sources text[];
    incident_ids text[];
BEGIN
    WITH taken AS (
        DELETE FROM derive_queue_commits q WHERE q.pipeline_id = ANY (p_pipelines)
        RETURNING q.pipeline_id, q.commit_id
    )
    SELECT array_agg(pipeline_id), array_agg(commit_id) INTO commit_pipelines, commit_ids FROM taken;
    WITH taken AS (
        DELETE FROM derive_queue_attempts q WHERE q.pipeline_id = ANY (p_pipelines)
        RETURNING q.pipeline_id, q.source, q.environment, q.deployment_key
    )
    SELECT jsonb_agg(jsonb_build_object('s', source, 'p', pipeline_id, 'e', environment, 'key', deployment_key))
    INTO attempts FROM taken;
    WITH taken AS (
        DELETE FROM derive_queue_incidents q WHERE q.pipeline_id = ANY (p_pipelines)
        RETURNING q.source, q.incident_id
    )
    SELECT array_agg(source), array_agg(incident_id) INTO incident_sources, incident_ids FROM taken;
    IF commit_ids IS NULL AND attempts IS NULL AND incident_ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM dora_derive(coalesce(commit_pipelines, '{}'), coalesce(commit_ids, '{}'), coalesce(attempts, '[]'),
                        coalesce(incident_sources, '{}'), coalesce(incident_ids, '{}'));
    RETURN coalesce(cardinality(commit_ids), 0) + coalesce(jsonb_array_length(attempts), 0)
        + coalesce(cardinality(incident_ids), 0);
END
$$;
