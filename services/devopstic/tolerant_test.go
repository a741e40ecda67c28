package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Four Keys' data generator (generate_data.py), which many teams use to try a DORA tool, sends
// GitHub-style deployment_status deliveries whose id is a hex string, with no deployment id, no
// repository and Python's str(datetime) for a time. Such a delivery goes through HTTP, the
// stream and the writer, and a redelivery of it (under a new delivery id, so that only the
// deployment's key can tell) is one deployment. So is a deployment sent with id 10 and again
// with id "10".
func TestImitatorsIdsAsStringsCountOnce(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	const (
		hexID = "5c3ff8f2b2c74e0d9d8a1f1b0e6c2a9d4b7e3f10"
		sha   = "0d5c1f2e3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d"
	)
	fourKeys := `{"deployment_status":{"updated_at":"2026-11-02 14:00:00.123456","id":"` + hexID + `","state":"success"},"deployment":{"sha":"` + sha + `"}}`
	deliveries := []struct{ name, query, body string }{
		{"fourkeys-1", "?pipeline_id=fourkeys", fourKeys},
		{"fourkeys-2", "?pipeline_id=fourkeys", fourKeys},
		{"number", "", `{"deployment_status":{"id":11,"state":"success","created_at":"2026-11-02T15:00:00Z"},"deployment":{"id":10,"sha":"` + sha + `","environment":"production"},"repository":{"full_name":"acme/api"}}`},
		{"string", "", `{"deployment_status":{"id":"11","state":"success","created_at":"2026-11-02 15:00:00"},"deployment":{"id":"10","sha":"` + sha + `","environment":"production"},"repository":{"full_name":"acme/api"}}`},
	}
	for _, d := range deliveries {
		status, out := s.deliver("deployment_status", d.name, []byte(d.body), d.query)
		require.Equal(t, http.StatusAccepted, status, "%s: %s", d.name, out)
	}
	s.waitCount(len(deliveries), `SELECT count(*) FROM events`)
	s.waitDrained()

	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE pipeline_id = 'fourkeys' AND deployment_id = $1`, hexID))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE pipeline_id = 'acme/api' AND deployment_id = '10'`))
	for pipeline, want := range map[string]float64{"fourkeys": 1, "acme/api": 1} {
		keys := s.doraKeys(fmt.Sprintf("/api/v1/metrics/dora?pipeline_id=%s&from=2026-11-01&to=2026-11-08", pipeline))
		require.Equal(t, want, keys["deployment_frequency"]["deployments"], pipeline)
	}
}
