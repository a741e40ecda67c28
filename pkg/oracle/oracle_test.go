package oracle

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// handScenario is services/devopstic/dora_test.go's week of pipeline "api", whose figures were
// worked out by hand there: the reference must give them too.
var handScenario = []string{
	`{"type":"commit","pipeline_id":"api","commit_id":"c7","timestamp":"2026-10-30T10:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c7","timestamp":"2026-10-31T10:00:00Z"}`,
	`{"type":"commit","pipeline_id":"api","commit_id":"c1","timestamp":"2026-11-01T00:00:00Z"}`,
	`{"type":"submit","pipeline_id":"api","commit_id":"c1","pull_request_id":1,"timestamp":"2026-11-01T01:00:00Z"}`,
	`{"type":"approve","pipeline_id":"api","commit_id":"c1","pull_request_id":1,"timestamp":"2026-11-01T03:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"staging","commit_id":"c1","timestamp":"2026-11-01T04:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c1","timestamp":"2026-11-01T06:00:00Z"}`,
	`{"type":"commit","pipeline_id":"api","commit_id":"c2","timestamp":"2026-11-02T00:00:00Z"}`,
	`{"type":"submit","pipeline_id":"api","commit_id":"c2","pull_request_id":2,"timestamp":"2026-11-02T02:00:00Z"}`,
	`{"type":"approve","pipeline_id":"api","commit_id":"c2","pull_request_id":2,"timestamp":"2026-11-02T02:30:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c2","status":"failure","timestamp":"2026-11-02T12:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c2","timestamp":"2026-11-02T14:00:00Z"}`,
	`{"type":"commit","pipeline_id":"api","commit_id":"c3","timestamp":"2026-11-03T08:00:00Z"}`,
	`{"type":"commit","pipeline_id":"api","commit_id":"c4","timestamp":"2026-11-03T09:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c4","commits":["c3"],"deployment_id":"dep-4","timestamp":"2026-11-03T10:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"failure","deployment_id":"dep-4","timestamp":"2026-11-03T11:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"success","timestamp":"2026-11-03T13:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c4","timestamp":"2026-11-04T10:00:00Z"}`,
	`{"type":"commit","pipeline_id":"api","commit_id":"c5","timestamp":"2026-11-05T00:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c5","timestamp":"2026-11-05T01:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i2","status":"failure","commit_id":"c5","timestamp":"2026-11-05T02:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i2","status":"success","timestamp":"2026-11-05T02:30:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c7","timestamp":"2026-11-06T10:00:00Z"}`,
	`{"type":"commit","pipeline_id":"api","commit_id":"c6","timestamp":"2026-11-07T20:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i3","status":"failure","timestamp":"2026-11-07T23:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c6","timestamp":"2026-11-07T23:30:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i3","status":"success","timestamp":"2026-11-08T01:00:00Z"}`,
	`{"type":"commit","pipeline_id":"web","commit_id":"w1","timestamp":"2026-11-02T00:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"web","environment":"production","commit_id":"w1","status":"failure","timestamp":"2026-11-02T01:00:00Z"}`,
}

func load(t *testing.T, events []string) *History {
	t.Helper()
	h := New()
	for _, e := range events {
		require.NoError(t, h.AddNative([]byte(e)))
	}
	return h
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func reportJSON(t *testing.T, h *History, q Query) string {
	t.Helper()
	r, err := h.Report(q)
	require.NoError(t, err)
	b, err := json.Marshal(r)
	require.NoError(t, err)
	return string(b)
}

func TestReferenceGivesTheHandComputedFigures(t *testing.T) {
	t.Parallel()
	h := load(t, handScenario)
	week := Query{Pipeline: "api", Environment: "production", From: day("2026-11-01"), To: day("2026-11-08")}
	require.JSONEq(t, `{
	  "pipeline_id": "api", "environment": "production",
	  "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "interval": "all",
	  "tier_source": "DORA 2023",
	  "deployment_frequency": {"deployments": 7, "per_day": 1, "per_week": 7, "tier": "elite"},
	  "lead_time_for_changes": {"changes": 6, "median_seconds": 9900, "p90_seconds": 36000, "mean_seconds": 16500,
	                            "review_median_seconds": 4500, "deploy_median_seconds": 26100, "tier": "elite"},
	  "change_failure_rate": {"deployments": 8, "failed": 3, "rate": 0.375, "tier": "low"},
	  "time_to_restore": {"incidents": 2, "open_incidents": 1, "median_seconds": 4500, "p90_seconds": 6660,
	                      "mean_seconds": 4500, "tier": "high"},
	  "rework_rate": {"deployments": 7, "rework": 1, "rate": 0.1429}
	}`, reportJSON(t, h, week))

	require.JSONEq(t, `{
	  "pipeline_id": "api", "environment": "production",
	  "from": "2026-10-01T00:00:00Z", "to": "2026-10-08T00:00:00Z", "interval": "all",
	  "tier_source": "DORA 2023",
	  "deployment_frequency": {"deployments": 0, "per_day": 0, "per_week": 0, "tier": "low"},
	  "lead_time_for_changes": {"changes": 0, "median_seconds": null, "p90_seconds": null, "mean_seconds": null,
	                            "review_median_seconds": null, "deploy_median_seconds": null, "tier": null},
	  "change_failure_rate": {"deployments": 0, "failed": 0, "rate": null, "tier": null},
	  "time_to_restore": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
	                      "mean_seconds": null, "tier": null},
	  "rework_rate": {"deployments": 0, "rework": 0, "rate": null}
	}`, reportJSON(t, h, Query{Pipeline: "api", Environment: "production", From: day("2026-10-01"), To: day("2026-10-08")}))

	byDay := week
	byDay.Interval = "day"
	r, err := h.Report(byDay)
	require.NoError(t, err)
	series, err := json.Marshal(r.Series)
	require.NoError(t, err)
	require.JSONEq(t, `[
	  {"start":"2026-11-01T00:00:00Z","deployments":1,"failed":0,"change_failure_rate":0,"lead_time_median_seconds":21600,"time_to_restore_median_seconds":null},
	  {"start":"2026-11-02T00:00:00Z","deployments":2,"failed":1,"change_failure_rate":0.5,"lead_time_median_seconds":50400,"time_to_restore_median_seconds":null},
	  {"start":"2026-11-03T00:00:00Z","deployments":1,"failed":1,"change_failure_rate":1,"lead_time_median_seconds":5400,"time_to_restore_median_seconds":7200},
	  {"start":"2026-11-04T00:00:00Z","deployments":1,"failed":0,"change_failure_rate":0,"lead_time_median_seconds":null,"time_to_restore_median_seconds":null},
	  {"start":"2026-11-05T00:00:00Z","deployments":1,"failed":1,"change_failure_rate":1,"lead_time_median_seconds":3600,"time_to_restore_median_seconds":1800},
	  {"start":"2026-11-06T00:00:00Z","deployments":1,"failed":0,"change_failure_rate":0,"lead_time_median_seconds":null,"time_to_restore_median_seconds":null},
	  {"start":"2026-11-07T00:00:00Z","deployments":1,"failed":0,"change_failure_rate":0,"lead_time_median_seconds":12600,"time_to_restore_median_seconds":null}
	]`, string(series))

	byWeek := week
	byWeek.Interval = "week"
	r, err = h.Report(byWeek)
	require.NoError(t, err)
	require.Len(t, r.Series, 2)
	require.Equal(t, "2026-10-26T00:00:00Z", r.Series[0].Start, "the window starts on a Sunday")
	require.Equal(t, int64(1), r.Series[0].Deployments)
	require.Equal(t, int64(7), r.Series[1].Deployments)

	all := week
	all.Pipeline = ""
	r, err = h.Report(all)
	require.NoError(t, err)
	require.Nil(t, r.PipelineID)
	require.Equal(t, int64(9), r.ChangeFailureRate.Deployments, "api's 8 and web's failed one")

	staging := week
	staging.Environment = "staging"
	r, err = h.Report(staging)
	require.NoError(t, err)
	require.Equal(t, int64(4*3600), *r.LeadTime.MedianSeconds, "c1 reached staging 4h after its commit")
}

// The same events in any order, each any number of times, are the same facts.
func TestReferenceIgnoresOrderAndRepetition(t *testing.T) {
	t.Parallel()
	q := Query{Pipeline: "api", Environment: "production", From: day("2026-10-25"), To: day("2026-11-10"), Interval: "day"}
	want := reportJSON(t, load(t, handScenario), q)
	var twice []string
	for i := len(handScenario) - 1; i >= 0; i-- {
		twice = append(twice, handScenario[i], handScenario[(i*7)%len(handScenario)])
	}
	require.JSONEq(t, want, reportJSON(t, load(t, twice), q))
}

func TestPercentileIsPostgresPercentileCont(t *testing.T) {
	t.Parallel()
	s := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Second)
		}
		return out
	}
	for _, tc := range []struct {
		values      []time.Duration
		median, p90 int64
		mean        int64
	}{
		{s(7), 7, 7, 7},
		{s(1, 2), 2, 2, 2},      // 1.5 and 1.9 round half away, 1.5 too
		{s(-1, -2), -2, -1, -2}, // -1.5 rounds to -2, -1.1 to -1
		{s(3600, 7200, 12600, 21600, 50400, 3600), 9900, 36000, 16500},
		{s(1800, 7200), 4500, 6660, 4500},
		{s(0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100), 50, 90, 50},
	} {
		require.Equal(t, tc.median, *seconds(percentile(tc.values, half)), "%v", tc.values)
		require.Equal(t, tc.p90, *seconds(percentile(tc.values, ninety)), "%v", tc.values)
		require.Equal(t, tc.mean, *seconds(mean(tc.values)), "%v", tc.values)
	}
	require.Nil(t, seconds(percentile(nil, half)))
}

func TestShortSHANamesTheOnlyCommitWithThatPrefix(t *testing.T) {
	t.Parallel()
	h := load(t, []string{
		`{"type":"commit","pipeline_id":"p","commit_id":"abcdef0123456789abcdef0123456789abcdef01","timestamp":1}`,
		`{"type":"commit","pipeline_id":"p","commit_id":"abcdef9999999999999999999999999999999999","timestamp":1}`,
		`{"type":"commit","pipeline_id":"q","commit_id":"abcdef0777777777777777777777777777777777","timestamp":1}`,
	})
	for name, want := range map[string]string{
		"abcdef01":  "abcdef0123456789abcdef0123456789abcdef01", // the only one of pipeline p
		"abcdef0":   "abcdef0123456789abcdef0123456789abcdef01", // q's commit is another pipeline's
		"abcdef":    "",                                         // under 7 characters
		"abcde":     "",
		"abcdef9":   "abcdef9999999999999999999999999999999999",
		"abcd-ef01": "",
	} {
		got, ok := h.resolveCommit("p", name)
		require.Equal(t, want != "", ok, name)
		require.Equal(t, want, got, name)
	}
	h = load(t, []string{
		`{"type":"commit","pipeline_id":"p","commit_id":"abcdef0123456789abcdef0123456789abcdef01","timestamp":1}`,
		`{"type":"commit","pipeline_id":"p","commit_id":"abcdef0999999999999999999999999999999999","timestamp":1}`,
	})
	_, ok := h.resolveCommit("p", "abcdef0")
	require.False(t, ok, "two commits have it")
}

func TestReusedIDWithOtherContentIsAConflict(t *testing.T) {
	t.Parallel()
	h := New()
	require.NoError(t, h.AddNative([]byte(`{"id":"x","type":"commit","pipeline_id":"p","commit_id":"c1","timestamp":1}`)))
	require.NoError(t, h.AddNative([]byte(`{"id":"x","type":"commit","pipeline_id":"p","commit_id":"c1","timestamp":"1970-01-01T00:00:01Z"}`)))
	require.NoError(t, h.AddNative([]byte(`{"id":"x","type":"commit","pipeline_id":"other","commit_id":"c2","timestamp":1}`)), "ids are per pipeline")
	err := h.AddNative([]byte(`{"id":"x","type":"commit","pipeline_id":"p","commit_id":"c2","timestamp":1}`))
	require.True(t, errors.Is(err, ErrConflict), "%v", err)
}

// The facts webhook sources give: a push whose head is deployed ships its commits, and a merged
// pull request's head and merge commit are one change (issue 13's story: a main-branch push
// [c1, H, M] is two changes, c1 and {H, M} with the earlier of their times).
func TestLinkedCommitsAreOneChangeAndPushesShip(t *testing.T) {
	t.Parallel()
	at := func(h int) time.Time { return day("2026-11-02").Add(time.Duration(h) * time.Hour) }
	h := New()
	h.AddChangeTimes(ChangeTimes{Pipeline: "p", Commit: "c1", Committed: at(0)})
	h.AddChangeTimes(ChangeTimes{Pipeline: "p", Commit: "H", Committed: at(2), Submitted: at(3), Approved: at(4)})
	h.AddChangeTimes(ChangeTimes{Pipeline: "p", Commit: "M", Committed: at(5)})
	h.Link("p", "H", "M")
	h.Push("p", "M", []string{"c1", "H", "M"})
	require.NoError(t, h.AddDeployReport(DeployReport{Source: "github", Pipeline: "p", Environment: "production",
		Key: "d1", DeploymentID: "d1", At: at(10), Status: Success, Ships: []string{"M"}}))
	// A redeploy: a deployment, not a new change.
	require.NoError(t, h.AddDeployReport(DeployReport{Source: "github", Pipeline: "p", Environment: "production",
		Key: "d2", DeploymentID: "d2", At: at(20), Status: Success, Ships: []string{"M"}}))

	r, err := h.Report(Query{Pipeline: "p", Environment: "production", From: day("2026-11-02"), To: day("2026-11-03")})
	require.NoError(t, err)
	require.Equal(t, int64(2), r.LeadTime.Changes, "c1, and {H, M}")
	require.Equal(t, int64(9*3600), *r.LeadTime.MedianSeconds, "(10h + 8h) / 2")
	require.Equal(t, int64(3600), *r.LeadTime.ReviewMedianSeconds)
	require.Equal(t, int64(6*3600), *r.LeadTime.DeployMedianSeconds)

	// A cause named by a commit a push shipped: the deployment that first shipped it.
	require.NoError(t, h.AddIncidentReport(IncidentReport{Source: "github", ID: "i1", Pipeline: "p", Environment: "production",
		At: at(21), Status: Failure, CauseCommit: "c1"}))
	r, err = h.Report(Query{Pipeline: "p", Environment: "production", From: day("2026-11-02"), To: day("2026-11-03")})
	require.NoError(t, err)
	require.Equal(t, int64(1), r.ChangeFailureRate.Failed)
	require.Equal(t, int64(0), r.ReworkRate.Rework, "both deployments were made before it opened")
}

// GitHub deliveries map to the same facts: issue 13's main-branch push [c1, H, M] of a pull
// request merged by a merge commit is two changes, c1 and {H, M}; a non-final deployment
// status is no deployment; "error" is a failure.
func TestGitHubDeliveriesAreFacts(t *testing.T) {
	t.Parallel()
	h := New()
	for _, d := range []struct{ event, body string }{
		{"push", `{"ref":"refs/heads/feature","after":"H","repository":{"full_name":"acme/api"},
		  "commits":[{"id":"c1","timestamp":"2026-11-02T00:00:00Z"},{"id":"H","timestamp":"2026-11-02T02:00:00+01:00"}]}`},
		{"pull_request", `{"action":"opened","repository":{"full_name":"acme/api"},
		  "pull_request":{"number":1,"created_at":"2026-11-02T03:00:00Z","head":{"sha":"H"}}}`},
		{"pull_request", `{"action":"closed","repository":{"full_name":"acme/api"},
		  "pull_request":{"number":1,"created_at":"2026-11-02T03:00:00Z","head":{"sha":"H"},"merged":true,
		  "merged_at":"2026-11-02T05:00:00Z","merge_commit_sha":"M"}}`},
		{"push", `{"ref":"refs/heads/main","after":"M","head_commit":{"id":"M"},"repository":{"full_name":"acme/api"},
		  "commits":[{"id":"c1","timestamp":"2026-11-02T00:00:00Z"},{"id":"H","timestamp":"2026-11-02T01:00:00Z"},
		             {"id":"M","timestamp":"2026-11-02T05:00:00Z"}]}`},
		{"deployment_status", `{"repository":{"full_name":"acme/api"},"deployment":{"id":7,"sha":"M","environment":"production"},
		  "deployment_status":{"state":"in_progress","created_at":"2026-11-02T09:00:00Z"}}`},
		{"deployment_status", `{"repository":{"full_name":"acme/api"},"deployment":{"id":7,"sha":"M","environment":"production"},
		  "deployment_status":{"state":"success","created_at":"2026-11-02T10:00:00Z"}}`},
		{"deployment_status", `{"repository":{"full_name":"acme/api"},"deployment":{"id":8,"sha":"M","environment":"production"},
		  "deployment_status":{"state":"error","created_at":"2026-11-02T11:00:00Z"}}`},
		{"issues", `{"action":"opened"}`},
	} {
		require.NoError(t, h.AddGitHub(d.event, []byte(d.body)), d.body)
	}
	r, err := h.Report(Query{Pipeline: "acme/api", Environment: "production", From: day("2026-11-02"), To: day("2026-11-03")})
	require.NoError(t, err)
	require.Equal(t, int64(2), r.LeadTime.Changes, "c1, and {H, M}")
	require.Equal(t, int64(9*3600+1800), *r.LeadTime.MedianSeconds, "c1 10h, {H, M} 9h (H committed at 01:00Z)")
	require.Equal(t, int64(2*3600), *r.LeadTime.ReviewMedianSeconds, "opened at 03:00, merged unreviewed at 05:00")
	require.Equal(t, int64(5*3600), *r.LeadTime.DeployMedianSeconds)
	require.Equal(t, int64(1), r.DeploymentFrequency.Deployments)
	require.Equal(t, int64(2), r.ChangeFailureRate.Deployments)
	require.Equal(t, int64(1), r.ChangeFailureRate.Failed, "error is a failure")
}
