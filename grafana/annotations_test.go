package grafana_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// annotation is what DevOpstic writes of a dashboard's annotation query (Grafana's types check
// the rest: TestDashboardsPassGrafanasStrictTypes decodes them as dashboard.AnnotationQuery).
type annotation struct {
	Name       string `json:"name"`
	BuiltIn    *int   `json:"builtIn"`
	Datasource *ref   `json:"datasource"`
	Enable     bool   `json:"enable"`
	IconColor  string `json:"iconColor"`
	Filter     *struct {
		Exclude bool  `json:"exclude"`
		IDs     []int `json:"ids"`
	} `json:"filter"`
	Target *struct {
		Datasource *ref   `json:"datasource"`
		Format     string `json:"format"`
		RawQuery   bool   `json:"rawQuery"`
		RawSQL     string `json:"rawSql"`
	} `json:"target"`
}

// The overview marks deployments, failed deployments (red) and incidents on its time series,
// from the datasource, for the pipelines and environment chosen.
func TestDashboardAnnotationsMarkDeploymentsAndIncidents(t *testing.T) {
	raw := dashboards(t)["dashboards/dora-overview.json"]
	var d struct {
		board
		Annotations struct {
			List []annotation `json:"list"`
		} `json:"annotations"`
	}
	require.NoError(t, json.Unmarshal(raw, &d))

	var series []int
	for _, p := range flatten(d.Panels) {
		if p.Type == "timeseries" {
			series = append(series, p.ID)
		}
	}
	slices.Sort(series)
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
	}

	colors := map[string]string{}
	used := regexp.MustCompile(`\$\{?(\w+)`)
	for _, a := range d.Annotations.List {
		if a.BuiltIn != nil {
			continue // Grafana's own "Annotations & Alerts"
		}
		require.True(t, a.Enable, a.Name)
		require.NotNil(t, a.Datasource, a.Name)
		require.Equal(t, datasourceUID, a.Datasource.UID, a.Name)
		require.NotNil(t, a.Target, a.Name)
		require.NotNil(t, a.Target.Datasource, a.Name)
		require.Equal(t, datasourceUID, a.Target.Datasource.UID, a.Name)
		require.Equal(t, "table", a.Target.Format, a.Name)
		require.True(t, a.Target.RawQuery, a.Name)
		// Grafana reads an annotation's time, timeend, text and tags from columns so named.
		for _, col := range []string{"AS time", "AS text", "AS tags"} {
			require.Contains(t, a.Target.RawSQL, col, a.Name)
		}
		// Filtered by the dashboard's variables, and only by ones it defines.
		vars := map[string]bool{}
		for _, m := range used.FindAllStringSubmatch(a.Target.RawSQL, -1) {
			if !strings.HasPrefix(m[1], "__") {
				require.True(t, defined[m[1]], "%s uses undefined variable $%s", a.Name, m[1])
				vars[m[1]] = true
			}
		}
		require.True(t, vars["pipeline"] && vars["environment"], "%s is filtered by pipeline and environment", a.Name)
		// Drawn on the time series, every one of them (not on the stat panels and tables).
		require.NotNil(t, a.Filter, a.Name)
		require.False(t, a.Filter.Exclude, a.Name)
		ids := slices.Clone(a.Filter.IDs)
		slices.Sort(ids)
		require.Equal(t, series, ids, "%s: the time series panels", a.Name)
		colors[a.Name] = a.IconColor
	}
	require.Equal(t, map[string]string{"Deployments": "green", "Failed deployments": "red", "Incidents": "orange"}, colors)
	require.Contains(t, annotationSQL(t, d.Annotations.List, "Incidents"), "AS timeend", "incidents are regions")
}

func annotationSQL(t *testing.T, list []annotation, name string) string {
	t.Helper()
	for _, a := range list {
		if a.Name == name {
			return a.Target.RawSQL
		}
	}
	t.Fatalf("no annotation %q", name)
	return ""
}
