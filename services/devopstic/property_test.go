package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/history"
	"github.com/devopstic/devopstic/pkg/oracle"
	"github.com/devopstic/devopstic/pkg/service"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
)

// The property test's knobs, read from the environment so that a failing seed is re-run as the
// failure message says:
//
//	DEVOPSTIC_PROPERTY_SEEDS=500        seeds 1 to 500 instead of the default few
//	DEVOPSTIC_PROPERTY_SEED=17          that seed alone
//	DEVOPSTIC_PROPERTY_SHAPES=none      without the shapes the metrics API once got wrong (all
//	                                    of them by default; or a list of them; pkg/history's
//	                                    Shapes says what each is): short-sha, tier-bounds,
//	                                    github-merge. Each failed until the derived facts of
//	                                    issue 13 (seeds 3, 24 and 1 showed it).
const (
	envSeeds  = "DEVOPSTIC_PROPERTY_SEEDS"
	envSeed   = "DEVOPSTIC_PROPERTY_SEED"
	envShapes = "DEVOPSTIC_PROPERTY_SHAPES"
	// defaultSeeds keeps make test's part short: each seed is a stack of its own. pkg/history's
	// tests check that these seeds cover every shape of its generator.
	defaultSeeds = 3
)

// Every figure of every metric, for random windows, pipelines (or all), environments and
// intervals, equals the reference implementation's (pkg/oracle) on random histories
// (pkg/history) of native events and GitHub deliveries, delivered through the whole stack:
// shuffled, in batches, some twice, some straight onto the stream, written by three writers at
// once.
func TestPropertyDORAMatchesReference(t *testing.T) {
	t.Parallel()
	shapes, err := history.ParseShapes(cmp.Or(os.Getenv(envShapes), "all"))
	require.NoError(t, err, envShapes)
	seeds := propertySeeds(t)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			checkHistory(t, history.Generate(seed, shapes))
		})
	}
}

func propertySeeds(t *testing.T) []uint64 {
	if s := os.Getenv(envSeed); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, envSeed)
		return []uint64{seed}
	}
	n := defaultSeeds
	if s := os.Getenv(envSeeds); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err, envSeeds)
	}
	var seeds []uint64
	for i := 1; i <= n; i++ {
		seeds = append(seeds, uint64(i))
	}
	return seeds
}

func checkHistory(t *testing.T, h *history.History) {
	// The reference reads what the stack is sent: every delivery, duplicates included.
	ref := oracle.New()
	for _, d := range h.Deliveries {
		for _, e := range d.Events {
			add := ref.AddNative
			if d.Mode == history.GitHub {
				add = func(body []byte) error { return ref.AddGitHub(d.Name, body) }
			}
			require.NoError(t, add(e), "seed %d: the reference refused %s", h.Seed, e)
		}
	}

	began := time.Now()
	s := startStack(t, "", withEnv("DEVOPSTIC_WRITER_BATCH_SIZE", "40"), withEnv("DEVOPSTIC_GITHUB_WEBHOOK_SECRET", githubSecret))
	s.extraWriters(2)
	started := time.Now()
	s.deliverHistory(h.Deliveries)
	s.waitDrained()
	written := time.Now()

	var failures []string
	for _, q := range h.Queries {
		path := "/api/v1/metrics/dora?" + q.Values().Encode()
		env := q.Environment
		if env == "" {
			env = "production"
		}
		want, err := ref.Report(oracle.Query{Pipeline: q.Pipeline, Environment: env, From: q.From, To: q.To, Interval: q.Interval, Benchmark: q.Benchmark})
		require.NoError(t, err)
		wantJSON, err := json.Marshal(want)
		require.NoError(t, err)
		got := s.getJSON(path)

		if diff := jsonDiff(wantJSON, []byte(got)); len(diff) > 0 {
			failures = append(failures, fmt.Sprintf("GET %s\n    %s", path, strings.Join(diff, "\n    ")))
		}
	}
	t.Logf("seed %d: %d native events and %d GitHub deliveries in %d deliveries; stack %s, delivered and written %s, %d queries %s",
		h.Seed, len(h.Events), len(h.Webhooks), len(h.Deliveries), started.Sub(began).Round(time.Millisecond), written.Sub(started).Round(time.Millisecond),
		len(h.Queries), time.Since(written).Round(time.Millisecond))
	checkBulkPaths(t, s, h.Seed)
	if len(failures) > 0 {
		rerun := fmt.Sprintf("%s=%d", envSeed, h.Seed)
		if v := os.Getenv(envShapes); v != "" {
			rerun += fmt.Sprintf(" %s=%s", envShapes, v)
		}
		t.Errorf("seed %d: %d of %d queries differ from the reference (api = what the API said, reference = pkg/oracle):\n%s\n"+
			"re-run: %s go test -count=1 -run 'TestPropertyDORAMatchesReference' ./services/devopstic/",
			h.Seed, len(failures), len(h.Queries), strings.Join(failures[:min(len(failures), 6)], "\n"), rerun)
	}
}

// deliverHistory sends the deliveries from three clients at once, each in its order. The
// clients' connections are closed when they are done: a connection the HTTP client dialled
// for a request that another connection then served is never used, and the server would wait
// for it on shutdown.
func (s *stack) deliverHistory(ds []history.Delivery) {
	s.t.Helper()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	post := func(path, contentType, body string, headers ...string) {
		req, err := http.NewRequest("POST", s.base+path, strings.NewReader(body))
		require.NoError(s.t, err)
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer "+s.token)
		for i := 0; i+1 < len(headers); i += 2 {
			if headers[i+1] != "" {
				req.Header.Set(headers[i], headers[i+1])
			}
		}
		resp, err := client.Do(req)
		require.NoError(s.t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		require.NoError(s.t, err)
		require.Equal(s.t, http.StatusAccepted, resp.StatusCode, "%s", out)
	}
	received := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for client := range 3 {
		wg.Go(func() {
			for i := client; i < len(ds); i += 3 {
				d := ds[i]
				var lines []string
				for _, e := range d.Events {
					lines = append(lines, string(e))
				}
				switch {
				case d.Mode == history.GitHub:
					post("/github/events", "application/json", lines[0], "X-GitHub-Event", d.Name,
						"X-GitHub-Delivery", d.ID, "X-Hub-Signature-256", sign([]byte(lines[0])))
				case d.Mode == history.Publish:
					s.publishRaw(lines, received)
				case d.Mode == history.PostNDJSON:
					post("/events", "application/x-ndjson", strings.Join(lines, "\n")+"\n")
				case len(lines) == 1:
					post("/events", "application/json", lines[0])
				default:
					post("/events", "application/json", "["+strings.Join(lines, ",")+"]")
				}
			}
		})
	}
	wg.Wait()
}

// extraWriters runs n more writers in the test process on the stack's stream and database, so
// that batches of one history are written by several writers at once.
func (s *stack) extraWriters(n int) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Cleanups run last registered first: the writers stop before their connections close.
	defer s.t.Cleanup(func() { cancel(); wg.Wait() })
	log := slogFor(s.t)
	for i := range n {
		login := s.nats.Login(stream.RoleWriter)
		nc, err := stream.ConnectAs(s.nats.URL, fmt.Sprintf("property-writer-%d", i), login)
		require.NoError(s.t, err)
		s.t.Cleanup(nc.Close)
		js, err := service.WaitForStream(ctx, nc, login, log)
		require.NoError(s.t, err)
		st, err := store.Open(ctx, s.cfg.Database.ConnString(), 2)
		require.NoError(s.t, err)
		s.t.Cleanup(st.Close)
		wg.Go(func() {
			if err := service.Write(ctx, s.cfg.Writer, s.cfg.Database.ConnString(), js, st, nil, log); err != nil {
				s.t.Errorf("writer %d: %v", i, err)
			}
		})
	}
}

// jsonDiff lists the fields where two JSON documents differ, as "path: reference=… api=…".
func jsonDiff(want, got []byte) []string {
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return []string{"reference: " + err.Error()}
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return []string{"api: " + err.Error()}
	}
	var out []string
	var walk func(path string, w, g any)
	walk = func(path string, w, g any) {
		wm, wok := w.(map[string]any)
		gm, gok := g.(map[string]any)
		if wok && gok {
			keys := map[string]bool{}
			for k := range wm {
				keys[k] = true
			}
			for k := range gm {
				keys[k] = true
			}
			names := make([]string, 0, len(keys))
			for k := range keys {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				walk(strings.TrimPrefix(path+"."+k, "."), wm[k], gm[k])
			}
			return
		}
		wl, wok := w.([]any)
		gl, gok := g.([]any)
		if wok && gok && len(wl) == len(gl) {
			for i := range wl {
				walk(fmt.Sprintf("%s[%d]", path, i), wl[i], gl[i])
			}
			return
		}
		if !reflect.DeepEqual(w, g) {
			out = append(out, fmt.Sprintf("%s: reference=%s api=%s", path, compact(w), compact(g)))
		}
	}
	walk("", w, g)
	return slices.Clip(out)
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// checkBulkPaths requires the bulk paths to give, row for row, the tables the writers wrote
// batch by batch with their derived facts: a rebuild (its batches derive once, at the end) and
// a replay of the whole stream into empty tables (its batches queue their derivation).
func checkBulkPaths(t *testing.T, s *stack, seed uint64) {
	t.Helper()
	live := fullDump(t, s.db)
	_, err := s.admin("rebuild", "--batch", "97")
	require.NoError(t, err)
	compareDumps(t, fmt.Sprintf("seed %d: rebuild against the writers' tables", seed), live, fullDump(t, s.db))

	// A replay applies the stream in order, so of the copies of a reused event id it keeps the
	// first in the stream; the three writers kept the first one written, which may be a later
	// copy (docs/api.md). The histories' copies are one event rendered differently (the same
	// facts, another time zone in the payload), so the payloads are left out here.
	live["events"] = eventsWithoutPayloads(t, s) // the tables are the writers' again (above)
	last := s.count(`SELECT max(stream_seq) FROM events`)
	_, err = s.db.Exec(context.Background(), streamTablesTruncate)
	require.NoError(t, err)
	// In three ranges: each derives what it touched on top of what the ranges before it wrote,
	// so a key a batch touched and did not queue shows.
	for _, r := range [][2]int{{1, last / 3}, {last/3 + 1, 2 * last / 3}, {2*last/3 + 1, last}} {
		_, err = s.admin("replay", "--from", strconv.Itoa(r[0]), "--to", strconv.Itoa(r[1]), "--batch", "89")
		require.NoError(t, err)
	}
	replayed := fullDump(t, s.db)
	replayed["events"] = eventsWithoutPayloads(t, s)
	compareDumps(t, fmt.Sprintf("seed %d: empty tables + replay in three ranges against the writers' tables", seed), live, replayed)
}

// eventsWithoutPayloads dumps the events table as fullDump does, without the payloads.
func eventsWithoutPayloads(t *testing.T, s *stack) []string {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT (id, source, kind, pipeline_id, environment, commit_id, commits,
    incident_id, deployment_id, pull_request_id, status, occurred_at, time_inferred)::text FROM events ORDER BY 1`)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return lines
}
