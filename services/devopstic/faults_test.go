package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/service"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// runWriterProcess is the writer service (services/writer) run by this test binary, so that
// the fault tests have writer processes to SIGKILL. It exits the process.
func runWriterProcess() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println(writerReady) // from here on a SIGTERM is a graceful stop (see writerProcess)
	err := func() error {
		var cfg config.Writer
		if err := config.Parse(&cfg, nil); err != nil {
			return err
		}
		if err := cfg.Validate(); err != nil {
			return err
		}
		log := cfg.Log.Logger(os.Stderr)
		login := service.Login(cfg.NATS, stream.RoleWriter)
		nc, err := stream.ConnectAs(cfg.NATS.URL, "test-writer", login)
		if err != nil {
			return err
		}
		defer nc.Close()
		st, err := store.Open(ctx, cfg.Database.ConnString(), cfg.Database.MaxConns)
		if err != nil {
			return err
		}
		defer st.Close()
		js, err := service.WaitForStream(ctx, nc, login, log)
		if err != nil {
			return service.Stopped(ctx, err) // a SIGTERM while waiting for NATS is a clean stop
		}
		err = service.Write(ctx, cfg.Writer, cfg.Database.ConnString(), js, st, nil, log)
		_ = nc.FlushTimeout(2 * time.Second)
		return err
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// writerReady is the line a writer process prints once it handles SIGTERM.
const writerReady = "writer process ready"

// readyWriter passes a writer process's output on, except the writerReady line, which closes
// ready.
type readyWriter struct {
	ready chan struct{}
	seen  bool
}

func (r *readyWriter) Write(p []byte) (int, error) {
	if !r.seen && bytes.Contains(p, []byte(writerReady)) {
		r.seen = true
		close(r.ready)
		return len(p), nil
	}
	return os.Stdout.Write(p)
}

// writerProcess starts a writer process on dbURL and n, which it connects to as the writer's
// user, and returns once it handles SIGTERM: a SIGTERM sent before then would kill it
// outright, as the Go runtime's default.
func writerProcess(t testing.TB, dbURL string, n *testenv.NATS) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), n.Env(stream.RoleWriter)...),
		"DEVOPSTIC_TEST_RUN_WRITER=1",
		"DEVOPSTIC_DATABASE_URL="+dbURL,
		"DEVOPSTIC_WRITER_BATCH_SIZE=200",
		"DEVOPSTIC_WRITER_BATCH_WAIT=10ms",
		// A killed writer's messages come back after AckWait: keep the tests short.
		"DEVOPSTIC_WRITER_ACK_WAIT=2s",
		"DEVOPSTIC_WRITER_RETRY_MAX=500ms",
		"DEVOPSTIC_LOG_LEVEL=error",
	)
	ready := &readyWriter{ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = ready, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	select {
	case <-ready.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the writer process did not start within 30s")
	}
	return cmd
}

// startIngest runs the ingest alone in the test process (the writers are processes of their
// own), with its own database (dbURL, or a fresh one) and NATS server (n, or a fresh one).
func startIngest(t *testing.T, dbURL string, n *testenv.NATS) *stack {
	t.Helper()
	if dbURL == "" {
		dbURL = testenv.Postgres(t)
	}
	if n == nil {
		n = testenv.StartNATS(t)
	}
	var cfg config.AllInOne
	require.NoError(t, config.Parse(&cfg, map[string]string{
		"DEVOPSTIC_DATABASE_URL":    dbURL,
		"DEVOPSTIC_NATS_URL":        n.URL,
		"DEVOPSTIC_JWT_SECRET":      strings.Repeat("s", 40),
		"DEVOPSTIC_USERNAME":        "ci",
		"DEVOPSTIC_PASSWORD":        "hunter2-hunter2",
		"DEVOPSTIC_PUBLISH_TIMEOUT": "2s",
	}))
	require.NoError(t, cfg.Validate())
	log := slogFor(t)
	login := n.Login(stream.RoleIngest)
	nc, err := stream.ConnectAs(n.URL, "test-ingest", login)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	st, err := store.Open(context.Background(), dbURL, 2)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	ctx, cancel := context.WithCancel(context.Background())
	js, err := service.WaitForStream(ctx, nc, login, log)
	require.NoError(t, err)
	app, err := service.Ingest(cfg.Ingest(), nc, js, st, nil, log)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- service.Serve(ctx, ln, app) }()
	t.Cleanup(func() { cancel(); <-done })

	s := &stack{t: t, base: "http://" + ln.Addr().String(), nats: n, cfg: cfg, db: openPool(t, dbURL)}
	status, body := s.do("POST", "/tokens", "application/json", []byte(`{"username":"ci","password":"hunter2-hunter2"}`))
	require.Equal(t, http.StatusOK, status, "%s", body)
	s.token = strings.Split(strings.Split(string(body), `"token":"`)[1], `"`)[0]
	return s
}

// postAll posts events in requests of 500, retrying each request until it gets a 202, as a CI
// job would; it returns how many requests had to be retried.
func (s *stack) postAll(events []string) (retries int) {
	s.t.Helper()
	return s.post(events, 500, nil)
}

// post posts events in requests of perRequest, retrying each until it gets a 202, and counts
// the accepted events in accepted (when not nil).
func (s *stack) post(events []string, perRequest int, accepted *atomic.Int64) (retries int) {
	s.t.Helper()
	for start := 0; start < len(events); start += perRequest {
		end := min(start+perRequest, len(events))
		body := []byte("[" + strings.Join(events[start:end], ",") + "]")
		deadline := time.Now().Add(2 * time.Minute)
		for {
			status, out := s.do("POST", "/events", "application/json", body)
			if status == http.StatusAccepted {
				if accepted != nil {
					accepted.Add(int64(end - start))
				}
				break
			}
			require.True(s.t, status == http.StatusServiceUnavailable || status == 0, "status %d: %s", status, out)
			require.True(s.t, time.Now().Before(deadline), "POST /events kept failing: %d %s", status, out)
			retries++
			time.Sleep(100 * time.Millisecond) // what Retry-After asks a client to do, shortened
		}
	}
	return retries
}

// waitSettled waits until the writers have settled every message of the stream and derived
// what their full batches queued (see waitDerived).
func waitSettled(t testing.TB, n *testenv.NATS, db *pgxpool.Pool, timeout time.Duration) {
	t.Helper()
	defer waitDerived(t, db, timeout)
	nc, err := stream.ConnectAs(n.URL, "test-wait", n.Login(stream.RoleAdmin))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	var info *jetstream.ConsumerInfo
	ok := assertEventually(func() bool {
		// As in waitDrained: the ack floor must reach the stream's last message, as the
		// consumer learns of new messages a moment after the stream stores them.
		str, err := js.Stream(context.Background(), stream.StreamName)
		if err != nil {
			return false
		}
		last := str.CachedInfo().State.LastSeq
		cons, err := str.Consumer(context.Background(), stream.ConsumerName)
		if err != nil {
			return false
		}
		info, err = cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last
	}, timeout)
	require.True(t, ok, "the writers did not settle the stream: %+v", info)
}

func chaosOnly(t *testing.T) {
	if os.Getenv("DEVOPSTIC_CHAOS") != "1" {
		t.Skip("a fault test: run with `make chaos` (DEVOPSTIC_CHAOS=1)")
	}
}

// Three writer processes on the same durable consumer write exactly the tables one writer
// writes.
func TestThreeWritersWriteTheSameTables(t *testing.T) {
	t.Parallel()
	events := manyEvents(10000)
	want := referenceDump(t, events)
	dbURL := testenv.Postgres(t)
	n := testenv.StartNATS(t)
	publish(t, n, messages(t, events, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)))
	began := time.Now()
	for range 3 {
		writerProcess(t, dbURL, n)
	}
	db := openPool(t, dbURL)
	waitSettled(t, n, db, 3*time.Minute)
	t.Logf("3 writers: %d events sent, drained in %s", len(events), time.Since(began).Round(time.Millisecond))
	compareDumps(t, "3 writers vs a clean single run", want, fullDump(t, db))
}

// 100,000 events posted while the writer is SIGKILLed and restarted at random every few
// seconds: nothing lost, nothing doubled.
func TestChaosWriterKilledAtRandom(t *testing.T) {
	chaosOnly(t)
	t.Parallel()
	events := manyEvents(100000)
	want := referenceDump(t, events)
	s := startIngest(t, "", nil)
	dbURL := s.cfg.Database.URL

	var kills atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := newRand(7)
		for {
			w := writerProcess(t, dbURL, s.nats)
			select {
			case <-stop:
				_ = w.Process.Signal(syscall.SIGTERM)
				_ = w.Wait()
				return
			case <-time.After(time.Duration(1000+rng.IntN(2000)) * time.Millisecond):
			}
			_ = w.Process.Signal(syscall.SIGKILL)
			_ = w.Wait()
			kills.Add(1)
		}
	}()
	// The load is spread over about 20 s, so that kills land while it is posted and drained.
	began := time.Now()
	var retries int
	for start := 0; start < len(events); start += 5000 {
		retries += s.postAll(events[start : start+5000])
		time.Sleep(time.Second)
	}
	posted := time.Since(began)
	killedWhilePosting := kills.Load()
	// Let the kills go on while the backlog drains, then keep one writer to finish it.
	require.True(t, assertEventually(func() bool { return kills.Load() >= 5 }, 2*time.Minute))
	close(stop)
	wg.Wait()
	w := writerProcess(t, dbURL, s.nats)
	waitSettled(t, s.nats, s.db, 3*time.Minute)
	require.NoError(t, w.Process.Signal(syscall.SIGTERM))
	require.NoError(t, w.Wait())
	t.Logf("writer SIGKILLed %d times (%d while posting); %d events posted in %s (%d requests retried); all written after %s",
		kills.Load(), killedWhilePosting, len(events), posted.Round(time.Millisecond), retries, time.Since(began).Round(time.Millisecond))
	compareDumps(t, "writer killed at random vs a clean single run", want, fullDump(t, s.db))
}

// Postgres stopped for 30 s in the middle of a load: the ingest keeps accepting, the writer
// holds its batch and retries, and the backlog lands once Postgres is back.
func TestChaosPostgresStopped30s(t *testing.T) {
	chaosOnly(t)
	t.Parallel()
	events := manyEvents(20000)
	want := referenceDump(t, events)
	cluster, dbURL := testenv.PrivatePostgres(t)
	s := startIngest(t, dbURL, nil)
	writerProcess(t, dbURL, s.nats)

	began := time.Now()
	retries := s.postAll(events[:10000])
	require.NoError(t, cluster.Stop())
	stopped := time.Now()
	retries += s.postAll(events[10000:])
	postedWhileDown := time.Since(stopped)
	// Keep it down for 30 s in all.
	time.Sleep(30*time.Second - time.Since(stopped))
	require.NoError(t, cluster.StartAgain(context.Background()))
	waitSettled(t, s.nats, s.db, 3*time.Minute)
	t.Logf("Postgres down 30 s; 10,000 events posted while it was down in %s (%d requests retried); all written %s after it came back",
		postedWhileDown.Round(time.Millisecond), retries, time.Since(stopped.Add(30*time.Second)).Round(time.Millisecond))
	_ = began
	compareDumps(t, "Postgres stopped 30 s vs a clean single run", want, fullDump(t, openPool(t, dbURL)))
}

// The NATS server restarted in the middle of a load, its file store kept: clients that got a
// 503 retry and succeed, and no accepted event is lost.
func TestChaosNATSRestarted(t *testing.T) {
	chaosOnly(t)
	t.Parallel()
	events := manyEvents(20000)
	want := referenceDump(t, events)
	s := startIngest(t, "", nil)
	writerProcess(t, s.cfg.Database.URL, s.nats)

	var retries int
	var accepted atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		retries = s.post(events, 50, &accepted)
	}()
	require.True(t, assertEventually(func() bool { return accepted.Load() >= 5000 }, 2*time.Minute))
	s.nats.Stop()
	atStop := accepted.Load()
	down := time.Now()
	time.Sleep(3 * time.Second) // the outage
	require.NoError(t, s.nats.Start())
	outage := time.Since(down)
	<-done
	waitSettled(t, s.nats, s.db, 3*time.Minute)
	t.Logf("NATS down %s after %d of %d events were accepted; %d requests retried after a 503 or a refused connection",
		outage.Round(100*time.Millisecond), atStop, len(events), retries)
	require.Less(t, atStop, int64(len(events)), "the load ended before the outage: the test proves nothing")
	require.Positive(t, retries, "no request met the outage: the test proves nothing")
	compareDumps(t, "NATS restarted vs a clean single run", want, fullDump(t, s.db))
}

// Every message delivered twice (published again without its id, as a redelivery or a replay
// looks to the writer), then the whole stream replayed a second time.
func TestChaosEveryMessageTwiceThenReplay(t *testing.T) {
	chaosOnly(t)
	t.Parallel()
	events := manyEvents(20000)
	want := referenceDump(t, events)
	s := startStack(t, "")
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	msgs := messages(t, events, received)
	publish(t, s.nats, msgs)
	for i := range msgs {
		msgs[i].ID = fmt.Sprintf("again-%d", i) // a new id: JetStream keeps the copy
	}
	publish(t, s.nats, msgs)
	s.waitDrained()
	compareDumps(t, "every message twice vs a clean single run", want, fullDump(t, s.db))
	out, err := s.admin("replay", "--from", "1")
	require.NoError(t, err)
	t.Log(strings.TrimSpace(out))
	compareDumps(t, "and the whole stream replayed again", want, fullDump(t, s.db))
}

// Events in random order.
func TestChaosShuffled(t *testing.T) {
	chaosOnly(t)
	t.Parallel()
	events := manyEvents(20000)
	want := referenceDump(t, events)
	shuffled := append([]string(nil), events...)
	newRand(3).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	s := startStack(t, "")
	retries := s.postAll(shuffled)
	s.waitDrained()
	t.Logf("%d events posted shuffled, %d requests retried", len(events), retries)
	compareDumps(t, "shuffled vs a clean single run", want, fullDump(t, s.db))
}

// A poison message in the middle of a batch goes to dead letters; the rest of the batch lands.
func TestChaosPoisonMidBatch(t *testing.T) {
	chaosOnly(t)
	t.Parallel()
	events := manyEvents(2000)
	want := referenceDump(t, events)
	want["dead_letters"] = []string{"2"}
	s := startStack(t, "", withEnv("DEVOPSTIC_WRITER_BATCH_SIZE", "500"), withEnv("DEVOPSTIC_WRITER_BATCH_WAIT", "500ms"),
		withEnv("DEVOPSTIC_WRITER_MAX_DELIVER", "2"))
	// Postgres refuses one pipeline: a message that decodes but can never be written.
	_, err := s.db.Exec(context.Background(), `ALTER TABLE events ADD CONSTRAINT refuse_poison CHECK (pipeline_id <> 'poison')`)
	require.NoError(t, err)
	msgs := messages(t, events, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	poison := messages(t, []string{`{"type":"commit","pipeline_id":"poison","commit_id":"p","timestamp":1795600000}`}, time.Now())
	undecodable := stream.Message{Subject: "devopstic.events.native.commit", ID: "undecodable", Data: []byte(`{"type":`), ReceivedAt: time.Now()}
	all := append(append(append(append([]stream.Message{}, msgs[:1000]...), poison...), undecodable), msgs[1000:]...)
	publish(t, s.nats, all)
	s.waitDrained()
	out, err := s.admin("dead-letters", "list")
	require.NoError(t, err)
	t.Log(strings.TrimSpace(out))
	require.Contains(t, out, "refuse_poison")
	require.Contains(t, out, "not valid JSON")
	compareDumps(t, "poison mid-batch vs a clean single run (+2 dead letters)", want, fullDump(t, s.db))
}

// An empty database and a replay of the whole stream give the same tables as before.
func TestChaosEmptyDatabaseReplay(t *testing.T) {
	chaosOnly(t)
	t.Parallel()
	events := manyEvents(20000)
	want := referenceDump(t, events)
	s := startStack(t, "")
	s.postAll(events)
	s.waitDrained()
	compareDumps(t, "first run vs a clean single run", want, fullDump(t, s.db))

	empty := testenv.Postgres(t)
	s.cfg.Database.URL = empty
	began := time.Now()
	out, err := s.admin("replay", "--from", "1")
	require.NoError(t, err)
	t.Logf("%s (%s)", strings.TrimSpace(out), time.Since(began).Round(time.Millisecond))
	compareDumps(t, "empty database + replay of the whole stream", want, fullDump(t, openPool(t, empty)))
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }

func slogFor(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// waitDerived waits until the derivation queue is empty: a writer that wrote a full batch (it
// was behind) derives its facts once it has caught up, a moment after it acknowledged them.
func waitDerived(t testing.TB, db *pgxpool.Pool, timeout time.Duration) {
	t.Helper()
	var queued int
	ok := assertEventually(func() bool {
		err := db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM derive_queue_commits)
    + (SELECT count(*) FROM derive_queue_attempts) + (SELECT count(*) FROM derive_queue_incidents)`).Scan(&queued)
		return err == nil && queued == 0
	}, timeout)
	require.True(t, ok, "the writers did not derive what they queued: %d keys left", queued)
}
