package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestNATSDownAnswers503AndAcceptsNothing(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	s.postJSON(http.StatusAccepted, `{"id":"before","type":"commit","pipeline_id":"api","commit_id":"a","timestamp":1795600000}`)

	s.nats.Stop()
	status, body := s.do("POST", "/events", "application/json", []byte(`{"id":"during","type":"commit","pipeline_id":"api","commit_id":"b","timestamp":1795600001}`))
	require.Equal(t, http.StatusServiceUnavailable, status, "%s", body)
	require.Contains(t, string(body), "nothing was accepted")
	status, _ = s.do("GET", "/readyz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, status)

	require.NoError(t, s.nats.Start())
	// The client reconnects on its own; a retrying client gets through.
	require.True(t, assertEventually(func() bool {
		status, _ := s.do("POST", "/events", "application/json", []byte(`{"id":"after","type":"commit","pipeline_id":"api","commit_id":"c","timestamp":1795600002}`))
		return status == http.StatusAccepted
	}, 30*time.Second), "POST /events never recovered after NATS came back")

	s.waitCount(1, `SELECT count(*) FROM events WHERE id = 'native:api:after'`)
	s.waitDrained()
	require.Equal(t, 0, s.count(`SELECT count(*) FROM events WHERE id = 'native:api:during'`), "a 503'd event must not be written")
	require.Equal(t, 2, s.count(`SELECT count(*) FROM events`))
}

func TestPostgresDownStillAccepts(t *testing.T) {
	t.Parallel()
	cluster, dbURL := testenv.PrivatePostgres(t)
	s := startStack(t, dbURL)

	require.NoError(t, cluster.Stop())
	for i, commit := range []string{"a", "b", "c"} {
		s.postJSON(http.StatusAccepted, fmt.Sprintf(`{"type":"commit","pipeline_id":"api","commit_id":%q,"timestamp":%d}`, commit, 1795600000+i))
	}
	status, body := s.do("GET", "/events", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, status, "%s", body)
	require.NotEmpty(t, body)

	require.NoError(t, cluster.StartAgain(context.Background()))
	s.waitCount(3, `SELECT count(*) FROM events`)
	s.waitDrained()
	status, body = s.do("GET", "/events", "", nil)
	require.Equal(t, http.StatusOK, status, "%s", body)
}

// A message that cannot be decoded goes to dead_letters at once, with its reason; the good
// messages around it land; and nothing blocks the stream.
func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", withEnv("DEVOPSTIC_WRITER_MAX_DELIVER", "2"))

	nc, err := nats.Connect(s.nats.URL, s.nats.Login(stream.RoleAdmin).Options()...)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	publish := func(subject, data string, received bool) {
		msg := nats.NewMsg(subject)
		msg.Data = []byte(data)
		if received {
			msg.Header.Set(stream.HeaderReceivedAt, time.Now().UTC().Format(time.RFC3339Nano))
		}
		_, err := js.PublishMsg(context.Background(), msg)
		require.NoError(t, err)
	}
	// Postgres refuses one pipeline name: a message that decodes but can never be written.
	_, err = s.db.Exec(context.Background(), `ALTER TABLE events ADD CONSTRAINT refuse_poison CHECK (pipeline_id <> 'poison')`)
	require.NoError(t, err)

	publish("devopstic.events.native.commit", `{"type":"commit","pipeline_id":"api","commit_id":"good1","timestamp":1795600000}`, true)
	publish("devopstic.events.native.commit", `{"type":"commit",`, true)
	publish("devopstic.events.native.commit", `{"type":"commit","pipeline_id":"api","commit_id":"x","timestamp":1}`, false)
	publish("devopstic.events.nosuchsource.thing", `{}`, true)
	publish("devopstic.events.native.commit", `{"type":"commit","pipeline_id":"poison","commit_id":"p","timestamp":1795600000}`, true)
	publish("devopstic.events.native.commit", `{"type":"commit","pipeline_id":"api","commit_id":"good2","timestamp":1795600001}`, true)

	s.waitDrained()
	require.Equal(t, 2, s.count(`SELECT count(*) FROM events`))
	rows, err := s.db.Query(context.Background(), `SELECT stream_seq, reason, deliveries FROM dead_letters ORDER BY stream_seq`)
	require.NoError(t, err)
	type letter struct {
		seq        int64
		reason     string
		deliveries int
	}
	var letters []letter
	for rows.Next() {
		var l letter
		require.NoError(t, rows.Scan(&l.seq, &l.reason, &l.deliveries))
		letters = append(letters, l)
	}
	require.NoError(t, rows.Err())
	require.Len(t, letters, 4)
	require.Equal(t, int64(2), letters[0].seq)
	require.Contains(t, letters[0].reason, "not valid JSON")
	require.Equal(t, 1, letters[0].deliveries, "an undecodable message is not retried")
	require.Contains(t, letters[1].reason, "Devopstic-Received-At")
	require.Contains(t, letters[2].reason, `unknown source "nosuchsource"`)
	require.Equal(t, int64(5), letters[3].seq)
	require.Contains(t, letters[3].reason, "refuse_poison")
	require.Equal(t, 2, letters[3].deliveries, "a refused write is retried up to DEVOPSTIC_WRITER_MAX_DELIVER deliveries")
}
