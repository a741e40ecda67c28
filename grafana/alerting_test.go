package grafana_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/alerting"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/expr"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The foundation SDK (v0.0.22) has types for alert rules as Grafana's HTTP API takes them
// (alerting.Rule, alerting.Query) and for server-side expressions (expr), but none for the
// provisioning file around them (apiVersion, groups with a folder title and an interval) nor for
// a Postgres query. So a provisioning file is decoded strictly into the types below, which have
// exactly the fields of Grafana's own file types (pkg/services/provisioning/alerting,
// AlertRuleGroupV1, AlertRuleV1, QueryV1): an unknown or misspelt field is an error, as it is
// not in Grafana, which would ignore it. Each rule is then checked by the SDK's types.

type alertFile struct {
	APIVersion  int          `yaml:"apiVersion"`
	Groups      []alertGroup `yaml:"groups"`
	DeleteRules []struct {
		OrgID int64  `yaml:"orgId"`
		UID   string `yaml:"uid"`
	} `yaml:"deleteRules"`
}

type alertGroup struct {
	OrgID    int64       `yaml:"orgId"`
	Name     string      `yaml:"name"`
	Folder   string      `yaml:"folder"`
	Interval string      `yaml:"interval"`
	Rules    []alertRule `yaml:"rules"`
}

type alertRule struct {
	UID                         string            `yaml:"uid"`
	Title                       string            `yaml:"title"`
	Condition                   string            `yaml:"condition"`
	Data                        []alertQuery      `yaml:"data"`
	DashboardUID                string            `yaml:"dashboardUid"`
	PanelID                     int64             `yaml:"panelId"`
	NoDataState                 string            `yaml:"noDataState"`
	ExecErrState                string            `yaml:"execErrState"`
	For                         string            `yaml:"for"`
	KeepFiringFor               string            `yaml:"keepFiringFor"`
	MissingSeriesEvalsToResolve *int64            `yaml:"missing_series_evals_to_resolve"`
	Annotations                 map[string]string `yaml:"annotations"`
	Labels                      map[string]string `yaml:"labels"`
	IsPaused                    bool              `yaml:"isPaused"`
	NotificationSettings        map[string]any    `yaml:"notification_settings"`
	Record                      map[string]any    `yaml:"record"`
}

type alertQuery struct {
	RefID             string `yaml:"refId"`
	QueryType         string `yaml:"queryType"`
	RelativeTimeRange *struct {
		From int64 `yaml:"from"`
		To   int64 `yaml:"to"`
	} `yaml:"relativeTimeRange"`
	DatasourceUID string         `yaml:"datasourceUid"`
	Model         map[string]any `yaml:"model"`
}

// sqlModel is what the Postgres datasource reads of a query; Grafana has no Go type for it that
// the SDK carries, so this one is strict about what DevOpstic writes.
type sqlModel struct {
	RefID      string `json:"refId"`
	Datasource ref    `json:"datasource"`
	EditorMode string `json:"editorMode"`
	Format     string `json:"format"`
	RawQuery   bool   `json:"rawQuery"`
	RawSQL     string `json:"rawSql"`
}

func alertFiles(t *testing.T) map[string]alertFile {
	t.Helper()
	files, err := filepath.Glob("provisioning/alerting/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files, "alert rules are provisioned from provisioning/alerting")
	out := map[string]alertFile{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		var af alertFile
		require.NoError(t, dec.Decode(&af), f)
		out[f] = af
	}
	return out
}

func strictJSON(t *testing.T, v any, into any) {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(into), "%s", raw)
}

// noBuildErrors is nil for the SDK's strict decoders' empty error list.
func noBuildErrors(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

func TestAlertRulesPassGrafanasTypes(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	uids := map[string]bool{}
	rules := 0
	for name, af := range alertFiles(t) {
		require.Equal(t, 1, af.APIVersion, name)
		require.Empty(t, af.DeleteRules, name)
		for _, g := range af.Groups {
			require.NotEmpty(t, g.Name, name)
			require.Equal(t, "DevOpstic", g.Folder, "%s: the dashboards' folder", name)
			require.NotEmpty(t, g.Interval, name)
			for _, r := range g.Rules {
				rules++
				require.NotEmpty(t, r.UID, "%s: %s", name, r.Title)
				require.LessOrEqual(t, len(r.UID), 40, "Grafana's limit on a uid")
				require.False(t, uids[r.UID], "uid %s used twice", r.UID)
				uids[r.UID] = true

				// The rule as Grafana's API holds it, decoded by the SDK's strict decoder: every
				// field known and of its type, the states among Grafana's, each query's model
				// decoded by its datasource's type (the expressions by the SDK's expr types).
				apiRule := map[string]any{
					"uid": r.UID, "title": r.Title, "condition": r.Condition, "data": r.Data,
					"noDataState": r.NoDataState, "execErrState": r.ExecErrState, "for": r.For,
					"labels": r.Labels, "annotations": r.Annotations, "isPaused": r.IsPaused,
					"orgID": g.OrgID, "ruleGroup": g.Name, "folderUID": "devopstic",
				}
				data := []map[string]any{}
				for _, q := range r.Data {
					m := map[string]any{"refId": q.RefID, "datasourceUid": q.DatasourceUID, "model": q.Model}
					if q.RelativeTimeRange != nil {
						m["relativeTimeRange"] = map[string]any{"from": q.RelativeTimeRange.From, "to": q.RelativeTimeRange.To}
					}
					data = append(data, m)
				}
				apiRule["data"] = data
				raw, err := json.Marshal(apiRule)
				require.NoError(t, err)
				var sdkRule alerting.Rule
				require.NoError(t, noBuildErrors(sdkRule.UnmarshalJSONStrict(raw)), "%s: %s", name, r.Title)
				require.NoError(t, noBuildErrors(sdkRule.Validate()), "%s: %s", name, r.Title)
				require.Contains(t, []alerting.RuleNoDataState{alerting.RuleNoDataStateOK, alerting.RuleNoDataStateAlerting,
					alerting.RuleNoDataStateNoData, alerting.RuleNoDataStateKeepLast}, sdkRule.NoDataState, r.Title)
				require.Contains(t, []alerting.RuleExecErrState{alerting.RuleExecErrStateOK, alerting.RuleExecErrStateAlerting,
					alerting.RuleExecErrStateError, alerting.RuleExecErrStateKeepLast}, sdkRule.ExecErrState, r.Title)

				// A query on the datasource, and a threshold on it that is the condition.
				refs := map[string]bool{}
				var condition *expr.TypeThreshold
				for _, q := range r.Data {
					require.Equal(t, q.RefID, q.Model["refId"], "%s: the model's refId is the query's", r.Title)
					refs[q.RefID] = true
					switch q.DatasourceUID {
					case datasourceUID:
						var m sqlModel
						strictJSON(t, q.Model, &m)
						require.Equal(t, datasourceUID, m.Datasource.UID, r.Title)
						require.Equal(t, "table", m.Format, "%s: string columns become labels only from a table", r.Title)
						require.True(t, m.RawQuery, r.Title)
						require.NotContains(t, m.RawSQL, "$$", "%s: Grafana leaves a rule's model as written: no $$ escapes", r.Title)
						require.NotNil(t, q.RelativeTimeRange, "%s: a query's time range is its window", r.Title)
						require.Greater(t, q.RelativeTimeRange.From, q.RelativeTimeRange.To, r.Title)
					case "__expr__":
						raw, err := json.Marshal(q.Model)
						require.NoError(t, err)
						var e expr.Expr
						require.NoError(t, noBuildErrors(e.UnmarshalJSONStrict(raw)), "%s %s", r.Title, q.RefID)
						if q.RefID == r.Condition {
							// The union's strict decoder returns its (empty) error list before it
							// keeps what it decoded: the threshold is decoded again, as itself.
							require.Equal(t, "threshold", q.Model["type"], "%s: the condition is a threshold", r.Title)
							condition = &expr.TypeThreshold{}
							require.NoError(t, noBuildErrors(condition.UnmarshalJSONStrict(raw)), r.Title)
						}
					default:
						t.Fatalf("%s: query %s reads datasource %q, not %s", r.Title, q.RefID, q.DatasourceUID, datasourceUID)
					}
				}
				require.NotNil(t, condition, "%s: condition %s is one of its queries", r.Title, r.Condition)
				require.True(t, refs[condition.Expression], "%s: the threshold is on a query of the rule", r.Title)
				require.Len(t, condition.Conditions, 1, r.Title)
				require.Len(t, condition.Conditions[0].Evaluator.Params, 1, "%s: one threshold", r.Title)
				require.NotEmpty(t, r.Annotations["summary"], r.Title)
				for k, v := range r.Annotations {
					require.NotContains(t, strings.ReplaceAll(v, "$labels", ""), "${", "%s: annotation %s: Grafana expands ${...} in annotations from its environment", r.Title, k)
				}
			}
		}
	}
	require.Equal(t, 3, rules, "change failure rate, lead time, open incident")
}
