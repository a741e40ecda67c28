//go:build cluster

// The cluster test runs in `make cluster-test` (CI runs it after `make test`), not in `make test`:
// it takes about 10 s alone, but 40 to 60 s under the race detector that `make test` uses.

package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/service"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The production shape, on loopback: three NATS servers in one JetStream cluster, the stream
// with 3 replicas, the ingest, and two writers each connected to a different node. 50,000
// events are posted in batches of 100 by concurrent clients; when a third of them are in, the
// node leading the stream is shut down, and when two thirds are in it is started again on its
// store. The clients behave as docs/api.md tells CI jobs to: on 503 they retry the same request.
//
// It proves what DESIGN.md promises for the cluster: every event answered 202 is in Postgres,
// exactly once, and in the stream exactly once (the retries of a request that was partly
// stored are deduplicated by event id); every other answer during the leader change is a 503,
// never a 202 for an event that is then lost, nor any other error.
func TestClusterSurvivesTheLossOfANode(t *testing.T) {
	const (
		events    = 50_000
		batchSize = 100
		clients   = 8
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))

	cluster := startNATSCluster(t, 3)
	dbURL := testenv.Postgres(t)

	natsCfg := config.NATS{
		URL:             cluster.urls(0),
		StreamReplicas:  3,
		StreamMaxAge:    time.Hour,
		StreamMaxBytes:  -1,
		DuplicateWindow: 10 * time.Minute,
		// Shorter than the leader election (about a second), so that requests caught by it are
		// answered 503 and retried: the retries of a partly stored request must be deduplicated.
		PublishTimeout: time.Second,
	}

	// Asynchronous NATS errors (a slow consumer, say), by connection, for the figures.
	var asyncErrs sync.Map
	onAsyncErr := nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		n, _ := asyncErrs.LoadOrStore(fmt.Sprintf("%s: %v (%s)", nc.Opts.Name, err, subject), new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	})

	// The stream and the auth bucket, set up by the admin as `devopstic migrate` does.
	ensureCtx, ensureCancel := context.WithTimeout(ctx, time.Minute)
	defer ensureCancel()
	adminLogin := cluster.passwords.As(stream.RoleAdmin)
	adminNC, err := stream.ConnectAs(natsCfg.URL, "admin", adminLogin, onAsyncErr)
	require.NoError(t, err)
	require.NoError(t, service.SetUp(ensureCtx, adminNC, adminLogin, natsCfg, log))
	adminNC.Close()

	// The ingest, as its role's user.
	ingestLogin := cluster.passwords.As(stream.RoleIngest)
	ingestNC, err := stream.ConnectAs(natsCfg.URL, "ingest", ingestLogin, onAsyncErr)
	require.NoError(t, err)
	defer ingestNC.Close()
	ingestStore, err := store.Open(ctx, dbURL, 4)
	require.NoError(t, err)
	defer ingestStore.Close()
	js, err := service.WaitForStream(ensureCtx, ingestNC, ingestLogin, log)
	require.NoError(t, err)
	ingestCfg := config.Ingest{
		HTTP: config.HTTP{BodyLimit: 1000000, MaxBatch: 1000},
		Auth: config.Auth{JWTSecret: strings.Repeat("k", 40), Username: "ci", Password: "cluster-test-password", TokenTTL: time.Hour},
		NATS: natsCfg,
	}
	app, err := service.Ingest(ingestCfg, ingestNC, js, ingestStore, nil, log)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- service.Serve(serveCtx, ln, app) }()
	defer func() { stopServe(); require.NoError(t, <-served) }()
	base := "http://" + ln.Addr().String()

	// Two writers, each with its own connection, preferring a different node; like a deployed
	// writer, one whose Write returns an error is started again (the orchestrator's restart).
	var writerRestarts atomic.Int64
	writersCtx, stopWriters := context.WithCancel(ctx)
	var writers sync.WaitGroup
	for i := range 2 {
		nc, err := stream.ConnectAs(cluster.urls(i+1), fmt.Sprintf("writer-%d", i), cluster.passwords.As(stream.RoleWriter), nats.DontRandomize(), onAsyncErr)
		require.NoError(t, err)
		defer nc.Close()
		st, err := store.Open(ctx, dbURL, 4)
		require.NoError(t, err)
		defer st.Close()
		wjs, err := jetstream.New(nc)
		require.NoError(t, err)
		writers.Add(1)
		go func() {
			defer writers.Done()
			tuning := config.WriterTuning{BatchSize: 500, BatchWait: 20 * time.Millisecond, MaxDeliver: 5, AckWait: 5 * time.Second, RetryMax: 200 * time.Millisecond}
			for writersCtx.Err() == nil {
				if err := service.Write(writersCtx, tuning, dbURL, wjs, st, nil, log); err != nil && writersCtx.Err() == nil {
					writerRestarts.Add(1)
					t.Logf("writer %d stopped (restarting it): %v", i, err)
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	defer func() { stopWriters(); writers.Wait() }()

	token := login(t, base, ingestCfg.Auth)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}

	// The clients.
	var (
		batches   = events / batchSize
		next      = make(chan int, batches)
		done      atomic.Int64 // batches answered 202
		accepted  atomic.Int64 // events answered 202
		answered  [600]atomic.Int64
		retries   atomic.Int64
		failures  = make(chan string, batches)
		acceptedB = make([]bool, batches)
	)
	for b := range batches {
		next <- b
	}
	close(next)
	start := time.Now()
	var posting sync.WaitGroup
	for range clients {
		posting.Add(1)
		go func() {
			defer posting.Done()
			for b := range next {
				body := batchBody(b, batchSize)
				for attempt := 0; ; attempt++ {
					if attempt > 0 {
						retries.Add(1)
					}
					status, err := postEvents(ctx, client, base, token, body)
					if err != nil {
						failures <- fmt.Sprintf("batch %d: %v", b, err)
						break
					}
					answered[status].Add(1)
					if status == http.StatusAccepted {
						acceptedB[b] = true
						accepted.Add(batchSize)
						done.Add(1)
						break
					}
					if status != http.StatusServiceUnavailable {
						failures <- fmt.Sprintf("batch %d: answered %d", b, status)
						break
					}
					if attempt > 200 {
						failures <- fmt.Sprintf("batch %d: still 503 after %d attempts", b, attempt)
						break
					}
					// docs/api.md's client retries after Retry-After (2 s); a shorter pause keeps
					// the test short and makes more requests meet the leader change.
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}

	// The failure: the stream's leader goes down at a third, comes back at two thirds.
	var (
		killed, restarted string
		killedAt          time.Duration
		newLeader         string
		leaderChange      time.Duration
	)
	waitFor := func(n int64) {
		for done.Load() < n && len(failures) == 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(int64(batches / 3))
	killed = cluster.streamLeader(t, js)
	killedAt = time.Since(start)
	cluster.stop(killed)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if l := cluster.streamLeaderOrEmpty(js); l != "" && l != killed {
			newLeader, leaderChange = l, time.Since(start)-killedAt
			break
		}
	}
	waitFor(int64(2 * batches / 3))
	cluster.start(t, killed)
	restarted = killed
	posting.Wait()
	elapsed := time.Since(start)
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	require.False(t, t.Failed())

	// Every accepted event is written, once.
	db, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close(ctx)
	var inPostgres int64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&inPostgres))
		if inPostgres >= accepted.Load() || time.Now().After(deadline) {
			break
		}
	}
	drained := time.Since(start)
	for b, ok := range acceptedB {
		require.True(t, ok, "batch %d was never accepted", b)
	}
	var distinct, wanted int64
	require.NoError(t, db.QueryRow(ctx, `SELECT count(DISTINCT id), count(*) FILTER (WHERE id LIKE 'native:%:cluster-%') FROM events`).Scan(&distinct, &wanted))
	require.Equal(t, int64(events), accepted.Load())
	require.Equal(t, int64(events), inPostgres, "events in Postgres")
	require.Equal(t, int64(events), distinct, "distinct event ids in Postgres")
	require.Equal(t, int64(events), wanted, "posted ids in Postgres")

	s, err := js.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(events), info.State.Msgs, "messages in the stream: each event once, retries deduplicated")

	require.NotEmpty(t, killed)
	require.NotEmpty(t, newLeader, "no new stream leader within 30 s of losing %s", killed)
	t.Logf("cluster test: %d events in %d requests of %d from %d clients in %s (%.0f events/s), all in Postgres after %s",
		events, batches, batchSize, clients, elapsed.Round(time.Millisecond), float64(events)/elapsed.Seconds(), drained.Round(time.Millisecond))
	t.Logf("cluster test: answers 202: %d, 503: %d; retried requests: %d; writer restarts: %d",
		answered[http.StatusAccepted].Load(), answered[http.StatusServiceUnavailable].Load(), retries.Load(), writerRestarts.Load())
	t.Logf("cluster test: stream leader %s stopped at %s; new leader %s elected %s later; %s restarted at two thirds; stream: %d messages, leader %s, replicas %s",
		killed, killedAt.Round(time.Millisecond), newLeader, leaderChange.Round(time.Millisecond), restarted, info.State.Msgs, info.Cluster.Leader, replicaStates(info.Cluster))
	var pgBytes int64
	require.NoError(t, db.QueryRow(ctx, `SELECT pg_total_relation_size('events')`).Scan(&pgBytes))
	t.Logf("cluster test: sizes: %d bytes per event in the stream (one replica), %d bytes per event in Postgres's events table with its indexes",
		info.State.Bytes/info.State.Msgs, pgBytes/events)
	asyncErrs.Range(func(k, v any) bool {
		t.Logf("cluster test: asynchronous NATS error %s: %d times", k, v.(*atomic.Int64).Load())
		return true
	})
}

// natsCluster is n embedded NATS servers with JetStream, routed to one another on loopback,
// with DevOpstic's users and permissions (those of deployments/nats/*.conf).
type natsCluster struct {
	passwords stream.Passwords
	names     []string
	clients   []int
	opts      map[string]func() *server.Options
	mu        sync.Mutex
	servers   map[string]*server.Server
}

func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{opts: map[string]func() *server.Options{}, servers: map[string]*server.Server{}}
	var err error
	c.passwords, err = stream.LocalPasswords(filepath.Join(t.TempDir(), stream.PasswordsFile))
	require.NoError(t, err)
	var routes []string
	routePorts := make([]int, n)
	for i := range n {
		c.names = append(c.names, fmt.Sprintf("nats-%d", i+1))
		c.clients = append(c.clients, freePort(t))
		routePorts[i] = freePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
	}
	for i, name := range c.names {
		dir := t.TempDir()
		c.opts[name] = func() *server.Options {
			return &server.Options{
				ServerName: name,
				Host:       "127.0.0.1",
				Port:       c.clients[i],
				JetStream:  true,
				StoreDir:   dir,
				Cluster:    server.ClusterOpts{Name: "devopstic-test", Host: "127.0.0.1", Port: routePorts[i]},
				Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
				NoSigs:     true,
				NoLog:      true,
				Users:      users(t, c.passwords),
				// Each server of a real cluster has its own machine; here three share two cores.
				JetStreamMaxMemory: 64 << 20,
			}
		}
	}
	var wg sync.WaitGroup
	for _, name := range c.names {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(t, name) }()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, name := range c.names {
			c.stop(name)
		}
	})
	return c
}

func users(t *testing.T, p stream.Passwords) []*server.User {
	u, err := stream.ServerUsers(p)
	require.NoError(t, err)
	return u
}

func (c *natsCluster) start(t *testing.T, name string) {
	srv, err := server.NewServer(c.opts[name]())
	if err != nil {
		t.Errorf("NATS %s: %v", name, err)
		return
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Errorf("NATS %s did not start within 30 s", name)
		return
	}
	c.mu.Lock()
	c.servers[name] = srv
	c.mu.Unlock()
}

// stop shuts the server down as a crash would look to its peers and clients: connections and
// routes drop at once (no lame-duck mode); its store stays for start.
func (c *natsCluster) stop(name string) {
	c.mu.Lock()
	srv := c.servers[name]
	delete(c.servers, name)
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// urls lists every node's client URL, starting with node first.
func (c *natsCluster) urls(first int) string {
	var urls []string
	for i := range c.clients {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", c.clients[(first+i)%len(c.clients)]))
	}
	return strings.Join(urls, ",")
}

func (c *natsCluster) streamLeader(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if l := c.streamLeaderOrEmpty(js); l != "" {
			return l
		}
	}
	t.Fatal("the stream has no leader")
	return ""
}

func (c *natsCluster) streamLeaderOrEmpty(js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream.StreamName)
	if err != nil {
		return ""
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

func replicaStates(ci *jetstream.ClusterInfo) string {
	if ci == nil {
		return "none"
	}
	var parts []string
	for _, r := range ci.Replicas {
		parts = append(parts, fmt.Sprintf("%s current=%v lag=%d", r.Name, r.Current, r.Lag))
	}
	return strings.Join(parts, ", ")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// batchBody is batch b of commit events with ids cluster-<n>, each event's id unique.
func batchBody(b, size int) []byte {
	evs := make([]map[string]any, size)
	for i := range size {
		n := b*size + i
		evs[i] = map[string]any{
			"id":          fmt.Sprintf("cluster-%06d", n),
			"type":        "commit",
			"pipeline_id": fmt.Sprintf("service-%d", n%10),
			"commit_id":   fmt.Sprintf("%040x", n),
			"timestamp":   1_700_000_000 + n,
		}
	}
	body, _ := json.Marshal(evs)
	return body
}

func postEvents(ctx context.Context, client *http.Client, base, token string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/events", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func login(t *testing.T, base string, a config.Auth) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": a.Username, "password": a.Password})
	resp, err := http.Post(base+"/tokens", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got struct{ Token string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.NotEmpty(t, got.Token)
	return got.Token
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
