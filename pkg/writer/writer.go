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
//
// A batch derives the facts that depend on what it wrote (migrations 0009 and 0012) in its
// own transaction, unless it is full: then the writer is behind, and it queues the derivation
// instead (store.Deferred), to derive the queue in one pass once it has caught up (a batch
// that is not full, or a quiet moment) or, while it stays behind, every DeriveEvery. A change
// that several batches of a backlog touch is then derived once, not once per batch; readers
// see the derived figures lag the base facts by as much as the writer lags the stream.
//
// Mapping and writing live in Applier (apply.go), which replay, rebuild and dead-letter retry
// share with the writer; the writer itself only fetches and settles messages.
package writer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/alertmanager"
	"github.com/devopstic/devopstic/pkg/cdevents"
	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/gitlab"
	"github.com/devopstic/devopstic/pkg/pagerduty"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/webhook"
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
	// Metrics counts what the writer does; nil counts nothing.
	Metrics *Metrics
}

// ErrPoison marks a message that can never be written as it is.
var ErrPoison = errors.New("message cannot be written")

// DeriveEvery is how often a writer that stays behind derives what its full batches queued.
const DeriveEvery = 30 * time.Second

// Writer consumes the stream into the store.
type Writer struct {
	cons     jetstream.Consumer
	apply    *Applier // derives in each batch's transaction
	deferred *Applier // queues the derivation (full batches)
	store    *store.Store
	cfg      Config
	log      *slog.Logger

	// owed is set when the derivation queue may hold keys: after a full batch, and at start
	// (a crash, a replay or another writer may have left some).
	owed bool
	// nextDerive is the earliest time to derive the queue while behind; retryAt, after a
	// failure to derive (Postgres down), the earliest time to try again at all.
	nextDerive, retryAt time.Time
}

// New returns a writer for the consumer cons (see stream.EnsureConsumer).
func New(cons jetstream.Consumer, st *store.Store, cfg Config, log *slog.Logger) *Writer {
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	apply := Applier{Store: st, RetryMax: cfg.RetryMax, Log: log, Retries: cfg.Metrics.Retries}
	deferred := apply
	deferred.Sink = st.Deferred()
	return &Writer{cons: cons, apply: &apply, deferred: &deferred, store: st, cfg: cfg, log: log,
		owed: true, nextDerive: time.Now().Add(DeriveEvery)}
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
		caughtUp, now := len(batch) < w.cfg.BatchSize, time.Now()
		if w.owed && err == nil && !now.Before(w.retryAt) && (caughtUp || !now.Before(w.nextDerive)) {
			w.derive(ctx)
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if errors.Is(err, jetstream.ErrNoHeartbeat) {
			// The server's idle heartbeats went missing (a network blip, or this process
			// starved of CPU). The iterator forgets its pull and issues a new one; what was
			// delivered and not acked comes back after AckWait. Not a reason to stop.
			w.log.Warn("no heartbeat from NATS; pulling again", "error", err)
			continue
		}
		if err != nil {
			return fmt.Errorf("consume %s: %w", stream.ConsumerName, err)
		}
	}
}

// collect waits for a first message, then takes more until the batch is full or BatchWait has
// passed since the first. While derivation is owed it waits BatchWait at most for the first,
// and returns no batch when none came: a quiet moment to derive.
func (w *Writer) collect(it jetstream.MessagesContext) ([]jetstream.Msg, error) {
	var opts []jetstream.NextOpt
	if w.owed {
		opts = append(opts, jetstream.NextMaxWait(max(w.cfg.BatchWait, 10*time.Millisecond)))
	}
	first, err := it.Next(opts...)
	if w.owed && errors.Is(err, nats.ErrTimeout) {
		return nil, nil
	}
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
func (w *Writer) handle(ctx context.Context, batch []jetstream.Msg) {
	w.cfg.Metrics.fetched(batch)
	defer w.cfg.Metrics.settled()
	msgs := make([]jetstream.Msg, 0, len(batch))
	in := make([]Msg, 0, len(batch))
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			// It could not even be dead-lettered without its sequence: hand it back.
			w.log.Error("message without metadata, handing it back", "subject", m.Subject(), "error", err)
			_ = m.Nak()
			continue
		}
		msgs = append(msgs, m)
		in = append(in, Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), Seq: meta.Sequence.Stream})
	}
	// While Postgres is down the batch is held and retried; tell the server it is still in
	// progress, so it is not redelivered to another writer meanwhile.
	keepAlive := func() {
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
	apply := w.apply
	if len(batch) == w.cfg.BatchSize && w.cfg.BatchSize > 1 {
		// Behind: queue the derivation, and derive once caught up (see the package comment).
		apply, w.owed = w.deferred, true
		w.cfg.Metrics.Deferred.Inc()
	}
	for i, err := range apply.Apply(ctx, in, keepAlive) {
		m := msgs[i]
		switch {
		case err == nil:
			ack(m, w.log)
			w.cfg.Metrics.Written.Inc()
		case errors.Is(err, ErrPoison):
			w.deadLetter(ctx, m, err)
		case errors.Is(err, ErrStopped):
			// Shutting down while Postgres fails: give the message back for the next writer.
			_ = m.Nak()
		case deliveries(m) >= w.cfg.MaxDeliver:
			w.deadLetter(ctx, m, err)
		default:
			_ = m.NakWithDelay(backoff(deliveries(m), w.cfg.RetryMax))
		}
	}
}

// derive derives what full batches (or anything else) queued. A failure (Postgres down) leaves
// the queue as it is, to be tried again five seconds later; the base facts are written.
func (w *Writer) derive(ctx context.Context) {
	began := time.Now()
	n, err := w.store.DeriveQueued(ctx)
	w.cfg.Metrics.Derived.Add(float64(n))
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("cannot derive the queued facts yet", "error", err)
		}
		w.retryAt = time.Now().Add(5 * time.Second)
		return
	}
	if n > 0 {
		w.log.Info("derived the queued facts", "keys", n, "took", time.Since(began).Round(time.Millisecond))
	}
	w.owed, w.nextDerive = false, time.Now().Add(DeriveEvery)
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
	err = w.apply.SaveDeadLetter(ctx, dl, func() { _ = m.InProgress() })
	if err != nil {
		w.log.Error("cannot save dead letter, handing the message back", "stream_seq", dl.StreamSeq, "error", err)
		_ = m.Nak()
		return
	}
	w.cfg.Metrics.DeadLettered.Inc()
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

// webhooks are the decoders of the webhook sources, by the source their subjects name: a
// source's package maps its deliveries, and a line here has the writer (and every replay) use it.
var webhooks = map[string]webhook.Decoder{
	github.Source:       github.Decode,
	gitlab.Source:       gitlab.Decode,
	pagerduty.Source:    pagerduty.Decode,
	alertmanager.Source: alertmanager.Decode,
	cdevents.Source:     cdevents.Decode,
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
	if source == event.Source {
		return decodeNative(header, data, receivedAt, seq)
	}
	decode, ok := webhooks[source]
	if !ok {
		return fact.Set{}, fmt.Errorf("%w: unknown source %q", ErrPoison, source)
	}
	set, err := decode(webhook.Header(header), data)
	if err != nil {
		return fact.Set{}, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	return webhookSet(set, header, data, receivedAt, seq), nil
}

// decodeNative maps a native event.
func decodeNative(header nats.Header, data []byte, receivedAt time.Time, seq uint64) (fact.Set, error) {
	e, err := event.Decode(data, receivedAt)
	if err != nil {
		return fact.Set{}, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	// A row's id is a function of the message's content (the client's id scoped by its
	// pipeline, or a hash), never of how it was published: the same event sent again under
	// another Nats-Msg-Id (past the duplicate window, by another publisher) is the same row.
	// One exception keeps replays from doubling rows: a message published before client ids
	// were scoped carries the client's id alone as its Nats-Msg-Id, and keeps the row it has
	// always had under that id.
	if e.ClientID != "" && header.Get(nats.MsgIdHdr) == e.ClientID {
		e.ID = e.ClientID
	}
	set := event.Facts(e, data, receivedAt, seq)
	set.Event.Headers = header
	return set, nil
}

// webhookSet completes the facts a webhook parser mapped with what the message knows: the
// event's id (the Nats-Msg-Id the ingest derived from the delivery), receive time and sequence.
func webhookSet(set fact.Set, header nats.Header, data []byte, receivedAt time.Time, seq uint64) fact.Set {
	id := header.Get(nats.MsgIdHdr)
	if id == "" {
		sum := sha256.Sum256(data)
		id = set.Event.Source + ":sha256-" + hex.EncodeToString(sum[:16])
	}
	set.Event.ID = id
	set.Event.ReceivedAt = receivedAt.UTC()
	set.Event.StreamSeq = seq
	set.Event.Headers = header
	if set.Event.OccurredAt.IsZero() {
		set.Event.OccurredAt, set.Event.TimeInferred = receivedAt.UTC(), true
	}
	for i := range set.Deployments {
		set.Deployments[i].EventID = id
	}
	return set
}
