package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/scenario"
)

// grafanaPanel is what the test needs of a dashboard panel.
type grafanaPanel struct {
	Type    string         `json:"type"`
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"`
	Targets []struct {
		RawSQL string `json:"rawSql"`
	} `json:"targets"`
}

type grafanaDashboard struct {
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// grafanaExpand does to a panel's SQL what Grafana does before sending it to Postgres: it
// expands the PostgreSQL macros for the time range [from, to] and interpolates the template
// variables as Grafana's front end does (a multi-value variable as 'a','b' with quotes doubled,
// a single value with quotes doubled and no quotes around it).
func grafanaExpand(sql string, from, to time.Time, multi map[string][]string, single map[string]string) string {
	f, t := from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339)
	macros := []struct {
		re   *regexp.Regexp
		repl func([]string) string
	}{
		{regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`), func(m []string) string {
			return fmt.Sprintf("%s BETWEEN '%s' AND '%s'", m[1], f, t)
		}},
		{regexp.MustCompile(`\$__timeFrom\(\)`), func([]string) string { return "'" + f + "'" }},
		{regexp.MustCompile(`\$__timeTo\(\)`), func([]string) string { return "'" + t + "'" }},
		{regexp.MustCompile(`\$__unixEpochFrom\(\)`), func([]string) string { return fmt.Sprint(from.Unix()) }},
		{regexp.MustCompile(`\$__unixEpochTo\(\)`), func([]string) string { return fmt.Sprint(to.Unix()) }},
		{regexp.MustCompile(`\$__timeGroupAlias\(([^,]+),\s*'?(\w+)'?\)`), func(m []string) string {
			return fmt.Sprintf(`floor(extract(epoch from %s)/%d)*%d AS "time"`, m[1], seconds(m[2]), seconds(m[2]))
		}},
		{regexp.MustCompile(`\$__timeGroup\(([^,]+),\s*'?(\w+)'?\)`), func(m []string) string {
			return fmt.Sprintf("floor(extract(epoch from %s)/%d)*%d", m[1], seconds(m[2]), seconds(m[2]))
		}},
	}
	for _, m := range macros {
		sql = m.re.ReplaceAllStringFunc(sql, func(s string) string { return m.repl(m.re.FindStringSubmatch(s)) })
	}
	quote := func(v string) string { return strings.ReplaceAll(v, "'", "''") }
	variable := regexp.MustCompile(`\$\{(\w+)(?::(\w+))?\}|\$(\w+)`)
	return variable.ReplaceAllStringFunc(sql, func(s string) string {
		m := variable.FindStringSubmatch(s)
		name, format := m[1]+m[3], m[2]
		if values, ok := multi[name]; ok {
			parts := make([]string, len(values))
			for i, v := range values {
				if format == "csv" {
					parts[i] = v
				} else {
					parts[i] = "'" + quote(v) + "'"
				}
			}
			return strings.Join(parts, ",")
		}
		if v, ok := single[name]; ok {
			if format == "sqlstring" {
				return "'" + quote(v) + "'"
			}
			return quote(v)
		}
		return s
	})
}

func seconds(interval string) int {
	d, err := time.ParseDuration(strings.Replace(interval, "d", "h", 1))
	if err != nil {
		panic(interval)
	}
	if strings.HasSuffix(interval, "d") {
		d *= 24
	}
	return int(d.Seconds())
}

func TestGrafanaMacroExpansion(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC)
	got := grafanaExpand(`SELECT $__timeGroupAlias(t, '1d'), x FROM y WHERE $__timeFilter(t) AND p IN ($pipeline) AND e = '$environment' AND c IN (${pipeline:csv}) AND $__unixEpochFrom() < 1 AND '${environment:sqlstring}' = $__timeTo()`,
		from, to, map[string][]string{"pipeline": {"a", "it's"}}, map[string]string{"environment": "o'prod"})
	require.Equal(t, `SELECT floor(extract(epoch from t)/86400)*86400 AS "time", x FROM y WHERE t BETWEEN '2026-11-01T00:00:00Z' AND '2026-11-08T00:00:00Z' AND p IN ('a','it''s') AND e = 'o''prod' AND c IN (a,it's) AND 1793491200 < 1 AND ''o''prod'' = '2026-11-08T00:00:00Z'`, got)
}

func flattenPanels(panels []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range panels {
		out = append(out, p)
		out = append(out, flattenPanels(p.Panels)...)
	}
	return out
}

// statFigures maps each stat panel, by title, to the metrics API figure it must show. A key with
// tiers shows its tier too, in a column named tier.
var statFigures = map[string][]string{
	"Deployment frequency":            {"deployment_frequency", "per_day"},
	"Deployments":                     {"deployment_frequency", "deployments"},
	"Lead time for changes":           {"lead_time_for_changes", "median_seconds"},
	"Review lead time":                {"lead_time_for_changes", "review_median_seconds"},
	"Deployment lead time":            {"lead_time_for_changes", "deploy_median_seconds"},
	"Change failure rate":             {"change_failure_rate", "rate"},
	"Failed deployments":              {"change_failure_rate", "failed"},
	"Failed deployment recovery time": {"failed_deployment_recovery_time", "median_seconds"},
	"Open incidents":                  {"failed_deployment_recovery_time", "open_incidents"},
	"Rework rate":                     {"rework_rate", "rate"},
}

// tieredPanels are the stat panels that show a tier: DORA's four keys that have benchmarks.
var tieredPanels = []string{"Deployment frequency", "Lead time for changes", "Failed deployment recovery time", "Change failure rate"}

// seriesFigures maps each time series panel's columns to the API's series fields.
var seriesFigures = map[string]map[string]string{
	"Lead time: review and deployment":              {"lead time": "lead_time_median_seconds"},
	"Change failure rate per $interval":             {"change failure rate": "change_failure_rate"},
	"Failed deployment recovery time per $interval": {"recovery time": "failed_deployment_recovery_time_median_seconds"},
	"Deployments per $interval":                     {},
}

// comparisonFigures maps the comparison tables' columns to the API's figures, tiers included.
var comparisonFigures = map[string][]string{
	"deployments per day":       {"deployment_frequency", "per_day"},
	"deployment frequency tier": {"deployment_frequency", "tier"},
	"deployments":               {"deployment_frequency", "deployments"},
	"lead time":                 {"lead_time_for_changes", "median_seconds"},
	"lead time tier":            {"lead_time_for_changes", "tier"},
	"recovery time":             {"failed_deployment_recovery_time", "median_seconds"},
	"recovery time tier":        {"failed_deployment_recovery_time", "tier"},
	"change failure rate":       {"change_failure_rate", "rate"},
	"change failure rate tier":  {"change_failure_rate", "tier"},
	"rework rate":               {"rework_rate", "rate"},
}

// benchmarks are the dashboards' benchmark variable's values, newest first.
var benchmarks = []string{"2024", "2023"}

// Every panel's SQL, expanded as Grafana would, runs against the scenario written through the
// real pipeline, and every number it shows equals the metrics API's for the same window; every
// tier too, for each benchmark the benchmark variable offers, as the API's ?benchmark= rates it.
func TestDashboardPanelsAgreeWithTheAPI(t *testing.T) {
	t.Parallel()
	s := loadDORAScenario(t)
	// A pipeline whose name holds a quote: variables must reach the SQL safely.
	quoted := []string{
		`{"type":"commit","pipeline_id":"it's","commit_id":"q1","timestamp":"2026-11-02T00:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"it's","environment":"production","commit_id":"q1","timestamp":"2026-11-02T05:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"it's","environment":"production","incident_id":"q","status":"failure","commit_id":"q1","timestamp":"2026-11-02T06:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"it's","environment":"production","incident_id":"q","status":"success","timestamp":"2026-11-02T06:20:00Z"}`,
	}
	s.postJSON(http.StatusAccepted, "["+strings.Join(quoted, ",")+"]")
	// And generated pipelines around the window, so that All covers many rhythms.
	generated := scenario.Generate(scenario.Config{Seed: 3, Pipelines: 3, Start: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Days: 45}).Events()
	for start := 0; start < len(generated); start += 1000 {
		body, err := json.Marshal(generated[start:min(start+1000, len(generated))])
		require.NoError(t, err)
		s.postJSON(http.StatusAccepted, string(body))
	}
	s.waitCount(len(scenario.Week)+len(quoted)+len(generated), `SELECT count(*) FROM events`)
	s.waitDrained()
	_, err := s.db.Exec(context.Background(), `ANALYZE`) // as autovacuum would before long
	require.NoError(t, err)
	// Teams, one with a quote in its name, and one pipeline in none.
	for _, args := range [][]string{
		{"create", "generated"}, {"add", "generated", "service-01"}, {"add", "generated", "service-02"},
		{"create", "it's a team"}, {"add", "it's a team", "it's"}, {"add", "it's a team", "web"}, {"create", "empty"},
	} {
		_, err := s.teamCmd(args...)
		require.NoError(t, err, "team %v", args)
	}
	teamPipelines := map[string][]string{"": {"api", "it's", "service-01", "service-02", "service-03", "web"},
		"generated": {"service-01", "service-02"}, "it's a team": {"it's", "web"}, "empty": nil}

	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC)
	files, err := filepath.Glob("../../grafana/dashboards/*.json")
	require.NoError(t, err)
	require.Len(t, files, 2)
	shown := map[string]map[string]any{} // benchmark → where → the tier the dashboard showed

	query := func(sql string) []map[string]any {
		t.Helper()
		rows, err := s.db.Query(context.Background(), `SELECT row_to_json(q)::text FROM (`+sql+`) q`)
		require.NoError(t, err, sql)
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
	api := func(selection url.Values, interval, benchmark string) map[string]any {
		t.Helper()
		q := url.Values{"from": {"2026-11-01"}, "to": {"2026-11-08"}, "interval": {interval}, "benchmark": {benchmark}}
		for k, v := range selection {
			q[k] = v
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?"+q.Encode())), &m))
		return m
	}
	figure := func(report map[string]any, path []string) any {
		return report[path[0]].(map[string]any)[path[1]]
	}

	for _, file := range files {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		var d grafanaDashboard
		require.NoError(t, json.Unmarshal(raw, &d))

		// The variables' own queries run, and offer what the scenario holds: the teams, and the
		// pipelines of the teams chosen ('' is "(all pipelines)": every pipeline).
		offered := func(teams []string) []string {
			var pipelines []string
			for _, v := range d.Templating.List {
				if v.Type != "query" {
					continue
				}
				rows := query(grafanaExpand(v.Query.(string), from, to, map[string][]string{"team": teams}, nil))
				switch v.Name {
				case "pipeline":
					for _, r := range rows {
						pipelines = append(pipelines, r["pipeline_id"].(string))
					}
				case "team":
					var names []string
					for _, r := range rows {
						names = append(names, r["__value"].(string))
					}
					require.Equal(t, []string{"", "empty", "generated", "it's a team"}, names)
				case "benchmark":
					// The benchmarks table's, newest first, named as tier_source names them.
					var values, labels []string
					for _, r := range rows {
						values, labels = append(values, r["__value"].(string)), append(labels, r["__text"].(string))
					}
					require.Equal(t, benchmarks, values)
					require.Equal(t, []string{"DORA 2024", "DORA 2023"}, labels)
				default:
					require.NotEmpty(t, rows, "variable %s", v.Name)
				}
			}
			return pipelines
		}
		for team, want := range teamPipelines {
			require.Equal(t, want, offered([]string{team}), "the pipelines of team %q", team)
		}
		require.Equal(t, teamPipelines[""], offered([]string{"generated", ""}), "(all pipelines) among teams is every pipeline")
		allPipelines := teamPipelines[""]

		for _, sel := range []struct {
			name      string
			teams     []string
			pipelines []string
			apiParams url.Values
		}{
			{"one pipeline", []string{""}, []string{"api"}, url.Values{"pipeline_id": {"api"}}},
			{"a quote in the name", []string{""}, []string{"it's"}, url.Values{"pipeline_id": {"it's"}}},
			{"All", []string{""}, allPipelines, nil},
			{"a team, its pipelines All", []string{"generated"}, teamPipelines["generated"], url.Values{"team": {"generated"}}},
			{"two teams, a quote in a name", []string{"generated", "it's a team"}, offered([]string{"generated", "it's a team"}),
				url.Values{"team": {"generated", "it's a team"}}},
		} {
			for _, benchmark := range benchmarks {
				record := func(where string, tier any) {
					if shown[benchmark] == nil {
						shown[benchmark] = map[string]any{}
					}
					shown[benchmark][d.Title+"/"+sel.name+"/"+where] = tier
				}
				t.Run(d.Title+"/"+sel.name+"/"+benchmark, func(t *testing.T) {
					report := api(sel.apiParams, "all", benchmark)
					require.Equal(t, "DORA "+benchmark, report["tier_source"])
					weekly := api(sel.apiParams, "week", benchmark)["series"].([]any)
					vars := map[string][]string{"pipeline": sel.pipelines, "team": sel.teams}
					single := map[string]string{"environment": "production", "interval": "week", "benchmark": benchmark}
					tiers := 0
					for _, p := range flattenPanels(d.Panels) {
						if p.Type == "row" {
							continue
						}
						for _, tg := range p.Targets {
							rows := query(grafanaExpand(tg.RawSQL, from, to, vars, single))
							switch p.Type {
							case "stat":
								path, ok := statFigures[p.Title]
								require.True(t, ok, "stat panel %q has no API figure to agree with", p.Title)
								require.Len(t, rows, 1, p.Title)
								if slices.Contains(tieredPanels, p.Title) {
									require.Len(t, rows[0], 2, "%s: its figure and its tier", p.Title)
									tier, ok := rows[0]["tier"]
									require.True(t, ok, "%s has a column tier", p.Title)
									require.Equal(t, figure(report, []string{path[0], "tier"}), tier, "%s's tier (%s)", p.Title, sel.name)
									record(p.Title, tier)
									tiers++
								} else {
									require.Len(t, rows[0], 1, p.Title)
								}
								for col, v := range rows[0] {
									if col != "tier" {
										require.Equal(t, figure(report, path), v, "%s (%s)", p.Title, sel.name)
									}
								}
							case "timeseries":
								columns, ok := seriesFigures[p.Title]
								require.True(t, ok, "time series %q has no API figure to agree with", p.Title)
								require.Len(t, rows, len(weekly), p.Title)
								var deployments float64
								for i, r := range rows {
									bucket := weekly[i].(map[string]any)
									require.Equal(t, bucket["start"], r["time"].(string)[:10]+"T00:00:00Z", p.Title)
									for col, field := range columns {
										require.Equal(t, bucket[field], r[col], "%s %s bucket %d", p.Title, col, i)
									}
									if v, ok := r["successful deployments"].(float64); ok {
										deployments += v
									}
								}
								if p.Title == "Deployments per $interval" {
									require.Equal(t, figure(report, statFigures["Deployments"]), deployments)
								}
							case "table":
								switch p.Title {
								case "Pipelines":
									require.Len(t, rows, len(sel.pipelines))
									for _, r := range rows {
										per := api(url.Values{"pipeline_id": {r["pipeline"].(string)}}, "all", benchmark)
										for col, path := range comparisonFigures {
											require.Contains(t, r, col)
											require.Equal(t, figure(per, path), r[col], "%s: %s", r["pipeline"], col)
											if path[1] == "tier" {
												record(fmt.Sprint(p.Title, "/", r["pipeline"], "/", col), r[col])
											}
										}
									}
									tiers++
								case "Organisation and teams":
									// The organisation first, then the teams chosen (every team for "(all pipelines)").
									wantTeams := sel.teams
									if slices.Contains(sel.teams, "") {
										wantTeams = []string{"empty", "generated", "it's a team"}
									}
									require.Len(t, rows, 1+len(wantTeams))
									for i, r := range rows {
										selection, name, members := url.Values{}, "(all pipelines)", teamPipelines[""]
										if i > 0 {
											name, members = wantTeams[i-1], teamPipelines[wantTeams[i-1]]
											selection.Set("team", name)
										}
										require.Equal(t, name, r["team"])
										require.Equal(t, float64(len(members)), r["pipelines"])
										per := api(selection, "all", benchmark)
										for col, path := range comparisonFigures {
											require.Contains(t, r, col)
											require.Equal(t, figure(per, path), r[col], "%s: %s", r["team"], col)
											if path[1] == "tier" {
												record(fmt.Sprint(p.Title, "/", r["team"], "/", col), r[col])
											}
										}
									}
									tiers++
								default: // recent activity: it runs, which is what there is to check
								}
							default:
								t.Fatalf("panel %q: no check for panels of type %s", p.Title, p.Type)
							}
						}
					}
					require.Positive(t, tiers, "%s shows tiers: some were checked", d.Title)
				})
			}
		}
	}
	require.True(t, slices.Contains(files, "../../grafana/dashboards/dora-overview.json"))

	// Some tier differs between the benchmarks, or a dashboard that ignored $benchmark would pass.
	require.Len(t, shown, len(benchmarks))
	require.Equal(t, len(shown["2023"]), len(shown["2024"]))
	var differ []string
	for where, tier := range shown["2024"] {
		if tier != shown["2023"][where] {
			differ = append(differ, fmt.Sprintf("%s: %v in 2024, %v in 2023", where, tier, shown["2023"][where]))
		}
	}
	require.NotEmpty(t, differ, "the scenario rates no key differently in DORA 2023 and DORA 2024")
	t.Logf("%d of %d tiers differ between the benchmarks, such as %s", len(differ), len(shown["2024"]), slices.Min(differ))
}
