package store_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/bench"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// swapBenchEvents is a million times DEVOPSTIC_BENCH_SCALE (default 1; 0.1 for a quick run).
func swapBenchEvents() int {
	scale := 1.0
	if v := os.Getenv("DEVOPSTIC_BENCH_SCALE"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
			scale = f
		}
	}
	return int(1_000_000 * scale)
}

// BenchmarkSwap times Rebuild.Swap over tables that hold a year of history (bench.LoadYear, a
// million events at DEVOPSTIC_BENCH_SCALE=1) while 2,000 events written during the rebuild
// wait to be caught up. The rebuild's tables are filled by copying the live rows (what a
// rebuild computes from them), so that only the swap is timed. It reports how long the writers
// were held, per million events, and the whole Swap call:
//
//	DEVOPSTIC_BENCH_SCALE=0.1 go test -run '^$' -bench Swap -benchtime 1x -timeout 60m ./pkg/store/
func BenchmarkSwap(b *testing.B) {
	ctx := context.Background()
	dbURL := testenv.Postgres(b)
	events, err := bench.LoadYear(ctx, dbURL, "swap", swapBenchEvents(), io.Discard)
	require.NoError(b, err)
	st, err := store.Open(ctx, dbURL, 4)
	require.NoError(b, err)
	defer st.Close()
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(b, err)
	defer pool.Close()
	const late = 2000
	seq := uint64(events)

	var held, total time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		rb, err := st.BeginRebuild(ctx)
		require.NoError(b, err)
		b.Cleanup(func() { _ = rb.Close(ctx) })
		copyLiveIntoRebuild(b, pool)
		_, err = rb.Derive(ctx) // nothing queued; it analyzes the copies
		require.NoError(b, err)
		// Written by the live writer after the rebuild read its snapshot.
		require.NoError(b, st.Write(ctx, historySets(b, fmt.Sprintf("late%d", i), late, seq)))
		seq += late
		b.StartTimer()
		began := time.Now()
		caught, h, err := rb.Swap(ctx, 0, decodeNative)
		total += time.Since(began)
		b.StopTimer()
		require.NoError(b, err)
		require.Equal(b, late, caught)
		require.NoError(b, rb.Close(ctx))
		held += h
		events += late
	}
	perRun := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) }
	b.ReportMetric(perRun(held), "held-s")
	b.ReportMetric(perRun(held)/float64(events/b.N)*1e6, "held-s/Mevents")
	b.ReportMetric(perRun(total), "swap-s")
	b.ReportMetric(float64(events/b.N), "events")
}

// copyLiveIntoRebuild fills the rebuild's tables with the live rows, as a rebuild of them
// would, then analyzes them as the live ones are.
func copyLiveIntoRebuild(b *testing.B, pool *pgxpool.Pool) {
	ctx := context.Background()
	for _, t := range store.StreamTables {
		var cols string
		require.NoError(b, pool.QueryRow(ctx, `SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''`, t).Scan(&cols))
		_, err := pool.Exec(ctx, fmt.Sprintf(`INSERT INTO devopstic_rebuild.%s (%s) SELECT %s FROM %s`, t, cols, cols, t))
		require.NoError(b, err)
	}
}
