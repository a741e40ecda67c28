package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/stream"
)

// orderScenario is a small delivery history whose outcome is known: changes through review and
// deploy, a deployment attempt reported twice, a multi-commit deploy, and incidents whose events
// come in awkward orders.
func orderScenario() []string {
	at := func(minutes int) int { return 1795500000 + 60*minutes }
	return []string{
		fmt.Sprintf(`{"type":"commit","pipeline_id":"api","commit_id":"c1","timestamp":%d}`, at(0)),
		fmt.Sprintf(`{"type":"submit","pipeline_id":"api","commit_id":"c1","pull_request_id":7,"timestamp":%d}`, at(10)),
		fmt.Sprintf(`{"type":"approve","pipeline_id":"api","commit_id":"c1","pull_request_id":7,"timestamp":%d}`, at(30)),
		fmt.Sprintf(`{"type":"commit","pipeline_id":"api","commit_id":"c2","timestamp":%d}`, at(40)),
		// an earlier commit time for c1, learnt late: the earliest wins
		fmt.Sprintf(`{"type":"commit","pipeline_id":"api","commit_id":"c1","timestamp":%d}`, at(-5)),
		fmt.Sprintf(`{"type":"deploy","pipeline_id":"api","environment":"staging","commit_id":"c2","commits":["c1"],"timestamp":%d}`, at(50)),
		// one attempt, reported failing then succeeding: the latest report decides
		fmt.Sprintf(`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c2","commits":["c1"],"deployment_id":"run-9","status":"failure","timestamp":%d}`, at(60)),
		fmt.Sprintf(`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c2","commits":["c1"],"deployment_id":"run-9","status":"success","timestamp":%d}`, at(65)),
		fmt.Sprintf(`{"type":"deploy","pipeline_id":"web","environment":"production","commit_id":"w1","status":"failure","timestamp":%d}`, at(70)),
		fmt.Sprintf(`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"failure","deployment_id":"run-9","timestamp":%d}`, at(70)),
		fmt.Sprintf(`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"success","timestamp":%d}`, at(95)),
		// resolved before it was opened: not resolved
		fmt.Sprintf(`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i2","status":"success","timestamp":%d}`, at(100)),
		fmt.Sprintf(`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i2","status":"failure","commit_id":"c2","timestamp":%d}`, at(110)),
		// opened, resolved, reopened, resolved: opens at the first, resolves at the last
		fmt.Sprintf(`{"type":"incident_status_change","pipeline_id":"web","environment":"production","incident_id":"i3","status":"failure","timestamp":%d}`, at(120)),
		fmt.Sprintf(`{"type":"incident_status_change","pipeline_id":"web","environment":"production","incident_id":"i3","status":"success","timestamp":%d}`, at(130)),
		fmt.Sprintf(`{"type":"incident_status_change","pipeline_id":"web","environment":"production","incident_id":"i3","status":"failure","timestamp":%d}`, at(140)),
		fmt.Sprintf(`{"type":"incident_status_change","pipeline_id":"web","environment":"production","incident_id":"i3","status":"success","timestamp":%d}`, at(150)),
	}
}

// dumpQueries read every table in full, in a fixed order. The events table leaves out what
// differs from run to run by nature: the stream sequence and the receive time.
var dumpQueries = map[string]string{
	"events": `SELECT (id, source, kind, pipeline_id, environment, commit_id, commits, incident_id, deployment_id,
	    pull_request_id, status, occurred_at, time_inferred, payload)::text FROM events ORDER BY 1`,
	"changes":            `SELECT t::text FROM changes t ORDER BY 1`,
	"deployments":        `SELECT t::text FROM deployments t ORDER BY 1`,
	"deployment_commits": `SELECT t::text FROM deployment_commits t ORDER BY 1`,
	"incidents":          `SELECT t::text FROM incidents t ORDER BY 1`,
	"dead_letters":       `SELECT count(*)::text FROM dead_letters`,
}

func (s *stack) dump() map[string][]string {
	s.t.Helper()
	out := map[string][]string{}
	for table, q := range dumpQueries {
		rows, err := s.db.Query(context.Background(), q)
		require.NoError(s.t, err)
		for rows.Next() {
			var line string
			require.NoError(s.t, rows.Scan(&line))
			out[table] = append(out[table], line)
		}
		require.NoError(s.t, rows.Err())
	}
	return out
}

// waitDrained waits until the writer has settled every message in the stream.
func (s *stack) waitDrained() {
	s.t.Helper()
	nc, err := nats.Connect(s.nats.URL, s.nats.Login(stream.RoleAdmin).Options()...)
	require.NoError(s.t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(s.t, err)
	st, err := js.Stream(context.Background(), stream.StreamName)
	require.NoError(s.t, err)
	streamInfo, err := st.Info(context.Background())
	require.NoError(s.t, err)
	last := streamInfo.State.LastSeq
	var info *jetstream.ConsumerInfo
	ok := assertEventually(func() bool {
		cons, err := js.Consumer(context.Background(), stream.StreamName, stream.ConsumerName)
		if err != nil {
			return false
		}
		info, err = cons.Info(context.Background())
		// The ack floor, not only the pending counts: a consumer learns of a new message a
		// moment after the stream stores it, and until then shows nothing pending.
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last
	}, 60*time.Second)
	require.True(s.t, ok, "writer did not drain the stream: %+v", info)
	waitDerived(s.t, s.db, 60*time.Second)
}

// publishRaw puts events on the stream as the ingest would, but without Nats-Msg-Id, so that a
// copy is not deduplicated by JetStream: what a redelivery, or a replay, looks like to the
// writer.
func (s *stack) publishRaw(events []string, received time.Time) {
	s.t.Helper()
	nc, err := nats.Connect(s.nats.URL, s.nats.Login(stream.RoleAdmin).Options()...)
	require.NoError(s.t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(s.t, err)
	for _, e := range events {
		decoded, err := event.Decode([]byte(e), received)
		require.NoError(s.t, err)
		msg := nats.NewMsg(stream.Subject(event.Source, decoded.Type))
		msg.Data = []byte(e)
		msg.Header.Set(stream.HeaderReceivedAt, received.Format(time.RFC3339Nano))
		_, err = js.PublishMsg(context.Background(), msg)
		require.NoError(s.t, err)
	}
}

func TestSameTablesWhateverTheOrderAndRepetition(t *testing.T) {
	t.Parallel()
	events := orderScenario()
	reversed := slices.Clone(events)
	slices.Reverse(reversed)
	shuffled := slices.Clone(events)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

	// One event per request and per transaction, so the writer really applies them in order.
	run := func(t *testing.T, apply func(s *stack)) map[string][]string {
		s := startStack(t, "", withEnv("DEVOPSTIC_WRITER_BATCH_SIZE", "1"))
		apply(s)
		s.waitDrained()
		return s.dump()
	}
	postEach := func(events []string) func(*stack) {
		return func(s *stack) {
			for _, e := range events {
				s.postJSON(http.StatusAccepted, e)
			}
		}
	}

	inOrder := run(t, postEach(events))
	require.Len(t, inOrder["events"], len(events))
	// The outcome the scenario was written for, so equal dumps also mean right dumps.
	require.Equal(t, []string{
		`(api,c1,7,"2026-11-24 05:55:00+00","2026-11-24 06:10:00+00","2026-11-24 06:30:00+00","2026-11-24 05:55:00+00",,c1)`,
		`(api,c2,,"2026-11-24 06:40:00+00",,,"2026-11-24 06:40:00+00",,c2)`,
		`(web,w1,,,,,,,w1)`,
	}, inOrder["changes"])
	require.Len(t, inOrder["deployments"], 3)
	require.Contains(t, strings.Join(inOrder["deployments"], "\n"), `(native,api,production,run-9,run-9,success,"2026-11-24 07:05:00+00",c2,`)
	require.Equal(t, []string{
		`(native,i1,api,production,"2026-11-24 07:10:00+00","2026-11-24 07:35:00+00","2026-11-24 07:35:00+00",run-9,,,)`,
		`(native,i2,api,production,"2026-11-24 07:50:00+00","2026-11-24 07:40:00+00",,,c2,native,run-9)`, // c2's cause resolves to run-9
		`(native,i3,web,production,"2026-11-24 08:00:00+00","2026-11-24 08:30:00+00","2026-11-24 08:30:00+00",,,,)`,
	}, inOrder["incidents"])

	t.Run("reversed", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, inOrder, run(t, postEach(reversed)))
	})
	t.Run("shuffled", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, inOrder, run(t, postEach(shuffled)))
	})
	t.Run("every message twice", func(t *testing.T) {
		t.Parallel()
		received := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
		require.Equal(t, inOrder, run(t, func(s *stack) {
			s.publishRaw(events, received)
			s.publishRaw(shuffled, received)
		}))
	})
}
