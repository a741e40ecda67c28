-- Back to 0004's definition.
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
            JOIN shipped_commits dc
              ON dc.pipeline_id = i.pipeline_id AND dc.environment = i.environment AND dc.commit_id = i.cause_commit_id
            WHERE i.pipeline_id = d.pipeline_id AND i.environment = d.environment
              AND dc.source = d.source AND dc.deployment_key = d.deployment_key
              AND d.status = 'success'
              AND NOT EXISTS (
                  SELECT 1 FROM shipped_commits dc2
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

DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I RESET jit', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    NULL;
END
$$;
