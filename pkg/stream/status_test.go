package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/stream"
)

// Inspect tells the stream's state and retention, no lag before a writer has started, then the
// writers' lag as they take and acknowledge messages; a missing stream is an error that says so.
func TestInspect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nc, js := start(t, false)
	state, lag, err := stream.Inspect(ctx, js)
	require.NoError(t, err)
	require.Nil(t, lag, "no consumer yet")
	require.Equal(t, stream.State{MaxAge: "24h0m0s", MaxBytes: -1, Replicas: 1}, *state)

	pub, err := stream.NewPublisher(nc, 5*time.Second)
	require.NoError(t, err)
	var msgs []stream.Message
	for i := range 3 {
		msgs = append(msgs, stream.Message{Subject: stream.Subject("native", "commit"), ID: fmt.Sprint(i), Data: []byte(`{}`), ReceivedAt: time.Now()})
	}
	require.NoError(t, pub.Publish(ctx, msgs))
	cons, err := stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{AckWait: time.Minute, MaxAckPending: 10})
	require.NoError(t, err)
	state, lag, err = stream.Inspect(ctx, js)
	require.NoError(t, err)
	require.Equal(t, uint64(3), state.Messages)
	require.Equal(t, uint64(1), state.FirstSeq)
	require.Equal(t, uint64(3), state.LastSeq)
	require.Positive(t, state.Bytes)
	require.False(t, state.LastTime.Before(state.FirstTime))
	require.Equal(t, stream.Lag{NumPending: 3}, *lag)

	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	require.Len(t, got, 2)
	require.NoError(t, got[0].DoubleAck(ctx))
	_, lag, err = stream.Inspect(ctx, js)
	require.NoError(t, err)
	require.Equal(t, stream.Lag{NumPending: 1, NumAckPending: 1, DeliveredSeq: 2, AckFloorSeq: 1}, *lag)

	require.NoError(t, js.DeleteStream(ctx, stream.StreamName))
	state, lag, err = stream.Inspect(ctx, js)
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	require.ErrorContains(t, err, "stream "+stream.StreamName)
	require.Nil(t, state)
	require.Nil(t, lag)
}
