package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/writer"
)

// RebuildSummary is what a rebuild did.
type RebuildSummary struct {
	FromStream   bool
	Read         int64 // rows of the events table, or stream messages, mapped
	DeadLettered int64 // stream messages that went to dead_letters (--from-stream only)
	CaughtUp     int   // events the writer wrote during the rebuild, added before the swap
	Derived      int64 // keys (commits, deployment attempts, incidents) derived once all was read
	Deriving     time.Duration
	Before       map[string]int64
	After        map[string]int64
	Elapsed      time.Duration
	Swap         time.Duration // how long the swap held the writers off
}

// ErrWouldLose means a rebuild from the stream would drop events that the stream no longer holds.
var ErrWouldLose = errors.New("the stream no longer holds every event in the events table")

// Rebuild recomputes every table of store.StreamTables into fresh tables and swaps them in at
// once: from the events table (each row mapped again as the message it was), or, with js set,
// from the whole stream. From the events table, a row that no longer maps fails the rebuild and
// leaves the live tables as they were. From the stream, poison messages go to dead_letters as
// the writer would send them; unless force is set, it refuses when the stream has lost (to
// retention) events the table still has.
func Rebuild(ctx context.Context, st *store.Store, js jetstream.JetStream, force bool, ap writer.Applier, opts Options) (RebuildSummary, error) {
	began := time.Now()
	sum := RebuildSummary{FromStream: js != nil}
	var err error
	if sum.Before, err = st.RowCounts(ctx); err != nil {
		return sum, err
	}
	if js != nil && !force {
		if err := checkStreamCovers(ctx, st, js); err != nil {
			return sum, err
		}
	}
	rb, err := st.BeginRebuild(ctx)
	if err != nil {
		return sum, err
	}
	defer func() { _ = rb.Close(ctx) }()
	ap.Sink = rb

	var afterSeq uint64
	if js != nil {
		opts.Checkpoint = false
		s, err := Stream(ctx, js, &ap, Range{From: Bound{Seq: 1}}, opts)
		sum.Read, sum.DeadLettered, afterSeq = s.Messages, s.DeadLettered, s.EndSeq
		if err != nil {
			return sum, fmt.Errorf("rebuild from the stream: %w (the live tables are unchanged)", err)
		}
	} else {
		prog := newProgress(opts.Progress, opts.Terminal, "rebuild")
		total := uint64(sum.Before["events"])
		_, err := st.ScanEvents(ctx, opts.BatchSize, func(rows []store.RawEvent) error {
			msgs := rawMessages(rows)
			for i, err := range ap.Apply(ctx, msgs, nil) {
				if err != nil {
					return fmt.Errorf("the event at stream sequence %d no longer maps: %w", msgs[i].Seq, err)
				}
			}
			sum.Read += int64(len(msgs))
			prog.show(uint64(sum.Read), total, sum.Read, false)
			return ctx.Err()
		})
		if err != nil {
			return sum, fmt.Errorf("rebuild from the events table: %w (the live tables are unchanged)", err)
		}
		prog.show(uint64(sum.Read), total, sum.Read, true)
	}

	derivedAt := time.Now()
	if sum.Derived, err = rb.Derive(ctx); err != nil {
		return sum, fmt.Errorf("rebuild: %w (the live tables are unchanged)", err)
	}
	sum.Deriving = time.Since(derivedAt)
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "rebuild: derived %d commits, deployments and incidents in %s\n", sum.Derived, sum.Deriving.Round(time.Millisecond))
	}
	sum.CaughtUp, sum.Swap, err = rb.Swap(ctx, afterSeq, decodeRaw)
	if err != nil {
		return sum, err
	}
	sum.After, err = st.RowCounts(ctx)
	sum.Elapsed = time.Since(began)
	return sum, err
}

// checkStreamCovers fails when the events table holds events older than the stream's first
// message: a rebuild from the stream would drop them.
func checkStreamCovers(ctx context.Context, st *store.Store, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, stream.StreamName)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream.StreamName, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream.StreamName, err)
	}
	oldest, n, err := st.EventsBefore(ctx, info.State.FirstSeq)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: %d events have stream sequences from %d, before the stream's first message %d (its retention dropped them); "+
			"rebuild without --from-stream uses the events table, or --force drops them", ErrWouldLose, n, oldest, info.State.FirstSeq)
	}
	return nil
}

// rawMessages turns rows of the events table back into the stream messages they came from.
func rawMessages(rows []store.RawEvent) []writer.Msg {
	msgs := make([]writer.Msg, len(rows))
	for i, r := range rows {
		h := nats.Header(r.Headers)
		if h == nil {
			// Written before the headers were kept: the receive time to the microsecond, and the
			// row's id, which was its message's Nats-Msg-Id (the writer maps a message to the
			// row of that id; without one it would derive the id the ingest gives today).
			h = nats.Header{
				stream.HeaderReceivedAt: {r.ReceivedAt.UTC().Format(time.RFC3339Nano)},
				nats.MsgIdHdr:           {r.ID},
			}
		}
		msgs[i] = writer.Msg{Subject: stream.Subject(r.Source, r.Kind), Header: h, Data: r.Payload, Seq: r.StreamSeq}
	}
	return msgs
}

func decodeRaw(rows []store.RawEvent) ([]fact.Set, error) {
	sets := make([]fact.Set, 0, len(rows))
	for _, m := range rawMessages(rows) {
		set, err := writer.Decode(m.Subject, m.Header, m.Data, m.Seq)
		if err != nil {
			return nil, fmt.Errorf("the event at stream sequence %d no longer maps: %w", m.Seq, err)
		}
		sets = append(sets, set)
	}
	return sets, nil
}
