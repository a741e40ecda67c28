package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/stream"
)

func TestSubjects(t *testing.T) {
	t.Parallel()
	require.Equal(t, "devopstic.events.native.deploy", stream.Subject("native", "deploy"))
	for _, tc := range []struct {
		subject      string
		source, kind string
		ok           bool
	}{
		{"devopstic.events.native.deploy", "native", "deploy", true},
		{"devopstic.events.github.pull_request", "github", "pull_request", true},
		{"devopstic.events.native", "", "", false},
		{"devopstic.events..deploy", "", "", false},
		{"other.events.native.deploy", "", "", false},
	} {
		source, kind, ok := stream.ParseSubject(tc.subject)
		require.Equal(t, tc.ok, ok, tc.subject)
		if ok {
			require.Equal(t, tc.source, source)
			require.Equal(t, tc.kind, kind)
		}
	}
}

// start runs an embedded server with the stream created; syncAlways flushes every write.
func start(tb testing.TB, syncAlways bool) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	pw, err := stream.LocalPasswords(tb.TempDir() + "/" + stream.PasswordsFile)
	require.NoError(tb, err)
	ns, err := stream.RunServer(stream.ServerConfig{StoreDir: tb.TempDir(), Host: "127.0.0.1", Port: -1, SyncAlways: syncAlways, Passwords: pw})
	require.NoError(tb, err)
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := stream.ConnectAs(ns.ClientURL(), "test", pw.As(stream.RoleAdmin))
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(tb, err)
	_, err = stream.EnsureStream(context.Background(), js, stream.Config{Replicas: 1, MaxAge: 24 * time.Hour, Duplicates: time.Hour})
	require.NoError(tb, err)
	return nc, js
}

func TestPublishDeduplicatesByID(t *testing.T) {
	t.Parallel()
	nc, js := start(t, false)
	pub, err := stream.NewPublisher(nc, 5*time.Second)
	require.NoError(t, err)
	received := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	msg := func(id string) stream.Message {
		return stream.Message{Subject: stream.Subject("native", "commit"), ID: id, Data: []byte(`{}`), ReceivedAt: received}
	}
	require.NoError(t, pub.Publish(context.Background(), []stream.Message{msg("a"), msg("b"), msg("a")}))
	require.NoError(t, pub.Publish(context.Background(), []stream.Message{msg("b")}))

	s, err := js.Stream(context.Background(), stream.StreamName)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(2), info.State.Msgs)

	stored, err := s.GetMsg(context.Background(), 1)
	require.NoError(t, err)
	got, err := stream.ReceivedAt(stored.Header)
	require.NoError(t, err)
	require.True(t, received.Equal(got))
}

func TestPublishWithoutNATSFailsFast(t *testing.T) {
	t.Parallel()
	nc, err := stream.Connect("nats://127.0.0.1:1", "test") // nothing listens there
	require.NoError(t, err)
	defer nc.Close()
	pub, err := stream.NewPublisher(nc, 5*time.Second)
	require.NoError(t, err)
	err = pub.Publish(context.Background(), []stream.Message{{Subject: stream.Subject("native", "commit"), ID: "x", Data: []byte(`{}`)}})
	require.ErrorIs(t, err, stream.ErrUnavailable)
}

// BenchmarkPublish measures what a 202 costs the stream with NATS's default flush interval
// (2 minutes) and with DEVOPSTIC_NATS_SYNC_INTERVAL=always, for requests of 1 and 100 events.
// Compare the two in the same run: sync=always / sync=2m is the price of losing nothing on
// power loss with a single server.
func BenchmarkPublish(b *testing.B) {
	payload := []byte(`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"0123456789abcdef0123456789abcdef01234567","timestamp":1795600800}`)
	for _, always := range []bool{false, true} {
		for _, size := range []int{1, 100} {
			name := fmt.Sprintf("sync=2m/events=%d", size)
			if always {
				name = fmt.Sprintf("sync=always/events=%d", size)
			}
			b.Run(name, func(b *testing.B) {
				nc, _ := start(b, always)
				pub, err := stream.NewPublisher(nc, 10*time.Second)
				require.NoError(b, err)
				msgs := make([]stream.Message, size)
				now := time.Now()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for j := range msgs {
						msgs[j] = stream.Message{Subject: stream.Subject("native", "deploy"), ID: fmt.Sprintf("%d-%d", i, j), Data: payload, ReceivedAt: now}
					}
					if err := pub.Publish(context.Background(), msgs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
