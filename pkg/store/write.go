package store

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/devopstic/devopstic/pkg/fact"
)

const insertEvent = `
INSERT INTO events (id, source, kind, pipeline_id, environment, commit_id, commits, incident_id,
    deployment_id, pull_request_id, status, occurred_at, time_inferred, received_at, stream_seq, payload, headers)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
ON CONFLICT (id) DO NOTHING`

// The WHERE clause skips updates that change nothing, so a replay over existing rows leaves no
// dead tuples behind.
const upsertChange = `
INSERT INTO changes AS c (pipeline_id, commit_id, pull_request_id, committed_at, submitted_at, approved_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (pipeline_id, commit_id) DO UPDATE SET
    pull_request_id = LEAST(c.pull_request_id, EXCLUDED.pull_request_id),
    committed_at    = LEAST(c.committed_at, EXCLUDED.committed_at),
    submitted_at    = LEAST(c.submitted_at, EXCLUDED.submitted_at),
    approved_at     = LEAST(c.approved_at, EXCLUDED.approved_at)
WHERE (c.pull_request_id, c.committed_at, c.submitted_at, c.approved_at) IS DISTINCT FROM
    (LEAST(c.pull_request_id, EXCLUDED.pull_request_id), LEAST(c.committed_at, EXCLUDED.committed_at),
     LEAST(c.submitted_at, EXCLUDED.submitted_at), LEAST(c.approved_at, EXCLUDED.approved_at))`

// Latest wins, by a total order on (deployed_at, failure before success, event_id): whichever
// order the events of one attempt arrive in, the same one decides the row.
const upsertDeployment = `
INSERT INTO deployments AS d (source, pipeline_id, environment, deployment_key, deployment_id,
    status, deployed_at, commit_id, event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (source, pipeline_id, environment, deployment_key) DO UPDATE SET
    deployment_id = EXCLUDED.deployment_id,
    status        = EXCLUDED.status,
    deployed_at   = EXCLUDED.deployed_at,
    commit_id     = EXCLUDED.commit_id,
    event_id      = EXCLUDED.event_id
WHERE (EXCLUDED.deployed_at, EXCLUDED.status = 'failure', EXCLUDED.event_id)
    > (d.deployed_at, d.status = 'failure', d.event_id)`

const insertDeploymentCommit = `
INSERT INTO deployment_commits (source, pipeline_id, environment, deployment_key, commit_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING`

const upsertIncident = `
INSERT INTO incidents AS i (source, incident_id, pipeline_id, environment, opened_at, last_resolved_at,
    cause_deployment_id, cause_commit_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (source, incident_id) DO UPDATE SET
    pipeline_id         = LEAST(i.pipeline_id, EXCLUDED.pipeline_id),
    environment         = LEAST(i.environment, EXCLUDED.environment),
    opened_at           = LEAST(i.opened_at, EXCLUDED.opened_at),
    last_resolved_at    = GREATEST(i.last_resolved_at, EXCLUDED.last_resolved_at),
    cause_deployment_id = LEAST(i.cause_deployment_id, EXCLUDED.cause_deployment_id),
    cause_commit_id     = LEAST(i.cause_commit_id, EXCLUDED.cause_commit_id)
WHERE (i.pipeline_id, i.environment, i.opened_at, i.last_resolved_at, i.cause_deployment_id, i.cause_commit_id)
    IS DISTINCT FROM
    (LEAST(i.pipeline_id, EXCLUDED.pipeline_id), LEAST(i.environment, EXCLUDED.environment),
     LEAST(i.opened_at, EXCLUDED.opened_at), GREATEST(i.last_resolved_at, EXCLUDED.last_resolved_at),
     LEAST(i.cause_deployment_id, EXCLUDED.cause_deployment_id), LEAST(i.cause_commit_id, EXCLUDED.cause_commit_id))`

// Write stores sets in one transaction: all of them or none. Rows are written in key order so
// that concurrent writers lock them in the same order and do not deadlock.
func (s *Store) Write(ctx context.Context, sets []fact.Set) error {
	if len(sets) == 0 {
		return nil
	}
	batch := queueWrites(sets)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("write %d events: %w", len(sets), err)
	}
	return nil
}

func queueWrites(sets []fact.Set) *pgx.Batch {
	var (
		events      []fact.Event
		changes     []fact.Change
		deployments []fact.Deployment
		incidents   []fact.Incident
	)
	for _, set := range sets {
		events = append(events, set.Event)
		changes = append(changes, set.Changes...)
		deployments = append(deployments, set.Deployments...)
		incidents = append(incidents, set.Incidents...)
	}
	slices.SortFunc(events, func(a, b fact.Event) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(changes, func(a, b fact.Change) int {
		return cmp.Or(strings.Compare(a.PipelineID, b.PipelineID), strings.Compare(a.CommitID, b.CommitID))
	})
	slices.SortFunc(deployments, func(a, b fact.Deployment) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.PipelineID, b.PipelineID),
			strings.Compare(a.Environment, b.Environment), strings.Compare(a.Key, b.Key))
	})
	slices.SortFunc(incidents, func(a, b fact.Incident) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.IncidentID, b.IncidentID))
	})

	b := &pgx.Batch{}
	for _, e := range events {
		b.Queue(insertEvent, e.ID, e.Source, e.Kind, null(e.PipelineID), null(e.Environment),
			null(e.CommitID), e.Commits, null(e.IncidentID), null(e.DeploymentID), e.PullRequestID,
			null(e.Status), e.OccurredAt, e.TimeInferred, e.ReceivedAt, int64(e.StreamSeq), e.Payload, e.Headers)
	}
	for _, c := range changes {
		b.Queue(upsertChange, c.PipelineID, c.CommitID, c.PullRequestID, c.CommittedAt, c.SubmittedAt, c.ApprovedAt)
	}
	for _, d := range deployments {
		b.Queue(upsertDeployment, d.Source, d.PipelineID, d.Environment, d.Key, null(d.DeploymentID),
			d.Status, d.DeployedAt, null(d.CommitID), d.EventID)
	}
	for _, d := range deployments {
		for _, c := range d.Commits {
			b.Queue(insertDeploymentCommit, d.Source, d.PipelineID, d.Environment, d.Key, c)
		}
	}
	for _, i := range incidents {
		b.Queue(upsertIncident, i.Source, i.IncidentID, i.PipelineID, i.Environment, i.OpenedAt,
			i.ResolvedAt, null(i.CauseDeploymentID), null(i.CauseCommitID))
	}
	for _, set := range sets {
		for _, pc := range set.PushCommits {
			b.Queue(`INSERT INTO push_commits (pipeline_id, head_id, commit_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
				pc.PipelineID, pc.HeadID, pc.CommitID)
		}
		for _, l := range set.Links {
			// Both directions, so that either commit finds the other.
			b.Queue(`INSERT INTO change_links (pipeline_id, commit_id, linked_id) VALUES ($1, $2, $3), ($1, $3, $2) ON CONFLICT DO NOTHING`,
				l.PipelineID, l.CommitID, l.LinkedID)
		}
	}
	queuePipelines(b, events, deployments, incidents)
	return b
}

// queuePipelines records the pipelines and environments a batch mentions, once each.
func queuePipelines(b *pgx.Batch, events []fact.Event, deployments []fact.Deployment, incidents []fact.Incident) {
	type pipelineEnv struct{ pipeline, env string }
	pipelines := map[string]bool{}
	envs := map[pipelineEnv]bool{}
	for _, e := range events {
		if e.PipelineID != "" {
			pipelines[e.PipelineID] = true
		}
	}
	for _, d := range deployments {
		envs[pipelineEnv{d.PipelineID, d.Environment}] = true
	}
	for _, i := range incidents {
		envs[pipelineEnv{i.PipelineID, i.Environment}] = true
	}
	for _, p := range slices.Sorted(maps.Keys(pipelines)) {
		b.Queue(`INSERT INTO pipelines (pipeline_id) VALUES ($1) ON CONFLICT DO NOTHING`, p)
	}
	sorted := slices.SortedFunc(maps.Keys(envs), func(a, b pipelineEnv) int {
		return cmp.Or(strings.Compare(a.pipeline, b.pipeline), strings.Compare(a.env, b.env))
	})
	for _, pe := range sorted {
		b.Queue(`INSERT INTO pipeline_environments (pipeline_id, environment) VALUES ($1, $2) ON CONFLICT DO NOTHING`, pe.pipeline, pe.env)
	}
}

// null stores an empty string as NULL: "not said" rather than "said empty".
func null(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// DeadLetter is a stream message the writer could not write.
type DeadLetter struct {
	StreamSeq  uint64
	Subject    string
	Headers    map[string][]string
	Data       []byte
	Reason     string
	Deliveries int
	FailedAt   time.Time
}

// SaveDeadLetter records a message that will not be retried. Recording the same message again
// updates its reason.
func (s *Store) SaveDeadLetter(ctx context.Context, dl DeadLetter) error {
	headers := dl.Headers
	if headers == nil {
		headers = map[string][]string{}
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO dead_letters (stream_seq, subject, headers, data, reason, deliveries, failed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (stream_seq) DO UPDATE SET reason = EXCLUDED.reason, deliveries = EXCLUDED.deliveries,
    failed_at = EXCLUDED.failed_at`,
		int64(dl.StreamSeq), dl.Subject, headers, dl.Data, dl.Reason, dl.Deliveries, dl.FailedAt)
	if err != nil {
		return fmt.Errorf("save dead letter %d: %w", dl.StreamSeq, err)
	}
	return nil
}
