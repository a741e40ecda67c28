// Package stream is DevOpstic's NATS JetStream side: the stream and its subjects, the writer's
// durable consumer, publishing with acknowledgements, and the embedded server used by the
// all-in-one command and the tests.
//
// The stream DEVOPSTIC_EVENTS is the source of truth. Every message is one event as its source
// said it, on devopstic.events.<source>.<kind>, with the receive time in a header and the
// event id as Nats-Msg-Id, so that a retried publish inside the duplicate window is dropped.
package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names on the NATS side.
const (
	StreamName    = "DEVOPSTIC_EVENTS"
	SubjectPrefix = "devopstic.events"
	ConsumerName  = "writer"

	// HeaderReceivedAt carries the time the ingest received the event (RFC 3339, nanoseconds).
	HeaderReceivedAt = "Devopstic-Received-At"
)

// Subject is the subject of an event of a source (native, github, ...) and kind.
func Subject(source, kind string) string {
	return SubjectPrefix + "." + source + "." + kind
}

// ParseSubject splits a subject made by Subject.
func ParseSubject(subject string) (source, kind string, ok bool) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return "", "", false
	}
	source, kind, ok = strings.Cut(rest, ".")
	return source, kind, ok && source != "" && kind != ""
}

// Config shapes the stream.
type Config struct {
	// Replicas is 1 on one server, 3 on a production cluster.
	Replicas int
	// MaxAge is how long messages are kept; replay can rebuild only what is still there.
	MaxAge time.Duration
	// MaxBytes caps the stream's size; -1 for no cap. The oldest messages go first.
	MaxBytes int64
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped.
	Duplicates time.Duration
}

// EnsureStream creates the stream, or updates it to cfg when it exists.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, Spec(cfg))
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", StreamName, err)
	}
	return s, nil
}

// Spec is the JetStream configuration of the stream shaped by cfg. The benchmarks measure
// JetStream's ceiling on a stream of the same Spec under another name.
func Spec(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "DevOpstic events, as their sources sent them",
		Subjects:    []string{SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    max(cfg.Replicas, 1),
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cmpNonZero(cfg.MaxBytes, -1),
		Duplicates:  cfg.Duplicates,
	}
}

func cmpNonZero(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

// ConsumerConfig shapes the writer's durable consumer.
type ConsumerConfig struct {
	// AckWait is how long a delivered message may stay unacknowledged before redelivery. The
	// writer extends it while it retries a batch.
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet acknowledged, across writers.
	MaxAckPending int
}

// EnsureConsumer creates the writer's durable pull consumer, or updates it to cfg.
//
// MaxDeliver is left unlimited on purpose: the writer itself dead-letters a message after it
// failed a bounded number of deliveries (with the reason). A server-side limit would instead
// stop delivering a message that a crashing writer never got to judge, and lose it silently.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "writes events into Postgres",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: cfg.MaxAckPending,
		FilterSubject: SubjectPrefix + ".>",
	})
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s: %w", ConsumerName, err)
	}
	return c, nil
}

// Connect dials NATS and keeps reconnecting forever: the services outlive NATS restarts.
// While it is reconnecting, publishes fail instead of being buffered.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Start even when NATS is not up yet; callers wait for the stream (service.EnsureStream).
		nats.RetryOnFailedConnect(true),
		// No client-side buffer while reconnecting: a publish made then fails at once. With
		// the default 8 MB buffer it would wait there, time out into a 503, and still reach
		// the stream once the connection came back: an event the client was told to retry
		// would be accepted behind its back.
		nats.ReconnectBufSize(-1),
	}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// ErrUnavailable means the stream could not take the messages now; the client should retry.
var ErrUnavailable = errors.New("event stream unavailable")

// Message is one event to publish.
type Message struct {
	Subject    string
	ID         string // Nats-Msg-Id
	Data       []byte
	ReceivedAt time.Time
	// Header holds the source's headers that matter (a webhook's event name, ...).
	Header nats.Header
}

// Publisher publishes messages and waits for the stream to have every one of them.
type Publisher struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration
}

// NewPublisher publishes over nc; a publish not acknowledged within timeout fails.
func NewPublisher(nc *nats.Conn, timeout time.Duration) (*Publisher, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	return &Publisher{nc: nc, js: js, timeout: timeout}, nil
}

// Publish sends every message and returns once the stream has acknowledged all of them. An
// error wraps ErrUnavailable: some messages may have been stored, and publishing the same
// messages again is safe because their ids are deduplicated.
func (p *Publisher) Publish(ctx context.Context, msgs []Message) error {
	if !p.nc.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, p.nc.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Data
		for k, v := range m.Header {
			msg.Header[k] = v
		}
		msg.Header.Set(HeaderReceivedAt, m.ReceivedAt.UTC().Format(time.RFC3339Nano))
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(m.ID), jetstream.WithExpectStream(StreamName))
		if err != nil {
			return fmt.Errorf("%w: publish %s: %w", ErrUnavailable, m.Subject, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case <-ctx.Done():
			return fmt.Errorf("%w: no acknowledgement within %s: %w", ErrUnavailable, p.timeout, ctx.Err())
		}
	}
	return nil
}

// ReceivedAt reads the receive time a message was published with.
func ReceivedAt(h nats.Header) (time.Time, error) {
	v := h.Get(HeaderReceivedAt)
	if v == "" {
		return time.Time{}, fmt.Errorf("message has no %s header", HeaderReceivedAt)
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("header %s: %w", HeaderReceivedAt, err)
	}
	return t, nil
}
