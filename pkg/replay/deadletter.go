package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/writer"
)

// Retried is what a retry of dead letters did.
type Retried struct {
	Tried   int      // dead letters read and applied again
	Written []uint64 // the stream sequences written; their dead letters are deleted
	// Failed are the dead letters that still fail, as saved again: with the new reason and one
	// more delivery.
	Failed []store.DeadLetter
}

// RetryDeadLetters applies the dead letters of seqs (every one when seqs is nil) through ap,
// batch at a time, deletes those that were written and records the new reason of the others.
//
// It applies them directly rather than republishing them: JetStream would drop a republished
// message as a duplicate inside its duplicate window (it keeps its Nats-Msg-Id), and would put a
// second copy in the stream; applying directly also tells at once whether the fix worked. An
// unknown sequence is store.ErrNotFound.
func RetryDeadLetters(ctx context.Context, ap *writer.Applier, seqs []uint64, batch int) (Retried, error) {
	var sum Retried
	dls, err := loadDeadLetters(ctx, ap.Store, seqs)
	if err != nil {
		return sum, err
	}
	sum.Tried = len(dls)
	batch = max(batch, 1)
	for start := 0; start < len(dls); start += batch {
		chunk := dls[start:min(start+batch, len(dls))]
		msgs := make([]writer.Msg, len(chunk))
		for i, dl := range chunk {
			msgs[i] = writer.Msg{Subject: dl.Subject, Header: nats.Header(dl.Headers), Data: dl.Data, Seq: dl.StreamSeq}
		}
		var written []uint64
		for i, err := range ap.Apply(ctx, msgs, nil) {
			dl := chunk[i]
			switch {
			case err == nil:
				written = append(written, dl.StreamSeq)
			case errors.Is(err, writer.ErrStopped):
				return sum, fmt.Errorf("interrupted: %w", err)
			default:
				dl.Reason, dl.Deliveries, dl.FailedAt = err.Error(), dl.Deliveries+1, time.Now().UTC()
				if err := ap.Store.SaveDeadLetter(ctx, dl); err != nil {
					return sum, err
				}
				sum.Failed = append(sum.Failed, dl)
			}
		}
		// Deleted batch by batch, so that an interrupted retry leaves no written message
		// behind as a dead letter.
		if len(written) > 0 {
			if _, err := ap.Store.DeleteDeadLetters(ctx, written); err != nil {
				return sum, err
			}
			sum.Written = append(sum.Written, written...)
		}
	}
	return sum, nil
}

// loadDeadLetters reads the dead letters of seqs, or all of them, with their data.
func loadDeadLetters(ctx context.Context, st *store.Store, seqs []uint64) ([]store.DeadLetter, error) {
	var dls []store.DeadLetter
	if seqs == nil {
		var after uint64
		for {
			page, err := st.DeadLettersFrom(ctx, after, 10000)
			if err != nil || len(page) == 0 {
				return dls, err
			}
			dls = append(dls, page...)
			after = page[len(page)-1].StreamSeq
		}
	}
	for _, seq := range seqs {
		dl, err := st.DeadLetter(ctx, seq)
		if err != nil {
			return nil, err
		}
		dls = append(dls, dl)
	}
	return dls, nil
}
