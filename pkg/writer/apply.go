package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/store"
)

// Msg is a stream message as the writer's code needs it, however it was fetched: from the
// writer's durable consumer, a replay's ordered consumer, a dead letter, or a row of the events
// table being rebuilt.
type Msg struct {
	Subject string
	Header  nats.Header
	Data    []byte
	Seq     uint64
}

// Sink receives the facts: the store's live tables, or the fresh tables of a rebuild.
type Sink interface {
	Write(ctx context.Context, sets []fact.Set) error
}

// ErrStopped marks a message left unwritten because the context ended while its write was
// being retried.
var ErrStopped = errors.New("stopped before the write succeeded")

// Applier maps messages to facts and writes them: the one code path behind the writer, replay,
// rebuild and dead-letter retry, so that each of them writes exactly what the others would.
type Applier struct {
	// Sink receives the facts; Store keeps the dead letters (and is the Sink unless one is set).
	Sink  Sink
	Store *store.Store
	// RetryMax caps the backoff between retries of a transient failure.
	RetryMax time.Duration
	Log      *slog.Logger
	// Retries counts the retries of a transient failure; nil counts nothing.
	Retries prometheus.Counter
}

func (a *Applier) sink() Sink {
	if a.Sink != nil {
		return a.Sink
	}
	return a.Store
}

// Apply decodes msgs and writes them in one transaction, retrying a transient failure
// (Postgres down, a deadlock) with backoff until it succeeds or ctx is done. When the
// transaction is refused, it writes the messages one at a time to find the culprits. It returns
// one error per message: nil when written; one wrapping ErrPoison when the message cannot be
// decoded; one wrapping ErrStopped when ctx ended first; otherwise the database's refusal.
// keepAlive, when not nil, is called between retries (the writer tells the server that its
// messages are still in progress).
func (a *Applier) Apply(ctx context.Context, msgs []Msg, keepAlive func()) []error {
	errs := make([]error, len(msgs))
	sets := make([]fact.Set, 0, len(msgs))
	index := make([]int, 0, len(msgs))
	for i, m := range msgs {
		set, err := Decode(m.Subject, m.Header, m.Data, m.Seq)
		if err != nil {
			errs[i] = err
			continue
		}
		sets = append(sets, set)
		index = append(index, i)
	}
	if len(sets) == 0 {
		return errs
	}

	err := a.retry(ctx, len(sets), keepAlive, func(attempt context.Context) error { return a.sink().Write(attempt, sets) })
	if err == nil || errors.Is(err, ErrStopped) || len(sets) == 1 {
		for _, i := range index {
			errs[i] = err
		}
		return errs
	}
	// One message spoils the transaction for all: find it by writing them one at a time.
	a.Log.Warn("batch refused, writing its messages one by one", "messages", len(sets), "error", err)
	for j, i := range index {
		errs[i] = a.retry(ctx, 1, keepAlive, func(attempt context.Context) error {
			return a.sink().Write(attempt, sets[j:j+1])
		})
	}
	return errs
}

// SaveDeadLetter records a message that will not be retried, retrying while Postgres is down.
func (a *Applier) SaveDeadLetter(ctx context.Context, dl store.DeadLetter, keepAlive func()) error {
	return a.retry(ctx, 1, keepAlive, func(attempt context.Context) error { return a.Store.SaveDeadLetter(attempt, dl) })
}

// retry runs write until it succeeds, fails permanently, or ctx is done.
func (a *Applier) retry(ctx context.Context, messages int, keepAlive func(), write func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		// The attempt's context is not ctx: a batch that reached us while shutting down is
		// still written, only the waiting between retries stops.
		attemptCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := write(attemptCtx)
		cancel()
		if err == nil || !store.IsTransient(err) {
			return err
		}
		if a.Retries != nil {
			a.Retries.Inc()
		}
		delay := backoff(attempt, a.RetryMax)
		if attempt == 1 || attempt%10 == 0 {
			a.Log.Warn("database unavailable, retrying", "attempt", attempt, "retry_in", delay, "messages", messages, "error", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrStopped, err)
		case <-time.After(delay):
		}
		if keepAlive != nil {
			keepAlive()
		}
	}
}

func backoff(attempt int, ceiling time.Duration) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 16)
	return min(d, ceiling)
}
