package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// A stream slower than the asynchronous publisher (its window full for longer than the
// library's 200 ms stall wait) slows the ceiling down; it does not end the run. The stream
// here is a responder on a real NATS server that acknowledges each message 300 ms late.
func TestAsyncPublishSurvivesAStall(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL, n.Login(stream.RoleAdmin).Options()...)
	require.NoError(t, err)
	defer nc.Close()
	var seq atomic.Int64
	sub, err := nc.Subscribe(ceilingSubject, func(m *nats.Msg) {
		ack := fmt.Sprintf(`{"stream":%q,"seq":%d}`, ceilingStream, seq.Add(1))
		time.AfterFunc(300*time.Millisecond, func() { _ = m.Respond([]byte(ack)) })
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()

	res, err := asyncPublish(context.Background(), nc, 8, time.Second, []byte(`{}`), "stall")
	require.NoError(t, err)
	require.GreaterOrEqual(t, res.events, 16, "more than one window was published")
	require.Equal(t, int64(res.events), seq.Load(), "every counted message was acknowledged")
}
