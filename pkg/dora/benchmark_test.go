package dora_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
)

// The migration keeps exactly the numbers docs/metrics.md's tables cite, written here from the
// documents (DORA.md for 2023, the 2024 report's performance levels for 2024), with their
// sources; the newest comes first.
func TestBenchmarksAreThePublishedNumbers(t *testing.T) {
	t.Parallel()
	loadFixture(t)
	type tier = store.BenchmarkTier
	want := []struct {
		name, label, title, url string
		year                    int
		tiers                   []tier
	}{
		{"2024", "DORA 2024", "Accelerate State of DevOps Report 2024", "https://dora.dev/research/2024/dora-report/", 2024, []tier{
			{Tier: "elite", DeploysAtLeast: 1, DeploysPerDays: 1, LeadTimeBelowSeconds: 86400, ChangeFailureRateAtMost: "0.05", RecoveryBelowSeconds: 3600},
			{Tier: "high", DeploysAtLeast: 1, DeploysPerDays: 7, LeadTimeBelowSeconds: 7 * 86400, ChangeFailureRateAtMost: "0.20", RecoveryBelowSeconds: 86400},
			{Tier: "medium", DeploysAtLeast: 1, DeploysPerDays: 30, LeadTimeBelowSeconds: 30 * 86400, ChangeFailureRateAtMost: "0.10", RecoveryBelowSeconds: 86400},
		}},
		{"2023", "DORA 2023", "Accelerate State of DevOps Report 2023", "https://dora.dev/research/2023/dora-report/", 2023, []tier{
			{Tier: "elite", DeploysAtLeast: 1, DeploysPerDays: 1, LeadTimeBelowSeconds: 86400, ChangeFailureRateAtMost: "0.05", RecoveryBelowSeconds: 3600},
			{Tier: "high", DeploysAtLeast: 1, DeploysPerDays: 7, LeadTimeBelowSeconds: 7 * 86400, ChangeFailureRateAtMost: "0.10", RecoveryBelowSeconds: 86400},
			{Tier: "medium", DeploysAtLeast: 1, DeploysPerDays: 30, LeadTimeBelowSeconds: 30 * 86400, ChangeFailureRateAtMost: "0.15", RecoveryBelowSeconds: 7 * 86400},
		}},
	}
	require.Len(t, fixture.stored, len(want))
	for i, w := range want {
		got := fixture.stored[i]
		require.Equal(t, w.name, got.Name)
		require.Equal(t, w.label, got.Label)
		require.Equal(t, w.title, got.ReportTitle)
		require.Equal(t, w.url, got.ReportURL)
		require.Equal(t, w.year, got.ReportYear)
		require.NotEmpty(t, got.SourceNote, "%s says where its numbers come from", w.name)
		require.Equal(t, w.tiers, got.Tiers, w.name)
	}
}

// The default is the newest report's; benchmark= names one by its year, and anything else is
// a bad parameter that names the parameter and what there is.
func TestBenchmarksGet(t *testing.T) {
	t.Parallel()
	loadFixture(t)
	def, err := fixture.benchmarks.Get("")
	require.NoError(t, err)
	require.Equal(t, "DORA 2024", def.Label)
	require.Equal(t, fixture.benchmarks.Default(), def)
	b, err := fixture.benchmarks.Get("2023")
	require.NoError(t, err)
	require.Equal(t, "DORA 2023", b.Label)
	require.Equal(t, "https://dora.dev/research/2023/dora-report/", b.ReportURL)

	for _, name := range []string{"2022", "2025", "DORA 2024", "latest", "2024 "} {
		_, err := fixture.benchmarks.Get(name)
		require.ErrorIs(t, err, dora.ErrBadParameter, name)
		require.EqualError(t, err, fmt.Sprintf("invalid parameter: benchmark must be one of 2024, 2023 (default 2024), not %q", name))
	}
}

// The newest report is the default whatever order the store lists them in.
func TestNewBenchmarksNewestFirst(t *testing.T) {
	t.Parallel()
	loadFixture(t)
	reversed := []store.Benchmark{fixture.stored[1], fixture.stored[0]}
	bs, err := dora.NewBenchmarks(reversed)
	require.NoError(t, err)
	require.Equal(t, "2024", bs.Default().Name)
}

// Rows the rules cannot rate with are refused, not used.
func TestNewBenchmarkRefusesBadRows(t *testing.T) {
	t.Parallel()
	loadFixture(t)
	good := func() store.Benchmark {
		b := fixture.stored[0]
		b.Tiers = append([]store.BenchmarkTier(nil), b.Tiers...)
		return b
	}
	_, err := dora.NewBenchmark(good())
	require.NoError(t, err)
	tests := []struct {
		name  string
		spoil func(b *store.Benchmark)
	}{
		{"no tiers", func(b *store.Benchmark) { b.Tiers = nil }},
		{"medium missing", func(b *store.Benchmark) { b.Tiers = b.Tiers[:2] }},
		{"out of order", func(b *store.Benchmark) { b.Tiers[0], b.Tiers[1] = b.Tiers[1], b.Tiers[0] }},
		{"low given a bound", func(b *store.Benchmark) { b.Tiers[2].Tier = "low" }},
		{"a rate over 1", func(b *store.Benchmark) { b.Tiers[1].ChangeFailureRateAtMost = "1.5" }},
		{"a negative rate", func(b *store.Benchmark) { b.Tiers[1].ChangeFailureRateAtMost = "-0.1" }},
		{"a rate that is no number", func(b *store.Benchmark) { b.Tiers[1].ChangeFailureRateAtMost = "10%" }},
		{"no deployments needed", func(b *store.Benchmark) { b.Tiers[0].DeploysAtLeast = 0 }},
		{"no days", func(b *store.Benchmark) { b.Tiers[0].DeploysPerDays = 0 }},
		{"a zero lead time bound", func(b *store.Benchmark) { b.Tiers[2].LeadTimeBelowSeconds = 0 }},
		{"a negative recovery bound", func(b *store.Benchmark) { b.Tiers[2].RecoveryBelowSeconds = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := good()
			tt.spoil(&b)
			_, err := dora.NewBenchmark(b)
			require.ErrorIs(t, err, dora.ErrBadBenchmark)
		})
	}
	_, err = dora.NewBenchmarks(nil)
	require.ErrorIs(t, err, dora.ErrBadBenchmark)
}

// The dashboards rate in SQL (migration 0013's dora_*_tier functions) from the same rows the
// API rates from in Go: on every bound of every benchmark, at it and on either side, both give
// the same tier. This replaces the check that the dashboards' colour thresholds were the Go
// constants: the bounds are no longer in the dashboards at all.
func TestSQLTiersAgreeWithGo(t *testing.T) {
	t.Parallel()
	loadFixture(t)
	pool, err := pgxpool.New(context.Background(), fixture.url)
	require.NoError(t, err)
	defer pool.Close()

	// Every bound of every benchmark, so that each set is tried on the others' edges too.
	var deploys [][2]int64 // {at least, per days}
	var durations, rates []float64
	var failures [][2]int64 // {failed, attempts}
	for _, b := range fixture.stored {
		for _, tr := range b.Tiers {
			deploys = append(deploys, [2]int64{tr.DeploysAtLeast, tr.DeploysPerDays})
			for _, s := range []int64{tr.LeadTimeBelowSeconds, tr.RecoveryBelowSeconds} {
				f := float64(s)
				durations = append(durations, f-1, f-0.5, f-1e-6, f, f+1e-6, f+0.5, f+1)
			}
			var rate float64
			_, err := fmt.Sscan(tr.ChangeFailureRateAtMost, &rate)
			require.NoError(t, err)
			rates = append(rates, rate)
		}
	}
	durations = append(durations, 0, 1, 365*86400)
	for _, r := range rates {
		for _, attempts := range []int64{20, 100, 1000, 10007} {
			at := int64(r*float64(attempts) + 0.5)
			for _, failed := range []int64{at - 1, at, at + 1} {
				if failed >= 0 && failed <= attempts {
					failures = append(failures, [2]int64{failed, attempts})
				}
			}
		}
	}
	failures = append(failures, [2]int64{0, 0}, [2]int64{0, 1}, [2]int64{7, 7}, [2]int64{12501, 250000})

	type window struct {
		deployments int64
		from, to    time.Time
	}
	var windows []window
	for _, d := range deploys {
		for _, n := range []int64{1, 2, 3, 13, 90} {
			length := time.Duration(n*d[1]) * day
			at := n * d[0]
			for _, w := range []time.Duration{length - time.Second, length, length + time.Second} {
				for _, c := range []int64{at - 1, at, at + 1} {
					windows = append(windows, window{c, end.Add(-w), end})
				}
			}
		}
	}
	windows = append(windows, window{0, end.AddDate(0, 0, -90), end}, window{500, end.AddDate(0, 0, -90), end})

	for _, b := range fixture.benchmarks {
		t.Run(b.Name, func(t *testing.T) {
			var counts []int64
			var froms, tos []time.Time
			for _, w := range windows {
				counts, froms, tos = append(counts, w.deployments), append(froms, w.from), append(tos, w.to)
			}
			got := sqlTiers(t, pool, `SELECT dora_deployment_frequency_tier($1, c, f, t) FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[]) WITH ORDINALITY AS x(c, f, t, i) ORDER BY i`,
				b.Name, counts, froms, tos)
			for i, w := range windows {
				require.Equal(t, b.DeploymentFrequencyTier(w.deployments, w.from, w.to), tierName(got[i]),
					"%d deployments in %s", w.deployments, w.to.Sub(w.from))
			}

			medians := append([]float64(nil), durations...)
			for fn, rate := range map[string]func(*float64) *string{"dora_lead_time_tier": b.LeadTimeTier, "dora_recovery_time_tier": b.RecoveryTimeTier} {
				got := sqlTiers(t, pool, `SELECT `+fn+`($1, m) FROM unnest($2::float8[]) WITH ORDINALITY AS x(m, i) ORDER BY i`, b.Name, medians)
				for i, m := range medians {
					require.Equal(t, tierName(rate(&m)), tierName(got[i]), "%s(%v)", fn, m)
				}
				got = sqlTiers(t, pool, `SELECT `+fn+`($1, NULL)`, b.Name)
				require.Nil(t, got[0], "%s of no median", fn)
			}

			var failed, attempts []int64
			for _, f := range failures {
				failed, attempts = append(failed, f[0]), append(attempts, f[1])
			}
			got = sqlTiers(t, pool, `SELECT dora_change_failure_rate_tier($1, f, a) FROM unnest($2::bigint[], $3::bigint[]) WITH ORDINALITY AS x(f, a, i) ORDER BY i`,
				b.Name, failed, attempts)
			for i, f := range failures {
				require.Equal(t, tierName(b.ChangeFailureRateTier(f[0], f[1])), tierName(got[i]), "%d of %d", f[0], f[1])
			}
		})
	}

	// An unknown benchmark is an error in SQL too, never a quiet "low".
	var tier *string
	err = pool.QueryRow(context.Background(), `SELECT dora_lead_time_tier('2022', 60)`).Scan(&tier)
	require.ErrorContains(t, err, `unknown DORA benchmark '2022'`)
}

func sqlTiers(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) []*string {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql, args...)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[*string])
	require.NoError(t, err, sql)
	require.NotEmpty(t, got)
	return got
}
