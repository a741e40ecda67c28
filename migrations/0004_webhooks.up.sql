-- Webhook sources (GitHub, GitLab): what a push brings and which commits are one change.

-- A push whose head is head_id brought commit_id: deploying the head ships it (DORA: a
-- deployment ships every change of the push that produced the deployed commit).
CREATE TABLE push_commits (
    pipeline_id text NOT NULL,
    head_id     text NOT NULL,
    commit_id   text NOT NULL,
    PRIMARY KEY (pipeline_id, head_id, commit_id)
);
CREATE INDEX push_commits_by_commit ON push_commits (pipeline_id, commit_id);

-- Two commits that are one change: a merged pull request's head and its merge commit. Kept
-- in both directions, so a lookup from either finds the other.
CREATE TABLE change_links (
    pipeline_id text NOT NULL,
    commit_id   text NOT NULL,
    linked_id   text NOT NULL,
    PRIMARY KEY (pipeline_id, commit_id, linked_id)
);

-- Deployments by the commit they deployed, for pushes arriving after their deployment.
CREATE INDEX deployments_by_commit ON deployments (pipeline_id, environment, commit_id);

-- Every commit a deployment ships: those it listed, and those of the push whose head it deployed.
CREATE VIEW shipped_commits AS
SELECT source, pipeline_id, environment, deployment_key, commit_id
FROM deployment_commits
UNION ALL
SELECT d.source, d.pipeline_id, d.environment, d.deployment_key, pc.commit_id
FROM deployments d
JOIN push_commits pc ON pc.pipeline_id = d.pipeline_id AND pc.head_id = d.commit_id;

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

-- The changes whose first successful deployment to p_env is in the window, with that time and
-- the change's own times. A change's times are the earliest of its commit, of the commits
-- linked to it (a merged pull request's head and merge commit are one change), and of the
-- commits a push brought with a linked head (the commits a squash merge replaced).
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
