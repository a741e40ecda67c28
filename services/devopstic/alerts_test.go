package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// provisionedRule is what the test needs of a rule in grafana/provisioning/alerting.
type provisionedRule struct {
	UID       string `yaml:"uid"`
	Title     string `yaml:"title"`
	Condition string `yaml:"condition"`
	Data      []struct {
		RefID             string `yaml:"refId"`
		RelativeTimeRange *struct {
			From int64 `yaml:"from"`
			To   int64 `yaml:"to"`
		} `yaml:"relativeTimeRange"`
		DatasourceUID string         `yaml:"datasourceUid"`
		Model         map[string]any `yaml:"model"`
	} `yaml:"data"`
}

func provisionedRules(t *testing.T) map[string]provisionedRule {
	t.Helper()
	files, err := filepath.Glob("../../grafana/provisioning/alerting/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := map[string]provisionedRule{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var file struct {
			Groups []struct {
				Rules []provisionedRule `yaml:"rules"`
			} `yaml:"groups"`
		}
		require.NoError(t, yaml.Unmarshal(raw, &file), f)
		for _, g := range file.Groups {
			for _, r := range g.Rules {
				out[r.UID] = r
			}
		}
	}
	return out
}

// alertInstance is one series of a rule's query, as Grafana makes it of a table without a time
// column: its string columns are the labels, its one numeric column the value.
type alertInstance struct {
	labels map[string]string
	value  float64
	firing bool
}

func (a alertInstance) key() string {
	var parts []string
	for k, v := range a.labels {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// evaluate does what Grafana's evaluation of the rule does at now: it runs the rule's query
// over its relative time range, expanded as Grafana expands it, turns the rows into series,
// and applies the threshold that is the rule's condition.
func evaluate(t *testing.T, s *stack, r provisionedRule, now time.Time) []alertInstance {
	t.Helper()
	var sql, op, on string
	var from, to time.Time
	var limit float64
	for _, q := range r.Data {
		switch q.DatasourceUID {
		case "devopstic-postgres":
			require.Empty(t, sql, "%s: one query", r.Title)
			sql = q.Model["rawSql"].(string)
			on = q.RefID
			from = now.Add(-time.Duration(q.RelativeTimeRange.From) * time.Second)
			to = now.Add(-time.Duration(q.RelativeTimeRange.To) * time.Second)
		case "__expr__":
			if q.RefID != r.Condition {
				continue
			}
			require.Equal(t, "threshold", q.Model["type"], r.Title)
			require.Equal(t, "A", q.Model["expression"], r.Title)
			ev := q.Model["conditions"].([]any)[0].(map[string]any)["evaluator"].(map[string]any)
			op = ev["type"].(string)
			limit = toFloat(t, ev["params"].([]any)[0])
		}
	}
	require.NotEmpty(t, sql, r.Title)
	require.Equal(t, "A", on)
	var out []alertInstance
	seen := map[string]bool{}
	for _, row := range sqlRows(t, s, grafanaExpand(sql, from, to, nil, nil)) {
		inst := alertInstance{labels: map[string]string{}}
		numbers := 0
		for col, v := range row {
			switch v := v.(type) {
			case string:
				inst.labels[col] = v
			case float64:
				inst.value = v
				numbers++
			default:
				t.Fatalf("%s: column %s is %T (%v): Grafana takes strings as labels and one number", r.Title, col, v, v)
			}
		}
		require.Equal(t, 1, numbers, "%s: one numeric column: %v", r.Title, row)
		require.False(t, seen[inst.key()], "%s: two series labelled %s", r.Title, inst.key())
		seen[inst.key()] = true
		switch op {
		case "gt":
			inst.firing = inst.value > limit
		case "lt":
			inst.firing = inst.value < limit
		default:
			t.Fatalf("%s: threshold type %q: the test knows gt and lt", r.Title, op)
		}
		out = append(out, inst)
	}
	return out
}

func toFloat(t *testing.T, v any) float64 {
	t.Helper()
	switch v := v.(type) {
	case int:
		return float64(v)
	case float64:
		return v
	}
	t.Fatalf("a threshold is a number, not %T", v)
	return 0
}

func firing(instances []alertInstance) []string {
	var out []string
	for _, i := range instances {
		if i.firing {
			out = append(out, i.key())
		}
	}
	slices.Sort(out)
	return out
}

// dailyDeploys is a pipeline's history in production: a commit at 09:00 each day of [first,
// last] (days of November 2026), deployed at 11:00.
func dailyDeploys(pipeline string, first, last int) []string {
	var out []string
	for d := first; d <= last; d++ {
		c := fmt.Sprintf("%s-%02d", pipeline, d)
		out = append(out,
			fmt.Sprintf(`{"type":"commit","pipeline_id":%q,"commit_id":%q,"timestamp":"2026-11-%02dT09:00:00Z"}`, pipeline, c, d),
			fmt.Sprintf(`{"type":"deploy","pipeline_id":%q,"environment":"production","commit_id":%q,"timestamp":"2026-11-%02dT11:00:00Z"}`, pipeline, c, d))
	}
	return out
}

// The provisioned rules' SQL, run as Grafana runs it, fires on nothing in a calm history, then
// each rule fires for exactly the pipeline (or incident) that breaks its threshold, with the
// value the metrics API gives for the same window.
func TestAlertRulesFireOnRegressionsOnly(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	rules := provisionedRules(t)
	require.Len(t, rules, 3)
	cfr, lead, open := rules["devopstic-change-failure-rate"], rules["devopstic-lead-time-up"], rules["devopstic-incident-open"]
	now := time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC) // last week [11-08, 11-15), the week before [11-01, 11-08)
	posted := 0
	post := func(events []string) {
		t.Helper()
		s.postJSON(http.StatusAccepted, "["+strings.Join(events, ",")+"]")
		posted += len(events)
		s.waitCount(posted, `SELECT count(*) FROM events`)
		s.waitDrained()
	}

	// calm: a change a day with a 2 h lead time both weeks (ratio 1), 1 failed attempt of 8 last
	// week (12.5%), an incident resolved in an hour, one open for 12 h, an old one in staging
	// open for two weeks (not production), one in production long resolved.
	calm := dailyDeploys("calm", 1, 14)
	calm = append(calm,
		`{"type":"deploy","pipeline_id":"calm","environment":"production","commit_id":"calm-12","status":"failure","timestamp":"2026-11-12T10:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"calm","environment":"production","incident_id":"calm-1","status":"failure","timestamp":"2026-11-10T12:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"calm","environment":"production","incident_id":"calm-1","status":"success","timestamp":"2026-11-10T13:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"calm","environment":"production","incident_id":"calm-2","status":"failure","timestamp":"2026-11-14T12:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"calm","environment":"staging","incident_id":"calm-3","status":"failure","timestamp":"2026-11-01T00:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"calm","environment":"production","incident_id":"calm-0","status":"failure","timestamp":"2026-10-01T00:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"calm","environment":"production","incident_id":"calm-0","status":"success","timestamp":"2026-10-03T00:00:00Z"}`,
	)
	post(calm)

	t.Run("a calm history fires nothing", func(t *testing.T) {
		got := evaluate(t, s, cfr, now)
		require.Len(t, got, 1)
		require.Equal(t, "pipeline=calm", got[0].key())
		require.Equal(t, 0.125, got[0].value)
		got = evaluate(t, s, lead, now)
		require.Len(t, got, 1)
		require.Equal(t, 1.0, got[0].value)
		got = evaluate(t, s, open, now)
		require.Len(t, got, 1, "calm-2 is open, calm-3 is in staging")
		require.Equal(t, "incident=calm-2,pipeline=calm,source=native", got[0].key())
		require.Equal(t, 12*3600.0, got[0].value)
		for _, r := range rules {
			require.Empty(t, firing(evaluate(t, s, r, now)), r.Title)
		}
	})

	// failing: 1 failed attempt of 4 last week (25%); slowing: lead times of 1 h the week before
	// and 2 h last week (ratio 2); outage: an incident open for 2 days, naming no deployment.
	troubled := []string{
		`{"type":"commit","pipeline_id":"failing","commit_id":"f1","timestamp":"2026-11-09T08:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"failing","environment":"production","commit_id":"f1","status":"failure","timestamp":"2026-11-09T09:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"failing","environment":"production","commit_id":"f1","timestamp":"2026-11-09T10:00:00Z"}`,
		`{"type":"commit","pipeline_id":"failing","commit_id":"f2","timestamp":"2026-11-10T08:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"failing","environment":"production","commit_id":"f2","timestamp":"2026-11-10T09:00:00Z"}`,
		`{"type":"commit","pipeline_id":"failing","commit_id":"f3","timestamp":"2026-11-11T08:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"failing","environment":"production","commit_id":"f3","timestamp":"2026-11-11T09:00:00Z"}`,
		`{"type":"commit","pipeline_id":"slowing","commit_id":"s1","timestamp":"2026-11-03T08:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"slowing","environment":"production","commit_id":"s1","timestamp":"2026-11-03T09:00:00Z"}`,
		`{"type":"commit","pipeline_id":"slowing","commit_id":"s2","timestamp":"2026-11-04T08:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"slowing","environment":"production","commit_id":"s2","timestamp":"2026-11-04T09:00:00Z"}`,
		`{"type":"commit","pipeline_id":"slowing","commit_id":"s3","timestamp":"2026-11-10T08:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"slowing","environment":"production","commit_id":"s3","timestamp":"2026-11-10T10:00:00Z"}`,
		`{"type":"commit","pipeline_id":"slowing","commit_id":"s4","timestamp":"2026-11-11T08:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"slowing","environment":"production","commit_id":"s4","timestamp":"2026-11-11T10:00:00Z"}`,
		`{"type":"commit","pipeline_id":"outage","commit_id":"o1","timestamp":"2026-11-12T08:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"outage","environment":"production","commit_id":"o1","timestamp":"2026-11-12T09:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"outage","environment":"production","incident_id":"o-1","status":"failure","timestamp":"2026-11-13T00:00:00Z"}`,
	}
	post(troubled)

	t.Run("each rule fires for its regression", func(t *testing.T) {
		require.Equal(t, []string{"pipeline=failing"}, firing(evaluate(t, s, cfr, now)))
		require.Equal(t, []string{"pipeline=slowing"}, firing(evaluate(t, s, lead, now)))
		require.Equal(t, []string{"incident=o-1,pipeline=outage,source=native"}, firing(evaluate(t, s, open, now)))

		// The values are the metrics API's for the same windows.
		api := func(pipeline string, from, to time.Time) (rate *float64, median *float64) {
			q := url.Values{"pipeline_id": {pipeline}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
			var r struct {
				CFR struct{ Rate *float64 } `json:"change_failure_rate"`
				LT  struct {
					Median *float64 `json:"median_seconds"`
				} `json:"lead_time_for_changes"`
			}
			require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?"+q.Encode())), &r))
			return r.CFR.Rate, r.LT.Median
		}
		week := 7 * 24 * time.Hour
		for _, i := range evaluate(t, s, cfr, now) {
			rate, _ := api(i.labels["pipeline"], now.Add(-week), now)
			require.Equal(t, *rate, i.value, i.key())
		}
		ratios := map[string]float64{}
		for _, i := range evaluate(t, s, lead, now) {
			_, last := api(i.labels["pipeline"], now.Add(-week), now)
			_, before := api(i.labels["pipeline"], now.Add(-2*week), now.Add(-week))
			require.InDelta(t, *last / *before, i.value, 0.0001, i.key())
			ratios[i.labels["pipeline"]] = i.value
		}
		require.Equal(t, map[string]float64{"calm": 1, "slowing": 2}, ratios, "pipelines without both weeks are left out")
		for _, i := range evaluate(t, s, open, now) {
			if i.labels["pipeline"] == "outage" {
				require.Equal(t, 2*24*3600.0, i.value)
			}
		}
	})
}
