// Package importer is what `devopstic import git` and `devopstic import github` share: the
// stream messages that carry imported history, the sinks they go to (the stream, or a dry run's
// listing) and the progress line.
//
// Imported history goes through the stream like everything else, as ordinary native events or
// webhook-shaped deliveries: the writer maps it with the same code, a replay or a rebuild
// includes it, and the tables stay a pure function of the stream. Each message has a stable id
// derived from what it says (a commit, a deployment, a pull request), so that importing the same
// history again adds nothing, and carries the HeaderImported header, kept with the event row,
// so that imported history can be told from live history.
package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/stream"
)

// HeaderImported marks a stream message as imported history; its value names the importer
// (git, github). The writer keeps it in events.headers.
const HeaderImported = "Devopstic-Imported"

// Native is the stream message of a native event (raw, as POST /events takes it) imported by
// importer: validated as the ingest validates it, with the id the writer will give its row.
func Native(raw []byte, receivedAt time.Time, importer string) (stream.Message, error) {
	e, err := event.Decode(raw, receivedAt)
	if err != nil {
		return stream.Message{}, fmt.Errorf("imported event: %w", err)
	}
	return stream.Message{
		Subject:    stream.Subject(event.Source, e.Type),
		ID:         e.ID,
		Data:       raw,
		ReceivedAt: receivedAt,
		Header:     nats.Header{HeaderImported: {importer}},
	}, nil
}

// Sink takes the messages of an import: the stream (Publisher) or a dry run (DryRun).
type Sink interface {
	Send(ctx context.Context, msgs []stream.Message) error
}

// Publisher sends messages to the stream in batches, and waits for the stream to have each
// batch. A batch the stream cannot take now (stream.ErrUnavailable) is sent again after a pause,
// which its messages' ids make safe.
type Publisher struct {
	Stream *stream.Publisher
	// Batch is the most messages published before waiting for their acknowledgements.
	Batch int
	// Retries is how many times an unavailable stream is tried again before giving up.
	Retries int
}

// Send publishes msgs.
func (p *Publisher) Send(ctx context.Context, msgs []stream.Message) error {
	batch := max(p.Batch, 1)
	for start := 0; start < len(msgs); start += batch {
		chunk := msgs[start:min(start+batch, len(msgs))]
		for attempt := 0; ; attempt++ {
			err := p.Stream.Publish(ctx, chunk)
			if err == nil {
				break
			}
			if !errors.Is(err, stream.ErrUnavailable) || attempt >= p.Retries {
				return fmt.Errorf("publish imported events: %w", err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("publish imported events: %w", ctx.Err())
			case <-time.After(min(time.Duration(attempt+1)*500*time.Millisecond, 5*time.Second)):
			}
		}
	}
	return nil
}

// DryRun lists what would be sent, one message a line: its subject, its id and its body.
type DryRun struct {
	W io.Writer
	// Sent counts the messages listed.
	Sent int
}

// Send lists msgs.
func (d *DryRun) Send(_ context.Context, msgs []stream.Message) error {
	for _, m := range msgs {
		if _, err := fmt.Fprintf(d.W, "%s %s %s\n", m.Subject, m.ID, m.Data); err != nil {
			return fmt.Errorf("dry run: %w", err)
		}
		d.Sent++
	}
	return nil
}

// ParseTime reads --since or --until: a number of days back from now ("90d"), a duration back
// from now ("36h"), a date ("2026-01-31", UTC midnight) or an RFC 3339 time; "" or "all" is no
// bound (the zero time).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.UTC().AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.UTC().Add(-d), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is none of: days back (90d), a duration back (36h), a date (2026-01-31), an RFC 3339 time, all", s)
}
