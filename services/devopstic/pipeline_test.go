package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPostedEventReachesEveryTable(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")

	s.postJSON(http.StatusAccepted, `[
	  {"type":"commit","pipeline_id":"api","commit_id":"c1","timestamp":1795590000},
	  {"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c1","timestamp":"2026-11-25T10:00:00Z"}
	]`)
	s.waitCount(2, `SELECT count(*) FROM events`)
	s.waitCount(1, `SELECT count(*) FROM deployments`)

	status, body := s.do("GET", "/events?pipeline_id=api&type=deploy", "", nil)
	require.Equal(t, http.StatusOK, status, "%s", body)
	var events struct {
		Items []map[string]any
		Count int
		Skip  int
		Limit int
	}
	require.NoError(t, json.Unmarshal(body, &events))
	require.Equal(t, 1, events.Count)
	require.Len(t, events.Items, 1)
	item := events.Items[0]
	require.Equal(t, "deploy", item["type"])
	require.Equal(t, "api", item["pipeline_id"])
	require.Equal(t, "production", item["environment"])
	require.Equal(t, "c1", item["commit_id"])
	require.Equal(t, "success", item["status"])
	require.Equal(t, float64(1795600800), item["timestamp"])
	require.Nil(t, item["incident_id"])

	status, body = s.do("GET", "/commits?pipeline_id=api", "", nil)
	require.Equal(t, http.StatusOK, status, "%s", body)
	var commits struct {
		Items []struct {
			CommitID        string            `json:"commit_id"`
			CommittedAt     string            `json:"committed_at"`
			FirstDeployedAt map[string]string `json:"first_deployed_at"`
		}
		Count int
	}
	require.NoError(t, json.Unmarshal(body, &commits))
	require.Equal(t, 1, commits.Count)
	require.Equal(t, "c1", commits.Items[0].CommitID)
	require.Equal(t, "2026-11-25T07:00:00Z", commits.Items[0].CommittedAt)
	require.Contains(t, commits.Items[0].FirstDeployedAt, "production")
}
