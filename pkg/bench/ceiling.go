package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/stream"
)

// ceilingStream is a stream of DevOpstic's stream configuration under another name, so that
// the ceilings are measured without touching DevOpstic's own stream.
const (
	ceilingStream  = "BENCH_CEILING"
	ceilingSubject = "bench.ceiling.native.commit"
)

// ceilingMessage is a message as the ingest publishes a single event: the event's bytes,
// its id as Nats-Msg-Id and the receive-time header. Each call gives a new id.
func ceilingMessage(data []byte, id string) *nats.Msg {
	msg := nats.NewMsg(ceilingSubject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set(stream.HeaderReceivedAt, time.Now().UTC().Format(time.RFC3339Nano))
	return msg
}

// createCeilingStream creates the ceiling stream with cfg's shape; the returned func deletes it.
func createCeilingStream(ctx context.Context, js jetstream.JetStream, cfg stream.Config) (func(), error) {
	spec := stream.Spec(cfg)
	spec.Name = ceilingStream
	spec.Description = "DevOpstic benchmark: JetStream's ceiling on DevOpstic's stream configuration"
	spec.Subjects = []string{"bench.ceiling.>"}
	if _, err := js.CreateOrUpdateStream(ctx, spec); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", ceilingStream, err)
	}
	return func() { _ = js.DeleteStream(context.Background(), ceilingStream) }, nil
}

// syncPublish measures publishers that each publish and wait for the ack before the next,
// for d: messages per second and the latencies.
func syncPublish(ctx context.Context, js jetstream.JetStream, publishers int, d time.Duration, data []byte, run string) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		res      loadResult
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for i := 0; ctx.Err() == nil; i++ {
				msg := ceilingMessage(data, run+"-"+strconv.Itoa(w)+"-"+strconv.Itoa(i))
				t := time.Now()
				if _, err := js.PublishMsg(ctx, msg); err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					break
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			res.events += len(lat)
			res.latencies = append(res.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.latencies)
	if firstErr != nil {
		return res, fmt.Errorf("publish: %w", firstErr)
	}
	return res, nil
}

// asyncWindow is the asynchronous publisher's window of outstanding acks, the ingest's own
// (stream.NewPublisher).
const asyncWindow = 4096

// asyncPublish measures one publisher that keeps up to window messages awaiting their acks,
// for d, and then waits for the last acks.
func asyncPublish(ctx context.Context, nc *nats.Conn, window int, d time.Duration, data []byte, run string) (loadResult, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(window))
	if err != nil {
		return loadResult{}, fmt.Errorf("open JetStream: %w", err)
	}
	start := time.Now()
	deadline := start.Add(d)
	n := 0
	for time.Now().Before(deadline) {
		_, err := js.PublishMsgAsync(ceilingMessage(data, run+"-"+strconv.Itoa(n)))
		switch {
		case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
			// The window stayed full for the library's stall wait (200 ms): the server, or a
			// machine busy with other work, is slower than the publisher. Drain the window and
			// go on; the figure is then the slow one, which is what a ceiling on this machine is.
			if err := drainAsync(ctx, js); err != nil {
				return loadResult{}, err
			}
		case err != nil:
			return loadResult{}, fmt.Errorf("publish: %w", err)
		default:
			n++
		}
	}
	if err := drainAsync(ctx, js); err != nil {
		return loadResult{}, err
	}
	return loadResult{events: n, elapsed: time.Since(start)}, nil
}

// drainAsync waits until every asynchronous publish of js has its ack, however long that takes
// on a slow machine, unless ctx ends first.
func drainAsync(ctx context.Context, js jetstream.JetStream) error {
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d asynchronous publishes still unacknowledged: %w", js.PublishAsyncPending(), ctx.Err())
	}
}

// copyCeiling measures Postgres COPY of raws' rows of the raw events table into a table of the
// same shape (indexes included): rows per second. Only the COPY statements are timed, not
// building their rows.
func copyCeiling(ctx context.Context, pool *pgxpool.Pool, raws [][]byte) (float64, error) {
	if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (LIKE events INCLUDING ALL)`); err != nil {
		return 0, fmt.Errorf("create bench_copy: %w", err)
	}
	defer func() { _, _ = pool.Exec(context.Background(), `DROP TABLE IF EXISTS bench_copy`) }()
	received := time.Now().UTC()
	const chunk = 50_000
	var spent time.Duration
	rows := make([][]any, 0, chunk)
	for i := 0; i < len(raws); i += chunk {
		rows = rows[:0]
		for j, raw := range raws[i:min(i+chunk, len(raws))] {
			e, err := event.Decode(raw, received)
			if err != nil {
				return 0, fmt.Errorf("generated event does not decode: %w", err)
			}
			rows = append(rows, eventRow(event.Facts(e, raw, received, uint64(i+j+1)).Event))
		}
		t := time.Now()
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"bench_copy"}, eventColumns, pgx.CopyFromRows(rows)); err != nil {
			return 0, fmt.Errorf("copy into bench_copy: %w", err)
		}
		spent += time.Since(t)
	}
	return float64(len(raws)) / spent.Seconds(), nil
}

// httpServer is the HTTP ceiling's server: fiber, as the ingest, answering every POST /events
// with a 202 and doing nothing else. It runs in the bench process; the returned func stops it.
func httpServer() (string, func(), error) {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Post("/events", func(c *fiber.Ctx) error {
		return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"accepted": 1})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	go func() { _ = app.Listener(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = app.Shutdown() }, nil
}
