package overview_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/bench"
	"github.com/devopstic/devopstic/pkg/overview"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var loaded struct {
	once sync.Once
	url  string
	n    int
	err  error
}

// BenchmarkPage builds and renders the first page over a year of 1,000 pipelines (10 million
// events at DEVOPSTIC_BENCH_SCALE=1, as make bench loads), 100 of them in 10 teams: the
// organisation, the teams, the first page of pipelines and the open incidents, each row over 30
// and 90 days. It reports p50 and p95 of one page.
//
//	DEVOPSTIC_BENCH_SCALE=0.1 go test -run '^$' -bench Page -benchtime 5x -timeout 60m ./pkg/overview/
//
// DEVOPSTIC_BENCH_DATABASE_URL names a database that holds the year already (bench.LoadYear,
// migrated to this tree's schema; loading ten million events takes a quarter of an hour); its
// teams are created if missing.
func BenchmarkPage(b *testing.B) {
	scale := 1.0
	if v := os.Getenv("DEVOPSTIC_BENCH_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		require.NoError(b, err)
		scale = f
	}
	ctx := context.Background()
	// Loaded once per process: the benchmark runs with b.N = 1 first, then with -benchtime.
	loaded.once.Do(func() {
		if loaded.url = os.Getenv("DEVOPSTIC_BENCH_DATABASE_URL"); loaded.url == "" {
			loaded.url = testenv.ProcessPostgres(b)
			loaded.n, loaded.err = bench.LoadYear(ctx, loaded.url, "pipeline", int(10_000_000*scale), os.Stderr)
			if loaded.err != nil {
				return
			}
		}
		st, err := store.Open(ctx, loaded.url, 2)
		if loaded.err = err; err != nil {
			return
		}
		defer st.Close()
		if loaded.n == 0 {
			conn, err := pgx.Connect(ctx, loaded.url)
			if loaded.err = err; err != nil {
				return
			}
			defer conn.Close(ctx)
			if loaded.err = conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&loaded.n); loaded.err != nil {
				return
			}
		}
		for i := range 100 {
			team := fmt.Sprintf("team-%02d", i%10)
			if i < 10 {
				if loaded.err = st.CreateTeam(ctx, team); loaded.err != nil && !errors.Is(loaded.err, store.ErrExists) {
					return
				}
			}
			if _, loaded.err = st.AddPipeline(ctx, team, bench.PipelineName("pipeline", i*7), true); loaded.err != nil {
				return
			}
		}
		loaded.err = st.Analyze(ctx)
	})
	require.NoError(b, loaded.err)
	n := loaded.n
	st, err := store.Open(ctx, loaded.url, 10)
	require.NoError(b, err)
	defer st.Close()

	b.ResetTimer()
	durations := make([]time.Duration, 0, b.N)
	for range b.N {
		start := time.Now()
		v, err := overview.Build(ctx, st, overview.Request{Environment: "production", Page: 1, Now: bench.YearEnd})
		require.NoError(b, err)
		var out bytes.Buffer
		require.NoError(b, overview.RenderPage(&out, overview.Page{View: v}))
		durations = append(durations, time.Since(start))
	}
	slices.Sort(durations)
	b.ReportMetric(float64(n), "events")
	b.ReportMetric(float64(durations[len(durations)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(durations[(len(durations)*95)/100].Milliseconds()), "p95-ms")
}
