-- Back to 0002's definitions, which know only deployment_commits.
-- The deployment attempts to p_env whose time is in the window, for the pipelines named
-- (all when p_pipelines is NULL), with what DORA asks of each:
--   failed: its status is failure, or an incident names it as the cause, by deployment id or by
--           a commit it was the first successful deployment of (ties broken by key);
--   rework: it succeeded while an incident of its pipeline and environment was open
--           (opened_at <= deployed_at < resolved_at, or not resolved).
CREATE OR REPLACE FUNCTION dora_deployment_facts(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz)
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

-- The changes whose first successful deployment to p_env is in the window, with that time and
-- the change's own times.
CREATE OR REPLACE FUNCTION dora_change_facts(p_pipelines text[], p_env text, p_from timestamptz, p_to timestamptz)
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

DROP VIEW IF EXISTS shipped_commits;
DROP INDEX IF EXISTS deployments_by_commit;
DROP TABLE IF EXISTS change_links;
DROP TABLE IF EXISTS push_commits;
