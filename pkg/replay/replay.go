// Package replay applies history again through the writer's code (writer.Applier): a range of
// the stream (devopstic replay), or everything, from the stream or from the events table, into
// fresh tables that are swapped in at once (devopstic rebuild).
//
// Replaying is safe while the writer runs, because every write is an idempotent, commutative
// upsert: a message applied twice, or by two processes at once, changes nothing the second time.
// A replay keeps a checkpoint (the last stream sequence applied) in replay_checkpoints, so the
// same command run again after Ctrl-C resumes where it stopped.
package replay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/writer"
)

// Bound is one end of a range: a stream sequence or a time (when the stream stored the
// message). The zero Bound is open.
type Bound struct {
	Seq  uint64
	Time time.Time
}

// ParseBound reads a stream sequence (digits) or an RFC 3339 time.
func ParseBound(s string) (Bound, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Bound{}, nil
	}
	if seq, err := strconv.ParseUint(s, 10, 64); err == nil {
		if seq == 0 {
			return Bound{}, errors.New("stream sequences start at 1")
		}
		return Bound{Seq: seq}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Bound{}, fmt.Errorf("%q is neither a stream sequence nor an RFC 3339 time such as 2026-11-25T10:00:00Z", s)
	}
	return Bound{Time: t.UTC()}, nil
}

func (b Bound) String() string {
	switch {
	case b.Seq > 0:
		return strconv.FormatUint(b.Seq, 10)
	case !b.Time.IsZero():
		return b.Time.Format(time.RFC3339Nano)
	}
	return ""
}

// Range is what to replay: From to To (both included), on Subjects.
type Range struct {
	From, To Bound
	// Subjects filter the stream (wildcards allowed); nil means every event subject.
	Subjects []string
}

func (r Range) subjects() []string {
	if len(r.Subjects) == 0 {
		return []string{stream.SubjectPrefix + ".>"}
	}
	return r.Subjects
}

// Name identifies the range in replay_checkpoints: the same command gets the same name.
func (r Range) Name() string {
	to := r.To.String()
	if to == "" {
		to = "end"
	}
	return fmt.Sprintf("from=%s to=%s subjects=%s", r.From, to, strings.Join(r.subjects(), ","))
}

// Options tune a replay.
type Options struct {
	// BatchSize is the most messages applied in one transaction.
	BatchSize int
	// DeriveEvery is how many messages a replay into the live tables applies between two
	// derivations of what they touched (0: DefaultDeriveEvery). The derived figures lag the
	// replay by at most that many messages; fewer derivations derive each change fewer times.
	DeriveEvery int
	// Checkpoint keeps the replay's progress in replay_checkpoints and resumes from it;
	// Restart ignores a checkpoint left by an interrupted run.
	Checkpoint, Restart bool
	// Progress receives a progress line (nil: none); Terminal redraws it in place.
	Progress io.Writer
	Terminal bool

	// derive is told of every batch applied (Stream sets it).
	derive func(ctx context.Context, applied int) error
}

// analyzeAfter is how many messages a replay applies before its tables' statistics are worth
// refreshing: before its first derivation (a replay into a new database derived 150,000 keys of
// a pipeline with many incidents in 36 s with none, 4.5 s after an ANALYZE), and at its end,
// for the readers' plans.
const analyzeAfter = 10_000

// deriver derives what a replay's deferred writes queued, every so many messages.
type deriver struct {
	store    *store.Store
	every    int
	pending  int // messages applied since the last derivation
	applied  int // in all
	analyzed bool
	progress io.Writer
	derived  int64         // keys derived in all
	took     time.Duration // deriving them, and analyzing the tables
}

// maybe counts applied messages and derives when every of them have been applied since the
// last time.
func (d *deriver) maybe(ctx context.Context, applied int) error {
	d.pending += applied
	d.applied += applied
	if d.pending < d.every {
		return nil
	}
	return d.now(ctx)
}

// now derives everything queued (also what an interrupted replay left queued), after an
// ANALYZE the first time after many messages.
func (d *deriver) now(ctx context.Context) error {
	began := time.Now()
	if !d.analyzed && d.applied >= analyzeAfter {
		if err := d.store.Analyze(ctx); err != nil {
			return err
		}
		d.analyzed = true
	}
	n, err := d.store.DeriveQueued(ctx)
	d.derived += n
	d.took += time.Since(began)
	if err != nil {
		return err
	}
	if d.progress != nil && n > 0 {
		fmt.Fprintf(d.progress, "derived %d commits, deployments and incidents the replay touched in %s\n", n, time.Since(began).Round(time.Millisecond))
	}
	d.pending = 0
	return nil
}

// Summary is what a replay did.
type Summary struct {
	Name             string
	StartSeq, EndSeq uint64        // the range of stream sequences it covered
	LastSeq          uint64        // the last one applied (or dead-lettered)
	Resumed          bool          // it went on from an interrupted run's checkpoint
	Messages         int64         // messages applied or dead-lettered, this run and the runs it resumed
	DeadLettered     int64         // of them, the ones that went to dead_letters
	Derived          int64         // keys (commits, deployment attempts, incidents) derived
	Deriving         time.Duration // deriving them, and analyzing the tables
	Elapsed          time.Duration // derivation included
	// Gone is how many messages at the start of the range the stream no longer holds
	// (retention): rebuild from the events table covers them.
	Gone uint64
}

// ErrInterrupted means the context ended before the replay finished; its checkpoint is saved.
var ErrInterrupted = errors.New("replay interrupted")

// DefaultDeriveEvery is Options.DeriveEvery's default.
const DefaultDeriveEvery = 100_000

// Stream applies the messages of rng through ap, in stream order, in batches: each batch in one
// transaction, its poison or refused messages to dead_letters. The range ends at the stream's
// last message when it starts (or at rng.To), so a replay finishes while events keep coming.
//
// Into the live tables (ap.Sink nil), batches defer derivation (store.Deferred), and the
// replay derives what they touched every opts.DeriveEvery messages and when it ends, however
// it ends: a change touched by many batches is derived once per round rather than once per
// batch. Into another sink (a rebuild), deriving is the sink's business.
func Stream(ctx context.Context, js jetstream.JetStream, ap *writer.Applier, rng Range, opts Options) (sum Summary, err error) {
	began := time.Now()
	if ap.Sink == nil {
		deferred := *ap
		deferred.Sink = ap.Store.Deferred()
		ap = &deferred
		d := &deriver{store: ap.Store, every: cmp.Or(opts.DeriveEvery, DefaultDeriveEvery), progress: opts.Progress}
		opts.derive = d.maybe
		defer func() {
			// Derive what was applied even when interrupted: the base facts are written.
			ctx := context.WithoutCancel(ctx)
			derr := d.now(ctx)
			if derr == nil && d.applied >= analyzeAfter {
				analyzing := time.Now()
				derr = ap.Store.Analyze(ctx) // for the readers' plans
				d.took += time.Since(analyzing)
			}
			if derr != nil {
				err = errors.Join(err, derr)
			}
			sum.Derived, sum.Deriving, sum.Elapsed = d.derived, d.took, time.Since(began)
		}()
	}
	return applyRange(ctx, js, ap, rng, opts)
}

func applyRange(ctx context.Context, js jetstream.JetStream, ap *writer.Applier, rng Range, opts Options) (Summary, error) {
	began := time.Now()
	sum := Summary{Name: rng.Name()}
	str, err := js.Stream(ctx, stream.StreamName)
	if err != nil {
		return sum, fmt.Errorf("stream %s: %w", stream.StreamName, err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		return sum, fmt.Errorf("stream %s: %w", stream.StreamName, err)
	}
	state := info.State

	sum.StartSeq, sum.EndSeq = max(rng.From.Seq, 1), state.LastSeq
	if rng.To.Seq > 0 {
		sum.EndSeq = min(rng.To.Seq, state.LastSeq)
	}
	byTime := !rng.From.Time.IsZero()
	if opts.Checkpoint && !opts.Restart {
		cp, ok, err := ap.Store.Checkpoint(ctx, sum.Name)
		if err != nil {
			return sum, err
		}
		if ok && cp.FinishedAt == nil {
			sum.Resumed, byTime = true, false
			sum.StartSeq, sum.EndSeq, sum.LastSeq, sum.Messages = cp.StartSeq, cp.EndSeq, cp.LastSeq, cp.Applied
		}
	}
	from := sum.StartSeq
	if sum.Resumed {
		from = sum.LastSeq + 1
	}
	if !byTime && from < state.FirstSeq {
		sum.Gone = state.FirstSeq - from
		if sum.StartSeq == from {
			sum.StartSeq = state.FirstSeq
		}
		from = state.FirstSeq
	}
	if state.Msgs == 0 || from > sum.EndSeq {
		sum.Elapsed = time.Since(began)
		return sum, finish(ctx, ap, opts, &sum)
	}

	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: rng.subjects()}
	if byTime {
		start := rng.From.Time
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	} else {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := js.OrderedConsumer(ctx, stream.StreamName, cfg)
	if err != nil {
		return sum, fmt.Errorf("replay consumer: %w", err)
	}

	prog := newProgress(opts.Progress, opts.Terminal, "replay")
	var startedAt = sum.Messages
	// left is how many messages the consumer still has for the range, as the last message
	// fetched said (its NumPending), so that the last fetch asks for no more than there are
	// and returns at once rather than wait out FetchMaxWait for messages that will not come.
	left := uint64(opts.BatchSize)
	for {
		if ctx.Err() != nil {
			return interrupted(&sum, began)
		}
		want := min(uint64(opts.BatchSize), max(left, 1))
		if !byTime && sum.LastSeq > 0 {
			want = min(want, max(sum.EndSeq-sum.LastSeq, 1))
		}
		batch, err := cons.Fetch(int(want), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return sum, fmt.Errorf("fetch from the stream: %w", err)
		}
		var (
			msgs    []writer.Msg
			pending uint64 = 1
			done    bool
		)
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return sum, fmt.Errorf("message metadata: %w", err)
			}
			seq := meta.Sequence.Stream
			if seq > sum.EndSeq || (!rng.To.Time.IsZero() && meta.Timestamp.After(rng.To.Time)) {
				done = true
				continue // drain the rest of the fetch
			}
			if byTime && sum.LastSeq == 0 && len(msgs) == 0 {
				sum.StartSeq = seq
			}
			msgs = append(msgs, writer.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), Seq: seq})
			pending, left = meta.NumPending, meta.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return sum, fmt.Errorf("fetch from the stream: %w", err)
		}
		if len(msgs) == 0 && !done {
			// Nothing came: either nothing is left on these subjects, or the fetch timed out.
			ci, err := cons.Info(ctx)
			if err == nil && ci.NumPending == 0 {
				done = true
			}
		}
		if len(msgs) > 0 {
			dead, stopped, err := applyBatch(ctx, ap, msgs, &sum)
			sum.DeadLettered += dead
			if err != nil {
				return sum, err
			}
			if opts.derive != nil {
				if err := opts.derive(ctx, len(msgs)); err != nil {
					return sum, err
				}
			}
			if opts.Checkpoint {
				if err := saveCheckpoint(ctx, ap.Store, sum, nil); err != nil {
					return sum, err
				}
			}
			prog.show(sum.LastSeq-sum.StartSeq+1, sum.EndSeq-sum.StartSeq+1, sum.Messages-startedAt, false)
			if stopped {
				return interrupted(&sum, began)
			}
			if pending == 0 || sum.LastSeq >= sum.EndSeq {
				done = true
			}
		}
		if done {
			prog.show(sum.LastSeq-sum.StartSeq+1, sum.EndSeq-sum.StartSeq+1, sum.Messages-startedAt, true)
			sum.Elapsed = time.Since(began)
			return sum, finish(ctx, ap, opts, &sum)
		}
	}
}

// applyBatch applies msgs and dead-letters those that cannot be written. It advances
// sum.LastSeq and sum.Messages over what it settled, and reports stopped when ctx ended
// before it settled them all.
func applyBatch(ctx context.Context, ap *writer.Applier, msgs []writer.Msg, sum *Summary) (dead int64, stopped bool, err error) {
	for i, werr := range ap.Apply(ctx, msgs, nil) {
		m := msgs[i]
		if errors.Is(werr, writer.ErrStopped) {
			return dead, true, nil
		}
		if werr != nil {
			dl := store.DeadLetter{StreamSeq: m.Seq, Subject: m.Subject, Headers: m.Header, Data: m.Data,
				Reason: werr.Error(), Deliveries: 1, FailedAt: time.Now().UTC()}
			if err := ap.SaveDeadLetter(ctx, dl, nil); err != nil {
				if errors.Is(err, writer.ErrStopped) {
					return dead, true, nil
				}
				return dead, false, fmt.Errorf("message %d cannot be written (%v) nor dead-lettered: %w", m.Seq, werr, err)
			}
			dead++
		}
		sum.LastSeq = m.Seq
		sum.Messages++
	}
	return dead, false, nil
}

func interrupted(sum *Summary, began time.Time) (Summary, error) {
	sum.Elapsed = time.Since(began)
	return *sum, fmt.Errorf("%w at stream sequence %d of %d", ErrInterrupted, sum.LastSeq, sum.EndSeq)
}

func finish(ctx context.Context, ap *writer.Applier, opts Options, sum *Summary) error {
	if !opts.Checkpoint {
		return nil
	}
	now := time.Now()
	return saveCheckpoint(context.WithoutCancel(ctx), ap.Store, *sum, &now)
}

func saveCheckpoint(ctx context.Context, st *store.Store, sum Summary, finished *time.Time) error {
	last := sum.LastSeq
	if last == 0 && sum.StartSeq > 0 {
		last = sum.StartSeq - 1
	}
	return st.SaveCheckpoint(context.WithoutCancel(ctx), store.Checkpoint{
		Name: sum.Name, StartSeq: sum.StartSeq, EndSeq: sum.EndSeq, LastSeq: last,
		Applied: sum.Messages, FinishedAt: finished,
	})
}
