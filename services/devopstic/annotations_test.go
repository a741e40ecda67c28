package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/scenario"
)

// sqlRows runs a query and returns its rows as JSON objects (numbers as float64, times as
// RFC 3339 strings), which is how the tests compare them with the API's answers.
func sqlRows(t *testing.T, s *stack, sql string) []map[string]any {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT row_to_json(q)::text FROM (`+sql+`) q`)
	require.NoError(t, err, sql)
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		out = append(out, m)
	}
	require.NoError(t, rows.Err(), sql)
	return out
}

type dashboardAnnotation struct {
	Name    string `json:"name"`
	BuiltIn *int   `json:"builtIn"`
	Target  *struct {
		RawSQL string `json:"rawSql"`
	} `json:"target"`
}

func overviewAnnotations(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../../grafana/dashboards/dora-overview.json")
	require.NoError(t, err)
	var d struct {
		Annotations struct {
			List []dashboardAnnotation `json:"list"`
		} `json:"annotations"`
	}
	require.NoError(t, json.Unmarshal(raw, &d))
	out := map[string]string{}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == nil {
			out[a.Name] = a.Target.RawSQL
		}
	}
	return out
}

func rowTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "a time, not %v", v)
	tm, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return tm.UTC()
}

// The overview's annotations, expanded as Grafana expands them, mark exactly the deployment
// attempts the metrics count (the failed ones apart, as the change failure rate counts them)
// and the incidents of the window, for the pipelines and environment chosen.
func TestDashboardAnnotationsAgreeWithTheAPI(t *testing.T) {
	t.Parallel()
	s := loadDORAScenario(t)
	quoted := []string{
		`{"type":"commit","pipeline_id":"it's","commit_id":"q1","timestamp":"2026-11-02T00:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"it's","environment":"production","commit_id":"q1","timestamp":"2026-11-02T05:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"it's","environment":"production","incident_id":"q","status":"failure","commit_id":"q1","timestamp":"2026-11-02T06:00:00Z"}`,
	}
	s.postJSON(http.StatusAccepted, "["+strings.Join(quoted, ",")+"]")
	s.waitCount(len(scenario.Week)+len(quoted), `SELECT count(*) FROM events`)
	s.waitDrained()

	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC)
	annotations := overviewAnnotations(t)
	require.Len(t, annotations, 3)
	run := func(name string, pipelines []string, env string) []map[string]any {
		t.Helper()
		sql, ok := annotations[name]
		require.True(t, ok, "annotation %q", name)
		return sqlRows(t, s, grafanaExpand(sql, from, to, map[string][]string{"pipeline": pipelines},
			map[string]string{"environment": env, "interval": "week"}))
	}

	for _, sel := range []struct {
		name      string
		pipelines []string
		apiParam  string
	}{
		{"one pipeline", []string{"api"}, "api"},
		{"a quote in the name", []string{"it's"}, "it's"},
		{"All", []string{"api", "it's", "web"}, ""},
	} {
		t.Run(sel.name, func(t *testing.T) {
			q := url.Values{"from": {"2026-11-01"}, "to": {"2026-11-08"}}
			if sel.apiParam != "" {
				q.Set("pipeline_id", sel.apiParam)
			}
			var report struct {
				CFR struct{ Deployments, Failed float64 } `json:"change_failure_rate"`
			}
			require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?"+q.Encode())), &report))

			ok, failed := run("Deployments", sel.pipelines, "production"), run("Failed deployments", sel.pipelines, "production")
			require.Equal(t, report.CFR.Failed, float64(len(failed)), "failed deployments marked in red")
			require.Equal(t, report.CFR.Deployments, float64(len(ok)+len(failed)), "every attempt marked once")
			for _, r := range append(slices.Clone(ok), failed...) {
				tm := rowTime(t, r["time"])
				require.True(t, !tm.Before(from) && tm.Before(to), "%v in the window", tm)
				require.NotEmpty(t, r["text"])
				require.Contains(t, r["tags"], "deployment,")
			}
			for _, r := range failed {
				require.Contains(t, r["tags"], "failed")
			}
		})
	}

	// api's failed attempts: the failed deploy, the one i1 names by id, the one i2 names by commit.
	var failedAt []string
	for _, r := range run("Failed deployments", []string{"api"}, "production") {
		failedAt = append(failedAt, rowTime(t, r["time"]).Format(time.RFC3339))
	}
	require.Equal(t, []string{"2026-11-02T12:00:00Z", "2026-11-03T10:00:00Z", "2026-11-05T01:00:00Z"}, failedAt)

	// Incidents are regions from opening to resolution (i3 is resolved after the window).
	var regions []string
	for _, r := range run("Incidents", []string{"api"}, "production") {
		regions = append(regions, rowTime(t, r["time"]).Format(time.RFC3339)+"/"+rowTime(t, r["timeend"]).Format(time.RFC3339))
		require.Contains(t, r["text"], "Incident ")
		require.Equal(t, "incident,api", r["tags"])
	}
	require.Equal(t, []string{"2026-11-03T11:00:00Z/2026-11-03T13:00:00Z", "2026-11-05T02:00:00Z/2026-11-05T02:30:00Z",
		"2026-11-07T23:00:00Z/2026-11-08T01:00:00Z"}, regions)
	// One still open ends at the end of the range.
	open := run("Incidents", []string{"it's"}, "production")
	require.Len(t, open, 1)
	require.Equal(t, to, rowTime(t, open[0]["timeend"]))
	require.Contains(t, open[0]["text"], "still open")

	// The environment is the dashboard's: staging had one deployment, of c1, and no incident.
	staging := run("Deployments", []string{"api"}, "staging")
	require.Len(t, staging, 1)
	require.Equal(t, "2026-11-01T04:00:00Z", rowTime(t, staging[0]["time"]).Format(time.RFC3339))
	require.Empty(t, run("Failed deployments", []string{"api"}, "staging"))
	require.Empty(t, run("Incidents", []string{"api"}, "staging"))
}
