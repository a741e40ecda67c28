package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/scenario"
)

// The generated scenarios go through the whole pipeline, and the API reports for every pipeline
// exactly the figures that follow from the scenario's parameters.
func TestGeneratedScenarioMatchesItsClosedForm(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	sc := scenario.Generate(scenario.Config{Seed: 7, Pipelines: 8, Start: time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC), Days: 60})
	events := sc.Events()
	for start := 0; start < len(events); start += 1000 {
		batch := events[start:min(start+1000, len(events))]
		body, err := json.Marshal(batch)
		require.NoError(t, err)
		s.postJSON(http.StatusAccepted, string(bytes.TrimSpace(body)))
	}
	s.waitCount(len(events), `SELECT count(*) FROM events`)
	s.waitDrained()

	kinds := map[string]bool{}
	for _, p := range sc.Pipelines {
		want := sc.Expected(p)
		kinds[p.Every.String()] = true
		q := url.Values{"pipeline_id": {p.ID}, "from": {sc.Config.Start.Format(time.RFC3339)}, "to": {sc.End().Format(time.RFC3339)}}
		var r struct {
			DF struct {
				Deployments int64
				PerDay      float64 `json:"per_day"`
			} `json:"deployment_frequency"`
			LT struct {
				Changes      int64
				Median       *int64 `json:"median_seconds"`
				P90          *int64 `json:"p90_seconds"`
				Mean         *int64 `json:"mean_seconds"`
				ReviewMedian *int64 `json:"review_median_seconds"`
				DeployMedian *int64 `json:"deploy_median_seconds"`
			} `json:"lead_time_for_changes"`
			CFR struct {
				Deployments, Failed int64
				Rate                *float64
			} `json:"change_failure_rate"`
			TTR struct {
				Incidents     int64
				OpenIncidents int64  `json:"open_incidents"`
				Median        *int64 `json:"median_seconds"`
			} `json:"failed_deployment_recovery_time"`
			Rework struct{ Rework int64 } `json:"rework_rate"`
		}
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?"+q.Encode())), &r))
		name := p.ID
		require.Equal(t, want.Deployments, r.DF.Deployments, name)
		require.Equal(t, want.PerDay, r.DF.PerDay, name)
		require.Equal(t, want.Changes, r.LT.Changes, name)
		for _, v := range []*int64{r.LT.Median, r.LT.P90, r.LT.Mean} {
			require.Equal(t, want.LeadTimeSeconds, *v, name)
		}
		require.Equal(t, want.ReviewSeconds, *r.LT.ReviewMedian, name)
		require.Equal(t, want.DeployLeadSeconds, *r.LT.DeployMedian, name)
		require.Equal(t, want.Attempts, r.CFR.Deployments, name)
		require.Equal(t, want.Failed, r.CFR.Failed, name)
		require.Equal(t, want.ChangeFailureRate, *r.CFR.Rate, name)
		require.Equal(t, want.Incidents, r.TTR.Incidents, name)
		require.Equal(t, want.RestoreSeconds, r.TTR.Median, name)
		require.Zero(t, r.TTR.OpenIncidents, name)
		require.Zero(t, r.Rework.Rework, name)
	}
	require.GreaterOrEqual(t, len(kinds), 2, "the seed should give pipelines of different rhythms")
}
