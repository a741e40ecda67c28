-- dora_deployment_facts, the same definition as in 0004, with each "is there an incident..."
-- test as a LATERAL probe that stops at the first hit. As EXISTS inside an OR, Postgres hashed
-- the whole incidents table on every call: 19 of the 73 ms of one pipeline's 90 days at 10
-- million events (EXPLAIN in the commit message).
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

-- JIT compiling these queries costs about a second on a small machine, for queries that run in
-- milliseconds. The services turn it off per connection; this turns it off for every client
-- of the database (Grafana included) when the migrating role owns the database.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET jit = off', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'not the owner of the database: JIT stays as configured for other clients';
END
$$;
