package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/replay"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
	"github.com/devopstic/devopstic/pkg/writer"
)

// admin runs an operating command against the stack, as `devopstic <args>` would.
func (s *stack) admin(args ...string) (string, error) {
	s.t.Helper()
	return s.adminCtx(context.Background(), args...)
}

func (s *stack) adminCtx(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	log := slog.New(slog.NewTextHandler(testLogWriter{s.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := admin(ctx, s.cfg, args, &stdout, &stderr, log)
	if stderr.Len() > 0 {
		s.t.Logf("devopstic %s (stderr):\n%s", strings.Join(args, " "), strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), err
}

// fullDump reads every table the stream feeds, in full and in a fixed order, and the number of
// dead letters. The events table leaves out what differs from run to run by nature: the stream
// sequence, the receive time and the headers that carry it.
func fullDump(t testing.TB, db *pgxpool.Pool) map[string][]string {
	t.Helper()
	queries := map[string]string{
		"events":       dumpQueries["events"],
		"dead_letters": `SELECT count(*)::text FROM dead_letters`,
	}
	for _, table := range store.StreamTables {
		if table != "events" {
			queries[table] = `SELECT t::text FROM ` + table + ` t ORDER BY 1`
		}
	}
	out := map[string][]string{}
	for table, q := range queries {
		out[table] = []string{} // an empty table is listed too
		rows, err := db.Query(context.Background(), q)
		require.NoError(t, err)
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			out[table] = append(out[table], line)
		}
		require.NoError(t, rows.Err())
	}
	return out
}

// compareDumps says, table by table, how many rows were expected and found, and how many are
// missing (losses) or extra (duplicates or rows that should not be there), then requires the
// dumps to be equal.
func compareDumps(t testing.TB, what string, want, got map[string][]string) {
	t.Helper()
	var lines []string
	for _, table := range slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	}) {
		missing, extra := diffLines(want[table], got[table])
		lines = append(lines, fmt.Sprintf("%s: expected %d, found %d, missing %d, extra %d", table, len(want[table]), len(got[table]), missing, extra))
	}
	t.Logf("%s:\n  %s", what, strings.Join(lines, "\n  "))
	require.Equal(t, want, got, what)
}

func diffLines(want, got []string) (missing, extra int) {
	seen := map[string]int{}
	for _, l := range got {
		seen[l]++
	}
	for _, l := range want {
		if seen[l] > 0 {
			seen[l]--
		} else {
			missing++
		}
	}
	for _, n := range seen {
		extra += n
	}
	return missing, extra
}

// manyEvents returns n native events of 20 pipelines that touch every table: commits, pull
// requests and approvals, deployment attempts reported failing then succeeding, multi-commit
// deploys, incidents opened and resolved. Half carry an id, all a timestamp, so their ids (and
// so the tables) depend on nothing but their content.
func manyEvents(n int) []string {
	out := make([]string, 0, n)
	for i := 0; len(out) < n; i++ {
		p, at := fmt.Sprintf("svc%d", i%20), 1790000000+60*i
		id := ""
		if i%2 == 0 {
			id = fmt.Sprintf(`"id":"ev-%d",`, i)
		}
		var e string
		switch i % 10 {
		case 0, 1, 2, 3:
			e = fmt.Sprintf(`{%s"type":"commit","pipeline_id":%q,"commit_id":"c%d","timestamp":%d}`, id, p, i, at)
		case 4:
			e = fmt.Sprintf(`{%s"type":"submit","pipeline_id":%q,"commit_id":"c%d","pull_request_id":%d,"timestamp":%d}`, id, p, i-4, i, at)
		case 5:
			e = fmt.Sprintf(`{%s"type":"approve","pipeline_id":%q,"commit_id":"c%d","pull_request_id":%d,"timestamp":%d}`, id, p, i-5, i-1, at)
		case 6:
			e = fmt.Sprintf(`{%s"type":"deploy","pipeline_id":%q,"environment":"production","commit_id":"c%d","commits":["c%d","c%d"],"deployment_id":"run-%d","status":"failure","timestamp":%d}`, id, p, i-3, i-4, i-5, i, at)
		case 7:
			e = fmt.Sprintf(`{%s"type":"deploy","pipeline_id":%q,"environment":"production","commit_id":"c%d","commits":["c%d","c%d"],"deployment_id":"run-%d","timestamp":%d}`, id, p, i-4, i-5, i-6, i-1, at)
		case 8:
			e = fmt.Sprintf(`{%s"type":"incident_status_change","pipeline_id":%q,"environment":"production","incident_id":"inc-%d","status":"failure","deployment_id":"run-%d","timestamp":%d}`, id, p, i/10, i-2, at)
		case 9:
			e = fmt.Sprintf(`{%s"type":"incident_status_change","pipeline_id":%q,"environment":"staging","incident_id":"inc-%d","status":"success","timestamp":%d}`, id, p, i/10, at)
		}
		out = append(out, e)
	}
	return out
}

// messages turns native events into the stream messages the ingest would publish.
func messages(t testing.TB, events []string, received time.Time) []stream.Message {
	t.Helper()
	msgs := make([]stream.Message, len(events))
	for i, raw := range events {
		e, err := event.Decode([]byte(raw), received)
		require.NoError(t, err)
		msgs[i] = stream.Message{Subject: stream.Subject(event.Source, e.Type), ID: e.ID, Data: []byte(raw), ReceivedAt: received}
	}
	return msgs
}

// referenceDump is the clean single run the fault tests compare with: the events written once,
// in order, through the writer's code (writer.Applier) into a fresh database, with no stream,
// no concurrency and no fault.
func referenceDump(t testing.TB, events []string) map[string][]string {
	t.Helper()
	dbURL := testenv.Postgres(t)
	st, err := store.Open(context.Background(), dbURL, 2)
	require.NoError(t, err)
	defer st.Close()
	ap := writer.Applier{Store: st, RetryMax: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	msgs := messages(t, events, received)
	for start := 0; start < len(msgs); start += 500 {
		var batch []writer.Msg
		for i, m := range msgs[start:min(start+500, len(msgs))] {
			h := nats.Header{stream.HeaderReceivedAt: {received.Format(time.RFC3339Nano)}}
			batch = append(batch, writer.Msg{Subject: m.Subject, Header: h, Data: m.Data, Seq: uint64(start + i + 1)})
		}
		for _, err := range ap.Apply(context.Background(), batch, nil) {
			require.NoError(t, err)
		}
	}
	db := openPool(t, dbURL)
	return fullDump(t, db)
}

func openPool(t testing.TB, dbURL string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	db, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return db
}

// publish puts messages on n's stream (testenv set it up) as the ingest does (with their
// ids), 1,000 at a time.
func publish(t testing.TB, n *testenv.NATS, msgs []stream.Message) {
	t.Helper()
	nc, err := stream.ConnectAs(n.URL, "test-publisher", n.Login(stream.RoleAdmin))
	require.NoError(t, err)
	defer nc.Close()
	pub, err := stream.NewPublisher(nc, 30*time.Second)
	require.NoError(t, err)
	for start := 0; start < len(msgs); start += 1000 {
		require.NoError(t, pub.Publish(context.Background(), msgs[start:min(start+1000, len(msgs))]))
	}
}

var streamTablesTruncate = `TRUNCATE ` + strings.Join(store.StreamTables, ", ")

// Empty tables + a replay of the whole stream = the tables as they were; a second replay over
// them changes nothing; status tells what is there; a checkpoint records the finished replay.
func TestReplayRebuildsTheTablesAndChangesNothingTwice(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	events := manyEvents(2000)
	publish(t, s.nats, messages(t, events, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)))
	s.waitDrained()
	want := referenceDump(t, events)
	compareDumps(t, "written by the writer", want, fullDump(t, s.db))

	out, err := s.admin("status")
	require.NoError(t, err)
	t.Logf("devopstic status:\n%s", out)
	require.Contains(t, out, "stream DEVOPSTIC_EVENTS: 2000 messages")
	require.Contains(t, out, "writer: 0 pending, 0 awaiting ack")
	require.Contains(t, out, "rows: events 2000 ")
	require.Contains(t, out, "dead letters: 0")

	_, err = s.db.Exec(context.Background(), streamTablesTruncate)
	require.NoError(t, err)
	out, err = s.admin("replay", "--from", "1", "--batch", "300")
	require.NoError(t, err)
	require.Contains(t, out, "replayed stream sequences 1 to 2000: 2000 messages applied, 0 dead-lettered")
	compareDumps(t, "empty tables + replay of the whole stream", want, fullDump(t, s.db))

	// The same range again starts over (the last one finished) and changes nothing.
	out, err = s.admin("replay", "--from", "1")
	require.NoError(t, err)
	require.Contains(t, out, "2000 messages applied")
	compareDumps(t, "a second replay", want, fullDump(t, s.db))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM replay_checkpoints WHERE finished_at IS NOT NULL AND last_seq = 2000`))

	// Part of the stream, by time and subject: only deploys.
	_, err = s.db.Exec(context.Background(), streamTablesTruncate)
	require.NoError(t, err)
	out, err = s.admin("replay", "--from", "2000-01-01T00:00:00Z", "--subjects", "devopstic.events.native.deploy")
	require.NoError(t, err)
	require.Contains(t, out, "400 messages applied")
	require.Equal(t, 400, s.count(`SELECT count(*) FROM events`))
	require.Equal(t, 400, s.count(`SELECT count(*) FROM events WHERE kind = 'deploy'`))
	out, err = s.admin("replay", "--from", "101", "--to", "200")
	require.NoError(t, err)
	require.Contains(t, out, "replayed stream sequences 101 to 200: 100 messages applied")
	require.Equal(t, 480, s.count(`SELECT count(*) FROM events`))
}

// Ctrl-C during a replay keeps a checkpoint; the same command resumes from it and finishes with
// the same tables as an uninterrupted replay.
func TestReplayResumesAfterInterrupt(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	events := manyEvents(10000)
	publish(t, s.nats, messages(t, events, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)))
	s.waitDrained()
	want := fullDump(t, s.db)
	_, err := s.db.Exec(context.Background(), streamTablesTruncate)
	require.NoError(t, err)

	ctx, interrupt := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, err = s.adminCtx(ctx, "replay", "--from", "1", "--batch", "100")
		done <- err
	}()
	// Interrupt once the first checkpoints are in.
	require.True(t, assertEventually(func() bool {
		return s.count(`SELECT count(*) FROM replay_checkpoints WHERE last_seq >= 1000`) == 1
	}, time.Minute), "no checkpoint")
	interrupt()
	err = <-done
	require.ErrorIs(t, err, replay.ErrInterrupted)
	require.Contains(t, out, "run the same command again to resume")
	var last int64
	require.NoError(t, s.db.QueryRow(context.Background(), `SELECT last_seq FROM replay_checkpoints`).Scan(&last))
	require.Less(t, last, int64(10000), "the replay finished before it was interrupted: the test proves nothing")
	require.Equal(t, int(last), s.count(`SELECT count(*) FROM events`), "the checkpoint is the last message applied")
	t.Logf("interrupted at stream sequence %d of 10000", last)

	out, err = s.admin("replay", "--from", "1", "--batch", "100")
	require.NoError(t, err)
	require.Contains(t, out, "resumed an interrupted replay")
	require.Contains(t, out, "10000 messages applied")
	compareDumps(t, "interrupted and resumed replay", want, fullDump(t, s.db))
}

// A rebuild recomputes every table from the events table, or from the stream, and gives the
// same tables; it refuses --from-stream when the stream has lost events the table has.
func TestRebuild(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	events := manyEvents(3000)
	publish(t, s.nats, messages(t, events, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)))
	s.waitDrained()
	want := fullDump(t, s.db)

	// Damage the derived tables as a mapping bug would.
	_, err := s.db.Exec(context.Background(), `DELETE FROM changes WHERE commit_id LIKE 'c1%';
UPDATE deployments SET status = 'failure'; DELETE FROM pipelines; UPDATE incidents SET opened_at = NULL`)
	require.NoError(t, err)
	require.NotEqual(t, want, fullDump(t, s.db))

	out, err := s.admin("rebuild")
	require.NoError(t, err)
	require.Contains(t, out, "rebuilt from the events table: 3000 events mapped")
	compareDumps(t, "rebuild from the events table", want, fullDump(t, s.db))
	require.Equal(t, 0, s.count(`SELECT count(*) FROM pg_namespace WHERE nspname = 'devopstic_rebuild'`), "scratch tables left behind")
	// The view over the swapped tables still works.
	require.Positive(t, s.count(`SELECT count(*) FROM change_deployments`))

	_, err = s.db.Exec(context.Background(), `DELETE FROM incidents`)
	require.NoError(t, err)
	out, err = s.admin("rebuild", "--from-stream")
	require.NoError(t, err)
	require.Contains(t, out, "rebuilt from the stream: 3000 events mapped")
	compareDumps(t, "rebuild from the stream", want, fullDump(t, s.db))

	// The stream loses its first 10 messages (as retention would drop them).
	nc, err := nats.Connect(s.nats.URL, s.nats.Login(stream.RoleAdmin).Options()...)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	str, err := js.Stream(context.Background(), stream.StreamName)
	require.NoError(t, err)
	require.NoError(t, str.Purge(context.Background(), jetstream.WithPurgeSequence(11)))
	_, err = s.admin("rebuild", "--from-stream")
	require.ErrorIs(t, err, replay.ErrWouldLose)
	require.Contains(t, err.Error(), "10 events")
	compareDumps(t, "after a refused rebuild", want, fullDump(t, s.db))
	// The events table still has them: rebuilding from it loses nothing.
	_, err = s.admin("rebuild")
	require.NoError(t, err)
	compareDumps(t, "rebuild from the table beyond the stream's retention", want, fullDump(t, s.db))
}

// Dead letters: listed with their reason, shown with their data, retried once the cause is
// fixed (then gone, and their event written), discarded.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", withEnv("DEVOPSTIC_WRITER_MAX_DELIVER", "1"))
	_, err := s.db.Exec(context.Background(), `ALTER TABLE events ADD CONSTRAINT refuse_poison CHECK (pipeline_id <> 'poison')`)
	require.NoError(t, err)
	s.postJSON(http.StatusAccepted, `[{"type":"commit","pipeline_id":"api","commit_id":"a","timestamp":1795600000},
	  {"type":"commit","pipeline_id":"poison","commit_id":"p1","timestamp":1795600001},
	  {"type":"commit","pipeline_id":"poison","commit_id":"p2","timestamp":1795600002},
	  {"type":"commit","pipeline_id":"api","commit_id":"b","timestamp":1795600003}]`)
	s.waitDrained()
	require.Equal(t, 2, s.count(`SELECT count(*) FROM events`))

	out, err := s.admin("dead-letters", "list")
	require.NoError(t, err)
	require.Contains(t, out, "2\t")
	require.Contains(t, out, "refuse_poison")
	require.Contains(t, out, "2 dead letters")
	out, err = s.admin("dead-letters", "show", "2")
	require.NoError(t, err)
	require.Contains(t, out, `"pipeline_id\":\"poison\"`)
	require.Contains(t, out, stream.HeaderReceivedAt)
	out, err = s.admin("status")
	require.NoError(t, err)
	require.Contains(t, out, "dead letters: 2")

	// Still refused: the dead letter stays, with one more delivery.
	out, err = s.admin("dead-letters", "retry", "2")
	require.Error(t, err)
	require.Contains(t, out, "2 still fails")
	require.Equal(t, 2, s.count(`SELECT deliveries FROM dead_letters WHERE stream_seq = 2`))

	_, err = s.db.Exec(context.Background(), `ALTER TABLE events DROP CONSTRAINT refuse_poison`)
	require.NoError(t, err)
	out, err = s.admin("dead-letters", "retry", "2")
	require.NoError(t, err)
	require.Contains(t, out, "1 written and removed")
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events WHERE commit_id = 'p1'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM changes WHERE commit_id = 'p1'`))

	_, err = s.admin("dead-letters", "discard", "2")
	require.ErrorIs(t, err, store.ErrNotFound)
	out, err = s.admin("dead-letters", "discard", "--all")
	require.NoError(t, err)
	require.Contains(t, out, "discarded 1 dead letters")
	require.Equal(t, 0, s.count(`SELECT count(*) FROM dead_letters`))
	require.Equal(t, 0, s.count(`SELECT count(*) FROM events WHERE commit_id = 'p2'`))
}

// A rebuild while the writer goes on writing: the events written during the rebuild are caught
// up before the swap, and the tables end equal to a clean single run of every event. Under
// `make chaos` it runs on 100,000 events and reports how long the swap held the tables.
func TestRebuildWhileWriting(t *testing.T) {
	t.Parallel()
	preload, during := 10000, 2000
	if os.Getenv("DEVOPSTIC_CHAOS") == "1" {
		preload = 100000
	}
	events := manyEvents(preload + during)
	want := referenceDump(t, events)
	s := startStack(t, "")
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	publish(t, s.nats, messages(t, events[:preload], received))
	waitSettled(t, s.nats, s.db, 5*time.Minute)

	changesBefore := s.count(`SELECT count(*) FROM changes`)
	done := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, err = s.admin("rebuild", "--batch", "50")
		done <- err
	}()
	// Once the rebuild has read its snapshot and begun writing, the writer gets new events.
	require.True(t, assertEventually(func() bool {
		var n int
		err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM devopstic_rebuild.events`).Scan(&n)
		return err == nil && n > 0
	}, time.Minute), "the rebuild never started")
	publish(t, s.nats, messages(t, events[preload:], received))

	// A dashboard reading all along never waits long and never sees a half-built table.
	var (
		slowest   time.Duration
		reads     int
		fewest    = -1
		rebuilt   error
		rebuiltOK bool
	)
	for !rebuiltOK {
		select {
		case rebuilt = <-done:
			rebuiltOK = true
		default:
		}
		began := time.Now()
		var events, changes int
		require.NoError(t, s.db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM changes)`).Scan(&events, &changes))
		slowest = max(slowest, time.Since(began))
		reads++
		if fewest < 0 || events < fewest {
			fewest = events
		}
		require.GreaterOrEqual(t, changes, changesBefore, "a reader saw the changes table part-empty")
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, rebuilt)
	require.GreaterOrEqual(t, fewest, preload, "a reader saw the events table part-empty")
	t.Logf("%d reads during the rebuild, the slowest %s; none saw fewer than %d events", reads, slowest.Round(time.Millisecond), fewest)
	s.waitCount(preload+during, `SELECT count(*) FROM events`)
	t.Log(strings.TrimSpace(out))
	caught := regexp.MustCompile(`(\d+) written meanwhile caught up`).FindStringSubmatch(out)
	require.NotNil(t, caught, out)
	require.NotEqual(t, "0", caught[1], "nothing was written during the rebuild: the test proves nothing")
	waitSettled(t, s.nats, s.db, time.Minute)
	compareDumps(t, fmt.Sprintf("rebuild of %d events while %d more were written", preload, during), want, fullDump(t, s.db))
}

// Every table is either fed by the stream (store.StreamTables: rebuild recomputes it) or known
// not to be. A migration that adds a table the writer fills must add it to store.StreamTables,
// or a rebuild would leave it stale (and fail, as the rebuild's writes find no such table).
func TestEveryTableIsClassifiedForRebuild(t *testing.T) {
	t.Parallel()
	db := openPool(t, testenv.Postgres(t))
	rows, err := db.Query(context.Background(), `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	notFromStream := []string{"dead_letters", "replay_checkpoints", "schema_migrations",
		"teams", "team_pipelines", // configuration (devopstic team)
		"dora_benchmarks", "dora_benchmark_tiers"} // reference data (migration 0013)
	for _, table := range tables {
		require.True(t, slices.Contains(store.StreamTables, table) || slices.Contains(notFromStream, table),
			"table %s is new: add it to store.StreamTables if the writer fills it (rebuild then recomputes it), else to notFromStream here", table)
	}
	for _, table := range store.StreamTables {
		require.Contains(t, tables, table, "store.StreamTables names a table that does not exist")
	}
}

// status is what an operator runs during an outage: it reports what it can reach and names
// what it cannot, and fails so that scripts notice.
func TestStatusDuringOutages(t *testing.T) {
	t.Parallel()
	cluster, dbURL := testenv.PrivatePostgres(t)
	s := startStack(t, dbURL)
	s.postJSON(http.StatusAccepted, `{"type":"commit","pipeline_id":"api","commit_id":"a","timestamp":1795600000}`)
	s.waitDrained()

	s.nats.Stop()
	out, err := s.admin("status")
	require.Error(t, err)
	require.Contains(t, out, "stream and writer: unknown: connect to NATS")
	require.Contains(t, out, "rows: events 1 ")
	require.NoError(t, s.nats.Start())

	require.NoError(t, cluster.Stop())
	out, err = s.admin("status")
	require.Error(t, err)
	require.Contains(t, out, "stream DEVOPSTIC_EVENTS: 1 messages")
	require.Contains(t, out, "writer: 0 pending")
	require.Contains(t, out, "database: unknown:")
	require.NoError(t, cluster.StartAgain(context.Background()))
	out, err = s.admin("status", "--json")
	require.NoError(t, err)
	require.Contains(t, out, `"num_pending": 0`)
	require.Contains(t, out, `"events": 1`)
}
