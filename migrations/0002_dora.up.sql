-- The DORA metrics, defined once, in SQL: the metrics API and the Grafana dashboards call these
-- same functions, so they cannot disagree. docs/metrics.md ("How the metrics are computed") is
-- the contract; every figure here is rounded the way the API shows it (seconds to the nearest
-- whole second, rates to 4 decimals, half away from zero).

-- Window queries: by environment and time for all pipelines, by cause for failed deployments.
CREATE INDEX deployments_env_time ON deployments (environment, deployed_at);
CREATE INDEX incidents_resolved ON incidents (pipeline_id, environment, resolved_at);
CREATE INDEX incidents_env_resolved ON incidents (environment, resolved_at);
CREATE INDEX incidents_cause_deployment ON incidents (pipeline_id, environment, cause_deployment_id)
    WHERE cause_deployment_id IS NOT NULL;
CREATE INDEX incidents_cause_commit ON incidents (pipeline_id, environment, cause_commit_id)
    WHERE cause_commit_id IS NOT NULL;

-- The pipelines and environments seen, kept by the writer (a row is only ever added, so the
-- upsert commutes) so that listing them never scans the fact tables.
CREATE TABLE pipelines (
    pipeline_id text PRIMARY KEY
);
CREATE TABLE pipeline_environments (
    pipeline_id text NOT NULL,
    environment text NOT NULL,
    PRIMARY KEY (pipeline_id, environment)
);
INSERT INTO pipelines
SELECT pipeline_id FROM changes UNION SELECT pipeline_id FROM deployments UNION SELECT pipeline_id FROM incidents
ON CONFLICT DO NOTHING;
INSERT INTO pipeline_environments
SELECT pipeline_id, environment FROM deployments UNION SELECT pipeline_id, environment FROM incidents
ON CONFLICT DO NOTHING;

-- The buckets of a window [p_from, p_to): one for 'all'; else the UTC days, ISO weeks (from
-- Monday) or months that overlap the window, each clipped to it. `start` is the bucket's
-- calendar start (p_from for 'all'); lo and hi are the clipped bounds the facts are counted in.
-- (PL/pgSQL rather than SQL: an inlined SQL body would have date_trunc('all', ...) folded, and
-- fail, while planning.)
CREATE FUNCTION dora_buckets(p_from timestamptz, p_to timestamptz, p_unit text)
RETURNS TABLE (start timestamptz, lo timestamptz, hi timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    step interval;
BEGIN
    IF p_unit = 'all' THEN
        RETURN QUERY SELECT p_from, p_from, p_to;
        RETURN;
    END IF;
    IF p_unit NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'dora_buckets: unit must be all, day, week or month, not %', p_unit;
    END IF;
    step := ('1 ' || p_unit)::interval;
    RETURN QUERY
        SELECT s AT TIME ZONE 'UTC',
               greatest(s AT TIME ZONE 'UTC', p_from),
               least((s + step) AT TIME ZONE 'UTC', p_to)
        FROM generate_series(date_trunc(p_unit, p_from AT TIME ZONE 'UTC'),
                             (p_to AT TIME ZONE 'UTC') - interval '1 microsecond', step) AS s;
END
$$;

-- The deployment attempts to p_env whose time is in the window, for the pipelines named
-- (all when p_pipelines is NULL), with what DORA asks of each:
--   failed: its status is failure, or an incident names it as the cause, by deployment id or by
--           a commit it was the first successful deployment of (ties broken by key);
--   rework: it succeeded while an incident of its pipeline and environment was open
--           (opened_at <= deployed_at < resolved_at, or not resolved).
CREATE FUNCTION dora_deployment_facts(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (pipeline_id text, deployed_at timestamptz, success boolean, failed boolean, rework boolean)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT d.pipeline_id, d.deployed_at, d.status = 'success',
        d.status = 'failure'
        OR EXISTS (
            SELECT 1 FROM incidents i
            WHERE i.pipeline_id = d.pipeline_id AND i.environment = d.environment
              AND i.cause_deployment_id = d.deployment_id)
        OR EXISTS (
            SELECT 1 FROM incidents i
            JOIN deployment_commits dc
              ON dc.pipeline_id = i.pipeline_id AND dc.environment = i.environment AND dc.commit_id = i.cause_commit_id
            WHERE i.pipeline_id = d.pipeline_id AND i.environment = d.environment
              AND dc.source = d.source AND dc.deployment_key = d.deployment_key
              AND d.status = 'success'
              AND NOT EXISTS (
                  SELECT 1 FROM deployment_commits dc2
                  JOIN deployments d2 USING (source, pipeline_id, environment, deployment_key)
                  WHERE dc2.pipeline_id = dc.pipeline_id AND dc2.environment = dc.environment
                    AND dc2.commit_id = dc.commit_id AND d2.status = 'success'
                    AND (d2.deployed_at, d2.source, d2.deployment_key) < (d.deployed_at, d.source, d.deployment_key))),
        d.status = 'success' AND EXISTS (
            SELECT 1 FROM incidents i
            WHERE i.pipeline_id = d.pipeline_id AND i.environment = d.environment
              AND i.opened_at <= d.deployed_at AND (i.resolved_at IS NULL OR d.deployed_at < i.resolved_at))
    FROM deployments d
    WHERE d.environment = p_env
      AND (p_pipelines IS NULL OR d.pipeline_id = ANY (p_pipelines))
      AND d.deployed_at >= p_from AND d.deployed_at < p_to
$$;

-- Deployment frequency, change failure rate and rework rate, per bucket and (start NULL) for
-- the whole window. per_day divides by the bucket's own length in days.
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

-- The changes whose first successful deployment to p_env is in the window, with that time and
-- the change's own times.
CREATE FUNCTION dora_change_facts(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (pipeline_id text, commit_id text, deployed_at timestamptz, first_at timestamptz,
               submitted_at timestamptz, approved_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH shipped AS (
        SELECT dc.pipeline_id, dc.commit_id, min(d.deployed_at) AS deployed_at
        FROM deployments d
        JOIN deployment_commits dc USING (source, pipeline_id, environment, deployment_key)
        WHERE d.environment = p_env
          AND (p_pipelines IS NULL OR d.pipeline_id = ANY (p_pipelines))
          AND d.status = 'success' AND d.deployed_at >= p_from AND d.deployed_at < p_to
        GROUP BY dc.pipeline_id, dc.commit_id
    )
    SELECT s.pipeline_id, s.commit_id, s.deployed_at, c.first_at, c.submitted_at, c.approved_at
    FROM shipped s
    JOIN changes c USING (pipeline_id, commit_id)
    WHERE NOT EXISTS (
        SELECT 1 FROM deployment_commits dc
        JOIN deployments d USING (source, pipeline_id, environment, deployment_key)
        WHERE dc.pipeline_id = s.pipeline_id AND dc.commit_id = s.commit_id AND dc.environment = p_env
          AND d.status = 'success' AND d.deployed_at < p_from)
$$;

-- Lead time for changes, with its review and deployment parts, per bucket and (start NULL)
-- for the whole window. Zero or negative lead times are left out (DORA.md).
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

-- Time to restore: incidents resolved in the window, per bucket and (start NULL) overall.
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

-- Incidents opened before p_to and not resolved by then.
CREATE FUNCTION dora_open_incidents(p_pipelines text[], p_env text, p_to timestamptz)
RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT count(*)
    FROM incidents i
    WHERE i.environment = p_env
      AND (p_pipelines IS NULL OR i.pipeline_id = ANY (p_pipelines))
      AND i.opened_at < p_to AND (i.resolved_at IS NULL OR i.resolved_at >= p_to)
$$;
