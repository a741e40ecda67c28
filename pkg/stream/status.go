package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// State is the stream's state and retention. The JSON is that of `devopstic status --json`.
type State struct {
	Messages  uint64    `json:"messages"`
	Bytes     uint64    `json:"bytes"`
	FirstSeq  uint64    `json:"first_seq"`
	FirstTime time.Time `json:"first_time"`
	LastSeq   uint64    `json:"last_seq"`
	LastTime  time.Time `json:"last_time"`
	MaxAge    string    `json:"max_age"`
	MaxBytes  int64     `json:"max_bytes"`
	Replicas  int       `json:"replicas"`
}

// Lag is how far the writers' durable consumer is behind the stream.
type Lag struct {
	NumPending     uint64 `json:"num_pending"`
	NumAckPending  int    `json:"num_ack_pending"`
	NumRedelivered int    `json:"num_redelivered"`
	DeliveredSeq   uint64 `json:"delivered_seq"`
	AckFloorSeq    uint64 `json:"ack_floor_seq"`
}

// Inspect reads the stream's state and the writers' lag. The lag is nil when no writer has
// started yet (there is no consumer). On an error reading the consumer, the state is returned
// with it.
func Inspect(ctx context.Context, js jetstream.JetStream) (*State, *Lag, error) {
	str, err := js.Stream(ctx, StreamName)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	st := info.State
	state := &State{Messages: st.Msgs, Bytes: st.Bytes, FirstSeq: st.FirstSeq, FirstTime: st.FirstTime,
		LastSeq: st.LastSeq, LastTime: st.LastTime, MaxAge: info.Config.MaxAge.String(), MaxBytes: info.Config.MaxBytes,
		Replicas: info.Config.Replicas}
	cons, err := str.Consumer(ctx, ConsumerName)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return state, nil, nil
	}
	if err != nil {
		return state, nil, fmt.Errorf("consumer %s: %w", ConsumerName, err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return state, nil, fmt.Errorf("consumer %s: %w", ConsumerName, err)
	}
	return state, &Lag{NumPending: ci.NumPending, NumAckPending: ci.NumAckPending, NumRedelivered: ci.NumRedelivered,
		DeliveredSeq: ci.Delivered.Stream, AckFloorSeq: ci.AckFloor.Stream}, nil
}
