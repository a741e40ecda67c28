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

// Why a publish failed. Only ErrUnavailable is worth retrying as it is.
var (
	// ErrUnavailable means the stream could not take the messages now; the client should retry.
	ErrUnavailable = errors.New("event stream unavailable")
	// ErrTooLarge means a message is larger than the NATS server takes (its max_payload):
	// retrying it can never succeed. Nothing was published.
	ErrTooLarge = errors.New("event too large for the event stream")
)

// HeaderRoom is what a message's headers may take on top of its body: the receive time, the
// message id (a client id scoped by its pipeline, up to ~900 bytes), a webhook's delivery
// headers and mapping options (a few KiB). The NATS server's max_payload must be at least the
// HTTP body limit plus HeaderRoom, so that every body the ingest takes fits a message
// (CheckBodyLimit); the embedded server is configured so (ServerConfig.MaxPayload).
const HeaderRoom = 32 << 10

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

// CheckBodyLimit reports whether every body of up to bodyLimit bytes fits a message of the NATS
// server nc is connected to, with HeaderRoom for its headers. The ingest checks it at start, so
// that a body it takes is never one the stream refuses. A connection that never reached a
// server knows no max_payload: nothing to check yet (Publish still refuses what does not fit).
func (p *Publisher) CheckBodyLimit(bodyLimit int) error {
	maxPayload := p.nc.MaxPayload()
	if maxPayload == 0 || int64(bodyLimit)+HeaderRoom <= maxPayload {
		return nil
	}
	return fmt.Errorf("bodies of up to %d bytes need messages of up to %d bytes (%d for headers), and the NATS server at %s "+
		"takes at most %d (its max_payload): raise max_payload to at least %d, or lower the body limit to at most %d",
		bodyLimit, int64(bodyLimit)+HeaderRoom, HeaderRoom, p.nc.ConnectedUrlRedacted(), maxPayload,
		int64(bodyLimit)+HeaderRoom, maxPayload-HeaderRoom)
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
// error wrapping ErrUnavailable means some messages may have been stored, and publishing the
// same messages again is safe because their ids are deduplicated. One wrapping ErrTooLarge
// means a message can never fit; it is found before anything is published. Any other error is
// a refusal that retrying will not change (a misconfigured stream).
func (p *Publisher) Publish(ctx context.Context, msgs []Message) error {
	if !p.nc.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, p.nc.Status())
	}
	out := make([]*nats.Msg, len(msgs))
	maxPayload := p.nc.MaxPayload()
	for i, m := range msgs {
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Data
		for k, v := range m.Header {
			msg.Header[k] = v
		}
		msg.Header.Set(HeaderReceivedAt, m.ReceivedAt.UTC().Format(time.RFC3339Nano))
		msg.Header.Set(jetstream.MsgIDHeader, m.ID)
		msg.Header.Set(jetstream.ExpectedStreamHeader, StreamName)
		// All or nothing: a batch holding one message too large publishes none.
		if size := messageSize(msg); size > maxPayload {
			which := ""
			if len(msgs) > 1 {
				which = fmt.Sprintf(" (event %d of %d)", i+1, len(msgs))
			}
			return fmt.Errorf("%w: the event%s is %d bytes with its headers; the event stream takes messages of at most %d bytes (NATS max_payload)",
				ErrTooLarge, which, size, maxPayload)
		}
		out[i] = msg
	}

	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, msg := range out {
		f, err := p.js.PublishMsgAsync(msg)
		if err != nil {
			return publishError(fmt.Errorf("publish %s: %w", msg.Subject, err), maxPayload)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return publishError(err, maxPayload)
		case <-ctx.Done():
			return fmt.Errorf("%w: no acknowledgement within %s: %w", ErrUnavailable, p.timeout, ctx.Err())
		}
	}
	return nil
}

// publishError sorts a publish failure: too large (the server's max_payload shrank since it was
// read, or the stream caps its messages), refused (the stream answered no, and will again), or
// unavailable (anything else: connection, timeout, no stream, the server busy or short of
// resources), which alone a client should retry.
func publishError(err error, maxPayload int64) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: the event stream takes messages of at most %d bytes (NATS max_payload): %w", ErrTooLarge, maxPayload, err)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500,
		errors.Is(err, nats.ErrBadSubject), errors.Is(err, nats.ErrHeadersNotSupported):
		return fmt.Errorf("the event stream refused the message: %w", err)
	default:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// messageSize is what NATS counts against max_payload: the data and the header block
// ("NATS/1.0\r\n", a "Key: value\r\n" line per value, "\r\n"), as nats.go encodes it.
func messageSize(msg *nats.Msg) int64 {
	size := len(msg.Data) + len("NATS/1.0\r\n\r\n")
	for k, vs := range msg.Header {
		for _, v := range vs {
			size += len(k) + len(": \r\n") + len(v)
		}
	}
	return int64(size)
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
