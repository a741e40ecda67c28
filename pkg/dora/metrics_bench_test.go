package dora_test

import (
	"context"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/bench"
	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// benchEnd is the end of the loaded year.
var benchEnd = bench.YearEnd

const benchPipelines = bench.Pipelines

// benchEvents is 10 million times DEVOPSTIC_BENCH_SCALE (default 1; 0.01 for a quick run).
func benchEvents() int {
	scale := 1.0
	if v := os.Getenv("DEVOPSTIC_BENCH_SCALE"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
			scale = f
		}
	}
	return int(10_000_000 * scale)
}

var loaded struct {
	once sync.Once
	url  string
	err  error
}

// loadYear fills a database with a year of 1,000 pipelines (bench.LoadYear), once per run.
// DEVOPSTIC_BENCH_DATABASE_URL names a database that holds one already (loading 10 million
// events takes a quarter of an hour), migrated to this tree's schema.
func loadYear(b *testing.B) string {
	if url := os.Getenv("DEVOPSTIC_BENCH_DATABASE_URL"); url != "" {
		return url
	}
	loaded.once.Do(func() {
		loaded.url = testenv.ProcessPostgres(b)
		_, loaded.err = bench.LoadYear(context.Background(), loaded.url, "pipeline", benchEvents(), os.Stderr)
	})
	require.NoError(b, loaded.err)
	return loaded.url
}

// BenchmarkMetrics answers GET /api/v1/metrics/dora's queries over a year of 1,000 pipelines
// (10 million events at DEVOPSTIC_BENCH_SCALE=1), against a baseline in the same run: one
// index scan counting the pipeline's deployments in the window. It reports p50 and p95.
func BenchmarkMetrics(b *testing.B) {
	dbURL := loadYear(b)
	st, err := store.Open(context.Background(), dbURL, 4)
	require.NoError(b, err)
	defer st.Close()
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(b, err)
	defer pool.Close()

	query := func(params string) dora.Query {
		v, err := url.ParseQuery(params)
		require.NoError(b, err)
		q, err := dora.ParseQuery(v, benchEnd)
		require.NoError(b, err)
		return q
	}
	pipeline := func(i int) string { return bench.PipelineName("pipeline", (i*7919)%benchPipelines) }
	cases := []struct {
		name string
		// most bounds the requests of a case that takes seconds each
		most int
		run  func(i int) error
	}{
		{"baseline: count one pipeline's deployments, 90 days", 0, func(i int) error {
			var n int
			return pool.QueryRow(context.Background(), `SELECT count(*) FROM deployments WHERE pipeline_id = $1 AND environment = 'production'
				AND deployed_at >= $2 AND deployed_at < $3`, pipeline(i), benchEnd.AddDate(0, 0, -90), benchEnd).Scan(&n)
		}},
		{"one pipeline, 90 days", 0, func(i int) error {
			_, err := st.Metrics(context.Background(), query("pipeline_id="+pipeline(i)).StoreQuery())
			return err
		}},
		{"one pipeline, 90 days, by week", 0, func(i int) error {
			_, err := st.Metrics(context.Background(), query("interval=week&pipeline_id="+pipeline(i)).StoreQuery())
			return err
		}},
		{"all pipelines, 90 days", 20, func(i int) error {
			_, err := st.Metrics(context.Background(), query("").StoreQuery())
			return err
		}},
		{"all pipelines, 90 days, by week", 20, func(i int) error {
			_, err := st.Metrics(context.Background(), query("interval=week").StoreQuery())
			return err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			n := b.N
			if c.most > 0 {
				n = min(n, c.most)
			}
			durations := make([]time.Duration, 0, n)
			for i := 0; i < n; i++ {
				start := time.Now()
				require.NoError(b, c.run(i))
				durations = append(durations, time.Since(start))
			}
			slices.Sort(durations)
			b.ReportMetric(float64(durations[len(durations)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(durations[(len(durations)*95)/100].Microseconds())/1000, "p95-ms")
		})
	}
}
