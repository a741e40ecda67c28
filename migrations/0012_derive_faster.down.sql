-- Back to the schema before 0012: no derivation queue, and 0009's dora_derive and dora_change_deployment_rows.
DROP FUNCTION dora_derive_queued(text[]);
DROP FUNCTION dora_defer(text[], text[], jsonb, text[], text[], text[]);
DROP TABLE derive_queue_commits;
DROP TABLE derive_queue_attempts;
DROP TABLE derive_queue_incidents;
DROP INDEX deployments_rework;

CREATE OR REPLACE FUNCTION dora_change_deployment_rows(p_pipelines text[], p_changes text[])
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

