package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/scenario"
)

func loadDORAScenario(t *testing.T) *stack {
	t.Helper()
	s := startStack(t, "")
	s.postJSON(http.StatusAccepted, "["+strings.Join(scenario.Week, ",")+"]")
	s.waitCount(len(scenario.Week), `SELECT count(*) FROM events`)
	s.waitDrained()
	return s
}

func (s *stack) getJSON(path string) string {
	s.t.Helper()
	status, body := s.do("GET", path, "", nil)
	require.Equal(s.t, http.StatusOK, status, "%s", body)
	return string(body)
}

// The expected answers were worked out by hand from the scenario (pkg/scenario: Week).
func TestDORAMetricsMatchHandComputedValues(t *testing.T) {
	t.Parallel()
	s := loadDORAScenario(t)

	t.Run("the week", func(t *testing.T) {
		require.JSONEq(t, scenario.WeekReport, s.getJSON("/api/v1/metrics/dora?pipeline_id=api&from=2026-11-01&to=2026-11-08"))
	})

	t.Run("an empty window", func(t *testing.T) {
		require.JSONEq(t, scenario.EmptyWeekReport, s.getJSON("/api/v1/metrics/dora?pipeline_id=api&from=2026-10-01&to=2026-10-08"))
	})

	t.Run("one deployment: a redeploy of a change already deployed", func(t *testing.T) {
		require.JSONEq(t, `{
		  "pipeline_id": "api", "environment": "production",
		  "from": "2026-11-04T00:00:00Z", "to": "2026-11-05T00:00:00Z", "interval": "all",
		  "tier_source": "DORA 2024",
		  "deployment_frequency": {"deployments": 1, "per_day": 1, "per_week": 7, "tier": "elite"},
		  "lead_time_for_changes": {"changes": 0, "median_seconds": null, "p90_seconds": null, "mean_seconds": null,
		                            "review_median_seconds": null, "deploy_median_seconds": null, "tier": null},
		  "failed_deployment_recovery_time": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
		                                      "mean_seconds": null, "tier": null},
		  "change_failure_rate": {"deployments": 1, "failed": 0, "rate": 0, "tier": "elite"},
		  "rework_rate": {"deployments": 1, "rework": 0, "rate": 0},
		  "time_to_restore": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
		                      "mean_seconds": null, "tier": null}
		}`, s.getJSON("/api/v1/metrics/dora?pipeline_id=api&from=2026-11-04&to=2026-11-05"))
	})

	t.Run("staging", func(t *testing.T) {
		var r struct {
			DF struct{ Deployments int64 } `json:"deployment_frequency"`
			LT struct {
				Changes int64
				Median  *int64 `json:"median_seconds"`
			} `json:"lead_time_for_changes"`
		}
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?pipeline_id=api&environment=staging&from=2026-11-01&to=2026-11-08")), &r))
		require.Equal(t, int64(1), r.DF.Deployments)
		require.Equal(t, int64(1), r.LT.Changes)
		require.Equal(t, int64(4*3600), *r.LT.Median, "c1 reached staging 4h after its commit")
	})

	t.Run("all pipelines", func(t *testing.T) {
		var r struct {
			PipelineID *string `json:"pipeline_id"`
			CFR        struct {
				Deployments, Failed int64
			} `json:"change_failure_rate"`
		}
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?from=2026-11-01&to=2026-11-08")), &r))
		require.Nil(t, r.PipelineID)
		require.Equal(t, int64(9), r.CFR.Deployments, "api's 8 and web's failed one")
		require.Equal(t, int64(4), r.CFR.Failed)
	})

	t.Run("by day", func(t *testing.T) {
		var r struct {
			Series []json.RawMessage `json:"series"`
		}
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?pipeline_id=api&from=2026-11-01&to=2026-11-08&interval=day")), &r))
		var want []json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(scenario.WeekByDay), &want))
		require.Len(t, r.Series, len(want))
		for i, w := range want {
			require.JSONEq(t, string(w), string(r.Series[i]), "bucket %d", i)
		}
	})

	t.Run("by ISO week, the window starting on a Sunday", func(t *testing.T) {
		var r struct {
			Series []struct {
				Start               string
				Deployments, Failed int64
			} `json:"series"`
		}
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?pipeline_id=api&from=2026-11-01&to=2026-11-08&interval=week")), &r))
		require.Len(t, r.Series, 2)
		require.Equal(t, "2026-10-26T00:00:00Z", r.Series[0].Start)
		require.Equal(t, int64(1), r.Series[0].Deployments, "only 11-01, a Sunday, is in the window")
		require.Equal(t, "2026-11-02T00:00:00Z", r.Series[1].Start)
		require.Equal(t, int64(7), r.Series[1].Deployments)
		require.Equal(t, int64(3), r.Series[1].Failed)
	})

	t.Run("pipelines", func(t *testing.T) {
		require.JSONEq(t, `{"items":[
		  {"pipeline_id":"api","environments":["production","staging"],"team":null},
		  {"pipeline_id":"web","environments":["production"],"team":null}],"count":2,"skip":0,"limit":2}`,
			s.getJSON("/api/v1/pipelines"))
	})

	t.Run("bad parameters", func(t *testing.T) {
		for _, q := range []string{"interval=hour", "from=2026-11-08&to=2026-11-01", "from=last-week", "to=2026-13-01", "from=2000-01-01&to=2026-01-01&interval=day",
			"benchmark=2022", "benchmark=DORA%202024"} {
			status, body := s.do("GET", "/api/v1/metrics/dora?"+q, "", nil)
			require.Equal(t, http.StatusBadRequest, status, "%s: %s", q, body)
		}
	})
}

// benchmark= picks the tiers' benchmark (DORA 2024 by default), and the answer names it in
// tier_source. The figures here sit where the two benchmarks part: 1 failed attempt of 8
// (12.5%: medium in 2023, high in 2024) and an incident resolved after two days (medium in
// 2023, low in 2024). Failed deployment recovery time is under its current name and its old
// one, with the same content, in the window's figures and in every bucket.
func TestDORABenchmarksAndNames(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	events := []string{
		`{"type":"incident_status_change","pipeline_id":"bench","environment":"production","incident_id":"i","status":"failure","timestamp":"2026-11-02T00:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"bench","environment":"production","incident_id":"i","status":"success","timestamp":"2026-11-04T00:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"bench","environment":"production","commit_id":"f","status":"failure","timestamp":"2026-11-02T00:30:00Z"}`,
	}
	for i := range 7 {
		events = append(events, fmt.Sprintf(`{"type":"deploy","pipeline_id":"bench","environment":"production","commit_id":"c%d","timestamp":"2026-11-0%dT12:00:00Z"}`, i, i+1))
	}
	s.postJSON(http.StatusAccepted, "["+strings.Join(events, ",")+"]")
	s.waitCount(len(events), `SELECT count(*) FROM events`)
	s.waitDrained()

	type answer struct {
		TierSource string `json:"tier_source"`
		DF         struct {
			Tier string `json:"tier"`
		} `json:"deployment_frequency"`
		CFR struct {
			Rate float64 `json:"rate"`
			Tier string  `json:"tier"`
		} `json:"change_failure_rate"`
		Recovery struct {
			Median int64  `json:"median_seconds"`
			Tier   string `json:"tier"`
		} `json:"failed_deployment_recovery_time"`
	}
	const window = "pipeline_id=bench&from=2026-11-01&to=2026-11-08"
	for _, tc := range []struct {
		params                    string
		source, failure, recovery string
	}{
		{"", "DORA 2024", "high", "low"},
		{"&benchmark=2024", "DORA 2024", "high", "low"},
		{"&benchmark=2023", "DORA 2023", "medium", "medium"},
		{"&benchmark=+2023+", "DORA 2023", "medium", "medium"},
	} {
		body := s.getJSON("/api/v1/metrics/dora?" + window + tc.params)
		var a answer
		require.NoError(t, json.Unmarshal([]byte(body), &a), body)
		require.Equal(t, tc.source, a.TierSource, tc.params)
		require.Equal(t, 0.125, a.CFR.Rate)
		require.Equal(t, tc.failure, a.CFR.Tier, tc.params)
		require.Equal(t, int64(2*86400), a.Recovery.Median)
		require.Equal(t, tc.recovery, a.Recovery.Tier, tc.params)
		require.Equal(t, "elite", a.DF.Tier, "7 in 7 days")

		var keys map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(body), &keys))
		for _, k := range []string{"deployment_frequency", "lead_time_for_changes", "failed_deployment_recovery_time", "change_failure_rate", "rework_rate"} {
			require.Contains(t, keys, k, "DORA's current names")
		}
		require.JSONEq(t, string(keys["failed_deployment_recovery_time"]), string(keys["time_to_restore"]), "the old name, the same content")
	}

	// The default is the newest report in the benchmarks table, whatever the code says.
	var newest string
	require.NoError(t, s.db.QueryRow(context.Background(), `SELECT label FROM dora_benchmarks ORDER BY report_year DESC LIMIT 1`).Scan(&newest))
	require.Equal(t, "DORA 2024", newest)

	var series struct {
		Series []map[string]any `json:"series"`
	}
	require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?"+window+"&interval=day")), &series))
	require.Len(t, series.Series, 7)
	for i, b := range series.Series {
		require.Contains(t, b, "failed_deployment_recovery_time_median_seconds", "bucket %d", i)
		require.Equal(t, b["failed_deployment_recovery_time_median_seconds"], b["time_to_restore_median_seconds"], "bucket %d", i)
	}
	require.Equal(t, float64(2*86400), series.Series[3]["failed_deployment_recovery_time_median_seconds"], "resolved on the 4th")

	for _, bad := range []string{"2022", "latest", "DORA 2024"} {
		status, body := s.do("GET", "/api/v1/metrics/dora?"+window+"&benchmark="+url.QueryEscape(bad), "", nil)
		require.Equal(t, http.StatusBadRequest, status, "%s", body)
		var e struct{ Error string }
		require.NoError(t, json.Unmarshal(body, &e))
		require.Equal(t, fmt.Sprintf("invalid parameter: benchmark must be one of 2024, 2023 (default 2024), not %q", bad), e.Error)
	}
}
