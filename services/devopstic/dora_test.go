package main

import (
	"encoding/json"
	"net/http"
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
		  "tier_source": "DORA 2023",
		  "deployment_frequency": {"deployments": 1, "per_day": 1, "per_week": 7, "tier": "elite"},
		  "lead_time_for_changes": {"changes": 0, "median_seconds": null, "p90_seconds": null, "mean_seconds": null,
		                            "review_median_seconds": null, "deploy_median_seconds": null, "tier": null},
		  "change_failure_rate": {"deployments": 1, "failed": 0, "rate": 0, "tier": "elite"},
		  "time_to_restore": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
		                      "mean_seconds": null, "tier": null},
		  "rework_rate": {"deployments": 1, "rework": 0, "rate": 0}
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
		for _, q := range []string{"interval=hour", "from=2026-11-08&to=2026-11-01", "from=last-week", "to=2026-13-01", "from=2000-01-01&to=2026-01-01&interval=day"} {
			status, body := s.do("GET", "/api/v1/metrics/dora?"+q, "", nil)
			require.Equal(t, http.StatusBadRequest, status, "%s: %s", q, body)
		}
	})
}
