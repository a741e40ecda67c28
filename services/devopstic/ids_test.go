package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/stream"
)

// A client's id is unique within its pipeline, not across all of them: whoever holds an
// events:write key cannot make another pipeline's event vanish by sending its id first (the
// stream's duplicate window would drop the real one after its 202, silently).
func TestSameClientIDInTwoPipelinesBothCount(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	deploy := func(pipeline string) string {
		return `{"id":"deploy-1","type":"deploy","pipeline_id":"` + pipeline + `","environment":"production","commit_id":"abc","timestamp":1795600800}`
	}
	ids := func(answer []byte) []string {
		var a struct{ IDs []string }
		require.NoError(t, json.Unmarshal(answer, &a))
		return a.IDs
	}
	squatter := ids(s.postJSON(http.StatusAccepted, deploy("squatter")))
	real := ids(s.postJSON(http.StatusAccepted, deploy("shop")))
	require.NotEqual(t, squatter, real, "two pipelines, two events")
	// Within one pipeline the id still makes a retry count once.
	require.Equal(t, real, ids(s.postJSON(http.StatusAccepted, deploy("shop"))))

	s.waitDrained()
	require.Equal(t, 2, s.count(`SELECT count(*) FROM events`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events WHERE pipeline_id = 'shop' AND id = $1`, real[0]))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE pipeline_id = 'shop' AND status = 'success'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE pipeline_id = 'squatter'`))
	require.EqualValues(t, 2, s.streamMessages(), "the stream deduplicated one pipeline's event against the other's")
}

// Messages the ingest published before ids were scoped by pipeline carry the client's id alone
// as their Nats-Msg-Id, and their rows have it as events.id. A replay or a rebuild maps them to
// the same rows again, never to a second copy under the new id.
func TestOldIDsKeepTheirRowsOnReplayAndRebuild(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	old := []string{
		`{"id":"deploy-7","type":"deploy","pipeline_id":"shop","environment":"production","commit_id":"abc","timestamp":1795600800}`,
		`{"id":"commit-7","type":"commit","pipeline_id":"shop","commit_id":"abc","timestamp":1795600000}`,
		`{"type":"commit","pipeline_id":"shop","commit_id":"def","timestamp":1795600001}`,
	}
	var msgs []stream.Message
	for _, raw := range old {
		e, err := event.Decode([]byte(raw), received)
		require.NoError(t, err)
		id := e.ID
		if e.ClientID != "" {
			id = e.ClientID // as the ingest published it then
		}
		msgs = append(msgs, stream.Message{Subject: stream.Subject(event.Source, e.Type), ID: id, Data: []byte(raw), ReceivedAt: received})
	}
	publish(t, s.nats, msgs)
	s.waitDrained()
	const ids = `SELECT count(*) FROM events WHERE id IN ('deploy-7', 'commit-7') OR id LIKE 'sha256-%'`
	require.Equal(t, 3, s.count(ids))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE deployment_key = 'deploy-7' AND event_id = 'deploy-7'`))
	want := fullDump(t, s.db)

	for _, args := range [][]string{{"replay", "--from", "1"}, {"rebuild"}, {"rebuild", "--from-stream"}} {
		_, err := s.admin(args...)
		require.NoError(t, err, "%v", args)
		compareDumps(t, args[0]+" of messages with old ids", want, fullDump(t, s.db))
		require.Equal(t, 3, s.count(ids))
	}

	// Rows written before migration 0003 kept no headers: rebuilt from the table, they keep
	// their id too.
	_, err := s.db.Exec(context.Background(), `UPDATE events SET headers = NULL`)
	require.NoError(t, err)
	_, err = s.admin("rebuild")
	require.NoError(t, err)
	require.Equal(t, 3, s.count(ids))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE deployment_key = 'deploy-7' AND event_id = 'deploy-7'`))
}
