package dora_test

import (
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
)

// now is the clock of the query tests, with a fraction of a second that `to` drops.
var now = time.Date(2026, 11, 25, 14, 30, 15, 500_000_000, time.FixedZone("CET", 3600))

func TestParseQuery(t *testing.T) {
	t.Parallel()
	to := time.Date(2026, 11, 25, 13, 30, 15, 0, time.UTC) // now, in UTC, whole seconds
	tests := []struct {
		name   string
		params string
		want   dora.Query
	}{
		{
			name:   "defaults: all pipelines, production, the last 90 days, all",
			params: "",
			want:   dora.Query{Environment: "production", From: to.AddDate(0, 0, -90), To: to, Interval: "all"},
		},
		{
			name:   "one pipeline and environment, spaces trimmed",
			params: "pipeline_id=+api+&environment=+staging+",
			want:   dora.Query{Pipelines: []string{"api"}, Environment: "staging", From: to.AddDate(0, 0, -90), To: to, Interval: "all"},
		},
		{
			name:   "several pipelines and teams, each once, blanks left out",
			params: "pipeline_id=web&team=payments&pipeline_id=api&pipeline_id=+web+&team=&team=search&pipeline_id=&team=payments",
			want: dora.Query{Pipelines: []string{"web", "api"}, Teams: []string{"payments", "search"}, Environment: "production",
				From: to.AddDate(0, 0, -90), To: to, Interval: "all"},
		},
		{
			name:   "blank environment is production",
			params: "environment=+",
			want:   dora.Query{Environment: "production", From: to.AddDate(0, 0, -90), To: to, Interval: "all"},
		},
		{
			name:   "dates are UTC midnight; from defaults to 90 days before to",
			params: "to=2026-11-25",
			want: dora.Query{Environment: "production", From: time.Date(2026, 8, 27, 0, 0, 0, 0, time.UTC),
				To: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), Interval: "all"},
		},
		{
			name:   "RFC 3339 with an offset, read in UTC",
			params: "from=2026-11-01T09:00:00%2B01:00&to=2026-11-02T00:00:00.25Z&interval=day",
			want: dora.Query{Environment: "production", From: time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC),
				To: time.Date(2026, 11, 2, 0, 0, 0, 250_000_000, time.UTC), Interval: "day"},
		},
		{
			name:   "week",
			params: "from=2026-01-01&to=2026-04-01&interval=week",
			want: dora.Query{Environment: "production", From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
				To: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), Interval: "week"},
		},
		{
			name:   "month",
			params: "from=2026-01-01&interval=month&to=2027-01-01",
			want: dora.Query{Environment: "production", From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
				To: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Interval: "month"},
		},
		{
			name:   "a day's buckets, MaxBuckets of them",
			params: "from=2020-01-01&to=2030-01-08&interval=day",
			want: dora.Query{Environment: "production", From: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
				To: time.Date(2030, 1, 8, 0, 0, 0, 0, time.UTC), Interval: "day"},
		},
		{
			name:   "a benchmark, spaces trimmed: which exist is Benchmarks.Get's question",
			params: "benchmark=+2023+",
			want:   dora.Query{Environment: "production", From: to.AddDate(0, 0, -90), To: to, Interval: "all", Benchmark: "2023"},
		},
		{
			name:   "any window is one bucket with all",
			params: "from=1000-01-01",
			want:   dora.Query{Environment: "production", From: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), To: to, Interval: "all"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := url.ParseQuery(tt.params)
			require.NoError(t, err)
			q, err := dora.ParseQuery(v, now)
			require.NoError(t, err)
			require.Equal(t, tt.want, q)
		})
	}
}

// A bad parameter is an ErrBadParameter that names it and what it was given.
func TestParseQueryErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params string
		want   []string // what the message says
	}{
		{"unknown interval", "interval=year", []string{"interval", `"year"`}},
		{"interval in capitals", "interval=Day", []string{"interval", `"Day"`}},
		{"from not a time", "from=yesterday", []string{"from", `"yesterday"`}},
		{"to not a time", "to=2026-13-01", []string{"to", `"2026-13-01"`}},
		{"to without a zone", "to=2026-11-25T00:00:00", []string{"to", `"2026-11-25T00:00:00"`}},
		{"from equal to to", "from=2026-11-25&to=2026-11-25", []string{"from (2026-11-25T00:00:00Z) must be before to (2026-11-25T00:00:00Z)"}},
		{"from after to", "from=2026-11-26&to=2026-11-25", []string{"from", "must be before to"}},
		{"from after the default to", "from=2027-01-01", []string{"from", "must be before to"}},
		{"too many teams", manyTeams(dora.MaxSelection + 1), []string{"team", "1001 different values", "at most 1000"}},
		{"one bucket over MaxBuckets", "from=2020-01-01&to=2030-01-09&interval=day", []string{"interval=day", "3661 buckets", "at most 3660"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := url.ParseQuery(tt.params)
			require.NoError(t, err)
			_, err = dora.ParseQuery(v, now)
			require.True(t, errors.Is(err, dora.ErrBadParameter), "%v", err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func manyTeams(n int) string {
	v := url.Values{}
	for i := range n {
		v.Add("team", fmt.Sprintf("t%d", i))
	}
	return v.Encode()
}

func TestBuckets(t *testing.T) {
	t.Parallel()
	date := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		name     string
		from, to time.Time
		interval string
		want     []time.Time
	}{
		{"all: the window's start", date(2026, 1, 1).Add(time.Hour), date(2026, 4, 1), "all", []time.Time{date(2026, 1, 1).Add(time.Hour)}},
		{"days", date(2026, 3, 30), date(2026, 4, 2), "day", []time.Time{date(2026, 3, 30), date(2026, 3, 31), date(2026, 4, 1)}},
		{"days: clipped ends start on their calendar day", date(2026, 3, 30).Add(13 * time.Hour), date(2026, 4, 1).Add(time.Second), "day",
			[]time.Time{date(2026, 3, 30), date(2026, 3, 31), date(2026, 4, 1)}},
		{"days in UTC whatever the zone", time.Date(2026, 3, 31, 0, 30, 0, 0, time.FixedZone("CEST", 2*3600)), date(2026, 3, 31), "day",
			[]time.Time{date(2026, 3, 30)}},
		{"weeks start on Monday", date(2026, 11, 2), date(2026, 11, 16), "week", []time.Time{date(2026, 11, 2), date(2026, 11, 9)}},
		{"a window beginning on a Sunday starts the Monday before", date(2026, 11, 1), date(2026, 11, 3), "week",
			[]time.Time{date(2026, 10, 26), date(2026, 11, 2)}},
		{"ISO weeks across a new year", date(2026, 12, 30), date(2027, 1, 5), "week", []time.Time{date(2026, 12, 28), date(2027, 1, 4)}},
		{"months", date(2026, 1, 31), date(2026, 3, 2), "month", []time.Time{date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)}},
		{"a window inside a month", date(2026, 2, 10), date(2026, 2, 11), "month", []time.Time{date(2026, 2, 1)}},
		{"to at a bucket's start leaves it out", date(2026, 1, 1), date(2026, 2, 1), "month", []time.Time{date(2026, 1, 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, dora.Buckets(tt.from, tt.to, tt.interval))
		})
	}
}

// Buckets stops counting one past MaxBuckets: enough to refuse the query, and no more.
func TestBucketsBounded(t *testing.T) {
	t.Parallel()
	from := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	require.Len(t, dora.Buckets(from, to, "day"), dora.MaxBuckets+1)
	require.Len(t, dora.Buckets(from, to, "all"), 1)
}

func TestStoreQuery(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 8, 27, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	q := dora.Query{Pipelines: []string{"api"}, Environment: "staging", From: from, To: to, Interval: "week"}
	require.Equal(t, store.MetricsQuery{Pipelines: []string{"api"}, Environment: "staging", From: from, To: to, Unit: "week"}, q.StoreQuery())
	q.Pipelines = nil
	require.Nil(t, q.StoreQuery().Pipelines, "all pipelines is nil, not an empty list")
	q.Pipelines, q.Teams = []string{"api", "web"}, []string{"payments"}
	require.Equal(t, store.MetricsQuery{Pipelines: []string{"api", "web"}, Teams: []string{"payments"}, Environment: "staging", From: from, To: to, Unit: "week"}, q.StoreQuery())
}
