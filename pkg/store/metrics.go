package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// MetricsQuery is a DORA question: which pipelines, which environment, which window [From,
// To), cut into which buckets (all, day, week or month). The figures are for the union of
// Pipelines and the pipelines of Teams; for every pipeline when both are nil.
type MetricsQuery struct {
	Pipelines   []string
	Teams       []string
	Environment string
	From, To    time.Time
	Unit        string
}

// DeploymentStats are deployment frequency, change failure rate and rework rate for one
// bucket (Start nil: the whole window), as migrations/0002_dora.up.sql computes them.
type DeploymentStats struct {
	Start             *time.Time
	Deployments       int64
	PerDay            float64
	PerWeek           float64
	Attempts          int64
	Failed            int64
	ChangeFailureRate *float64
	Rework            int64
	ReworkRate        *float64
}

// LeadTimeStats are lead time for changes and its parts, in whole seconds, for one bucket.
type LeadTimeStats struct {
	Start        *time.Time
	Changes      int64
	Median       *int64
	P90          *int64
	Mean         *int64
	ReviewMedian *int64
	DeployMedian *int64
	// MedianExact is the median before rounding: what the tier is rated on.
	MedianExact *float64
}

// RestoreStats are time to restore, in whole seconds, for one bucket.
type RestoreStats struct {
	Start     *time.Time
	Incidents int64
	Median    *int64
	P90       *int64
	Mean      *int64
	// MedianExact is the median before rounding: what the tier is rated on.
	MedianExact *float64
}

// Metrics answers a MetricsQuery. Each slice holds the whole window first (Start nil), then
// every bucket in order, empty ones included.
type Metrics struct {
	// Pipelines are the pipelines the figures are for, sorted (the teams' resolved); nil for all.
	Pipelines     []string
	Deployments   []DeploymentStats
	LeadTime      []LeadTimeStats
	Restore       []RestoreStats
	OpenIncidents int64
}

// Metrics runs the DORA functions in one read-only snapshot, the teams' pipelines resolved in
// it too, so the figures agree with each other even while the writer writes. The union of the
// pipelines is what the functions get: a team's figures are never an average of its pipelines'.
// ErrNotFound names a team that does not exist.
func (s *Store) Metrics(ctx context.Context, q MetricsQuery) (Metrics, error) {
	var m Metrics
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// Lead time sorts every value of the window three times (lead, review and deployment
		// parts): at 10M events and all pipelines, 830,000 values, which spill to disk at
		// Postgres's default 4 MB. And each query is planned for its own arguments: the
		// functions inline into the statement, and the generic plan that pgx's prepared
		// statements get after five calls cannot tell "all pipelines" from one (it took the
		// deployment counts from 0.25 s to 0.95 s at 10M events).
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'; SET LOCAL plan_cache_mode = force_custom_plan`); err != nil {
			return fmt.Errorf("session settings: %w", err)
		}
		if q.Pipelines != nil {
			m.Pipelines = slices.Sorted(slices.Values(q.Pipelines))
		}
		if len(q.Teams) > 0 {
			var err error
			if m.Pipelines, err = resolvePipelines(ctx, tx, q.Pipelines, q.Teams); err != nil {
				return err
			}
		}
		var pipelines any // NULL for every pipeline; an empty array (a team without pipelines) for none
		if m.Pipelines != nil {
			pipelines = m.Pipelines
		}
		args := []any{pipelines, q.Environment, q.From, q.To, q.Unit}
		rows, _ := tx.Query(ctx, `SELECT * FROM dora_deployments($1, $2, $3, $4, $5)`, args...)
		var err error
		if m.Deployments, err = pgx.CollectRows(rows, pgx.RowToStructByPos[DeploymentStats]); err != nil {
			return fmt.Errorf("deployments: %w", err)
		}
		rows, _ = tx.Query(ctx, `SELECT * FROM dora_lead_time($1, $2, $3, $4, $5)`, args...)
		if m.LeadTime, err = pgx.CollectRows(rows, pgx.RowToStructByPos[LeadTimeStats]); err != nil {
			return fmt.Errorf("lead time: %w", err)
		}
		rows, _ = tx.Query(ctx, `SELECT * FROM dora_time_to_restore($1, $2, $3, $4, $5)`, args...)
		if m.Restore, err = pgx.CollectRows(rows, pgx.RowToStructByPos[RestoreStats]); err != nil {
			return fmt.Errorf("time to restore: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT dora_open_incidents($1, $2, $3)`, pipelines, q.Environment, q.To).Scan(&m.OpenIncidents); err != nil {
			return fmt.Errorf("open incidents: %w", err)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return Metrics{}, err
	}
	if err != nil {
		return Metrics{}, fmt.Errorf("DORA metrics: %w", err)
	}
	return m, nil
}

// Pipeline is a pipeline, the environments it was seen deploying to or failing in, and its
// team (nil when it has none).
type Pipeline struct {
	PipelineID   string   `json:"pipeline_id"`
	Environments []string `json:"environments"`
	Team         *string  `json:"team"`
}

// Pipelines lists every pipeline seen, by name.
func (s *Store) Pipelines(ctx context.Context) ([]Pipeline, error) {
	rows, _ := s.pool.Query(ctx, `
SELECT p.pipeline_id,
       coalesce(array_agg(e.environment ORDER BY e.environment) FILTER (WHERE e.environment IS NOT NULL), '{}'),
       min(tp.team)
FROM pipelines p
LEFT JOIN pipeline_environments e USING (pipeline_id)
LEFT JOIN team_pipelines tp USING (pipeline_id)
GROUP BY p.pipeline_id
ORDER BY p.pipeline_id`)
	pipelines, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Pipeline])
	if err != nil {
		return nil, fmt.Errorf("list pipelines: %w", err)
	}
	return pipelines, nil
}

// OpenIncident is an incident that is open: opened, not resolved yet.
type OpenIncident struct {
	Source            string
	IncidentID        string
	PipelineID        string
	Team              *string
	OpenedAt          time.Time
	CauseDeploymentID *string
	CauseCommitID     *string
}

// OpenIncidents lists the incidents of env open at `at`, the ones dora_open_incidents counts
// (opened before it and not resolved by then), latest opened first, at most limit.
func (s *Store) OpenIncidents(ctx context.Context, env string, at time.Time, limit int) ([]OpenIncident, error) {
	rows, _ := s.pool.Query(ctx, `
SELECT i.source, i.incident_id, i.pipeline_id, tp.team, i.opened_at, i.cause_deployment_id, i.cause_commit_id
FROM incidents i
LEFT JOIN team_pipelines tp USING (pipeline_id)
WHERE i.environment = $1 AND i.opened_at < $2 AND (i.resolved_at IS NULL OR i.resolved_at >= $2)
ORDER BY i.opened_at DESC, i.source, i.incident_id
LIMIT $3`, env, at, limit)
	incidents, err := pgx.CollectRows(rows, pgx.RowToStructByPos[OpenIncident])
	if err != nil {
		return nil, fmt.Errorf("list open incidents: %w", err)
	}
	return incidents, nil
}

// Analyze refreshes the planner's statistics of every table, as autovacuum does a while after
// a large load: until then the planner takes the DORA functions over several pipelines (a
// team) for a handful of rows, and may run them for minutes.
func (s *Store) Analyze(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}
