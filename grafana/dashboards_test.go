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

// The tier colours of the dashboards are DORA 2023's thresholds (DORA.md's table; pkg/dora now
// reads them from migration 0011's rows, and the dashboards will too).
func TestDashboardThresholdsAreTheTiers(t *testing.T) {
	type steps struct {
		Steps []struct {
			Color string   `json:"color"`
			Value *float64 `json:"value"`
		} `json:"steps"`
	}
	want := map[string][]float64{
		"Deployment frequency":  {1.0 / 30, 1.0 / 7, 1},
		"Lead time for changes": {86400, 7 * 86400, 30 * 86400},
		"Time to restore":       {3600, 86400, 7 * 86400},
		// "at most 5%": on rates rounded to 4 decimals, the next value up starts the next tier
		"Change failure rate": {0.05 + 0.0001, 0.10 + 0.0001, 0.15 + 0.0001},
	}
	raw := dashboards(t)["dashboards/dora-overview.json"]
	var b board
	require.NoError(t, json.Unmarshal(raw, &b))
	found := 0
	for _, p := range flatten(b.Panels) {
		w, ok := want[p.Title]
		if !ok || p.Type != "stat" {
			continue
		}
		found++
		var fc struct {
			Defaults struct {
				Thresholds steps `json:"thresholds"`
			} `json:"defaults"`
		}
		require.NoError(t, json.Unmarshal(p.Field, &fc))
		var got []float64
		for _, s := range fc.Defaults.Thresholds.Steps[1:] {
			got = append(got, *s.Value)
		}
		require.Len(t, got, len(w), p.Title)
		for i := range w {
			require.InDelta(t, w[i], got[i], 0.0001, "%s step %d", p.Title, i+1)
		}
	}
	require.Equal(t, len(want), found, "every key has its stat panel")
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
