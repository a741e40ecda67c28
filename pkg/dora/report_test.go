package dora_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
)

func ptr[T any](v T) *T { return &v }

// DORA.md's example answer, built from the figures the store would hand over for it: the tiers
// are rated here (against DORA.md's "DORA 2023", benchmark=2023), everything else is carried as
// the store rounded it. Time to restore is there under both its names: DORA's current one,
// failed_deployment_recovery_time, and the old one for one more release.
func TestNewReportDORAExample(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 8, 27, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	q := dora.Query{Pipelines: []string{"api"}, Environment: "production", From: from, To: to, Interval: "all", Benchmark: "2023"}
	m := store.Metrics{
		Deployments: []store.DeploymentStats{{
			Deployments: 12, PerDay: 0.1333, PerWeek: 0.9333,
			Attempts: 14, Failed: 2, ChangeFailureRate: ptr(0.1429),
			Rework: 1, ReworkRate: ptr(0.0833),
		}},
		LeadTime: []store.LeadTimeStats{{
			Changes: 30, Median: ptr[int64](5400), MedianExact: ptr(5400.0), P90: ptr[int64](86400), Mean: ptr[int64](20100),
			ReviewMedian: ptr[int64](1800), DeployMedian: ptr[int64](3000),
		}},
		Restore: []store.RestoreStats{{
			Incidents: 2, Median: ptr[int64](3600), MedianExact: ptr(3600.0), P90: ptr[int64](5520), Mean: ptr[int64](3600),
		}},
	}
	r, err := dora.NewReport(q, m, benchmark(t, "2023"))
	require.NoError(t, err)
	got, err := json.Marshal(r)
	require.NoError(t, err)
	require.JSONEq(t, `{
  "pipeline_id": "api", "environment": "production",
  "from": "2026-08-27T00:00:00Z", "to": "2026-11-25T00:00:00Z", "interval": "all",
  "tier_source": "DORA 2023",
  "deployment_frequency": {"deployments": 12, "per_day": 0.1333, "per_week": 0.9333, "tier": "medium"},
  "lead_time_for_changes": {"changes": 30, "median_seconds": 5400, "p90_seconds": 86400, "mean_seconds": 20100,
                            "review_median_seconds": 1800, "deploy_median_seconds": 3000, "tier": "elite"},
  "failed_deployment_recovery_time": {"incidents": 2, "open_incidents": 0, "median_seconds": 3600, "p90_seconds": 5520,
                                      "mean_seconds": 3600, "tier": "high"},
  "change_failure_rate": {"deployments": 14, "failed": 2, "rate": 0.1429, "tier": "medium"},
  "rework_rate": {"deployments": 12, "rework": 1, "rate": 0.0833},
  "time_to_restore": {"incidents": 2, "open_incidents": 0, "median_seconds": 3600, "p90_seconds": 5520,
                      "mean_seconds": 3600, "tier": "high"}
}`, string(got))

	// The same figures against the default, DORA 2024: a change failure rate of 14.29% is within
	// the high cluster's 20%.
	q.Benchmark = ""
	r, err = dora.NewReport(q, m, benchmark(t, ""))
	require.NoError(t, err)
	require.Equal(t, "DORA 2024", r.TierSource)
	require.Equal(t, "high", *r.ChangeFailureRate.Tier)
	require.Equal(t, "medium", r.DeploymentFrequency.Tier)
	require.Equal(t, "elite", *r.LeadTime.Tier)
	require.Equal(t, "high", *r.FailedDeploymentRecoveryTime.Tier)
}

// The old names carry the same content as the new ones, in the answer's JSON itself: the whole
// object, and each bucket's median.
func TestNewReportOldNamesEqualTheNew(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	q := dora.Query{Environment: "production", From: from, To: from.AddDate(0, 0, 2), Interval: "day"}
	day1, day2 := from, from.AddDate(0, 0, 1)
	r, err := dora.NewReport(q, store.Metrics{
		Deployments: []store.DeploymentStats{{}, {Start: ptr(day1)}, {Start: ptr(day2)}},
		LeadTime:    []store.LeadTimeStats{{}, {Start: ptr(day1)}, {Start: ptr(day2)}},
		Restore: []store.RestoreStats{
			{Incidents: 3, Median: ptr[int64](5400), MedianExact: ptr(5400.0), P90: ptr[int64](9000), Mean: ptr[int64](6000)},
			{Start: ptr(day1), Incidents: 3, Median: ptr[int64](5400)},
			{Start: ptr(day2)},
		},
		OpenIncidents: 2,
	}, benchmark(t, ""))
	require.NoError(t, err)
	raw, err := json.Marshal(r)
	require.NoError(t, err)
	var answer map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &answer))
	require.Contains(t, answer, "failed_deployment_recovery_time")
	require.JSONEq(t, `{"incidents": 3, "open_incidents": 2, "median_seconds": 5400, "p90_seconds": 9000, "mean_seconds": 6000, "tier": "high"}`,
		string(answer["failed_deployment_recovery_time"]))
	require.JSONEq(t, string(answer["failed_deployment_recovery_time"]), string(answer["time_to_restore"]))

	var series []map[string]any
	require.NoError(t, json.Unmarshal(answer["series"], &series))
	require.Len(t, series, 2)
	require.Equal(t, 5400.0, series[0]["failed_deployment_recovery_time_median_seconds"])
	for i, b := range series {
		require.Contains(t, b, "failed_deployment_recovery_time_median_seconds")
		require.Contains(t, b, "time_to_restore_median_seconds")
		require.Equal(t, b["failed_deployment_recovery_time_median_seconds"], b["time_to_restore_median_seconds"], "bucket %d", i)
	}
	require.Nil(t, series[1]["failed_deployment_recovery_time_median_seconds"])
}

// A statistic with no values is null, never 0, and so is its tier; a count of zero is 0, and
// no deployments is the tier low. All pipelines is a null pipeline_id.
func TestNewReportEmptyWindow(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 8, 27, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	q := dora.Query{Environment: "staging", From: from, To: to, Interval: "all"}
	r, err := dora.NewReport(q, store.Metrics{
		Deployments: []store.DeploymentStats{{}},
		LeadTime:    []store.LeadTimeStats{{}},
		Restore:     []store.RestoreStats{{}},
	}, benchmark(t, ""))
	require.NoError(t, err)
	got, err := json.Marshal(r)
	require.NoError(t, err)
	require.JSONEq(t, `{
  "pipeline_id": null, "environment": "staging",
  "from": "2026-08-27T00:00:00Z", "to": "2026-11-25T00:00:00Z", "interval": "all",
  "tier_source": "DORA 2024",
  "deployment_frequency": {"deployments": 0, "per_day": 0, "per_week": 0, "tier": "low"},
  "lead_time_for_changes": {"changes": 0, "median_seconds": null, "p90_seconds": null, "mean_seconds": null,
                            "review_median_seconds": null, "deploy_median_seconds": null, "tier": null},
  "failed_deployment_recovery_time": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
                                      "mean_seconds": null, "tier": null},
  "change_failure_rate": {"deployments": 0, "failed": 0, "rate": null, "tier": null},
  "rework_rate": {"deployments": 0, "rework": 0, "rate": null},
  "time_to_restore": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
                      "mean_seconds": null, "tier": null}
}`, string(got))
}

// Zero is a value, not a missing one: a median of 0 seconds and a rate of 0 stay 0 and are rated.
func TestNewReportZeroIsNotNull(t *testing.T) {
	t.Parallel()
	r := rate(t, "", 90*day,
		store.DeploymentStats{Deployments: 3, Attempts: 3, ChangeFailureRate: ptr(0.0), ReworkRate: ptr(0.0)},
		store.LeadTimeStats{Changes: 1, Median: ptr[int64](0), MedianExact: ptr(0.0), P90: ptr[int64](0), Mean: ptr[int64](0)},
		store.RestoreStats{Incidents: 1, Median: ptr[int64](0), MedianExact: ptr(0.0), P90: ptr[int64](0), Mean: ptr[int64](0)})
	got, err := json.Marshal(r)
	require.NoError(t, err)
	var answer struct {
		LeadTime          map[string]any `json:"lead_time_for_changes"`
		ChangeFailureRate map[string]any `json:"change_failure_rate"`
		RecoveryTime      map[string]any `json:"failed_deployment_recovery_time"`
		ReworkRate        map[string]any `json:"rework_rate"`
	}
	require.NoError(t, json.Unmarshal(got, &answer))
	require.Equal(t, 0.0, answer.LeadTime["median_seconds"])
	require.Equal(t, "elite", answer.LeadTime["tier"])
	require.Nil(t, answer.LeadTime["review_median_seconds"], "unknown stays null beside a zero")
	require.Equal(t, 0.0, answer.ChangeFailureRate["rate"])
	require.Equal(t, "elite", answer.ChangeFailureRate["tier"])
	require.Equal(t, 0.0, answer.RecoveryTime["median_seconds"])
	require.Equal(t, "elite", answer.RecoveryTime["tier"])
	require.Equal(t, 0.0, answer.ReworkRate["rate"])
}

// A series has one bucket per row after the window's, in order, each with the change failure
// rate's own counts; empty buckets keep their null statistics.
func TestNewReportSeries(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC) // a Monday
	to := from.AddDate(0, 0, 14)
	week1, week2 := from, from.AddDate(0, 0, 7)
	// the store hands starts in the session's zone; the answer is in UTC
	paris := time.FixedZone("CET", 3600)
	q := dora.Query{Pipelines: []string{"api"}, Environment: "production", From: from, To: to, Interval: "week"}
	m := store.Metrics{
		Deployments: []store.DeploymentStats{
			{Deployments: 3, Attempts: 4, Failed: 1, ChangeFailureRate: ptr(0.25)},
			{Start: ptr(week1.In(paris)), Deployments: 3, Attempts: 4, Failed: 1, ChangeFailureRate: ptr(0.25)},
			{Start: ptr(week2)},
		},
		LeadTime: []store.LeadTimeStats{
			{Changes: 2, Median: ptr[int64](600), MedianExact: ptr(600.0)},
			{Start: ptr(week1), Changes: 2, Median: ptr[int64](600)},
			{Start: ptr(week2.In(paris))},
		},
		Restore: []store.RestoreStats{
			{Incidents: 1, Median: ptr[int64](120), MedianExact: ptr(120.0)},
			{Start: ptr(week1), Incidents: 1, Median: ptr[int64](120)},
			{Start: ptr(week2)},
		},
		OpenIncidents: 1,
	}
	r, err := dora.NewReport(q, m, benchmark(t, ""))
	require.NoError(t, err)
	require.Equal(t, int64(3), r.DeploymentFrequency.Deployments, "the window's figures come from the first row")
	require.Equal(t, int64(1), r.FailedDeploymentRecoveryTime.OpenIncidents)
	require.Equal(t, []dora.Bucket{
		{Start: week1, Deployments: 4, Failed: 1, ChangeFailureRate: ptr(0.25), LeadTimeMedianSeconds: ptr[int64](600),
			FailedDeploymentRecoveryTimeMedianSeconds: ptr[int64](120), TimeToRestoreMedianSeconds: ptr[int64](120)},
		{Start: week2},
	}, r.Series)
	require.Equal(t, time.UTC, r.Series[0].Start.Location())

	got, err := json.Marshal(r.Series[1])
	require.NoError(t, err)
	require.JSONEq(t, `{"start": "2026-11-09T00:00:00Z", "deployments": 0, "failed": 0, "change_failure_rate": null,
		"lead_time_median_seconds": null, "failed_deployment_recovery_time_median_seconds": null,
		"time_to_restore_median_seconds": null}`, string(got))

	// interval=all has no series at all
	q.Interval = "all"
	r, err = dora.NewReport(q, store.Metrics{Deployments: m.Deployments[:1], LeadTime: m.LeadTime[:1], Restore: m.Restore[:1]}, benchmark(t, ""))
	require.NoError(t, err)
	got, err = json.Marshal(r)
	require.NoError(t, err)
	require.NotContains(t, string(got), `"series"`)
}

// Rows that do not line up are a store bug: an error, not a report of mixed figures.
func TestNewReportRowsDoNotLineUp(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	q := dora.Query{Environment: "production", From: from, To: from.AddDate(0, 0, 2), Interval: "day"}
	day1, day2 := from, from.AddDate(0, 0, 1)
	whole := func() store.Metrics {
		return store.Metrics{
			Deployments: []store.DeploymentStats{{}, {Start: ptr(day1)}, {Start: ptr(day2)}},
			LeadTime:    []store.LeadTimeStats{{}, {Start: ptr(day1)}, {Start: ptr(day2)}},
			Restore:     []store.RestoreStats{{}, {Start: ptr(day1)}, {Start: ptr(day2)}},
		}
	}
	b := benchmark(t, "")
	_, err := dora.NewReport(q, whole(), b)
	require.NoError(t, err)

	tests := []struct {
		name  string
		spoil func(m *store.Metrics)
	}{
		{"no rows", func(m *store.Metrics) { *m = store.Metrics{} }},
		{"a lead time row missing", func(m *store.Metrics) { m.LeadTime = m.LeadTime[:2] }},
		{"a restore row missing", func(m *store.Metrics) { m.Restore = m.Restore[:2] }},
		{"a bucket without a start", func(m *store.Metrics) { m.Restore[2].Start = nil }},
		{"buckets out of step", func(m *store.Metrics) { m.LeadTime[1].Start, m.LeadTime[2].Start = ptr(day2), ptr(day1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := whole()
			tt.spoil(&m)
			_, err := dora.NewReport(q, m, b)
			require.ErrorContains(t, err, "line up")
		})
	}
}
