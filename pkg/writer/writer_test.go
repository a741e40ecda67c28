package writer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
	"github.com/devopstic/devopstic/pkg/writer"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestDecodeRefusesWhatCanNeverBeWritten(t *testing.T) {
	t.Parallel()
	received := nats.Header{stream.HeaderReceivedAt: {"2026-11-25T10:00:00Z"}}
	good := []byte(`{"type":"commit","pipeline_id":"api","commit_id":"a","timestamp":1795600800}`)

	set, err := writer.Decode("devopstic.events.native.commit", received, good, 42)
	require.NoError(t, err)
	require.Equal(t, uint64(42), set.Event.StreamSeq)
	require.Equal(t, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), set.Event.ReceivedAt)

	for name, tc := range map[string]struct {
		subject string
		header  nats.Header
		data    []byte
	}{
		"bad subject":      {"devopstic.events.native", received, good},
		"unknown source":   {"devopstic.events.jenkins.build", received, good},
		"no receive time":  {"devopstic.events.native.commit", nats.Header{}, good},
		"bad receive time": {"devopstic.events.native.commit", nats.Header{stream.HeaderReceivedAt: {"yesterday"}}, good},
		"invalid event":    {"devopstic.events.native.commit", received, []byte(`{"type":"commit"}`)},
		"not JSON":         {"devopstic.events.native.commit", received, []byte(`{`)},
	} {
		_, err := writer.Decode(tc.subject, tc.header, tc.data, 1)
		require.ErrorIs(t, err, writer.ErrPoison, name)
	}
}

// A native event's row id comes from its content, whatever Nats-Msg-Id it was published
// under, so the same event in the stream twice is one row; only a message of the ingest
// before ids were scoped by pipeline (its Nats-Msg-Id the client's id alone) keeps that id.
func TestDecodeRowIDIsTheContents(t *testing.T) {
	t.Parallel()
	withID := []byte(`{"id":"run-7","type":"commit","pipeline_id":"api","commit_id":"a","timestamp":1795600800}`)
	noID := []byte(`{"type":"commit","pipeline_id":"api","commit_id":"a","timestamp":1795600800}`)
	rowID := func(data []byte, msgID string) string {
		t.Helper()
		h := nats.Header{stream.HeaderReceivedAt: {"2026-11-25T10:00:00Z"}}
		if msgID != "" {
			h.Set(nats.MsgIdHdr, msgID)
		}
		set, err := writer.Decode("devopstic.events.native.commit", h, data, 1)
		require.NoError(t, err)
		return set.Event.ID
	}
	scoped := event.ScopedID("api", "run-7")
	require.Equal(t, scoped, rowID(withID, ""))
	require.Equal(t, scoped, rowID(withID, scoped))
	require.Equal(t, scoped, rowID(withID, "published-again-under-another-id"))
	require.Equal(t, "run-7", rowID(withID, "run-7"), "a message of the ingest before ids were scoped")

	hash := rowID(noID, "")
	require.True(t, strings.HasPrefix(hash, "sha256-"), hash)
	require.Equal(t, hash, rowID(noID, "published-again-under-another-id"))
}

// events returns n native events, a mix of commits and deploys shipping them.
func events(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		if i%4 == 3 {
			out[i] = fmt.Appendf(nil, `{"type":"deploy","pipeline_id":"p%d","environment":"production","commit_id":"c%d","commits":["c%d"],"timestamp":%d}`, i%50, i-1, i-2, 1795000000+i)
		} else {
			out[i] = fmt.Appendf(nil, `{"type":"commit","pipeline_id":"p%d","commit_id":"c%d","timestamp":%d}`, i%50, i, 1790000000+i)
		}
	}
	return out
}

// BenchmarkWriter drains a backlog of b.N events from JetStream into Postgres, against a
// baseline in the same run: the same events decoded and written as the writer writes a
// backlog, in full batches of the same size that queue their derivation (store.Deferred),
// derived at the end, with no stream in between. writer/direct is the cost of consuming.
func BenchmarkWriter(b *testing.B) {
	const batch = 500
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()

	b.Run("direct", func(b *testing.B) {
		st := openStore(b)
		raws := events(b.N)
		b.ResetTimer()
		sets := make([]fact.Set, 0, batch)
		for i, raw := range raws {
			e, err := event.Decode(raw, received)
			require.NoError(b, err)
			sets = append(sets, event.Facts(e, raw, received, uint64(i+1)))
			if len(sets) == batch || i == len(raws)-1 {
				require.NoError(b, st.Deferred().Write(ctx, sets))
				sets = sets[:0]
			}
		}
		_, err := st.DeriveQueued(ctx)
		require.NoError(b, err)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})

	b.Run("stream", func(b *testing.B) {
		st := openStore(b)
		n := testenv.StartNATS(b)
		nc, err := stream.ConnectAs(n.URL, "bench", n.Login(stream.RoleAdmin))
		require.NoError(b, err)
		defer nc.Close()
		js, err := jetstream.New(nc)
		require.NoError(b, err)
		_, err = stream.EnsureStream(ctx, js, stream.Config{Replicas: 1, Duplicates: time.Hour})
		require.NoError(b, err)
		pub, err := stream.NewPublisher(nc, 30*time.Second)
		require.NoError(b, err)
		var msgs []stream.Message
		for i, raw := range events(b.N) {
			msgs = append(msgs, stream.Message{Subject: "devopstic.events.native.x", ID: fmt.Sprint(i), Data: raw, ReceivedAt: received})
			if len(msgs) == 1000 {
				require.NoError(b, pub.Publish(ctx, msgs))
				msgs = nil
			}
		}
		require.NoError(b, pub.Publish(ctx, msgs))
		cons, err := stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{AckWait: 30 * time.Second, MaxAckPending: 20 * batch})
		require.NoError(b, err)

		b.ResetTimer()
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		w := writer.New(cons, st, writer.Config{BatchSize: batch, BatchWait: 50 * time.Millisecond, MaxDeliver: 5, RetryMax: time.Second},
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		go func() { done <- w.Run(runCtx) }()
		for {
			info, err := cons.Info(ctx)
			require.NoError(b, err)
			if info.NumPending == 0 && info.NumAckPending == 0 {
				// and derived what the full batches queued
				if n, err := st.Queued(ctx); err == nil && n == 0 {
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		stop()
		require.NoError(b, <-done)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

func openStore(b *testing.B) *store.Store {
	st, err := store.Open(context.Background(), testenv.Postgres(b), 4)
	require.NoError(b, err)
	b.Cleanup(st.Close)
	return st
}
