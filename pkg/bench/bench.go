// Package bench measures DevOpstic against the parts it stands on, in one run on the same
// servers (make bench): JetStream's publish ceilings and Postgres COPY first, then the ingest
// over HTTP, the writer draining a backlog, that backlog replayed from the stream into a second,
// empty database and every table of it rebuilt (as `devopstic replay` and `devopstic rebuild`
// do), the latency from a 202 to the derived row under a steady load, the metrics API over a
// year of history, the writer again once the tables are full, and the services' peak memory.
// The ingest and the writer run as processes of their own, built from services/; Run prints
// one table with each figure beside its ceiling or baseline and the target it is held to.
package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/service"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
)

// Config says what to run and where.
type Config struct {
	// Scale multiplies every size and duration: 1 is the full run (10 million events for the
	// metrics API, a backlog of a million), 0.01 a quick one. Durations have a floor, so that
	// a tiny run still measures something.
	Scale float64
	// IngestBin and WriterBin are the services' binaries (go build ./services/...).
	IngestBin, WriterBin string
	// DatabaseURL is an empty database the run may fill, as a postgres:// URL: the replay
	// step also creates (and drops) a database of the same name with "_replay" appended on
	// the same server, so its user needs CREATEDB. NATSURL a NATS server with JetStream,
	// whose users have NATSPasswords (stream.ServerUsers): the run sets the stream up as the
	// admin and runs the ingest and the writer as their roles' users.
	DatabaseURL, NATSURL string
	NATSPasswords        stream.Passwords
	// Progress receives what the run is doing and the services' warnings.
	Progress io.Writer
	// BaselineIngestBin, when set, is the ingest binary of another version (BaselineLabel
	// names it): single-event POSTs are measured on it and on IngestBin in turns, in this
	// run, so that a change's cost is a ratio on the same machine at the same moment. It
	// connects as NATS's admin user, which any version can use: its URL carries the login.
	BaselineIngestBin, BaselineLabel string
}

// Row is one line of the table.
type Row struct {
	Figure   string
	Measured string
	// Baseline is the ceiling or baseline measured in the same run ("" when none), and Ratio
	// the figure against it.
	Baseline, Ratio string
	Target          string
	// Verdict is "met" or "MISSED" when there is a target.
	Verdict string
}

// sizes are the run's sizes at its scale.
type sizes struct {
	step       time.Duration // each ceiling and ingest measurement
	backlog    int           // events in each writer backlog
	steady     time.Duration // the end-to-end load
	steadyRate int
	history    int // events loaded for the metrics API
	requests   int // metrics API requests per query
}

func sizesAt(scale float64) sizes {
	return sizes{
		step:       clampDuration(time.Duration(float64(5*time.Second)*scale), 300*time.Millisecond, 5*time.Second),
		backlog:    max(int(1_000_000*scale), 1000),
		steady:     max(time.Duration(float64(60*time.Second)*scale), 2*time.Second),
		steadyRate: 2000,
		history:    max(int(10_000_000*scale), 10_000),
		requests:   200,
	}
}

func clampDuration(d, lo, hi time.Duration) time.Duration { return min(max(d, lo), hi) }

// Credentials of the bench's own throwaway ingest process, which listens on 127.0.0.1 for the
// length of a run: placeholders, not secrets.
const (
	username      = "bench"
	password      = "bench-password-not-secret"
	jwtSecret     = "bench-jwt-secret-not-secret-at-all-0123456789"
	githubSecret  = "bench-github-secret"
	e2ePipeline   = "bench-e2e"
	singlePayload = `{"id":%q,"type":"commit","pipeline_id":"bench-ingest","commit_id":%q,"timestamp":1795600000}`
)

// runner holds what the steps share.
type runner struct {
	cfg      Config
	sizes    sizes
	streamOf stream.Config
	pool     *pgxpool.Pool
	st       *store.Store // the same database, for what the store package counts
	nc       *nats.Conn
	js       jetstream.JetStream
	rows     []Row

	ingest      *process
	ingestURL   string
	token       string
	ceilings    map[string]float64 // rate by name
	writerRates map[string]float64
	rss         map[string]int64
	backlog     int // events in the last writer backlog

	// emptyBacklog is the stream range of the backlog drained into empty tables, which the
	// replay step applies again.
	emptyBacklog struct{ first, last uint64 }
	// writerTuning is the writer's default configuration: the batch size and retry cap that
	// `devopstic replay` and `devopstic rebuild` use too.
	writerTuning config.WriterTuning
	// log takes the Applier's warnings in the replay and rebuild steps.
	log *slog.Logger
	// replayed is the database the replay step fills and the rebuild step recomputes; nil
	// before the one and after the other.
	replayed *replayDB
}

// Run measures everything and returns the table's rows. It fails when a step cannot run or
// loses an event; a missed target is a row's verdict, not an error.
func Run(ctx context.Context, cfg Config) ([]Row, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	// The services' logs are copied into Progress from other goroutines.
	cfg.Progress = &lockedWriter{w: cfg.Progress}
	var natsCfg config.NATS
	if err := config.Parse(&natsCfg, map[string]string{}); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, sizes: sizesAt(cfg.Scale), streamOf: service.StreamConfig(natsCfg),
		ceilings: map[string]float64{}, writerRates: map[string]float64{}, rss: map[string]int64{},
		log: slog.New(slog.NewTextHandler(cfg.Progress, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if err := config.Parse(&r.writerTuning, map[string]string{}); err != nil {
		return nil, err
	}

	if err := store.Migrate(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect to Postgres: %w", err)
	}
	defer pool.Close()
	r.pool = pool
	if r.st, err = store.Open(ctx, cfg.DatabaseURL, 2); err != nil {
		return nil, err
	}
	defer r.st.Close()
	// A run that stops between the replay and the rebuild steps leaves the replayed database.
	defer func() { _ = r.dropReplayDB(context.WithoutCancel(ctx)) }()
	nc, err := nats.Connect(cfg.NATSURL, append(cfg.NATSPasswords.As(stream.RoleAdmin).Options(), nats.Name("devopstic-bench"))...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	r.nc = nc
	if r.js, err = jetstream.New(nc); err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	// What `devopstic migrate` does in a deployment: the ingest and the writer may not.
	if err := stream.Setup(ctx, r.js, r.streamOf); err != nil {
		return nil, err
	}

	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"ceilings: JetStream publish and Postgres COPY", r.measureCeilings},
		{"ingest: POST /events and POST /github/events over HTTP", r.measureIngest},
		{"writer: a backlog drained into empty tables", func(ctx context.Context) error { return r.measureWriter(ctx, "empty") }},
		{"replay: the stream into an empty database", r.measureReplay},
		{"rebuild: every table recomputed", r.measureRebuild},
		{"end to end: a steady load", r.measureEndToEnd},
		{"metrics API: a year of history", r.measureMetrics},
		{"writer: a backlog drained into full tables", func(ctx context.Context) error { return r.measureWriter(ctx, "full") }},
	}
	if cfg.BaselineIngestBin != "" {
		steps = slices.Insert(steps, 2, struct {
			name string
			run  func(context.Context) error
		}{"ingest: this build against " + cmp.Or(cfg.BaselineLabel, "the baseline"), r.measureAgainstBaseline})
	}
	defer func() {
		if r.ingest != nil {
			_ = r.ingest.stop()
		}
	}()
	for i, s := range steps {
		fmt.Fprintf(cfg.Progress, "[%d/%d] %s\n", i+1, len(steps), s.name)
		start := time.Now()
		if err := s.run(ctx); err != nil {
			return r.rows, fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(cfg.Progress, "      done in %s\n", time.Since(start).Round(100*time.Millisecond))
	}
	r.memoryRows()
	if err := r.ingest.stop(); err != nil {
		return r.rows, err
	}
	r.ingest = nil
	return r.rows, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (r *runner) add(row Row) { r.rows = append(r.rows, row) }

// compare fills a row's baseline, ratio and verdict: the figure must reach want × baseline.
func compare(row Row, figure, baseline, want float64) Row {
	if baseline > 0 {
		row.Ratio = fmt.Sprintf("%.2f", figure/baseline)
	}
	if want > 0 {
		row.Verdict = verdict(baseline > 0 && figure >= want*baseline)
	}
	return row
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// plural is "1 client", "16 clients".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func perSecond(v float64) string { return fmt.Sprintf("%.0f/s", v) }

func millis(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func mebibytes(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// ---- 1. Ceilings

// sampleEvent is a single event as a CI job posts it; the ceilings publish messages of its size.
func sampleEvent(id string) []byte { return fmt.Appendf(nil, singlePayload, id, id) }

func (r *runner) measureCeilings(ctx context.Context) error {
	drop, err := createCeilingStream(ctx, r.js, r.streamOf)
	if err != nil {
		return err
	}
	defer drop()
	data := sampleEvent("ceiling-0000000000")
	for _, n := range []int{1, 16, 64} {
		res, err := syncPublish(ctx, r.js, n, r.sizes.step, data, fmt.Sprintf("sync%d", n))
		if err != nil {
			return err
		}
		r.ceilings[fmt.Sprintf("sync%d", n)] = res.rate()
		r.add(Row{Figure: fmt.Sprintf("ceiling: JetStream publish, synchronous, %s", plural(n, "publisher")),
			Measured: fmt.Sprintf("%s (p50 %s, p99 %s)", perSecond(res.rate()), millis(res.percentile(0.5)), millis(res.percentile(0.99)))})
	}
	res, err := asyncPublish(ctx, r.nc, asyncWindow, r.sizes.step, data, "async")
	if err != nil {
		return err
	}
	r.ceilings["async"] = res.rate()
	r.add(Row{Figure: fmt.Sprintf("ceiling: JetStream publish, asynchronous, %d acks outstanding", asyncWindow), Measured: perSecond(res.rate())})

	// HTTP alone: the same requests answered by a server that does nothing with them.
	base, stop, err := httpServer()
	if err != nil {
		return err
	}
	defer stop()
	for _, n := range []int{1, 16, 64} {
		res := closedLoop(ctx, n, r.sizes.step, http.StatusAccepted, func(w, i int) (*http.Request, int) {
			req, err := http.NewRequest(http.MethodPost, base+"/events", bytes.NewReader(data))
			if err != nil {
				panic(err) // the URL is ours and valid
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+jwtSecret) // a header of a token's size
			return req, 1
		})
		if res.failed > 0 {
			return fmt.Errorf("HTTP ceiling: %d requests failed: %s", res.failed, res.firstFail)
		}
		r.ceilings[fmt.Sprintf("http%d", n)] = res.rate()
		r.add(Row{Figure: fmt.Sprintf("ceiling: HTTP POST answered 202 by fiber doing nothing (in the bench process), %s", plural(n, "client")),
			Measured: fmt.Sprintf("%s (p50 %s, p99 %s)", perSecond(res.rate()), millis(res.percentile(0.5)), millis(res.percentile(0.99)))})
	}

	// The writer's first backlog doubles as the rows COPY writes: the same events.
	rate, err := copyCeiling(ctx, r.pool, backlogEvents("backlog-empty", r.sizes.backlog))
	if err != nil {
		return err
	}
	r.ceilings["copy"] = rate
	r.add(Row{Figure: "ceiling: Postgres COPY of the raw event rows (indexes included)", Measured: perSecond(rate)})
	return nil
}

// backlogEvents is a writer backlog: about n events of a year of history under prefix.
func backlogEvents(prefix string, n int) [][]byte {
	raws := make([][]byte, 0, n+n/10)
	History(prefix, n, func(_ int, raw []byte) { raws = append(raws, raw) })
	return raws
}

// ---- 2. Ingest

func (r *runner) startIngest(ctx context.Context) error {
	p, base, token, err := r.runIngest(ctx, "ingest", r.cfg.IngestBin, map[string]string{
		"DEVOPSTIC_NATS_URL":      r.cfg.NATSURL,
		"DEVOPSTIC_NATS_USER":     stream.RoleIngest.User(),
		"DEVOPSTIC_NATS_PASSWORD": r.cfg.NATSPasswords[stream.RoleIngest],
	})
	r.ingest, r.ingestURL, r.token = p, base, token
	return err
}

// runIngest starts an ingest binary with natsEnv and the run's other settings, and returns it
// once it is ready, with its URL and a token.
func (r *runner) runIngest(ctx context.Context, name, bin string, natsEnv map[string]string) (*process, string, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", "", err
	}
	env := map[string]string{
		"DEVOPSTIC_HTTP_ADDR":             addr,
		"DEVOPSTIC_DATABASE_URL":          r.cfg.DatabaseURL,
		"DEVOPSTIC_JWT_SECRET":            jwtSecret,
		"DEVOPSTIC_USERNAME":              username,
		"DEVOPSTIC_PASSWORD":              password,
		"DEVOPSTIC_GITHUB_WEBHOOK_SECRET": githubSecret,
		"DEVOPSTIC_LOG_LEVEL":             "warn",
	}
	maps.Copy(env, natsEnv)
	p, err := startProcess(name, bin, env, r.cfg.Progress)
	if err != nil {
		return nil, "", "", err
	}
	base := "http://" + addr
	if err := p.waitReady(ctx, base+"/readyz"); err != nil {
		return p, base, "", err
	}
	token, err := login(base)
	return p, base, token, err
}

// measureAgainstBaseline posts single events to this build's ingest and to the baseline's,
// in turns (this, baseline, this, baseline), and compares the rates: what this build's
// changes cost, or save, on the busiest path.
func (r *runner) measureAgainstBaseline(ctx context.Context) error {
	natsURL, err := url.Parse(r.cfg.NATSURL)
	if err != nil {
		return fmt.Errorf("NATS URL: %w", err)
	}
	natsURL.User = url.UserPassword(stream.RoleAdmin.User(), r.cfg.NATSPasswords[stream.RoleAdmin])
	p, base, token, err := r.runIngest(ctx, "baseline ingest", r.cfg.BaselineIngestBin, map[string]string{"DEVOPSTIC_NATS_URL": natsURL.String()})
	if p != nil {
		defer p.stop()
	}
	if err != nil {
		return err
	}
	const rounds = 3
	for _, workers := range []int{1, 16} {
		var this, baseline float64
		for round := range rounds {
			for _, side := range []struct {
				base, token string
				rate        *float64
			}{{r.ingestURL, r.token, &this}, {base, token, &baseline}} {
				run := fmt.Sprintf("cmp-%d-%d-%s", workers, round, side.base)
				res := closedLoop(ctx, workers, r.sizes.step, http.StatusAccepted, func(w, i int) (*http.Request, int) {
					return eventsRequestTo(side.base, side.token, "application/json", sampleEvent(fmt.Sprintf("%s-%d-%d", run, w, i))), 1
				})
				if res.events == 0 {
					return fmt.Errorf("single events, %s, to %s: no request was accepted (%s)", plural(workers, "client"), side.base, res.firstFail)
				}
				*side.rate += res.rate() / rounds
			}
		}
		r.add(compare(Row{
			Figure:   fmt.Sprintf("ingest: POST /events, single events, %s, this build (%d rounds in turns)", plural(workers, "client"), rounds),
			Measured: perSecond(this),
			Baseline: fmt.Sprintf("%s (%s)", perSecond(baseline), cmp.Or(r.cfg.BaselineLabel, "baseline")),
		}, this, baseline, 0))
	}
	return nil
}

func login(base string) (string, error) {
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, username, password)
	resp, err := http.Post(base+"/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("POST /tokens: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_, rest, ok := strings.Cut(string(b), `"token":"`)
	token, _, _ := strings.Cut(rest, `"`)
	if resp.StatusCode != http.StatusOK || !ok || token == "" {
		return "", fmt.Errorf("POST /tokens: %d %s", resp.StatusCode, b)
	}
	return token, nil
}

// eventsRequest is a POST /events of body to the run's ingest.
func (r *runner) eventsRequest(contentType string, body []byte) *http.Request {
	return eventsRequestTo(r.ingestURL, r.token, contentType, body)
}

// eventsRequestTo is a POST /events of body to the ingest at base, with token.
func eventsRequestTo(base, token, contentType string, body []byte) *http.Request {
	req, err := http.NewRequest(http.MethodPost, base+"/events", bytes.NewReader(body))
	if err != nil {
		panic(err) // the URL is ours and valid
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// batchBody is n events, each with a unique id, as a JSON array or NDJSON.
func batchBody(run string, w, i, n int, ndjson bool) []byte {
	var b []byte
	if !ndjson {
		b = append(b, '[')
	}
	for k := range n {
		if k > 0 && !ndjson {
			b = append(b, ',')
		}
		b = append(b, sampleEvent(fmt.Sprintf("%s-%d-%d-%d", run, w, i, k))...)
		if ndjson {
			b = append(b, '\n')
		}
	}
	if !ndjson {
		b = append(b, ']')
	}
	return b
}

func (r *runner) measureIngest(ctx context.Context) error {
	if err := r.startIngest(ctx); err != nil {
		return err
	}
	type ingestCase struct {
		figure  string
		workers int
		single  bool // one event per request
		next    requestFunc
		ceiling string  // the publish ceiling it is compared with
		want    float64 // the share of the ceiling it must reach; 0 for none
	}
	single := func(run string) requestFunc {
		return func(w, i int) (*http.Request, int) {
			return r.eventsRequest("application/json", sampleEvent(fmt.Sprintf("%s-%d-%d", run, w, i))), 1
		}
	}
	batch := func(run string, n int, ndjson bool) requestFunc {
		contentType := "application/json"
		if ndjson {
			contentType = "application/x-ndjson"
		}
		return func(w, i int) (*http.Request, int) {
			return r.eventsRequest(contentType, batchBody(run, w, i, n, ndjson)), n
		}
	}
	github := githubRequest(r.ingestURL)
	const batchClients = 4
	cases := []ingestCase{
		{"ingest: POST /events, single events, 1 client", 1, true, single("s1"), "sync1", 0},
		{"ingest: POST /events, single events, 16 clients", 16, true, single("s16"), "sync16", 0.5},
		{"ingest: POST /events, single events, 64 clients", 64, true, single("s64"), "sync64", 0},
		{fmt.Sprintf("ingest: POST /events, JSON arrays of 100, %d clients", batchClients), batchClients, false, batch("a100", 100, false), "async", 0},
		{fmt.Sprintf("ingest: POST /events, NDJSON of 100, %d clients", batchClients), batchClients, false, batch("n100", 100, true), "async", 0},
		{fmt.Sprintf("ingest: POST /events, JSON arrays of 1,000, %d clients", batchClients), batchClients, false, batch("a1000", 1000, false), "async", 0.5},
		{fmt.Sprintf("ingest: POST /events, NDJSON of 1,000, %d clients", batchClients), batchClients, false, batch("n1000", 1000, true), "async", 0.5},
		{"ingest: POST /github/events, signed pull_request (28 KB), 16 clients", 16, false, github, "sync16", 0},
	}
	singleRate := map[int]float64{} // single events per second, by clients
	for _, c := range cases {
		res := closedLoop(ctx, c.workers, r.sizes.step, http.StatusAccepted, c.next)
		if res.failed > 0 {
			fmt.Fprintf(r.cfg.Progress, "      %s: %d requests failed, the first: %s\n", c.figure, res.failed, res.firstFail)
		}
		if res.events == 0 {
			return fmt.Errorf("%s: no request was accepted (%s)", c.figure, res.firstFail)
		}
		row := Row{Figure: c.figure,
			Measured: fmt.Sprintf("%s (p50 %s, p99 %s, %d failed)", perSecond(res.rate()), millis(res.percentile(0.5)), millis(res.percentile(0.99)), res.failed),
			Baseline: fmt.Sprintf("%s (publish %s)", perSecond(r.ceilings[c.ceiling]), c.ceiling)}
		if c.want > 0 {
			row.Target = fmt.Sprintf("≥ %.0f%% of the publish ceiling", c.want*100)
		}
		row = compare(row, res.rate(), r.ceilings[c.ceiling], c.want)
		if c.single {
			singleRate[c.workers] = res.rate()
			// Also against HTTP alone: what is left once requests are made at all.
			if httpRate := r.ceilings[fmt.Sprintf("http%d", c.workers)]; httpRate > 0 {
				row.Baseline += fmt.Sprintf("; %s (HTTP%d)", perSecond(httpRate), c.workers)
				row.Ratio += fmt.Sprintf("; %.2f of HTTP", res.rate()/httpRate)
			}
			if c.workers == 64 {
				// Concurrency 64 must not fall below 16, and must stay quick.
				row.Target = "≥ the rate at 16 clients; p99 < 50 ms"
				row.Verdict = verdict(res.rate() >= singleRate[16] && res.percentile(0.99) < 50*time.Millisecond)
			}
		}
		r.add(row)
	}
	return nil
}

// ---- 3. and 6. Writer

// measureWriter publishes a backlog, then starts a writer and times it draining the backlog
// into the raw and derived tables. The first run ("empty") finds the tables empty; the second
// ("full") finds the metrics API's year of history in them.
func (r *runner) measureWriter(ctx context.Context, tables string) error {
	prefix := "backlog-" + tables
	raws := backlogEvents(prefix, r.sizes.backlog)
	r.backlog = len(raws)
	if tables == "empty" {
		// The stream holds the ingest step's events: start from a stream of the backlog only.
		s, err := r.js.Stream(ctx, stream.StreamName)
		if err != nil {
			return fmt.Errorf("stream: %w", err)
		}
		if err := s.Purge(ctx); err != nil {
			return fmt.Errorf("purge the ingest step's events: %w", err)
		}
		if err := r.js.DeleteConsumer(ctx, stream.StreamName, stream.ConsumerName); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete consumer: %w", err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream info: %w", err)
		}
		r.emptyBacklog.first = info.State.LastSeq + 1 // a purge keeps the sequence going
	}
	fmt.Fprintf(r.cfg.Progress, "      publishing a backlog of %d events\n", len(raws))
	lastSeq, err := publishBacklog(ctx, r.nc, raws)
	if err != nil {
		return err
	}
	if tables == "empty" {
		r.emptyBacklog.last = lastSeq
	}

	w, err := r.startWriter()
	if err != nil {
		return err
	}
	defer func() { _ = w.stop() }() // stopped below; this is for the error paths
	elapsed, err := r.waitDrained(ctx, w, lastSeq, len(raws))
	if err != nil {
		return err
	}
	var written int
	if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE pipeline_id LIKE $1`, prefix+"-%").Scan(&written); err != nil {
		return fmt.Errorf("count written events: %w", err)
	}
	if written != len(raws) {
		return fmt.Errorf("the writer wrote %d events of a backlog of %d", written, len(raws))
	}
	if r.rss["writer-"+tables], err = w.peakRSS(); err != nil {
		return err
	}
	if err := w.stop(); err != nil {
		return err
	}
	rate := float64(len(raws)) / elapsed.Seconds()
	r.writerRates[tables] = rate
	switch tables {
	case "empty":
		r.add(compare(Row{Figure: fmt.Sprintf("writer: backlog of %d events into empty raw + derived tables", len(raws)),
			Measured: perSecond(rate), Baseline: perSecond(r.ceilings["copy"]) + " (COPY)", Target: "≥ 40% of COPY"}, rate, r.ceilings["copy"], 0.4))
	case "full":
		var rows int64
		if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&rows); err != nil {
			return fmt.Errorf("count events: %w", err)
		}
		r.add(compare(Row{Figure: fmt.Sprintf("writer: the same backlog with %d events already in the tables", rows-int64(len(raws))),
			Measured: perSecond(rate), Baseline: perSecond(r.writerRates["empty"]) + " (empty tables)", Target: "≥ 80% of empty tables"},
			rate, r.writerRates["empty"], 0.8))
	}
	return nil
}

func (r *runner) startWriter() (*process, error) {
	return startProcess("writer", r.cfg.WriterBin, map[string]string{
		"DEVOPSTIC_DATABASE_URL":  r.cfg.DatabaseURL,
		"DEVOPSTIC_NATS_URL":      r.cfg.NATSURL,
		"DEVOPSTIC_NATS_USER":     stream.RoleWriter.User(),
		"DEVOPSTIC_NATS_PASSWORD": r.cfg.NATSPasswords[stream.RoleWriter],
		"DEVOPSTIC_LOG_LEVEL":     "warn",
	}, r.cfg.Progress)
}

// publishBacklog publishes raws as the ingest would, in requests of 1,000, and returns the
// stream's last sequence after them.
func publishBacklog(ctx context.Context, nc *nats.Conn, raws [][]byte) (uint64, error) {
	pub, err := stream.NewPublisher(nc, 30*time.Second)
	if err != nil {
		return 0, err
	}
	received := time.Now().UTC()
	for i := 0; i < len(raws); i += 1000 {
		msgs, err := nativeMessages(raws[i:min(i+1000, len(raws))], received)
		if err != nil {
			return 0, err
		}
		if err := pub.Publish(ctx, msgs); err != nil {
			return 0, err
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, fmt.Errorf("open JetStream: %w", err)
	}
	s, err := js.Stream(ctx, stream.StreamName)
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// waitDrained waits until the writer has acknowledged the stream up to lastSeq and derived
// what it queued, and returns the time since the writer started. A writer behind the stream
// writes full batches' base facts and queues their derivation (store.Deferred), deriving the
// queue once caught up: the acks alone come before the derived rows.
func (r *runner) waitDrained(ctx context.Context, w *process, lastSeq uint64, total int) (time.Duration, error) {
	start := time.Now()
	lastPrint := start
	for {
		if err := w.exited(); err != nil {
			return 0, err
		}
		var (
			acked  uint64
			queued int64 = -1 // not counted until the acks are in
		)
		c, err := r.js.Consumer(ctx, stream.StreamName, stream.ConsumerName)
		if err == nil {
			info, err := c.Info(ctx)
			if err != nil {
				return 0, fmt.Errorf("consumer info: %w", err)
			}
			acked = info.AckFloor.Stream
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return 0, fmt.Errorf("consumer: %w", err)
		}
		if acked >= lastSeq {
			if queued, err = r.st.Queued(ctx); err != nil {
				return 0, err
			}
		}
		if queued == 0 {
			elapsed := time.Since(start)
			fmt.Fprintf(r.cfg.Progress, "\r      drained %d events in %s\n", total, elapsed.Round(10*time.Millisecond))
			return elapsed, nil
		}
		if time.Since(lastPrint) >= time.Second {
			lastPrint = time.Now()
			if queued > 0 {
				fmt.Fprintf(r.cfg.Progress, "\r      writer deriving, %d keys queued (%s)", queued, time.Since(start).Round(time.Second))
			} else {
				fmt.Fprintf(r.cfg.Progress, "\r      writer at stream sequence %d of %d (%s)", acked, lastSeq, time.Since(start).Round(time.Second))
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
