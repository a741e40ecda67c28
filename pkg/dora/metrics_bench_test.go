package dora_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// benchEnd is the end of the loaded year.
var benchEnd = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)

const benchPipelines = 1000

// benchEvents is 10 million times DEVOPSTIC_BENCH_SCALE (default 1; 0.01 for a quick run).
func benchEvents() int {
	scale := 1.0
	if v := os.Getenv("DEVOPSTIC_BENCH_SCALE"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
			scale = f
		}
	}
	return int(10_000_000 * scale)
}

var loaded struct {
	once sync.Once
	url  string
	err  error
}

// loadYear fills a database with a year of 1,000 pipelines: each deployment with its change's
// commit, PR opened and approved (4 events), a tenth of them failed, 3% causing an incident.
// The events go through event.Decode and event.Facts, the writer's own mapping, and are
// written with COPY: loading 10 million events over HTTP would take an hour for nothing.
func loadYear(b *testing.B) string {
	loaded.once.Do(func() {
		loaded.url = testenv.ProcessPostgres(b)
		loaded.err = bulkLoad(context.Background(), loaded.url, benchEvents())
	})
	require.NoError(b, loaded.err)
	return loaded.url
}

func bulkLoad(ctx context.Context, dbURL string, total int) error {
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	start := time.Now()
	deploysPerPipeline := max(total/benchPipelines/4, 1)
	every := 365 * 24 * time.Hour / time.Duration(deploysPerPipeline)
	yearStart := benchEnd.AddDate(-1, 0, 0)
	received := benchEnd
	var t tables
	var seq uint64
	for p := range benchPipelines {
		rng := rand.New(rand.NewPCG(uint64(p), 42))
		pipeline := fmt.Sprintf("pipeline-%04d", p)
		var sets []fact.Set
		add := func(v map[string]any) {
			raw, _ := json.Marshal(v)
			e, err := event.Decode(raw, received)
			if err != nil {
				panic(err)
			}
			seq++
			sets = append(sets, event.Facts(e, raw, received, seq))
		}
		ts := func(t time.Time) int64 { return t.Unix() }
		for i := range deploysPerPipeline {
			at := yearStart.Add(time.Duration(i)*every + time.Duration(rng.Int64N(int64(every))))
			commit := fmt.Sprintf("%s-%06d", pipeline, i)
			committed := at.Add(-time.Duration(1+rng.IntN(120)) * time.Hour)
			add(map[string]any{"type": "commit", "pipeline_id": pipeline, "commit_id": commit, "timestamp": ts(committed)})
			add(map[string]any{"type": "submit", "pipeline_id": pipeline, "commit_id": commit, "pull_request_id": i + 1, "timestamp": ts(committed.Add(5 * time.Minute))})
			add(map[string]any{"type": "approve", "pipeline_id": pipeline, "commit_id": commit, "pull_request_id": i + 1, "timestamp": ts(committed.Add(time.Duration(10+rng.IntN(170)) * time.Minute))})
			status := "success"
			if rng.IntN(10) == 0 {
				status = "failure"
			}
			deployment := fmt.Sprintf("d-%d", i)
			add(map[string]any{"type": "deploy", "pipeline_id": pipeline, "environment": "production", "commit_id": commit,
				"deployment_id": deployment, "status": status, "timestamp": ts(at)})
			if status == "success" && rng.IntN(33) == 0 {
				incident := fmt.Sprintf("%s-i%d", pipeline, i)
				opened := at.Add(10 * time.Minute)
				add(map[string]any{"type": "incident_status_change", "pipeline_id": pipeline, "environment": "production",
					"incident_id": incident, "status": "failure", "deployment_id": deployment, "timestamp": ts(opened)})
				add(map[string]any{"type": "incident_status_change", "pipeline_id": pipeline, "environment": "production",
					"incident_id": incident, "status": "success", "timestamp": ts(opened.Add(time.Duration(20+rng.IntN(1400)) * time.Minute))})
			}
		}
		t.add(sets)
		if len(t.events) >= 200_000 || p == benchPipelines-1 {
			if err := t.copy(ctx, pool); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "\rloaded %d events (%d of %d pipelines) in %s", seq, p+1, benchPipelines, time.Since(start).Round(time.Second))
		}
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\nloaded %d events in %s\n", seq, time.Since(start).Round(time.Second))
	return nil
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
		e := s.Event
		t.events = append(t.events, []any{e.ID, e.Source, e.Kind, e.PipelineID, nullable(e.Environment), nullable(e.CommitID),
			e.Commits, nullable(e.IncidentID), nullable(e.DeploymentID), e.PullRequestID, e.Status, e.OccurredAt, e.TimeInferred,
			e.ReceivedAt, int64(e.StreamSeq), []byte(e.Payload)})
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
		}
	}
	for _, id := range order {
		c := changes[id]
		t.changes = append(t.changes, []any{c.PipelineID, c.CommitID, c.PullRequestID, c.CommittedAt, c.SubmittedAt, c.ApprovedAt})
	}
	for _, id := range incidentOrder {
		i := incidents[id]
		t.incidents = append(t.incidents, []any{i.Source, i.IncidentID, i.PipelineID, i.Environment, i.OpenedAt, i.ResolvedAt,
			nullable(i.CauseDeploymentID), nullable(i.CauseCommitID)})
	}
}

func (t *tables) copy(ctx context.Context, pool *pgxpool.Pool) error {
	copies := []struct {
		table   string
		columns []string
		rows    *[][]any
	}{
		{"events", []string{"id", "source", "kind", "pipeline_id", "environment", "commit_id", "commits", "incident_id",
			"deployment_id", "pull_request_id", "status", "occurred_at", "time_inferred", "received_at", "stream_seq", "payload"}, &t.events},
		{"changes", []string{"pipeline_id", "commit_id", "pull_request_id", "committed_at", "submitted_at", "approved_at"}, &t.changes},
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
	_, err := pool.Exec(ctx, `INSERT INTO pipelines SELECT DISTINCT pipeline_id FROM deployments ON CONFLICT DO NOTHING;
		INSERT INTO pipeline_environments SELECT DISTINCT pipeline_id, environment FROM deployments ON CONFLICT DO NOTHING`)
	return err
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// BenchmarkMetrics answers GET /api/v1/metrics/dora's queries over a year of 1,000 pipelines
// (10 million events at DEVOPSTIC_BENCH_SCALE=1), against a baseline in the same run: one
// index scan counting the pipeline's deployments in the window. It reports p50 and p95.
func BenchmarkMetrics(b *testing.B) {
	dbURL := loadYear(b)
	st, err := store.Open(context.Background(), dbURL, 4)
	require.NoError(b, err)
	defer st.Close()
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(b, err)
	defer pool.Close()

	query := func(params string) dora.Query {
		v, err := url.ParseQuery(params)
		require.NoError(b, err)
		q, err := dora.ParseQuery(v, benchEnd)
		require.NoError(b, err)
		return q
	}
	pipeline := func(i int) string { return fmt.Sprintf("pipeline-%04d", (i*7919)%benchPipelines) }
	cases := []struct {
		name string
		// most bounds the requests of a case that takes seconds each
		most int
		run  func(i int) error
	}{
		{"baseline: count one pipeline's deployments, 90 days", 0, func(i int) error {
			var n int
			return pool.QueryRow(context.Background(), `SELECT count(*) FROM deployments WHERE pipeline_id = $1 AND environment = 'production'
				AND deployed_at >= $2 AND deployed_at < $3`, pipeline(i), benchEnd.AddDate(0, 0, -90), benchEnd).Scan(&n)
		}},
		{"one pipeline, 90 days", 0, func(i int) error {
			_, err := st.Metrics(context.Background(), query("pipeline_id="+pipeline(i)).StoreQuery())
			return err
		}},
		{"one pipeline, 90 days, by week", 0, func(i int) error {
			_, err := st.Metrics(context.Background(), query("interval=week&pipeline_id="+pipeline(i)).StoreQuery())
			return err
		}},
		{"all pipelines, 90 days", 5, func(i int) error {
			_, err := st.Metrics(context.Background(), query("").StoreQuery())
			return err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			n := b.N
			if c.most > 0 {
				n = min(n, c.most)
			}
			durations := make([]time.Duration, 0, n)
			for i := 0; i < n; i++ {
				start := time.Now()
				require.NoError(b, c.run(i))
				durations = append(durations, time.Since(start))
			}
			slices.Sort(durations)
			b.ReportMetric(float64(durations[len(durations)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(durations[(len(durations)*95)/100].Microseconds())/1000, "p95-ms")
		})
	}
}
