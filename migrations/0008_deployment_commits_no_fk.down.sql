ALTER TABLE deployment_commits ADD FOREIGN KEY (source, pipeline_id, environment, deployment_key)
    REFERENCES deployments (source, pipeline_id, environment, deployment_key) ON DELETE CASCADE;
