-- Teams (issue 15): a team owns pipelines, a pipeline belongs to at most one team. They are
-- configuration an operator keeps with `devopstic team`, not facts of the stream: a rebuild or
-- a replay leaves them as they are (store.StreamTables does not list them). A team's figures are
-- the DORA functions over the union of its pipelines, resolved when they are asked for, so a
-- pipeline moved to another team takes its whole history with it.
--
-- In schema public: Grafana's read-only role reads them for the dashboards' team variable.

CREATE TABLE teams (
    name       text        PRIMARY KEY
                           CHECK (name <> '' AND length(name) <= 256 AND name = btrim(name) AND name !~ '[[:cntrl:]]'),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The pipeline is the key: at most one team each. No foreign key to pipelines: a team may name a
-- pipeline before its first event, and a rebuild recreates that table.
CREATE TABLE team_pipelines (
    pipeline_id text        PRIMARY KEY CHECK (pipeline_id <> ''),
    team        text        NOT NULL REFERENCES teams (name) ON DELETE CASCADE ON UPDATE CASCADE,
    added_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX team_pipelines_by_team ON team_pipelines (team, pipeline_id);
