package dora_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
)

// The tables below are DORA.md's tiers table ("DORA 2023"), each edge on both sides, written
// from the page and not from the code: where they disagree, the page decides.
//
// | tier   | deployment frequency | lead time (median) | change failure rate | time to restore (median) |
// | elite  | per_day ≥ 1          | < 1 day            | ≤ 5%                | < 1 hour                 |
// | high   | per_week ≥ 1         | < 1 week           | ≤ 10%               | < 1 day                  |
// | medium | ≥ 1 per 30 days      | < 30 days          | ≤ 15%               | < 1 week                 |
// | low    | less                 | 30 days or more    | more                | 1 week or more           |

const (
	day  = 24 * time.Hour
	week = 7 * day
)

// end is the end of every window here; a window is [end − its length, end).
var end = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)

// rate is the report of one window's figures ("interval": "all").
func rate(t *testing.T, window time.Duration, d store.DeploymentStats, lt store.LeadTimeStats, tr store.RestoreStats) dora.Report {
	t.Helper()
	return rateWindow(t, end.Add(-window), end, d, lt, tr)
}

func rateWindow(t *testing.T, from, to time.Time, d store.DeploymentStats, lt store.LeadTimeStats, tr store.RestoreStats) dora.Report {
	t.Helper()
	q := dora.Query{Environment: dora.DefaultEnvironment, From: from, To: to, Interval: "all"}
	r, err := dora.NewReport(q, store.Metrics{
		Deployments: []store.DeploymentStats{d},
		LeadTime:    []store.LeadTimeStats{lt},
		Restore:     []store.RestoreStats{tr},
	})
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rate(t, tt.window, store.DeploymentStats{Deployments: tt.deployments}, store.LeadTimeStats{}, store.RestoreStats{})
			require.Equal(t, tt.want, r.DeploymentFrequency.Tier)
			require.Equal(t, tt.want, dora.DeploymentFrequencyTier(tt.deployments, tt.window.Hours()/24))
		})
	}
}

// The edges hold exactly however many deployments and days: n in n days is one a day, n in
// 7n days one a week, n in 30n days one in 30 days; one fewer is the tier below.
func TestDeploymentFrequencyTierExactEdges(t *testing.T) {
	t.Parallel()
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
			at := rateWindow(t, from, end, store.DeploymentStats{Deployments: n}, store.LeadTimeStats{}, store.RestoreStats{})
			require.Equal(t, edge.at, at.DeploymentFrequency.Tier, "%d deployments in %d days", n, edge.days)
			want := edge.below
			if n == 1 {
				want = dora.Low // none at all
			}
			below := rateWindow(t, from, end, store.DeploymentStats{Deployments: n - 1}, store.LeadTimeStats{}, store.RestoreStats{})
			require.Equal(t, want, below.DeploymentFrequency.Tier, "%d deployments in %d days", n-1, edge.days)
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

	below := rateWindow(t, from, end, store.DeploymentStats{Deployments: realDays - 1}, store.LeadTimeStats{}, store.RestoreStats{})
	require.Equal(t, dora.High, below.DeploymentFrequency.Tier, "just under one a day")
	at := rateWindow(t, from, end, store.DeploymentStats{Deployments: realDays}, store.LeadTimeStats{}, store.RestoreStats{})
	require.Equal(t, dora.Elite, at.DeploymentFrequency.Tier, "one a day exactly")
}

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
		// high: < 1 week
		{"just under a week", seconds(week - time.Second), dora.High},
		{"a week exactly", seconds(week), dora.Medium},
		// medium: < 30 days
		{"just under 30 days", seconds(30*day - time.Second), dora.Medium},
		{"30 days exactly", seconds(30 * day), dora.Low},
		// low: 30 days or more
		{"a year", seconds(365 * day), dora.Low},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rate(t, 90*day, store.DeploymentStats{}, store.LeadTimeStats{MedianExact: tt.median}, store.RestoreStats{})
			require.Equal(t, tt.want, tierName(r.LeadTime.Tier))
		})
	}
}

func TestChangeFailureRateTier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		failed, attempts int64
		want             string // "" is null
	}{
		{"no attempts: null", 0, 0, ""},
		{"none failed", 0, 1, dora.Elite},
		// elite: ≤ 5%
		{"5% exactly, 1 of 20", 1, 20, dora.Elite},
		{"5% exactly, 50 of 1000", 50, 1000, dora.Elite},
		{"just over 5%, 51 of 1000", 51, 1000, dora.High},
		{"just over 5%, 1 of 19", 1, 19, dora.High},
		// rated exactly, not on the rounded rate: 12501 of 250000 shows as 0.0500 but is over 5%
		{"just over 5%, shown as 5%", 12501, 250000, dora.High},
		// high: ≤ 10%
		{"10% exactly, 1 of 10", 1, 10, dora.High},
		{"10% exactly, 100 of 1000", 100, 1000, dora.High},
		{"just over 10%, 101 of 1000", 101, 1000, dora.Medium},
		{"just over 10%, 2 of 19", 2, 19, dora.Medium},
		// medium: ≤ 15%
		{"15% exactly, 3 of 20", 3, 20, dora.Medium},
		{"15% exactly, 150 of 1000", 150, 1000, dora.Medium},
		{"just over 15%, 151 of 1000", 151, 1000, dora.Low},
		{"just over 15%, 1 of 6", 1, 6, dora.Low},
		// low: more
		{"all failed", 7, 7, dora.Low},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rate(t, 90*day, store.DeploymentStats{Attempts: tt.attempts, Failed: tt.failed}, store.LeadTimeStats{}, store.RestoreStats{})
			require.Equal(t, tt.want, tierName(r.ChangeFailureRate.Tier))
			require.Equal(t, tt.want, tierName(dora.ChangeFailureTier(tt.failed, tt.attempts)))
		})
	}
}

func TestTimeToRestoreTier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		median *float64
		want   string // "" is null
	}{
		{"no incidents resolved: null", nil, ""},
		{"zero seconds", seconds(0), dora.Elite},
		// elite: < 1 hour
		{"just under an hour", seconds(time.Hour - time.Second), dora.Elite},
		{"an hour exactly", seconds(time.Hour), dora.High},
		// high: < 1 day
		{"just under a day", seconds(day - time.Second), dora.High},
		{"a day exactly", seconds(day), dora.Medium},
		// medium: < 1 week
		{"just under a week", seconds(week - time.Second), dora.Medium},
		{"a week exactly", seconds(week), dora.Low},
		// low: 1 week or more
		{"30 days", seconds(30 * day), dora.Low},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rate(t, 90*day, store.DeploymentStats{}, store.LeadTimeStats{}, store.RestoreStats{MedianExact: tt.median})
			require.Equal(t, tt.want, tierName(r.TimeToRestore.Tier))
		})
	}
}

// DurationTier's bounds are exclusive: each bound is the tier below.
func TestDurationTier(t *testing.T) {
	t.Parallel()
	bound := func(d time.Duration) string {
		return tierName(dora.DurationTier(seconds(d), time.Minute, time.Hour, day))
	}
	require.Equal(t, dora.Elite, bound(time.Minute-time.Second))
	require.Equal(t, dora.High, bound(time.Minute))
	require.Equal(t, dora.High, bound(time.Hour-time.Second))
	require.Equal(t, dora.Medium, bound(time.Hour))
	require.Equal(t, dora.Medium, bound(day-time.Second))
	require.Equal(t, dora.Low, bound(day))
	require.Nil(t, dora.DurationTier(nil, time.Minute, time.Hour, day))
}
