package grafana_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/stretchr/testify/require"
)

const datasourceUID = "devopstic-postgres"

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *ref            `json:"datasource"`
	Targets    []target        `json:"targets"`
	Panels     []panel         `json:"panels"`
	Field      json.RawMessage `json:"fieldConfig"`
}

type ref struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	Datasource *ref   `json:"datasource"`
	RawSQL     string `json:"rawSql"`
}

type board struct {
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Datasource *ref   `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

func dashboards(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("dashboards/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		out[f] = b
	}
	return out
}

func flatten(panels []panel) []panel {
	var out []panel
	for _, p := range panels {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

// Grafana's own Go types accept every dashboard: no unknown field, no wrong type, nothing
// required missing.
func TestDashboardsPassGrafanasStrictTypes(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	for name, raw := range dashboards(t) {
		var d dashboard.Dashboard
		err := d.UnmarshalJSONStrict(raw)
		// It returns its error list typed even when empty: only a non-empty list is an error.
		var list cog.BuildErrors
		if errors.As(err, &list) && len(list) == 0 {
			err = nil
		}
		require.NoError(t, err, name)
		require.NotNil(t, d.Uid, name)
		require.NotNil(t, d.Title, name)
	}
}

func TestDashboardsAreWellFormed(t *testing.T) {
	uids := map[string]bool{}
	for name, raw := range dashboards(t) {
		var b board
		require.NoError(t, json.Unmarshal(raw, &b), name)
		require.NotEmpty(t, b.UID, name)
		require.False(t, uids[b.UID], "%s: uid %s used twice", name, b.UID)
		uids[b.UID] = true

		defined := map[string]bool{}
		for _, v := range b.Templating.List {
			defined[v.Name] = true
			if v.Type == "query" {
				require.NotNil(t, v.Datasource, "%s: variable %s", name, v.Name)
				require.Equal(t, datasourceUID, v.Datasource.UID, "%s: variable %s", name, v.Name)
			}
		}
		ids := map[int]bool{}
		used := regexp.MustCompile(`\$\{?(\w+)`)
		for _, p := range flatten(b.Panels) {
			require.NotZero(t, p.ID, "%s: panel %q has no id", name, p.Title)
			require.False(t, ids[p.ID], "%s: panel id %d used twice", name, p.ID)
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			require.NotNil(t, p.Datasource, "%s: panel %q", name, p.Title)
			require.Equal(t, datasourceUID, p.Datasource.UID, "%s: panel %q", name, p.Title)
			require.NotEmpty(t, p.Targets, "%s: panel %q has no query", name, p.Title)
			for _, tg := range p.Targets {
				require.NotNil(t, tg.Datasource, "%s: panel %q", name, p.Title)
				require.Equal(t, datasourceUID, tg.Datasource.UID, "%s: panel %q", name, p.Title)
				for _, m := range used.FindAllStringSubmatch(tg.RawSQL+" "+p.Title, -1) {
					if strings.HasPrefix(m[1], "__") {
						continue // Grafana's macros
					}
					require.True(t, defined[m[1]], "%s: panel %q uses undefined variable $%s", name, p.Title, m[1])
				}
			}
		}
	}
}

// The dashboards hold no tier bound of their own: a key's tier comes from SQL, rated by
// migration 0013's dora_*_tier functions against the dashboard's benchmark variable (the rows
// the API's ?benchmark= reads too; pkg/dora's TestSQLTiersAgreeWithGo holds the SQL and the Go
// ratings to the same answers on every bound, and services/devopstic's dashboard test each
// panel's tiers to the API's), and is coloured by its name. So: every dashboard showing tiers
// has the variable, offering the benchmarks table newest first (the API's default first); every
// tier column is coloured elite green, high yellow, medium orange, low red; every tier is rated
// against $benchmark, never a benchmark written into the SQL; and no key is coloured by fixed
// thresholds, which could only be one benchmark's.
func TestDashboardTiersComeFromTheBenchmarkTable(t *testing.T) {
	type override struct {
		Matcher struct {
			Options string `json:"options"`
		} `json:"matcher"`
		Properties []struct {
			ID    string          `json:"id"`
			Value json.RawMessage `json:"value"`
		} `json:"properties"`
	}
	type fieldConfig struct {
		Defaults struct {
			Thresholds *struct {
				Steps []struct {
					Value *float64 `json:"value"`
				} `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
		Overrides []override `json:"overrides"`
	}
	wantColours := map[string]string{"elite": "green", "high": "yellow", "medium": "orange", "low": "red"}
	tierColumn := regexp.MustCompile(`dora_(deployment_frequency|lead_time|recovery_time|change_failure_rate)_tier\(([^,]+),.*?\) AS (?:"([^"]+)"|(\w+))`)
	keys := regexp.MustCompile(`(?i)deployment frequency|lead time|recovery time|change failure rate|deployments per day`)
	// What each dashboard must rate: tiers per panel title (the four keys that have tiers).
	want := map[string]map[string]int{
		"dashboards/dora-overview.json": {"Deployment frequency": 1, "Lead time for changes": 1,
			"Failed deployment recovery time": 1, "Change failure rate": 1},
		"dashboards/pipelines-comparison.json": {"Organisation and teams": 4, "Pipelines": 4},
	}
	for name, raw := range dashboards(t) {
		var b board
		require.NoError(t, json.Unmarshal(raw, &b), name)
		var variable *struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Datasource *ref   `json:"datasource"`
		}
		for i, v := range b.Templating.List {
			if v.Name == "benchmark" {
				variable = &b.Templating.List[i]
			}
		}
		require.NotNil(t, variable, "%s has a benchmark variable", name)
		require.Equal(t, "query", variable.Type, name)
		require.Equal(t, "SELECT label AS __text, benchmark AS __value FROM dora_benchmarks ORDER BY report_year DESC", variable.Query, name)
		var current struct {
			Current struct {
				Text, Value string
			} `json:"current"`
		}
		require.NoError(t, json.Unmarshal(variableJSON(t, raw, "benchmark"), &current))
		require.Equal(t, "2024", current.Current.Value, "%s: the default is the newest benchmark, as the API's", name)
		require.Equal(t, "DORA 2024", current.Current.Text, name)

		rated := map[string]int{}
		for _, p := range flatten(b.Panels) {
			if p.Type == "row" {
				continue
			}
			var fc fieldConfig
			require.NoError(t, json.Unmarshal(p.Field, &fc), "%s: %s", name, p.Title)
			coloured := map[string]bool{}
			for _, o := range fc.Overrides {
				for _, prop := range o.Properties {
					if prop.ID == "thresholds" {
						require.NotRegexp(t, keys, o.Matcher.Options, "%s: %s colours %q by fixed thresholds", name, p.Title, o.Matcher.Options)
					}
					if prop.ID != "mappings" {
						continue
					}
					var mappings []struct {
						Type    string `json:"type"`
						Options map[string]struct {
							Color string `json:"color"`
						} `json:"options"`
					}
					require.NoError(t, json.Unmarshal(prop.Value, &mappings))
					require.Len(t, mappings, 1, "%s: %s", name, p.Title)
					got := map[string]string{}
					for tier, m := range mappings[0].Options {
						got[tier] = m.Color
					}
					require.Equal(t, wantColours, got, "%s: %s's %q", name, p.Title, o.Matcher.Options)
					coloured[o.Matcher.Options] = true
				}
			}
			for _, tg := range p.Targets {
				for _, m := range tierColumn.FindAllStringSubmatch(tg.RawSQL, -1) {
					require.Equal(t, "'$benchmark'", strings.TrimSpace(m[2]), "%s: %s rates %s against %s", name, p.Title, m[1], m[2])
					column := m[3] + m[4]
					require.True(t, coloured[column], "%s: %s's column %q is coloured by tier", name, p.Title, column)
					rated[p.Title]++
				}
				require.NotRegexp(t, `'20\d\d'`, tg.RawSQL, "%s: %s names a benchmark itself", name, p.Title)
			}
			if rated[p.Title] > 0 && fc.Defaults.Thresholds != nil {
				require.LessOrEqual(t, len(fc.Defaults.Thresholds.Steps), 1, "%s: %s keeps fixed tier thresholds", name, p.Title)
			}
			if p.Type == "timeseries" && fc.Defaults.Thresholds != nil {
				require.LessOrEqual(t, len(fc.Defaults.Thresholds.Steps), 1, "%s: %s draws one benchmark's bounds", name, p.Title)
			}
		}
		require.Equal(t, want[name], rated, name)
	}
}

// variableJSON is the raw JSON of the dashboard's variable name.
func variableJSON(t *testing.T, raw []byte, name string) []byte {
	t.Helper()
	var b struct {
		Templating struct {
			List []json.RawMessage `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &b))
	for _, v := range b.Templating.List {
		var head struct{ Name string }
		require.NoError(t, json.Unmarshal(v, &head))
		if head.Name == name {
			return v
		}
	}
	t.Fatalf("no variable %s", name)
	return nil
}

func TestProvisioningPointsAtTheDashboardsAndTheDatasource(t *testing.T) {
	ds, err := os.ReadFile("provisioning/datasources/devopstic.yaml")
	require.NoError(t, err)
	require.Contains(t, string(ds), "uid: "+datasourceUID)
	require.Contains(t, string(ds), "type: grafana-postgresql-datasource")
	prov, err := os.ReadFile("provisioning/dashboards/devopstic.yaml")
	require.NoError(t, err)
	require.Contains(t, string(prov), "path: /var/lib/grafana/dashboards/devopstic")
}
