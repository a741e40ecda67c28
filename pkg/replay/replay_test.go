package replay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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

func TestMain(m *testing.M) { testenv.Main(m) }

var received = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// env is a database of the test's own, the writer's code over it, and a pool to look with.
type env struct {
	st *store.Store
	ap writer.Applier
	db *pgxpool.Pool
}

func setup(t *testing.T) env {
	t.Helper()
	dbURL := testenv.Postgres(t)
	st, err := store.Open(context.Background(), dbURL, 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	db, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return env{st: st, db: db, ap: writer.Applier{Store: st, RetryMax: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
}

func (e env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, e.db.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// dump reads the tables a mapping bug would damage, in a fixed order.
func (e env) dump(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range []string{"changes", "deployments", "deployment_commits", "pipelines"} {
		rows, err := e.db.Query(context.Background(), `SELECT t::text FROM `+table+` t ORDER BY 1`)
		require.NoError(t, err)
		out[table], err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
	}
	return out
}

// events returns n native events, each with its id: commits, and every fourth a deploy of the
// commits before it.
func events(n int) []string {
	out := make([]string, n)
	for i := range out {
		at := 1790000000 + 60*i
		if i%4 == 3 {
			out[i] = fmt.Sprintf(`{"id":"ev-%d","type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c%d","deployment_id":"run-%d","timestamp":%d}`, i, i-1, i, at)
		} else {
			out[i] = fmt.Sprintf(`{"id":"ev-%d","type":"commit","pipeline_id":"api","commit_id":"c%d","timestamp":%d}`, i, i, at)
		}
	}
	return out
}

// message is the stream message the ingest makes of a native event, at stream sequence seq.
func message(t *testing.T, raw string, seq uint64) (stream.Message, writer.Msg) {
	t.Helper()
	e, err := event.Decode([]byte(raw), received)
	require.NoError(t, err)
	subject := stream.Subject(event.Source, e.Type)
	h := nats.Header{stream.HeaderReceivedAt: {received.Format(time.RFC3339Nano)}, nats.MsgIdHdr: {e.ID}}
	return stream.Message{Subject: subject, ID: e.ID, Data: []byte(raw), ReceivedAt: received},
		writer.Msg{Subject: subject, Header: h, Data: []byte(raw), Seq: seq}
}

// write applies the events through the writer's code, as stream sequences 1 to len(raws).
func (e env) write(t *testing.T, raws []string) {
	t.Helper()
	msgs := make([]writer.Msg, len(raws))
	for i, raw := range raws {
		_, msgs[i] = message(t, raw, uint64(i+1))
	}
	for _, err := range e.ap.Apply(context.Background(), msgs, nil) {
		require.NoError(t, err)
	}
}

// publish starts a NATS server with the stream and puts the events on it, as the ingest does.
func publish(t *testing.T, raws []string) jetstream.JetStream {
	t.Helper()
	n := testenv.StartNATS(t)
	nc, err := stream.ConnectAs(n.URL, "replay-test", n.Login(stream.RoleAdmin))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	pub, err := stream.NewPublisher(nc, 10*time.Second)
	require.NoError(t, err)
	msgs := make([]stream.Message, len(raws))
	for i, raw := range raws {
		msgs[i], _ = message(t, raw, 0)
	}
	require.NoError(t, pub.Publish(context.Background(), msgs))
	return js
}

func TestParseBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    replay.Bound
		wantErr string
	}{
		{"", replay.Bound{}, ""},
		{" 42 ", replay.Bound{Seq: 42}, ""},
		{"2026-11-25T10:00:00+01:00", replay.Bound{Time: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}, ""},
		{"2026-11-25T10:00:00.5Z", replay.Bound{Time: time.Date(2026, 11, 25, 10, 0, 0, 5e8, time.UTC)}, ""},
		{"0", replay.Bound{}, "stream sequences start at 1"},
		{"-3", replay.Bound{}, "neither a stream sequence nor an RFC 3339 time"},
		{"2026-11-25", replay.Bound{}, "neither a stream sequence nor an RFC 3339 time"},
	} {
		got, err := replay.ParseBound(tc.in)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
		again, err := replay.ParseBound(got.String())
		require.NoError(t, err)
		require.Equal(t, got, again, "a bound reads back from its String (the checkpoint's name)")
	}
}

// A range of the stream is applied, and only it; an interrupted replay's checkpoint is resumed
// from the message after it; messages retention dropped are counted, not silently skipped.
func TestStream(t *testing.T) {
	t.Parallel()
	e := setup(t)
	js := publish(t, events(40))
	ctx := context.Background()

	sum, err := replay.Stream(ctx, js, &e.ap, replay.Range{From: replay.Bound{Seq: 11}, To: replay.Bound{Seq: 20}}, replay.Options{BatchSize: 3, Checkpoint: true})
	require.NoError(t, err)
	require.Equal(t, uint64(11), sum.StartSeq)
	require.Equal(t, uint64(20), sum.EndSeq)
	require.Equal(t, uint64(20), sum.LastSeq)
	require.Equal(t, int64(10), sum.Messages)
	require.Equal(t, 10, e.count(t, `SELECT count(*) FROM events`))
	require.Equal(t, 10, e.count(t, `SELECT count(*) FROM events WHERE stream_seq BETWEEN 11 AND 20`))
	cp, ok, err := e.st.Checkpoint(ctx, sum.Name)
	require.NoError(t, err)
	require.True(t, ok)
	require.NotNil(t, cp.FinishedAt)

	// By subject: only the deploys of the whole stream.
	sum, err = replay.Stream(ctx, js, &e.ap, replay.Range{From: replay.Bound{Seq: 1}, Subjects: []string{stream.Subject(event.Source, "deploy")}}, replay.Options{BatchSize: 100})
	require.NoError(t, err)
	require.Equal(t, int64(10), sum.Messages)
	require.Equal(t, 10, e.count(t, `SELECT count(*) FROM events WHERE kind = 'deploy'`))

	// A replay of everything stopped after sequence 30 goes on from 31.
	all := replay.Range{From: replay.Bound{Seq: 1}}
	require.NoError(t, e.st.SaveCheckpoint(ctx, store.Checkpoint{Name: all.Name(), StartSeq: 1, EndSeq: 40, LastSeq: 30, Applied: 30}))
	sum, err = replay.Stream(ctx, js, &e.ap, all, replay.Options{BatchSize: 4, Checkpoint: true})
	require.NoError(t, err)
	require.True(t, sum.Resumed)
	require.Equal(t, int64(40), sum.Messages, "the resumed run's and this run's")
	require.Equal(t, 10+7+7, e.count(t, `SELECT count(*) FROM events`), "11-20, the 7 other deploys, the 7 commits of 31-40")
	require.Equal(t, 0, e.count(t, `SELECT count(*) FROM events WHERE stream_seq BETWEEN 21 AND 30 AND kind = 'commit'`))

	str, err := js.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	require.NoError(t, str.Purge(ctx, jetstream.WithPurgeSequence(6)))
	sum, err = replay.Stream(ctx, js, &e.ap, all, replay.Options{BatchSize: 100, Restart: true, Checkpoint: true})
	require.NoError(t, err)
	require.Equal(t, uint64(5), sum.Gone)
	require.Equal(t, uint64(6), sum.StartSeq)
	require.Equal(t, int64(35), sum.Messages)
}

// A rebuild from the events table repairs the tables a mapping bug damaged; an event that no
// longer maps stops it and leaves the live tables as they were.
func TestRebuildFromTheEventsTable(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.write(t, events(200))
	want := e.dump(t)
	ctx := context.Background()
	_, err := e.db.Exec(ctx, `DELETE FROM changes WHERE commit_id LIKE 'c1%'; UPDATE deployments SET status = 'failure'; DELETE FROM pipelines`)
	require.NoError(t, err)
	require.NotEqual(t, want, e.dump(t))

	sum, err := replay.Rebuild(ctx, e.st, nil, false, e.ap, replay.Options{BatchSize: 30})
	require.NoError(t, err)
	require.False(t, sum.FromStream)
	require.Equal(t, int64(200), sum.Read)
	require.Zero(t, sum.CaughtUp)
	require.Equal(t, int64(200), sum.After["events"])
	require.Equal(t, int64(0), sum.Before["pipelines"])
	require.Equal(t, int64(1), sum.After["pipelines"])
	require.Equal(t, want, e.dump(t))
	require.Zero(t, e.count(t, `SELECT count(*) FROM pg_namespace WHERE nspname = 'devopstic_rebuild'`), "scratch tables left behind")

	_, err = e.db.Exec(ctx, `UPDATE events SET payload = '{"type":"unheard-of"}' WHERE stream_seq = 150; DELETE FROM pipelines`)
	require.NoError(t, err)
	damaged := e.dump(t)
	_, err = replay.Rebuild(ctx, e.st, nil, false, e.ap, replay.Options{BatchSize: 30})
	require.ErrorContains(t, err, "the event at stream sequence 150 no longer maps")
	require.ErrorContains(t, err, "the live tables are unchanged")
	require.Equal(t, damaged, e.dump(t))
}

// A rebuild from the stream maps every message into fresh tables; it refuses when retention
// dropped events the table still has, unless forced, which drops them.
func TestRebuildFromTheStream(t *testing.T) {
	t.Parallel()
	e := setup(t)
	raws := events(60)
	e.write(t, raws)
	want := e.dump(t)
	js := publish(t, raws)
	ctx := context.Background()
	_, err := e.db.Exec(ctx, `TRUNCATE changes, deployments`)
	require.NoError(t, err)

	sum, err := replay.Rebuild(ctx, e.st, js, false, e.ap, replay.Options{BatchSize: 7})
	require.NoError(t, err)
	require.True(t, sum.FromStream)
	require.Equal(t, int64(60), sum.Read)
	require.Equal(t, want, e.dump(t))

	str, err := js.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	require.NoError(t, str.Purge(ctx, jetstream.WithPurgeSequence(9)))
	_, err = replay.Rebuild(ctx, e.st, js, false, e.ap, replay.Options{BatchSize: 7})
	require.ErrorIs(t, err, replay.ErrWouldLose)
	require.ErrorContains(t, err, "8 events have stream sequences from 1")
	require.Equal(t, 60, e.count(t, `SELECT count(*) FROM events`))

	sum, err = replay.Rebuild(ctx, e.st, js, true, e.ap, replay.Options{BatchSize: 7})
	require.NoError(t, err)
	require.Equal(t, int64(52), sum.Read)
	require.Equal(t, 52, e.count(t, `SELECT count(*) FROM events`))
	require.Zero(t, e.count(t, `SELECT count(*) FROM events WHERE stream_seq < 9`))
}

// Dead letters retried while their cause remains stay, with the new reason and one more
// delivery; once it is fixed they are written and deleted; an unknown one is ErrNotFound.
func TestRetryDeadLetters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	raws := []string{
		`{"id":"p1","type":"commit","pipeline_id":"poison","commit_id":"p1","timestamp":1795600001}`,
		`{"id":"p2","type":"commit","pipeline_id":"poison","commit_id":"p2","timestamp":1795600002}`,
		`{"id":"p3","type":"commit","pipeline_id":"poison","commit_id":"p3","timestamp":1795600003}`,
	}
	for i, raw := range raws {
		_, m := message(t, raw, uint64(10+i))
		require.NoError(t, e.st.SaveDeadLetter(ctx, store.DeadLetter{StreamSeq: m.Seq, Subject: m.Subject, Headers: m.Header,
			Data: m.Data, Reason: "Postgres refused it", Deliveries: 5, FailedAt: received}))
	}
	_, err := e.db.Exec(ctx, `ALTER TABLE events ADD CONSTRAINT refuse_poison CHECK (pipeline_id <> 'poison')`)
	require.NoError(t, err)

	sum, err := replay.RetryDeadLetters(ctx, &e.ap, nil, 2)
	require.NoError(t, err)
	require.Equal(t, 3, sum.Tried)
	require.Empty(t, sum.Written)
	require.Len(t, sum.Failed, 3)
	dl, err := e.st.DeadLetter(ctx, 11)
	require.NoError(t, err)
	require.Equal(t, 6, dl.Deliveries)
	require.Contains(t, dl.Reason, "refuse_poison")
	require.Equal(t, dl.Reason, sum.Failed[1].Reason)
	require.Equal(t, raws[1], string(dl.Data))

	_, err = e.db.Exec(ctx, `ALTER TABLE events DROP CONSTRAINT refuse_poison`)
	require.NoError(t, err)
	sum, err = replay.RetryDeadLetters(ctx, &e.ap, []uint64{11}, 2)
	require.NoError(t, err)
	require.Equal(t, replay.Retried{Tried: 1, Written: []uint64{11}}, sum)
	require.Equal(t, 1, e.count(t, `SELECT count(*) FROM changes WHERE commit_id = 'p2'`))
	_, err = e.st.DeadLetter(ctx, 11)
	require.ErrorIs(t, err, store.ErrNotFound)

	_, err = replay.RetryDeadLetters(ctx, &e.ap, []uint64{11}, 2)
	require.ErrorIs(t, err, store.ErrNotFound)
	sum, err = replay.RetryDeadLetters(ctx, &e.ap, nil, 1)
	require.NoError(t, err)
	require.Equal(t, []uint64{10, 12}, sum.Written)
	require.Zero(t, e.count(t, `SELECT count(*) FROM dead_letters`))
	require.Equal(t, 3, e.count(t, `SELECT count(*) FROM events WHERE pipeline_id = 'poison'`))
	sum, err = replay.RetryDeadLetters(ctx, &e.ap, nil, 1)
	require.NoError(t, err)
	require.Zero(t, sum.Tried, "nothing left to retry")
}

// A replay into the live tables queues its derivation and derives it every DeriveEvery
// messages and at its end: the tables equal those the writer's own path (deriving in each
// batch) writes, nothing is left queued, and after that many messages the tables' statistics
// are fresh (ANALYZE), for derivation's plans and the readers'.
func TestStreamDerivesWhatItQueued(t *testing.T) {
	t.Parallel()
	raws := events(12_000)
	js := publish(t, raws)
	ctx := context.Background()

	inline := setup(t)
	inline.write(t, raws)
	want := inline.dump(t)
	require.Positive(t, inline.count(t, `SELECT count(*) FROM change_deployments`))

	e := setup(t)
	began := time.Now()
	var progress strings.Builder
	sum, err := replay.Stream(ctx, js, &e.ap, replay.Range{From: replay.Bound{Seq: 1}},
		replay.Options{BatchSize: 500, DeriveEvery: 5000, Progress: &progress})
	require.NoError(t, err)
	require.Equal(t, int64(len(raws)), sum.Messages)
	require.Equal(t, 3, strings.Count(progress.String(), "derived "), "at 5,000 and 10,000 messages, and at the end:\n%s", progress.String())
	queued, err := e.st.Queued(ctx)
	require.NoError(t, err)
	require.Zero(t, queued)
	require.Equal(t, want, e.dump(t))
	for _, table := range []string{"change_deployments", "lead_time_days", "deployments"} {
		q := `SELECT t::text FROM ` + table + ` t ORDER BY 1`
		rows, err := inline.db.Query(ctx, q)
		require.NoError(t, err)
		wantRows, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		rows, err = e.db.Query(ctx, q)
		require.NoError(t, err)
		gotRows, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Equal(t, wantRows, gotRows, table)
	}
	var analyzed time.Time
	require.NoError(t, e.db.QueryRow(ctx, `SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'change_deployments'`).Scan(&analyzed))
	require.True(t, analyzed.After(began), "analyzed at %s, the replay began at %s", analyzed, began)
}
