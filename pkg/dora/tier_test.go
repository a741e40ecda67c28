package dora_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// The tables below are docs/metrics.md's benchmark tables, each bound on both sides, written from
// DORA.md and the reports and not from the code or the migration: where they disagree, the
// documents decide. The rule: the best tier whose bound a value meets; low when it meets none.
//
// DORA 2023 (DORA.md's tiers table, benchmark=2023):
//
// | tier   | deployment frequency | lead time (median) | change failure rate | recovery time (median) |
// | elite  | per_day ≥ 1          | < 1 day            | ≤ 5%                | < 1 hour               |
// | high   | per_week ≥ 1         | < 1 week           | ≤ 10%               | < 1 day                |
// | medium | ≥ 1 per 30 days      | < 30 days          | ≤ 15%               | < 1 week               |
// | low    | less                 | 30 days or more    | more                | 1 week or more         |
//
// DORA 2024 (the 2024 report's performance levels, benchmark=2024, the default):
//
// | tier   | deployment frequency | lead time (median) | change failure rate | recovery time (median) |
// | elite  | per_day ≥ 1          | < 1 day            | ≤ 5%                | < 1 hour               |
// | high   | per_week ≥ 1         | < 1 week           | ≤ 20%               | < 1 day                |
// | medium | ≥ 1 per 30 days      | < 30 days          | ≤ 10%               | < 1 day                |
// | low    | the rest             | the rest           | the rest            | the rest               |
//
// In 2024 medium's change failure rate and recovery time bounds are no looser than high's: a
// value that meets them meets high's, and is rated high.

const (
	day  = 24 * time.Hour
	week = 7 * day
)

// end is the end of every window here; a window is [end − its length, end).
var end = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)

// The benchmarks as the migration keeps them, read once per test binary from a migrated
// database of its own.
var fixture struct {
	once       sync.Once
	url        string
	stored     []store.Benchmark
	benchmarks dora.Benchmarks
	err        error
}

func loadFixture(t testing.TB) {
	t.Helper()
	fixture.once.Do(func() {
		fixture.url = testenv.ProcessPostgres(t)
		st, err := store.Open(context.Background(), fixture.url, 2)
		if err != nil {
			fixture.err = err
			return
		}
		defer st.Close()
		if fixture.stored, fixture.err = st.Benchmarks(context.Background()); fixture.err != nil {
			return
		}
		fixture.benchmarks, fixture.err = dora.NewBenchmarks(fixture.stored)
	})
	require.NoError(t, fixture.err)
}

// benchmark is the migration's benchmark named (the default for "").
func benchmark(t testing.TB, name string) dora.Benchmark {
	t.Helper()
	loadFixture(t)
	b, err := fixture.benchmarks.Get(name)
	require.NoError(t, err)
	return b
}

// sets are the benchmarks every tier test runs against.
var sets = []string{"2023", "2024"}

// rate is the report of one window's figures ("interval": "all") against a benchmark.
func rate(t *testing.T, set string, window time.Duration, d store.DeploymentStats, lt store.LeadTimeStats, tr store.RestoreStats) dora.Report {
	t.Helper()
	return rateWindow(t, set, end.Add(-window), end, d, lt, tr)
}

func rateWindow(t *testing.T, set string, from, to time.Time, d store.DeploymentStats, lt store.LeadTimeStats, tr store.RestoreStats) dora.Report {
	t.Helper()
	q := dora.Query{Environment: dora.DefaultEnvironment, From: from, To: to, Interval: "all", Benchmark: set}
	r, err := dora.NewReport(q, store.Metrics{
		Deployments: []store.DeploymentStats{d},
		LeadTime:    []store.LeadTimeStats{lt},
		Restore:     []store.RestoreStats{tr},
	}, benchmark(t, set))
	require.NoError(t, err)
	return r
}

func seconds(d time.Duration) *float64 {
	s := d.Seconds()
	return &s
}

// tierName reads a nullable tier, "" for null.
func tierName(tier *string) string {
	if tier == nil {
		return ""
	}
	return *tier
}

// Deployment frequency has the same bounds in both sets.
func TestDeploymentFrequencyTier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		deployments int64
		window      time.Duration
		want        string
	}{
		// elite: per_day ≥ 1
		{"one a day exactly, one day", 1, day, dora.Elite},
		{"just under one a day, one day and a second", 1, day + time.Second, dora.High},
		{"one a day exactly, 90 days", 90, 90 * day, dora.Elite},
		{"just under one a day, 90 days", 89, 90 * day, dora.High},
		{"one a day exactly, a week", 7, week, dora.Elite},
		{"just under one a day, a week", 6, week, dora.High},
		{"more than one a day", 500, 90 * day, dora.Elite},
		// high: per_week ≥ 1
		{"one a week exactly, a week", 1, week, dora.High},
		{"just under one a week, a week and a second", 1, week + time.Second, dora.Medium},
		{"one a week exactly, 4 weeks", 4, 4 * week, dora.High},
		{"just under one a week, 4 weeks", 3, 4 * week, dora.Medium},
		{"13 in 90 days is above one a week", 13, 90 * day, dora.High},
		{"12 in 90 days is below one a week", 12, 90 * day, dora.Medium},
		// medium: ≥ 1 per 30 days
		{"one in 30 days exactly", 1, 30 * day, dora.Medium},
		{"just under one in 30 days, 30 days and a second", 1, 30*day + time.Second, dora.Low},
		{"one in 30 days exactly, 90 days", 3, 90 * day, dora.Medium},
		{"just under one in 30 days, 90 days", 2, 90 * day, dora.Low},
		// low: less; none is a known count, so low and not null
		{"none", 0, 90 * day, dora.Low},
		{"none in a day", 0, day, dora.Low},
	}
	for _, set := range sets {
		for _, tt := range tests {
			t.Run(set+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				r := rate(t, set, tt.window, store.DeploymentStats{Deployments: tt.deployments}, store.LeadTimeStats{}, store.RestoreStats{})
				require.Equal(t, tt.want, r.DeploymentFrequency.Tier)
				require.Equal(t, tt.want, benchmark(t, set).DeploymentFrequencyTier(tt.deployments, end.Add(-tt.window), end))
			})
		}
	}
}

// The edges hold exactly however many deployments and days: n in n days is one a day, n in
// 7n days one a week, n in 30n days one in 30 days; one fewer is the tier below.
func TestDeploymentFrequencyTierExactEdges(t *testing.T) {
	t.Parallel()
	for _, set := range sets {
		for n := int64(1); n <= 3660; n++ {
			for _, edge := range []struct {
				days      int64
				at, below string
			}{
				{n, dora.Elite, dora.High},
				{7 * n, dora.High, dora.Medium},
				{30 * n, dora.Medium, dora.Low},
			} {
				from := end.AddDate(0, 0, -int(edge.days))
				at := rateWindow(t, set, from, end, store.DeploymentStats{Deployments: n}, store.LeadTimeStats{}, store.RestoreStats{})
				require.Equal(t, edge.at, at.DeploymentFrequency.Tier, "%s: %d deployments in %d days", set, n, edge.days)
				want := edge.below
				if n == 1 {
					want = dora.Low // none at all
				}
				below := rateWindow(t, set, from, end, store.DeploymentStats{Deployments: n - 1}, store.LeadTimeStats{}, store.RestoreStats{})
				require.Equal(t, want, below.DeploymentFrequency.Tier, "%s: %d deployments in %d days", set, n-1, edge.days)
			}
		}
	}
}

// per_day is deployments over the window's days however long the window: a window longer than
// a time.Duration holds (292 years) is rated on its real length.
func TestDeploymentFrequencyTierLongWindow(t *testing.T) {
	t.Parallel()
	from := time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	days := int64(end.Sub(from).Hours() / 24) // saturated: about 106,752 days
	require.Equal(t, time.Duration(1<<63-1), end.Sub(from), "the window overflows a time.Duration")
	realDays := (end.Unix() - from.Unix()) / 86400
	require.Greater(t, realDays, 3*days)

	for _, set := range sets {
		below := rateWindow(t, set, from, end, store.DeploymentStats{Deployments: realDays - 1}, store.LeadTimeStats{}, store.RestoreStats{})
		require.Equal(t, dora.High, below.DeploymentFrequency.Tier, "%s: just under one a day", set)
		at := rateWindow(t, set, from, end, store.DeploymentStats{Deployments: realDays}, store.LeadTimeStats{}, store.RestoreStats{})
		require.Equal(t, dora.Elite, at.DeploymentFrequency.Tier, "%s: one a day exactly", set)
	}
}

// A window's nanoseconds count: one deployment in a day and a nanosecond is under one a day.
func TestDeploymentFrequencyTierNanoseconds(t *testing.T) {
	t.Parallel()
	for _, set := range sets {
		b := benchmark(t, set)
		require.Equal(t, dora.Elite, b.DeploymentFrequencyTier(1, end.Add(-day), end))
		require.Equal(t, dora.High, b.DeploymentFrequencyTier(1, end.Add(-day-time.Nanosecond), end))
		require.Equal(t, dora.Elite, b.DeploymentFrequencyTier(1, end.Add(-day+time.Nanosecond), end))
	}
}

// Lead time for changes has the same bounds in both sets.
func TestLeadTimeTier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		median *float64
		want   string // "" is null
	}{
		{"no changes: null", nil, ""},
		{"zero seconds", seconds(0), dora.Elite},
		{"a second", seconds(time.Second), dora.Elite},
		// elite: < 1 day
		{"just under a day", seconds(day - time.Second), dora.Elite},
		{"half a second under a day (rounds to a day)", seconds(day - time.Second/2), dora.Elite},
		{"a day exactly", seconds(day), dora.High},
		{"just over a day", seconds(day + time.Second), dora.High},
		// high: < 1 week
		{"just under a week", seconds(week - time.Second), dora.High},
		{"a week exactly", seconds(week), dora.Medium},
		{"just over a week", seconds(week + time.Second), dora.Medium},
		// medium: < 30 days
		{"just under 30 days", seconds(30*day - time.Second), dora.Medium},
		{"30 days exactly", seconds(30 * day), dora.Low},
		{"just over 30 days", seconds(30*day + time.Second), dora.Low},
		// low: 30 days or more
		{"a year", seconds(365 * day), dora.Low},
	}
	for _, set := range sets {
		for _, tt := range tests {
			t.Run(set+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				r := rate(t, set, 90*day, store.DeploymentStats{}, store.LeadTimeStats{MedianExact: tt.median}, store.RestoreStats{})
				require.Equal(t, tt.want, tierName(r.LeadTime.Tier))
			})
		}
	}
}

// Change failure rate: 2023 is monotonic (5, 10, 15%); 2024's medium (10%) is inside high's
// (20%), so a rate that meets medium's bound is rated high, and medium never comes out.
func TestChangeFailureRateTier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		failed, attempts int64
		want2023         string // "" is null
		want2024         string
	}{
		{"no attempts: null", 0, 0, "", ""},
		{"none failed", 0, 1, dora.Elite, dora.Elite},
		// elite: ≤ 5% in both
		{"just under 5%, 49 of 1000", 49, 1000, dora.Elite, dora.Elite},
		{"5% exactly, 1 of 20", 1, 20, dora.Elite, dora.Elite},
		{"5% exactly, 50 of 1000", 50, 1000, dora.Elite, dora.Elite},
		{"just over 5%, 51 of 1000", 51, 1000, dora.High, dora.High},
		{"just over 5%, 1 of 19", 1, 19, dora.High, dora.High},
		// rated exactly, not on the rounded rate: 12501 of 250000 shows as 0.0500 but is over 5%
		{"just over 5%, shown as 5%", 12501, 250000, dora.High, dora.High},
		// 2023 high ≤ 10%; 2024 medium ≤ 10%, which high's 20% already takes
		{"just under 10%, 99 of 1000", 99, 1000, dora.High, dora.High},
		{"10% exactly, 1 of 10", 1, 10, dora.High, dora.High},
		{"10% exactly, 100 of 1000", 100, 1000, dora.High, dora.High},
		{"just over 10%, 101 of 1000", 101, 1000, dora.Medium, dora.High},
		{"just over 10%, 2 of 19", 2, 19, dora.Medium, dora.High},
		// 2023 medium ≤ 15%
		{"just under 15%, 149 of 1000", 149, 1000, dora.Medium, dora.High},
		{"15% exactly, 3 of 20", 3, 20, dora.Medium, dora.High},
		{"15% exactly, 150 of 1000", 150, 1000, dora.Medium, dora.High},
		{"just over 15%, 151 of 1000", 151, 1000, dora.Low, dora.High},
		{"just over 15%, 1 of 6", 1, 6, dora.Low, dora.High},
		// 2024 high ≤ 20%
		{"just under 20%, 199 of 1000", 199, 1000, dora.Low, dora.High},
		{"20% exactly, 1 of 5", 1, 5, dora.Low, dora.High},
		{"20% exactly, 200 of 1000", 200, 1000, dora.Low, dora.High},
		{"just over 20%, 201 of 1000", 201, 1000, dora.Low, dora.Low},
		// 2024's low row says 40%: low is the rest, on either side of it
		{"just under 40%, 399 of 1000", 399, 1000, dora.Low, dora.Low},
		{"40% exactly", 2, 5, dora.Low, dora.Low},
		{"just over 40%, 401 of 1000", 401, 1000, dora.Low, dora.Low},
		// 2023's report's low row says 64%: likewise
		{"64% exactly", 16, 25, dora.Low, dora.Low},
		{"all failed", 7, 7, dora.Low, dora.Low},
	}
	for _, tt := range tests {
		for set, want := range map[string]string{"2023": tt.want2023, "2024": tt.want2024} {
			t.Run(set+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				r := rate(t, set, 90*day, store.DeploymentStats{Attempts: tt.attempts, Failed: tt.failed}, store.LeadTimeStats{}, store.RestoreStats{})
				require.Equal(t, want, tierName(r.ChangeFailureRate.Tier))
				require.Equal(t, want, tierName(benchmark(t, set).ChangeFailureRateTier(tt.failed, tt.attempts)))
			})
		}
	}
}

// Failed deployment recovery time: 2023 is monotonic (an hour, a day, a week); in 2024 medium
// recovers in less than a day as high does, so under a day is high and a day or more is low.
func TestRecoveryTimeTier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		median   *float64
		want2023 string // "" is null
		want2024 string
	}{
		{"no incidents resolved: null", nil, "", ""},
		{"zero seconds", seconds(0), dora.Elite, dora.Elite},
		// elite: < 1 hour in both
		{"just under an hour", seconds(time.Hour - time.Second), dora.Elite, dora.Elite},
		{"half a second under an hour", seconds(time.Hour - time.Second/2), dora.Elite, dora.Elite},
		{"an hour exactly", seconds(time.Hour), dora.High, dora.High},
		{"just over an hour", seconds(time.Hour + time.Second), dora.High, dora.High},
		// high: < 1 day in both; 2024's medium too
		{"just under a day", seconds(day - time.Second), dora.High, dora.High},
		{"a day exactly", seconds(day), dora.Medium, dora.Low},
		{"just over a day", seconds(day + time.Second), dora.Medium, dora.Low},
		// 2023 medium: < 1 week
		{"just under a week", seconds(week - time.Second), dora.Medium, dora.Low},
		{"a week exactly", seconds(week), dora.Low, dora.Low},
		{"just over a week", seconds(week + time.Second), dora.Low, dora.Low},
		// the reports' low rows (2024: one week to one month; 2023: one to six months) decide nothing
		{"30 days", seconds(30 * day), dora.Low, dora.Low},
		{"a year", seconds(365 * day), dora.Low, dora.Low},
	}
	for _, tt := range tests {
		for set, want := range map[string]string{"2023": tt.want2023, "2024": tt.want2024} {
			t.Run(set+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				r := rate(t, set, 90*day, store.DeploymentStats{}, store.LeadTimeStats{}, store.RestoreStats{MedianExact: tt.median})
				require.Equal(t, want, tierName(r.FailedDeploymentRecoveryTime.Tier))
				require.Equal(t, want, tierName(r.TimeToRestore.Tier), "the old name rates the same")
			})
		}
	}
}
