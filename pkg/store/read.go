package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Page is the paging of a list: Skip rows, then at most Limit.
type Page struct {
	Skip  int
	Limit int
}

// EventFilter selects events for GET /events. Empty fields select everything; the window is
// [From, To) on the event's own time.
type EventFilter struct {
	PipelineID  string
	Environment string
	Kind        string
	From, To    *time.Time
	Page
}

// Event is an events row as the API shows it.
type Event struct {
	ID            string    `json:"id"`
	Source        string    `json:"source"`
	Kind          string    `json:"type"`
	PipelineID    *string   `json:"pipeline_id"`
	Environment   *string   `json:"environment"`
	CommitID      *string   `json:"commit_id"`
	Commits       []string  `json:"commits,omitempty"`
	IncidentID    *string   `json:"incident_id"`
	DeploymentID  *string   `json:"deployment_id"`
	PullRequestID *int64    `json:"pull_request_id"`
	Status        *string   `json:"status"`
	OccurredAt    time.Time `json:"-"`
	TimeInferred  bool      `json:"time_inferred"`
	ReceivedAt    time.Time `json:"received_at"`
	StreamSeq     int64     `json:"stream_seq"`
}

// where builds a parameterised WHERE clause from the conditions that apply. Every value is a
// bind parameter; only the fixed column text is concatenated.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, arg any) {
	w.args = append(w.args, arg)
	w.conds = append(w.conds, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(w.args))))
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// Events lists events, newest first, and counts all that match the filter.
func (s *Store) Events(ctx context.Context, f EventFilter) ([]Event, int, error) {
	var w where
	if f.PipelineID != "" {
		w.add("pipeline_id = ?", f.PipelineID)
	}
	if f.Environment != "" {
		w.add("environment = ?", f.Environment)
	}
	if f.Kind != "" {
		w.add("kind = ?", f.Kind)
	}
	if f.From != nil {
		w.add("occurred_at >= ?", *f.From)
	}
	if f.To != nil {
		w.add("occurred_at < ?", *f.To)
	}

	var total int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM events"+w.String(), w.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count events: %w", err)
	}
	args := append(w.args, f.Limit, f.Skip)
	rows, err := s.pool.Query(ctx, `
SELECT id, source, kind, pipeline_id, environment, commit_id, commits, incident_id, deployment_id,
    pull_request_id, status, occurred_at, time_inferred, received_at, stream_seq
FROM events`+w.String()+fmt.Sprintf(` ORDER BY occurred_at DESC, id LIMIT $%d OFFSET $%d`, len(args)-1, len(args)), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		err := row.Scan(&e.ID, &e.Source, &e.Kind, &e.PipelineID, &e.Environment, &e.CommitID, &e.Commits,
			&e.IncidentID, &e.DeploymentID, &e.PullRequestID, &e.Status, &e.OccurredAt, &e.TimeInferred,
			&e.ReceivedAt, &e.StreamSeq)
		return e, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list events: %w", err)
	}
	return events, total, nil
}

// ChangeFilter selects changes for GET /commits; the window applies to the change's earliest
// known time.
type ChangeFilter struct {
	PipelineID string
	From, To   *time.Time
	Page
}

// Change is a tracked commit with its review and deploy times.
type Change struct {
	PipelineID string `json:"pipeline_id"`
	CommitID   string `json:"commit_id"`
	// ChangeID names the change the commit is part of: the smallest commit id of the commits
	// that are one change (a merged pull request's head and merge commit), else its own.
	ChangeID      string     `json:"change_id"`
	PullRequestID *int64     `json:"pull_request_id"`
	CommittedAt   *time.Time `json:"committed_at"`
	SubmittedAt   *time.Time `json:"submitted_at"`
	ApprovedAt    *time.Time `json:"approved_at"`
	MergedAt      *time.Time `json:"merged_at"`
	FirstAt       *time.Time `json:"first_at"`
	// FirstDeployedAt maps each environment to the first successful deployment there of the
	// change the commit is part of: where its lead time ends, as the metrics count it.
	FirstDeployedAt map[string]time.Time `json:"first_deployed_at"`
}

// Changes lists changes, most recent first, and counts all that match the filter.
func (s *Store) Changes(ctx context.Context, f ChangeFilter) ([]Change, int, error) {
	var w where
	if f.PipelineID != "" {
		w.add("c.pipeline_id = ?", f.PipelineID)
	}
	if f.From != nil {
		w.add("c.first_at >= ?", *f.From)
	}
	if f.To != nil {
		w.add("c.first_at < ?", *f.To)
	}
	var total int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM changes c"+w.String(), w.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count changes: %w", err)
	}
	args := append(w.args, f.Limit, f.Skip)
	rows, err := s.pool.Query(ctx, `
SELECT c.pipeline_id, c.commit_id, c.change_id, c.pull_request_id, c.committed_at, c.submitted_at, c.approved_at,
    c.merged_at, c.first_at,
    (SELECT coalesce(jsonb_object_agg(cd.environment, cd.deployed_at), '{}')
     FROM change_deployments cd WHERE cd.pipeline_id = c.pipeline_id AND cd.change_id = c.change_id)
FROM changes c`+w.String()+fmt.Sprintf(` ORDER BY c.first_at DESC NULLS LAST, c.pipeline_id, c.commit_id LIMIT $%d OFFSET $%d`, len(args)-1, len(args)), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list changes: %w", err)
	}
	changes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Change, error) {
		var c Change
		err := row.Scan(&c.PipelineID, &c.CommitID, &c.ChangeID, &c.PullRequestID, &c.CommittedAt, &c.SubmittedAt,
			&c.ApprovedAt, &c.MergedAt, &c.FirstAt, &c.FirstDeployedAt)
		return c, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list changes: %w", err)
	}
	return changes, total, nil
}
