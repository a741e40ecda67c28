-- Back to 0008: the views, probes and indexes the read functions used before the derived facts.
DROP FUNCTION dora_deployments(text[], text, timestamptz, timestamptz, text);
DROP FUNCTION dora_lead_time(text[], text, timestamptz, timestamptz, text);
DROP FUNCTION dora_time_to_restore(text[], text, timestamptz, timestamptz, text);
DROP FUNCTION dora_bucket(text, timestamptz, timestamptz);
DROP FUNCTION dora_derive_pipeline(text);
DROP FUNCTION dora_derive(text[], text[], jsonb, text[], text[]);
DROP FUNCTION dora_touched_incidents(text[], text[], jsonb, text[], text[]);
DROP FUNCTION dora_change_deployment_rows(text[], text[]);
DROP FUNCTION dora_touched_changes(text[], text[], jsonb);
DROP FUNCTION dora_resolve_commit(text, text);
DROP FUNCTION dora_commit_deployments(text, text);
DROP FUNCTION dora_touched_commits(text[], text[], jsonb);
DROP FUNCTION dora_lead_time_values(text[], text, timestamptz, timestamptz);
DROP TABLE lead_time_days;
DROP TABLE change_deployments;
DROP INDEX incidents_cause_prefix;
DROP INDEX incidents_cause_key;
ALTER TABLE incidents DROP COLUMN cause_source, DROP COLUMN cause_key;
DROP INDEX changes_by_change;
DROP INDEX changes_by_pull_request;
-- A merge approved its change before merged_at was kept apart.
UPDATE changes SET approved_at = LEAST(approved_at, merged_at) WHERE merged_at IS NOT NULL;
ALTER TABLE changes DROP COLUMN change_id, DROP COLUMN merged_at;
-- Dropping the flags drops the indexes that include them.
ALTER TABLE deployments DROP COLUMN named, DROP COLUMN rework;
CREATE INDEX deployments_env_time ON deployments (environment, deployed_at);
CREATE INDEX deployments_window ON deployments (pipeline_id, environment, deployed_at);

CREATE VIEW change_deployments AS
SELECT dc.pipeline_id, dc.commit_id, dc.environment, min(d.deployed_at) AS first_deployed_at
FROM deployment_commits dc
JOIN deployments d USING (source, pipeline_id, environment, deployment_key)
WHERE d.status = 'success'
GROUP BY dc.pipeline_id, dc.commit_id, dc.environment;

CREATE VIEW shipped_commits AS
SELECT source, pipeline_id, environment, deployment_key, commit_id
FROM deployment_commits
UNION ALL
SELECT d.source, d.pipeline_id, d.environment, d.deployment_key, pc.commit_id
FROM deployments d
JOIN push_commits pc ON pc.pipeline_id = d.pipeline_id AND pc.head_id = d.commit_id;


CREATE FUNCTION dora_deployments(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz, p_unit text DEFAULT 'all')
RETURNS TABLE (start timestamptz, deployments bigint, per_day numeric, per_week numeric,
               attempts bigint, failed bigint, change_failure_rate numeric, rework bigint, rework_rate numeric)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH counted AS (
        SELECT b.start,
               min(b.lo) AS lo, max(b.hi) AS hi,
               count(*) FILTER (WHERE f.success) AS deployments,
               count(f.deployed_at) AS attempts,
               count(*) FILTER (WHERE f.failed) AS failed,
               count(*) FILTER (WHERE f.rework) AS rework
        FROM dora_buckets(p_from, p_to, p_unit) b
        LEFT JOIN dora_deployment_facts(p_pipelines, p_env, p_from, p_to) f
          ON f.deployed_at >= b.lo AND f.deployed_at < b.hi
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

CREATE FUNCTION dora_lead_time(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz, p_unit text DEFAULT 'all')
RETURNS TABLE (start timestamptz, changes bigint, median_seconds bigint, p90_seconds bigint, mean_seconds bigint,
               review_median_seconds bigint, deploy_median_seconds bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH lt AS (
        SELECT f.deployed_at,
               extract(epoch FROM f.deployed_at - f.first_at)::float8 AS lead,
               extract(epoch FROM f.approved_at - f.submitted_at)::float8 AS review,
               extract(epoch FROM f.deployed_at - f.approved_at)::float8 AS deploy
        FROM dora_change_facts(p_pipelines, p_env, p_from, p_to) f
        WHERE f.deployed_at > f.first_at
    )
    SELECT b.start, count(lt.lead),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lt.lead)::numeric)::bigint,
           round(percentile_cont(0.9) WITHIN GROUP (ORDER BY lt.lead)::numeric)::bigint,
           round(avg(lt.lead)::numeric)::bigint,
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lt.review)::numeric)::bigint,
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lt.deploy)::numeric)::bigint
    FROM dora_buckets(p_from, p_to, p_unit) b
    LEFT JOIN lt ON lt.deployed_at >= b.lo AND lt.deployed_at < b.hi
    GROUP BY GROUPING SETS ((b.start), ())
    ORDER BY b.start NULLS FIRST
$$;

CREATE FUNCTION dora_time_to_restore(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz, p_unit text DEFAULT 'all')
RETURNS TABLE (start timestamptz, incidents bigint, median_seconds bigint, p90_seconds bigint, mean_seconds bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH r AS (
        SELECT i.resolved_at, extract(epoch FROM i.resolved_at - i.opened_at)::float8 AS restore
        FROM incidents i
        WHERE i.environment = p_env
          AND (p_pipelines IS NULL OR i.pipeline_id = ANY (p_pipelines))
          AND i.resolved_at >= p_from AND i.resolved_at < p_to
    )
    SELECT b.start, count(r.restore),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY r.restore)::numeric)::bigint,
           round(percentile_cont(0.9) WITHIN GROUP (ORDER BY r.restore)::numeric)::bigint,
           round(avg(r.restore)::numeric)::bigint
    FROM dora_buckets(p_from, p_to, p_unit) b
    LEFT JOIN r ON r.resolved_at >= b.lo AND r.resolved_at < b.hi
    GROUP BY GROUPING SETS ((b.start), ())
    ORDER BY b.start NULLS FIRST
$$;

CREATE OR REPLACE FUNCTION dora_change_facts(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (pipeline_id text, commit_id text, deployed_at timestamptz, first_at timestamptz,
               submitted_at timestamptz, approved_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH shipped AS (
        SELECT dc.pipeline_id, dc.commit_id, min(d.deployed_at) AS deployed_at
        FROM deployments d
        JOIN shipped_commits dc USING (source, pipeline_id, environment, deployment_key)
        WHERE d.environment = p_env
          AND (p_pipelines IS NULL OR d.pipeline_id = ANY (p_pipelines))
          AND d.status = 'success' AND d.deployed_at >= p_from AND d.deployed_at < p_to
        GROUP BY dc.pipeline_id, dc.commit_id
    )
    SELECT s.pipeline_id, s.commit_id, s.deployed_at, g.first_at, g.submitted_at, g.approved_at
    FROM shipped s
    CROSS JOIN LATERAL (
        SELECT min(c.first_at) AS first_at, min(c.submitted_at) AS submitted_at, min(c.approved_at) AS approved_at
        FROM changes c
        WHERE c.pipeline_id = s.pipeline_id
          AND c.commit_id IN (
              SELECT s.commit_id
              UNION ALL
              SELECT l.linked_id FROM change_links l
              WHERE l.pipeline_id = s.pipeline_id AND l.commit_id = s.commit_id
              UNION ALL
              SELECT pc.commit_id FROM change_links l
              JOIN push_commits pc ON pc.pipeline_id = l.pipeline_id AND pc.head_id = l.linked_id
              WHERE l.pipeline_id = s.pipeline_id AND l.commit_id = s.commit_id)
    ) g
    WHERE NOT EXISTS (
        SELECT 1 FROM shipped_commits dc
        JOIN deployments d USING (source, pipeline_id, environment, deployment_key)
        WHERE dc.pipeline_id = s.pipeline_id AND dc.commit_id = s.commit_id AND dc.environment = p_env
          AND d.status = 'success' AND d.deployed_at < p_from)
$$;

CREATE OR REPLACE FUNCTION dora_deployment_facts(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (pipeline_id text, deployed_at timestamptz, success boolean, failed boolean, rework boolean)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT d.pipeline_id, d.deployed_at, d.status = 'success',
           d.status = 'failure' OR by_id.hit IS NOT NULL OR by_commit.hit IS NOT NULL,
           d.status = 'success' AND during.hit IS NOT NULL
    FROM deployments d
    -- an incident names this deployment by id
    LEFT JOIN LATERAL (
        SELECT true AS hit FROM incidents i
        WHERE i.pipeline_id = d.pipeline_id AND i.environment = d.environment
          AND i.cause_deployment_id = d.deployment_id
        LIMIT 1) by_id ON true
    -- an incident names a commit this deployment was the first successful deployment of
    LEFT JOIN LATERAL (
        SELECT true AS hit FROM incidents i
        WHERE d.status = 'success'
          AND i.pipeline_id = d.pipeline_id AND i.environment = d.environment
          AND i.cause_commit_id IS NOT NULL
          AND EXISTS (
              SELECT 1 FROM shipped_commits dc
              WHERE dc.source = d.source AND dc.pipeline_id = d.pipeline_id AND dc.environment = d.environment
                AND dc.deployment_key = d.deployment_key AND dc.commit_id = i.cause_commit_id)
          AND NOT EXISTS (
              SELECT 1 FROM shipped_commits dc2
              JOIN deployments d2 USING (source, pipeline_id, environment, deployment_key)
              WHERE dc2.pipeline_id = d.pipeline_id AND dc2.environment = d.environment
                AND dc2.commit_id = i.cause_commit_id AND d2.status = 'success'
                AND (d2.deployed_at, d2.source, d2.deployment_key) < (d.deployed_at, d.source, d.deployment_key))
        LIMIT 1) by_commit ON true
    -- an incident of its pipeline and environment was open when it was made
    LEFT JOIN LATERAL (
        SELECT true AS hit FROM incidents i
        WHERE i.pipeline_id = d.pipeline_id AND i.environment = d.environment
          AND i.opened_at <= d.deployed_at AND (i.resolved_at IS NULL OR d.deployed_at < i.resolved_at)
        LIMIT 1) during ON true
    WHERE d.environment = p_env
      AND (p_pipelines IS NULL OR d.pipeline_id = ANY (p_pipelines))
      AND d.deployed_at >= p_from AND d.deployed_at < p_to
$$;
