package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
)

// YearEnd is the end of the generated year of history.
var YearEnd = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)

// Pipelines is how many pipelines a generated history spreads over.
const Pipelines = 1000

// eventsPerDeploy is the mean number of events per deployment in a history (see
// pipelineHistory): nine in ten deployments ship 1.7 new commits on average, each with its
// commit event, and a pull request submitted and approved; one in ten redeploys the previous
// commit (one event); 3% of the successful ones cause an incident (two events).
const eventsPerDeploy = 0.9*(1.7+3) + 0.1*1 + 0.9*0.9*0.03*2

// PipelineName is the name of pipeline i of a history whose names start with prefix.
func PipelineName(prefix string, i int) string { return fmt.Sprintf("%s-%04d", prefix, i) }

// native is a native event as a CI pipeline posts it.
type native struct {
	Type          string   `json:"type"`
	PipelineID    string   `json:"pipeline_id"`
	Environment   string   `json:"environment,omitempty"`
	CommitID      string   `json:"commit_id,omitempty"`
	PullRequestID int      `json:"pull_request_id,omitempty"`
	DeploymentID  string   `json:"deployment_id,omitempty"`
	IncidentID    string   `json:"incident_id,omitempty"`
	Status        string   `json:"status,omitempty"`
	Commits       []string `json:"commits,omitempty"`
	Timestamp     int64    `json:"timestamp"`
}

// pipelineHistory calls emit with a year of one pipeline's events, in time order per change,
// in the shapes real histories have: deploys deployments spread over the year, nine in ten
// shipping the 1 to 3 commits made since the previous one (a commit event each, and a pull
// request submitted and approved for the last), one in ten a redeploy of the previous head
// commit. A tenth of the deployments fail. 3% of the successful ones cause an incident, which
// names its cause by the deployment's id or, as often, by its head commit — which a redeploy
// may have shipped again, the shape that once took a query 53 seconds. The same name and seed
// give the same events.
func pipelineHistory(name string, seed uint64, deploys int, emit func(raw []byte)) {
	rng := rand.New(rand.NewPCG(seed, 42))
	every := 365 * 24 * time.Hour / time.Duration(deploys)
	yearStart := YearEnd.AddDate(-1, 0, 0)
	add := func(e native) {
		raw, err := json.Marshal(e)
		if err != nil {
			panic(err) // a struct of strings and integers always marshals
		}
		emit(raw)
	}
	var head string // the last deployment's head commit
	commits := 0
	for i := range deploys {
		at := yearStart.Add(time.Duration(i)*every + time.Duration(rng.Int64N(int64(every))))
		var shipped []string
		if head == "" || rng.IntN(10) != 0 {
			n := 1 + rng.IntN(2)
			if rng.IntN(5) == 0 {
				n = 3
			}
			committed := at.Add(-time.Duration(1+rng.IntN(120)) * time.Hour)
			for range n {
				commits++
				shipped = append(shipped, fmt.Sprintf("%s-%06d", name, commits))
				add(native{Type: event.TypeCommit, PipelineID: name, CommitID: shipped[len(shipped)-1], Timestamp: committed.Unix()})
				committed = committed.Add(time.Duration(1+rng.IntN(30)) * time.Minute)
			}
			head = shipped[len(shipped)-1]
			add(native{Type: event.TypeSubmit, PipelineID: name, CommitID: head, PullRequestID: i + 1,
				Timestamp: committed.Add(5 * time.Minute).Unix()})
			add(native{Type: event.TypeApprove, PipelineID: name, CommitID: head, PullRequestID: i + 1,
				Timestamp: committed.Add(time.Duration(10+rng.IntN(170)) * time.Minute).Unix()})
		}
		status := event.StatusSuccess
		if rng.IntN(10) == 0 {
			status = event.StatusFailure
		}
		deployment := fmt.Sprintf("d-%d", i)
		deploy := native{Type: event.TypeDeploy, PipelineID: name, Environment: "production", CommitID: head,
			DeploymentID: deployment, Status: status, Timestamp: at.Unix()}
		if len(shipped) > 1 {
			deploy.Commits = shipped
		}
		add(deploy)
		if status == event.StatusSuccess && rng.IntN(33) == 0 {
			incident := native{Type: event.TypeIncidentStatus, PipelineID: name, Environment: "production",
				IncidentID: fmt.Sprintf("%s-i%d", name, i), Status: event.StatusFailure, DeploymentID: deployment,
				Timestamp: at.Add(10 * time.Minute).Unix()}
			if rng.IntN(2) == 0 {
				incident.DeploymentID, incident.CommitID = "", head
			}
			add(incident)
			incident.Status, incident.DeploymentID, incident.CommitID = event.StatusSuccess, "", ""
			incident.Timestamp = at.Add(time.Duration(30+rng.IntN(1400)) * time.Minute).Unix()
			add(incident)
		}
	}
}

// History calls emit with about total events: a year of Pipelines pipelines named
// prefix-0000 and up (see pipelineHistory), one pipeline after the other.
func History(prefix string, total int, emit func(pipeline int, raw []byte)) {
	deploys := max(int(float64(total)/Pipelines/eventsPerDeploy+0.5), 1)
	for p := range Pipelines {
		pipelineHistory(PipelineName(prefix, p), uint64(p), deploys, func(raw []byte) { emit(p, raw) })
	}
}

// LoadYear writes about total events of History(prefix, ...) into the database at dbURL and
// returns how many. The events go through event.Decode and event.Facts, the writer's own
// mapping, and are written with COPY, as the tables would be after the writer had consumed
// them: loading 10 million events through the stream would take an hour for nothing. The
// tables must hold no rows of prefix's pipelines. Progress goes to progress.
func LoadYear(ctx context.Context, dbURL, prefix string, total int, progress io.Writer) (int, error) {
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	start := time.Now()
	received := YearEnd
	var (
		t       tables
		seq     uint64
		sets    []fact.Set
		current int
		loadErr error
		flush   = func(last bool) {
			t.add(sets)
			sets = sets[:0]
			if len(t.events) >= 200_000 || last {
				if err := t.copy(ctx, pool); err != nil && loadErr == nil {
					loadErr = err
				}
				fmt.Fprintf(progress, "\r  loaded %d events (%d of %d pipelines) in %s", seq, current+1, Pipelines,
					time.Since(start).Round(time.Second))
			}
		}
	)
	History(prefix, total, func(p int, raw []byte) {
		if loadErr != nil {
			return
		}
		if p != current {
			flush(false)
			current = p
		}
		e, err := event.Decode(raw, received)
		if err != nil {
			loadErr = fmt.Errorf("generated event does not decode: %w", err)
			return
		}
		seq++
		sets = append(sets, event.Facts(e, raw, received, seq))
	})
	flush(true)
	fmt.Fprintln(progress)
	if loadErr != nil {
		return 0, loadErr
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		return 0, fmt.Errorf("analyze: %w", err)
	}
	return int(seq), nil
}

// tables gathers rows for COPY. Within one pipeline, facts about the same change are merged
// as the store's upserts would (the earliest time of each step); keys never span pipelines,
// so each pipeline's rows are final when it is done.
type tables struct {
	events, changes, deployments, shipped, incidents [][]any
}

func (t *tables) add(sets []fact.Set) {
	changes := map[string]*fact.Change{}
	var order []string
	earliest := func(a, b *time.Time) *time.Time {
		if a == nil || (b != nil && b.Before(*a)) {
			return b
		}
		return a
	}
	incidents := map[string]*fact.Incident{}
	var incidentOrder []string
	for _, s := range sets {
		t.events = append(t.events, eventRow(s.Event))
		for _, c := range s.Changes {
			have, ok := changes[c.CommitID]
			if !ok {
				c := c
				changes[c.CommitID] = &c
				order = append(order, c.CommitID)
				continue
			}
			have.CommittedAt = earliest(have.CommittedAt, c.CommittedAt)
			have.SubmittedAt = earliest(have.SubmittedAt, c.SubmittedAt)
			have.ApprovedAt = earliest(have.ApprovedAt, c.ApprovedAt)
			if have.PullRequestID == nil {
				have.PullRequestID = c.PullRequestID
			}
		}
		for _, d := range s.Deployments {
			t.deployments = append(t.deployments, []any{d.Source, d.PipelineID, d.Environment, d.Key, nullable(d.DeploymentID),
				d.Status, d.DeployedAt, nullable(d.CommitID), d.EventID})
			for _, c := range d.Commits {
				t.shipped = append(t.shipped, []any{d.Source, d.PipelineID, d.Environment, d.Key, c})
			}
		}
		for _, i := range s.Incidents {
			have, ok := incidents[i.IncidentID]
			if !ok {
				i := i
				incidents[i.IncidentID] = &i
				incidentOrder = append(incidentOrder, i.IncidentID)
				continue
			}
			have.OpenedAt = earliest(have.OpenedAt, i.OpenedAt)
			if have.ResolvedAt == nil || (i.ResolvedAt != nil && i.ResolvedAt.After(*have.ResolvedAt)) {
				have.ResolvedAt = i.ResolvedAt
			}
			if have.CauseDeploymentID == "" {
				have.CauseDeploymentID = i.CauseDeploymentID
			}
			if have.CauseCommitID == "" {
				have.CauseCommitID = i.CauseCommitID
			}
		}
	}
	for _, id := range order {
		c := changes[id]
		t.changes = append(t.changes, []any{c.PipelineID, c.CommitID, c.CommitID, c.PullRequestID, c.CommittedAt, c.SubmittedAt, c.ApprovedAt})
	}
	for _, id := range incidentOrder {
		i := incidents[id]
		t.incidents = append(t.incidents, []any{i.Source, i.IncidentID, i.PipelineID, i.Environment, i.OpenedAt, i.ResolvedAt,
			nullable(i.CauseDeploymentID), nullable(i.CauseCommitID)})
	}
}

// eventColumns are the columns of the raw events table, in eventRow's order.
var eventColumns = []string{"id", "source", "kind", "pipeline_id", "environment", "commit_id", "commits", "incident_id",
	"deployment_id", "pull_request_id", "status", "occurred_at", "time_inferred", "received_at", "stream_seq", "payload"}

func eventRow(e fact.Event) []any {
	return []any{e.ID, e.Source, e.Kind, e.PipelineID, nullable(e.Environment), nullable(e.CommitID),
		e.Commits, nullable(e.IncidentID), nullable(e.DeploymentID), e.PullRequestID, e.Status, e.OccurredAt, e.TimeInferred,
		e.ReceivedAt, int64(e.StreamSeq), []byte(e.Payload)}
}

func (t *tables) copy(ctx context.Context, pool *pgxpool.Pool) error {
	// The pipelines and environments of this chunk's deployments, for GET /api/v1/pipelines.
	seen := map[[2]string]bool{}
	var pipelines, envs []string
	for _, d := range t.deployments {
		key := [2]string{d[1].(string), d[2].(string)}
		if !seen[key] {
			seen[key] = true
			pipelines, envs = append(pipelines, key[0]), append(envs, key[1])
		}
	}
	copies := []struct {
		table   string
		columns []string
		rows    *[][]any
	}{
		{"events", eventColumns, &t.events},
		{"changes", []string{"pipeline_id", "commit_id", "change_id", "pull_request_id", "committed_at", "submitted_at", "approved_at"}, &t.changes},
		{"deployments", []string{"source", "pipeline_id", "environment", "deployment_key", "deployment_id", "status", "deployed_at",
			"commit_id", "event_id"}, &t.deployments},
		{"deployment_commits", []string{"source", "pipeline_id", "environment", "deployment_key", "commit_id"}, &t.shipped},
		{"incidents", []string{"source", "incident_id", "pipeline_id", "environment", "opened_at", "last_resolved_at",
			"cause_deployment_id", "cause_commit_id"}, &t.incidents},
	}
	for _, c := range copies {
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{c.table}, c.columns, pgx.CopyFromRows(*c.rows)); err != nil {
			return fmt.Errorf("copy %s: %w", c.table, err)
		}
		*c.rows = (*c.rows)[:0]
	}
	_, err := pool.Exec(ctx, `
		WITH seen AS (SELECT * FROM unnest($1::text[], $2::text[]) AS s(pipeline_id, environment)),
		     p AS (INSERT INTO pipelines SELECT DISTINCT pipeline_id FROM seen ON CONFLICT DO NOTHING)
		INSERT INTO pipeline_environments SELECT * FROM seen ON CONFLICT DO NOTHING`, pipelines, envs)
	if err != nil {
		return fmt.Errorf("list pipelines: %w", err)
	}
	// The derived facts, as the writer would have kept them (migrations/0009).
	if _, err := pool.Exec(ctx, `ANALYZE changes, deployments, deployment_commits, incidents`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	if _, err := pool.Exec(ctx, `SELECT dora_derive_pipeline(p) FROM unnest($1::text[]) AS t(p)`, uniq(pipelines)); err != nil {
		return fmt.Errorf("derive: %w", err)
	}
	return nil
}

// uniq is ss without repeats, in first-seen order.
func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
