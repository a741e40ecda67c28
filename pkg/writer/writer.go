// Package writer consumes the event stream into Postgres.
//
// It pulls batches from the durable consumer, maps each message to facts, writes a batch in one
// transaction and acknowledges its messages only after the commit. A crash between commit and
// ack redelivers messages whose writes are idempotent, so nothing is doubled; a message is
// acknowledged only once it is in Postgres or in dead_letters, so nothing is lost.
//
// Failures are sorted in two: a transient one (Postgres down, a deadlock) is retried with
// backoff for as long as it lasts, holding the batch; a permanent one (a payload that does not
// decode, a value Postgres refuses) goes to dead_letters, at once when the payload cannot be
// decoded, after MaxDeliver failed deliveries otherwise.
package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
)

// Config tunes the writer.
type Config struct {
	// BatchSize is the most messages written in one transaction.
	BatchSize int
	// BatchWait is how long to wait for more messages once the first of a batch has come: the
	// added latency on a quiet stream, and what lets batches fill under load.
	BatchWait time.Duration
	// MaxDeliver is how many deliveries of a message may fail to write before it is
	// dead-lettered.
	MaxDeliver int
	// RetryMax caps the backoff between retries of a transient failure.
	RetryMax time.Duration
}

// ErrPoison marks a message that can never be written as it is.
var ErrPoison = errors.New("message cannot be written")

// Writer consumes the stream into the store.
type Writer struct {
	cons  jetstream.Consumer
	store *store.Store
	cfg   Config
	log   *slog.Logger
}

// New returns a writer for the consumer cons (see stream.EnsureConsumer).
func New(cons jetstream.Consumer, st *store.Store, cfg Config, log *slog.Logger) *Writer {
	return &Writer{cons: cons, store: st, cfg: cfg, log: log}
}

// Run consumes until ctx is done, then finishes the batch in hand (or, if Postgres is failing,
// hands it back to the stream) and returns.
func (w *Writer) Run(ctx context.Context) error {
	it, err := w.cons.Messages(jetstream.PullMaxMessages(2 * w.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("consume %s: %w", stream.ConsumerName, err)
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			// Drain stops pulling; Next still hands out what was already delivered.
			it.Drain()
		case <-stopped:
			it.Stop()
		}
	}()

	for {
		batch, err := w.collect(it)
		if len(batch) > 0 {
			w.handle(ctx, batch)
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("consume %s: %w", stream.ConsumerName, err)
		}
	}
}

// collect waits for a first message, then takes more until the batch is full or BatchWait has
// passed since the first.
func (w *Writer) collect(it jetstream.MessagesContext) ([]jetstream.Msg, error) {
	first, err := it.Next()
	if err != nil {
		return nil, err
	}
	batch := []jetstream.Msg{first}
	deadline := time.Now().Add(w.cfg.BatchWait)
	for len(batch) < w.cfg.BatchSize {
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		msg, err := it.Next(jetstream.NextMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			return batch, err
		}
		batch = append(batch, msg)
	}
	return batch, nil
}

// handle writes a batch and settles every message of it: ack, nak or dead letter.
func (w *Writer) handle(ctx context.Context, msgs []jetstream.Msg) {
	sets := make([]fact.Set, 0, len(msgs))
	decoded := make([]jetstream.Msg, 0, len(msgs))
	for _, m := range msgs {
		set, err := decodeMsg(m)
		if err != nil {
			w.deadLetter(ctx, m, err)
			continue
		}
		sets = append(sets, set)
		decoded = append(decoded, m)
	}

	err := w.retry(ctx, decoded, func(attempt context.Context) error { return w.store.Write(attempt, sets) })
	switch {
	case err == nil:
		for _, m := range decoded {
			ack(m, w.log)
		}
	case ctx.Err() != nil:
		// Shutting down while Postgres fails: give the batch back for the next writer.
		for _, m := range decoded {
			_ = m.Nak()
		}
	default:
		// One message spoils the transaction for all: find it by writing them one at a time.
		w.log.Warn("batch refused, writing its messages one by one", "messages", len(decoded), "error", err)
		for i, m := range decoded {
			w.handleOne(ctx, m, sets[i])
		}
	}
}

func (w *Writer) handleOne(ctx context.Context, m jetstream.Msg, set fact.Set) {
	err := w.retry(ctx, []jetstream.Msg{m}, func(attempt context.Context) error {
		return w.store.Write(attempt, []fact.Set{set})
	})
	switch {
	case err == nil:
		ack(m, w.log)
	case ctx.Err() != nil:
		_ = m.Nak()
	case deliveries(m) >= w.cfg.MaxDeliver:
		w.deadLetter(ctx, m, err)
	default:
		_ = m.NakWithDelay(w.backoff(deliveries(m)))
	}
}

// retry runs write until it succeeds, fails permanently, or ctx is done. While it retries a
// transient failure it tells the server the messages are still in progress, so they are not
// redelivered to another writer meanwhile.
func (w *Writer) retry(ctx context.Context, msgs []jetstream.Msg, write func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		// The attempt's context is not ctx: a batch that reached us while shutting down is
		// still written, only the waiting between retries stops.
		attemptCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := write(attemptCtx)
		cancel()
		if err == nil || !store.IsTransient(err) {
			return err
		}
		delay := w.backoff(attempt)
		if attempt == 1 || attempt%10 == 0 {
			w.log.Warn("database unavailable, retrying", "attempt", attempt, "retry_in", delay, "messages", len(msgs), "error", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped retrying: %w", err)
		case <-time.After(delay):
		}
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}

func (w *Writer) backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 16)
	return min(d, w.cfg.RetryMax)
}

// deadLetter records a message in dead_letters and terminates it. If the record cannot be
// saved, the message is handed back instead: it must be in one place or the other.
func (w *Writer) deadLetter(ctx context.Context, m jetstream.Msg, reason error) {
	meta, err := m.Metadata()
	if err != nil {
		w.log.Error("message without metadata, handing it back", "subject", m.Subject(), "error", err)
		_ = m.Nak()
		return
	}
	dl := store.DeadLetter{
		StreamSeq:  meta.Sequence.Stream,
		Subject:    m.Subject(),
		Headers:    m.Headers(),
		Data:       m.Data(),
		Reason:     reason.Error(),
		Deliveries: int(meta.NumDelivered),
		FailedAt:   time.Now().UTC(),
	}
	err = w.retry(ctx, []jetstream.Msg{m}, func(attempt context.Context) error { return w.store.SaveDeadLetter(attempt, dl) })
	if err != nil {
		w.log.Error("cannot save dead letter, handing the message back", "stream_seq", dl.StreamSeq, "error", err)
		_ = m.Nak()
		return
	}
	w.log.Warn("message dead-lettered", "stream_seq", dl.StreamSeq, "subject", dl.Subject, "deliveries", dl.Deliveries, "reason", dl.Reason)
	if err := m.Term(); err != nil {
		w.log.Warn("terminate dead-lettered message", "stream_seq", dl.StreamSeq, "error", err)
	}
}

func ack(m jetstream.Msg, log *slog.Logger) {
	// A lost ack only causes a redelivery, which changes nothing.
	if err := m.Ack(); err != nil {
		log.Warn("ack", "subject", m.Subject(), "error", err)
	}
}

func deliveries(m jetstream.Msg) int {
	meta, err := m.Metadata()
	if err != nil {
		return 1
	}
	return int(meta.NumDelivered)
}

func decodeMsg(m jetstream.Msg) (fact.Set, error) {
	meta, err := m.Metadata()
	if err != nil {
		return fact.Set{}, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	return Decode(m.Subject(), m.Headers(), m.Data(), meta.Sequence.Stream)
}

// Decode maps one stream message to the facts it contributes. It is a pure function of the
// message, so a replay maps every message exactly as the first pass did (or as the fixed code
// now does). Every error wraps ErrPoison.
func Decode(subject string, header nats.Header, data []byte, seq uint64) (fact.Set, error) {
	source, _, ok := stream.ParseSubject(subject)
	if !ok {
		return fact.Set{}, fmt.Errorf("%w: subject %q is not devopstic.events.<source>.<kind>", ErrPoison, subject)
	}
	receivedAt, err := stream.ReceivedAt(header)
	if err != nil {
		return fact.Set{}, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	switch source {
	case event.Source:
		e, err := event.Decode(data, receivedAt)
		if err != nil {
			return fact.Set{}, fmt.Errorf("%w: %w", ErrPoison, err)
		}
		return event.Facts(e, data, receivedAt, seq), nil
	default:
		return fact.Set{}, fmt.Errorf("%w: unknown source %q", ErrPoison, source)
	}
}
