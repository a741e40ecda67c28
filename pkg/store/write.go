package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/devopstic/devopstic/pkg/fact"
)

// insertEvents writes a batch's raw events in one statement. commits, payload and headers
// travel as JSON text, as arrays of arrays cannot be ragged.
const insertEvents = `
INSERT INTO events (id, source, kind, pipeline_id, environment, commit_id, commits, incident_id,
    deployment_id, pull_request_id, status, occurred_at, time_inferred, received_at, stream_seq, payload, headers)
SELECT id, source, kind, pipeline_id, environment, commit_id,
    CASE WHEN commits IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(commits::jsonb)) END,
    incident_id, deployment_id, pull_request_id, status, occurred_at, time_inferred, received_at, stream_seq,
    payload::jsonb, headers::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::bigint[], $11::text[], $12::timestamptz[], $13::boolean[], $14::timestamptz[],
            $15::bigint[], $16::text[], $17::text[])
    AS e(id, source, kind, pipeline_id, environment, commit_id, commits, incident_id, deployment_id,
         pull_request_id, status, occurred_at, time_inferred, received_at, stream_seq, payload, headers)
ON CONFLICT (id) DO NOTHING
RETURNING id, stream_seq`

// The WHERE clause skips updates that change nothing, so a replay over existing rows leaves no
// dead tuples behind.
const upsertChanges = `
INSERT INTO changes AS c (pipeline_id, commit_id, change_id, pull_request_id, committed_at, submitted_at, approved_at, merged_at)
SELECT p, id, id, pr, committed, submitted, approved, merged
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[])
    AS t(p, id, pr, committed, submitted, approved, merged)
ON CONFLICT (pipeline_id, commit_id) DO UPDATE SET
    pull_request_id = LEAST(c.pull_request_id, EXCLUDED.pull_request_id),
    committed_at    = LEAST(c.committed_at, EXCLUDED.committed_at),
    submitted_at    = LEAST(c.submitted_at, EXCLUDED.submitted_at),
    approved_at     = LEAST(c.approved_at, EXCLUDED.approved_at),
    merged_at       = LEAST(c.merged_at, EXCLUDED.merged_at)
WHERE (c.pull_request_id, c.committed_at, c.submitted_at, c.approved_at, c.merged_at) IS DISTINCT FROM
    (LEAST(c.pull_request_id, EXCLUDED.pull_request_id), LEAST(c.committed_at, EXCLUDED.committed_at),
     LEAST(c.submitted_at, EXCLUDED.submitted_at), LEAST(c.approved_at, EXCLUDED.approved_at),
     LEAST(c.merged_at, EXCLUDED.merged_at))`

// Latest wins, by a total order on (deployed_at, failure before success, event_id): whichever
// order the events of one attempt arrive in, the same one decides the row. Texts compare
// byte-wise (COLLATE "C"), as mergeDeployment does for the rows a batch repeats.
const upsertDeployments = `
INSERT INTO deployments AS d (source, pipeline_id, environment, deployment_key, deployment_id,
    status, deployed_at, commit_id, event_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::timestamptz[], $8::text[], $9::text[])
ON CONFLICT (source, pipeline_id, environment, deployment_key) DO UPDATE SET
    deployment_id = EXCLUDED.deployment_id,
    status        = EXCLUDED.status,
    deployed_at   = EXCLUDED.deployed_at,
    commit_id     = EXCLUDED.commit_id,
    event_id      = EXCLUDED.event_id
WHERE (EXCLUDED.deployed_at, EXCLUDED.status = 'failure', EXCLUDED.event_id COLLATE "C")
    > (d.deployed_at, d.status = 'failure', d.event_id COLLATE "C")`

const insertDeploymentCommits = `
INSERT INTO deployment_commits (source, pipeline_id, environment, deployment_key, commit_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
ON CONFLICT DO NOTHING`

// Texts compare byte-wise (COLLATE "C"), as mergeIncident does for the rows a batch repeats.
const upsertIncidents = `
INSERT INTO incidents AS i (source, incident_id, pipeline_id, environment, opened_at, last_resolved_at,
    cause_deployment_id, cause_commit_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                     $7::text[], $8::text[])
ON CONFLICT (source, incident_id) DO UPDATE SET
    pipeline_id         = LEAST(i.pipeline_id COLLATE "C", EXCLUDED.pipeline_id),
    environment         = LEAST(i.environment COLLATE "C", EXCLUDED.environment),
    opened_at           = LEAST(i.opened_at, EXCLUDED.opened_at),
    last_resolved_at    = GREATEST(i.last_resolved_at, EXCLUDED.last_resolved_at),
    cause_deployment_id = LEAST(i.cause_deployment_id COLLATE "C", EXCLUDED.cause_deployment_id),
    cause_commit_id     = LEAST(i.cause_commit_id COLLATE "C", EXCLUDED.cause_commit_id)
WHERE (i.pipeline_id, i.environment, i.opened_at, i.last_resolved_at, i.cause_deployment_id, i.cause_commit_id)
    IS DISTINCT FROM
    (LEAST(i.pipeline_id COLLATE "C", EXCLUDED.pipeline_id), LEAST(i.environment COLLATE "C", EXCLUDED.environment),
     LEAST(i.opened_at, EXCLUDED.opened_at), GREATEST(i.last_resolved_at, EXCLUDED.last_resolved_at),
     LEAST(i.cause_deployment_id COLLATE "C", EXCLUDED.cause_deployment_id),
     LEAST(i.cause_commit_id COLLATE "C", EXCLUDED.cause_commit_id))`

// Write stores sets in one transaction: all of them or none, with their derived facts. See
// writeSets.
func (s *Store) Write(ctx context.Context, sets []fact.Set) error {
	return s.write(ctx, sets, deriveNow)
}

func (s *Store) write(ctx context.Context, sets []fact.Set, when derivation) error {
	if len(sets) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return writeSets(ctx, tx, sets, when)
	})
	if err != nil {
		return fmt.Errorf("write %d events: %w", len(sets), err)
	}
	return nil
}

// derivation says when a write derives the facts that depend on what it wrote.
type derivation bool

const (
	// deriveNow derives them in the write's transaction (dora_derive): readers never see the
	// base facts without them. The live writer writes this way.
	deriveNow derivation = false
	// deriveLater queues what the write touched (dora_defer) for DeriveQueued, which derives
	// each key once however many writes touched it. Replay and rebuild write this way.
	deriveLater derivation = true
)

// Deferred writes as Store.Write does, but leaves derivation to Store.DeriveQueued: until
// then, readers see the new base facts with the derived facts as they were. It is what
// replay writes through (pkg/replay), several times faster than Write over a long range.
type Deferred struct{ s *Store }

// Deferred returns the store's deferring writer.
func (s *Store) Deferred() Deferred { return Deferred{s} }

// Write stores sets in one transaction, queueing their derivation.
func (d Deferred) Write(ctx context.Context, sets []fact.Set) error {
	return d.s.write(ctx, sets, deriveLater)
}

// DeriveQueued derives what deferred writes queued, a few pipelines per transaction, until the
// queue is empty. It returns how many keys (commits, deployment attempts, incidents) it
// derived.
func (s *Store) DeriveQueued(ctx context.Context) (int64, error) {
	return deriveQueued(ctx, s.pool, "")
}

// Queued counts the keys waiting in the derivation queue.
func (s *Store) Queued(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM derive_queue_commits)
    + (SELECT count(*) FROM derive_queue_attempts) + (SELECT count(*) FROM derive_queue_incidents)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the derivation queue: %w", err)
	}
	return n, nil
}

// deriveQueuedPipelines is how many pipelines' queues one transaction derives.
const deriveQueuedPipelines = 32

// deriveWorkers is how many connections derive the queue at once, each its own share of the
// pipelines (derivation depends on one pipeline's facts only): Postgres runs a statement on
// one core, and a queue of a replay's or a backlog's size keeps two busy.
const deriveWorkers = 2

// deriveQueued drains the queue that searchPath (when not "") makes visible.
func deriveQueued(ctx context.Context, pool *pgxpool.Pool, searchPath string) (int64, error) {
	var (
		wg    sync.WaitGroup
		total atomic.Int64
		errs  = make([]error, deriveWorkers)
	)
	for w := range deriveWorkers {
		wg.Go(func() {
			errs[w] = deriveShare(ctx, pool, searchPath, w, &total)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return total.Load(), fmt.Errorf("derive the queued facts: %w", err)
	}
	return total.Load(), nil
}

// deriveShare derives the queue of the pipelines whose hash falls to worker w, 32 pipelines per
// transaction. It lists them once, derives them, and lists again (writers may have queued
// more) until the list is empty: listing reads the whole queue, so not once per transaction.
func deriveShare(ctx context.Context, pool *pgxpool.Pool, searchPath string, w int, total *atomic.Int64) error {
	for {
		pipelines, err := queuedPipelines(ctx, pool, searchPath, w)
		if err != nil || len(pipelines) == 0 {
			return err
		}
		for chunk := range slices.Chunk(pipelines, deriveQueuedPipelines) {
			if err := deriveChunk(ctx, pool, searchPath, chunk, total); err != nil {
				return err
			}
		}
	}
}

// queuedPipelines lists the pipelines with keys in the queue whose hash falls to worker w.
func queuedPipelines(ctx context.Context, pool *pgxpool.Pool, searchPath string, w int) ([]string, error) {
	var pipelines []string
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if searchPath != "" {
			if _, err := tx.Exec(ctx, searchPath); err != nil {
				return err
			}
		}
		rows, _ := tx.Query(ctx, `
SELECT p FROM (
    SELECT pipeline_id FROM derive_queue_commits
    UNION SELECT pipeline_id FROM derive_queue_attempts
    UNION SELECT pipeline_id FROM derive_queue_incidents
) AS q(p)
WHERE (hashtext(p) & 2147483647) % $1 = $2
ORDER BY 1`, deriveWorkers, w)
		var err error
		pipelines, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return pipelines, err
}

// deriveChunk derives, in one transaction under their locks, what is queued for pipelines.
func deriveChunk(ctx context.Context, pool *pgxpool.Pool, searchPath string, pipelines []string, total *atomic.Int64) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Plan dora_derive's statements again: a drain fills the derived tables, and a plan
		// cached while one was empty (its statistics saying so) scans it whole for every
		// key, quadratic over the drain (27 s instead of 1.3 s for 61,000 keys). So the
		// callers may ANALYZE before a drain, which plans made without any statistics need
		// (pkg/replay, Rebuild.Derive).
		if _, err := tx.Exec(ctx, `DISCARD PLANS`); err != nil {
			return err
		}
		if searchPath != "" {
			if _, err := tx.Exec(ctx, searchPath); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, lockPipelines, pipelines); err != nil {
			return fmt.Errorf("lock pipelines: %w", err)
		}
		var n int64
		if err := tx.QueryRow(ctx, `SELECT dora_derive_queued($1)`, pipelines).Scan(&n); err != nil {
			return err
		}
		total.Add(n)
		return nil
	})
}

// lockPipelines serializes the writers of each pipeline: derived facts depend on every fact of
// their pipeline, so a transaction that derives them must see all that others committed
// before. Locks are taken in byte order, before any row is written, so writers cannot
// deadlock; they are keyed by schema too, so a rebuild does not wait for the live writers.
const lockPipelines = `
SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || p, 0))
FROM unnest($1::text[]) WITH ORDINALITY AS t(p, n)
ORDER BY n`

// writeSets writes sets in tx, in two round trips. First the raw events: an event id names
// one event, so a message whose id is already written (a redelivery, a replay, a client
// reusing its id) adds nothing, and of the copies a batch repeats the one with the lowest
// stream sequence is kept. Then the facts of the events that were new, and the derived facts
// of everything those touched (dora_derive, migrations/0009), or, to derive later, the queue of
// what they touched (dora_defer, migrations/0012). Rows are written in key order so that
// concurrent writers lock them in the same order.
func writeSets(ctx context.Context, tx pgx.Tx, sets []fact.Set, when derivation) error {
	events := make([]fact.Event, len(sets))
	for i, set := range sets {
		events[i] = set.Event
	}
	slices.SortFunc(events, func(a, b fact.Event) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), cmp.Compare(a.StreamSeq, b.StreamSeq))
	})
	first := &pgx.Batch{}
	first.Queue(lockPipelines, touchedPipelines(sets))
	queueEvents(first, events)
	results := tx.SendBatch(ctx, first)
	if _, err := results.Exec(); err != nil {
		return errors.Join(fmt.Errorf("lock pipelines: %w", err), results.Close())
	}
	rows, _ := results.Query()
	type written struct {
		id  string
		seq int64
	}
	inserted, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (written, error) {
		var w written
		return w, row.Scan(&w.id, &w.seq)
	})
	if err := errors.Join(err, results.Close()); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	fresh := make(map[written]bool, len(inserted))
	for _, w := range inserted {
		fresh[w] = true
	}
	var applied []fact.Set
	for _, set := range sets {
		if fresh[written{set.Event.ID, int64(set.Event.StreamSeq)}] {
			applied = append(applied, set)
		}
	}
	if len(applied) == 0 {
		return nil
	}
	return tx.SendBatch(ctx, queueFacts(applied, when)).Close()
}

// touchedPipelines are every pipeline sets name, in byte order.
func touchedPipelines(sets []fact.Set) []string {
	seen := map[string]bool{}
	add := func(p string) {
		if p != "" {
			seen[p] = true
		}
	}
	for _, set := range sets {
		add(set.Event.PipelineID)
		for _, c := range set.Changes {
			add(c.PipelineID)
		}
		for _, d := range set.Deployments {
			add(d.PipelineID)
		}
		for _, i := range set.Incidents {
			add(i.PipelineID)
		}
		for _, pc := range set.PushCommits {
			add(pc.PipelineID)
		}
		for _, l := range set.Links {
			add(l.PipelineID)
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// queueFacts turns sets into statements, one per table, with the rows a batch repeats merged
// first exactly as the upserts merge them (an ON CONFLICT statement may not touch a row twice),
// and ends with dora_derive (or dora_defer) over every commit, attempt and incident the sets
// name. Each statement's rows are in key order.
func queueFacts(sets []fact.Set, when derivation) *pgx.Batch {
	var (
		deployments = map[[4]string]*fact.Deployment{}
		incidents   = map[[2]string]*fact.Incident{}
		changes     = map[[2]string]*fact.Change{}
		shipped     = map[[5]string]bool{}
		pushed      = map[[3]string]bool{}
		links       = map[[3]string]bool{}
		pipelines   = map[string]bool{}
		envs        = map[[2]string]bool{}
		touched     = map[[2]string]bool{} // commits whose derived facts may change
	)
	for _, set := range sets {
		if set.Event.PipelineID != "" {
			pipelines[set.Event.PipelineID] = true
		}
		for _, c := range set.Changes {
			mergeChange(changes, c)
			touched[[2]string{c.PipelineID, c.CommitID}] = true
		}
		for _, d := range set.Deployments {
			mergeDeployment(deployments, d)
			envs[[2]string{d.PipelineID, d.Environment}] = true
			for _, c := range d.Commits {
				shipped[[5]string{d.Source, d.PipelineID, d.Environment, d.Key, c}] = true
				touched[[2]string{d.PipelineID, c}] = true
			}
		}
		for _, i := range set.Incidents {
			mergeIncident(incidents, i)
			envs[[2]string{i.PipelineID, i.Environment}] = true
		}
		for _, pc := range set.PushCommits {
			pushed[[3]string{pc.PipelineID, pc.HeadID, pc.CommitID}] = true
			touched[[2]string{pc.PipelineID, pc.HeadID}] = true
			touched[[2]string{pc.PipelineID, pc.CommitID}] = true
		}
		for _, l := range set.Links {
			// Both directions, so that either commit finds the other.
			links[[3]string{l.PipelineID, l.CommitID, l.LinkedID}] = true
			links[[3]string{l.PipelineID, l.LinkedID, l.CommitID}] = true
			touched[[2]string{l.PipelineID, l.CommitID}] = true
			touched[[2]string{l.PipelineID, l.LinkedID}] = true
		}
	}

	b := &pgx.Batch{}
	queueChanges(b, changes)
	queueDeployments(b, deployments)
	if cols := columns(shipped); cols != nil {
		b.Queue(insertDeploymentCommits, cols[0], cols[1], cols[2], cols[3], cols[4])
	}
	queueIncidents(b, incidents)
	if cols := columns(pushed); cols != nil {
		b.Queue(`INSERT INTO push_commits (pipeline_id, head_id, commit_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING`, cols[0], cols[1], cols[2])
	}
	if cols := columns(links); cols != nil {
		b.Queue(`INSERT INTO change_links (pipeline_id, commit_id, linked_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING`, cols[0], cols[1], cols[2])
	}
	if len(pipelines) > 0 {
		b.Queue(`INSERT INTO pipelines (pipeline_id) SELECT * FROM unnest($1::text[]) ON CONFLICT DO NOTHING`,
			slices.Sorted(maps.Keys(pipelines)))
	}
	if cols := columns(envs); cols != nil {
		b.Queue(`INSERT INTO pipeline_environments (pipeline_id, environment)
			SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`, cols[0], cols[1])
	}
	commits := columns(touched)
	if commits == nil {
		commits = [][]string{{}, {}}
	}
	incidentKeys := sortedKeys(incidents)
	incidentPipelines := make([]string, len(incidentKeys))
	sources, ids := make([]string, len(incidentKeys)), make([]string, len(incidentKeys))
	for i, k := range incidentKeys {
		sources[i], ids[i], incidentPipelines[i] = k[0], k[1], incidents[k].PipelineID
	}
	type attempt struct {
		Source      string `json:"s"`
		Pipeline    string `json:"p"`
		Environment string `json:"e"`
		Key         string `json:"key"`
	}
	attempts := []attempt{}
	for _, k := range sortedKeys(deployments) {
		attempts = append(attempts, attempt{k[0], k[1], k[2], k[3]})
	}
	switch {
	case len(commits[0]) == 0 && len(attempts) == 0 && len(ids) == 0:
	case when == deriveLater:
		b.Queue(`SELECT dora_defer($1, $2, $3, $4, $5, $6)`, commits[0], commits[1], attempts, incidentPipelines, sources, ids)
	default:
		b.Queue(`SELECT dora_derive($1, $2, $3, $4, $5)`, commits[0], commits[1], attempts, sources, ids)
	}
	return b
}

// mergeChange adds c to changes, keeping the earliest of each time and the lowest pull request,
// as upsertChanges does.
func mergeChange(changes map[[2]string]*fact.Change, c fact.Change) {
	key := [2]string{c.PipelineID, c.CommitID}
	have, ok := changes[key]
	if !ok {
		changes[key] = &c
		return
	}
	have.PullRequestID = least(have.PullRequestID, c.PullRequestID, func(a, b int64) bool { return a < b })
	have.CommittedAt = least(have.CommittedAt, c.CommittedAt, time.Time.Before)
	have.SubmittedAt = least(have.SubmittedAt, c.SubmittedAt, time.Time.Before)
	have.ApprovedAt = least(have.ApprovedAt, c.ApprovedAt, time.Time.Before)
	have.MergedAt = least(have.MergedAt, c.MergedAt, time.Time.Before)
}

// mergeDeployment adds d to deployments, keeping the latest by upsertDeployments's order.
// Times compare at Postgres's precision, microseconds.
func mergeDeployment(deployments map[[4]string]*fact.Deployment, d fact.Deployment) {
	key := [4]string{d.Source, d.PipelineID, d.Environment, d.Key}
	have, ok := deployments[key]
	if !ok || laterDeployment(d, *have) {
		deployments[key] = &d
	}
}

// laterDeployment is upsertDeployments's WHERE: a after b by (deployed_at, failure, event_id).
func laterDeployment(a, b fact.Deployment) bool {
	at, bt := a.DeployedAt.Truncate(time.Microsecond), b.DeployedAt.Truncate(time.Microsecond)
	if !at.Equal(bt) {
		return at.After(bt)
	}
	if af, bf := a.Status == "failure", b.Status == "failure"; af != bf {
		return af
	}
	return a.EventID > b.EventID
}

// mergeIncident adds i to incidents as upsertIncidents merges it into a row.
func mergeIncident(incidents map[[2]string]*fact.Incident, i fact.Incident) {
	key := [2]string{i.Source, i.IncidentID}
	have, ok := incidents[key]
	if !ok {
		incidents[key] = &i
		return
	}
	have.PipelineID = leastText(have.PipelineID, i.PipelineID)
	have.Environment = leastText(have.Environment, i.Environment)
	have.OpenedAt = least(have.OpenedAt, i.OpenedAt, time.Time.Before)
	have.ResolvedAt = least(have.ResolvedAt, i.ResolvedAt, time.Time.After) // GREATEST
	have.CauseDeploymentID = leastText(have.CauseDeploymentID, i.CauseDeploymentID)
	have.CauseCommitID = leastText(have.CauseCommitID, i.CauseCommitID)
}

// leastText is LEAST(a COLLATE "C", b) where "" stands for NULL.
func leastText(a, b string) string {
	if a == "" || (b != "" && b < a) {
		return b
	}
	return a
}

// least is SQL's LEAST on two nullable values: the smaller, ignoring NULL.
func least[T any](a, b *T, less func(T, T) bool) *T {
	if a == nil || (b != nil && less(*b, *a)) {
		return b
	}
	return a
}

func queueEvents(b *pgx.Batch, events []fact.Event) {
	n := len(events)
	var (
		ids, sources, kinds, payloads                    = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		pipelines, envs, commitIDs, commits, incidentIDs = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		deploymentIDs, statuses, headers                 = make([]*string, n), make([]*string, n), make([]*string, n)
		prs, seqs                                        = make([]*int64, n), make([]int64, n)
		occurred, received                               = make([]time.Time, n), make([]time.Time, n)
		inferred                                         = make([]bool, n)
	)
	for i, e := range events {
		ids[i], sources[i], kinds[i], payloads[i] = e.ID, e.Source, e.Kind, string(e.Payload)
		pipelines[i], envs[i], commitIDs[i] = null(e.PipelineID), null(e.Environment), null(e.CommitID)
		incidentIDs[i], deploymentIDs[i], statuses[i] = null(e.IncidentID), null(e.DeploymentID), null(e.Status)
		commits[i], headers[i] = jsonText(e.Commits, e.Commits == nil), jsonText(e.Headers, e.Headers == nil)
		prs[i], seqs[i] = e.PullRequestID, int64(e.StreamSeq)
		occurred[i], received[i], inferred[i] = e.OccurredAt, e.ReceivedAt, e.TimeInferred
	}
	b.Queue(insertEvents, ids, sources, kinds, pipelines, envs, commitIDs, commits, incidentIDs, deploymentIDs,
		prs, statuses, occurred, inferred, received, seqs, payloads, headers)
}

// jsonText is v as JSON text, or NULL when v is nil (nothing said, as against an empty list).
func jsonText(v any, isNil bool) *string {
	if isNil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil // string slices and maps of string slices always marshal
	}
	s := string(b)
	return &s
}

func queueChanges(b *pgx.Batch, changes map[[2]string]*fact.Change) {
	if len(changes) == 0 {
		return
	}
	keys := sortedKeys(changes)
	n := len(keys)
	pipelines, commits := make([]string, n), make([]string, n)
	prs := make([]*int64, n)
	committed, submitted, approved, merged := make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
	for i, k := range keys {
		c := changes[k]
		pipelines[i], commits[i], prs[i] = c.PipelineID, c.CommitID, c.PullRequestID
		committed[i], submitted[i], approved[i], merged[i] = c.CommittedAt, c.SubmittedAt, c.ApprovedAt, c.MergedAt
	}
	b.Queue(upsertChanges, pipelines, commits, prs, committed, submitted, approved, merged)
}

func queueDeployments(b *pgx.Batch, deployments map[[4]string]*fact.Deployment) {
	if len(deployments) == 0 {
		return
	}
	keys := sortedKeys(deployments)
	n := len(keys)
	sources, pipelines, envs, keyCol, statuses, events := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n)
	ids, commits := make([]*string, n), make([]*string, n)
	deployed := make([]time.Time, n)
	for i, k := range keys {
		d := deployments[k]
		sources[i], pipelines[i], envs[i], keyCol[i] = d.Source, d.PipelineID, d.Environment, d.Key
		ids[i], statuses[i], deployed[i], commits[i], events[i] = null(d.DeploymentID), d.Status, d.DeployedAt, null(d.CommitID), d.EventID
	}
	b.Queue(upsertDeployments, sources, pipelines, envs, keyCol, ids, statuses, deployed, commits, events)
}

func queueIncidents(b *pgx.Batch, incidents map[[2]string]*fact.Incident) {
	if len(incidents) == 0 {
		return
	}
	keys := sortedKeys(incidents)
	n := len(keys)
	sources, ids, pipelines, envs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	opened, resolved := make([]*time.Time, n), make([]*time.Time, n)
	causeDeployments, causeCommits := make([]*string, n), make([]*string, n)
	for j, k := range keys {
		i := incidents[k]
		sources[j], ids[j], pipelines[j], envs[j] = i.Source, i.IncidentID, i.PipelineID, i.Environment
		opened[j], resolved[j] = i.OpenedAt, i.ResolvedAt
		causeDeployments[j], causeCommits[j] = null(i.CauseDeploymentID), null(i.CauseCommitID)
	}
	b.Queue(upsertIncidents, sources, ids, pipelines, envs, opened, resolved, causeDeployments, causeCommits)
}

// sortedKeys are m's keys in order, so that concurrent writers lock rows in the same order.
func sortedKeys[K ~[2]string | ~[4]string, V any](m map[K]V) []K {
	return slices.SortedFunc(maps.Keys(m), func(a, b K) int {
		for i := range len(a) {
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
		return 0
	})
}

// columns turns a set of N-tuples into N sorted columns, nil when the set is empty.
func columns[K ~[2]string | ~[3]string | ~[5]string](set map[K]bool) [][]string {
	if len(set) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(set), func(a, b K) int {
		for i := range len(a) {
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	cols := make([][]string, len(keys[0]))
	for _, k := range keys {
		for i := range len(k) {
			cols[i] = append(cols[i], k[i])
		}
	}
	return cols
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
