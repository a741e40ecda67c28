package oracle

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/scenario"
)

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

// scenario.Week's figures were worked out by hand, and the metrics API is tested against them
// too: the reference must give them.
func TestReferenceGivesTheHandComputedFigures(t *testing.T) {
	t.Parallel()
	h := load(t, scenario.Week)
	week := Query{Pipeline: "api", Environment: "production", From: day("2026-11-01"), To: day("2026-11-08")}
	require.JSONEq(t, scenario.WeekReport, reportJSON(t, h, week))

	require.JSONEq(t, scenario.EmptyWeekReport, reportJSON(t, h, Query{Pipeline: "api", Environment: "production", From: day("2026-10-01"), To: day("2026-10-08")}))

	byDay := week
	byDay.Interval = "day"
	r, err := h.Report(byDay)
	require.NoError(t, err)
	series, err := json.Marshal(r.Series)
	require.NoError(t, err)
	require.JSONEq(t, scenario.WeekByDay, string(series))

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
	want := reportJSON(t, load(t, scenario.Week), q)
	var twice []string
	for i := len(scenario.Week) - 1; i >= 0; i-- {
		twice = append(twice, scenario.Week[i], scenario.Week[(i*7)%len(scenario.Week)])
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

// The benchmarks rate the same figures differently where their bounds differ: 1 failed of 8
// (12.5%) is medium in DORA 2023 (≤ 15%) and high in DORA 2024 (≤ 20%); an incident resolved
// after two days is medium in 2023 (< 1 week) and low in 2024 (medium recovers in under a day
// there, as high does). No benchmark named is 2024; an unknown one is refused.
func TestReferenceBenchmarks(t *testing.T) {
	t.Parallel()
	events := []string{
		`{"type":"incident_status_change","pipeline_id":"p","environment":"production","incident_id":"i","status":"failure","timestamp":"2026-11-02T00:00:00Z"}`,
		`{"type":"incident_status_change","pipeline_id":"p","environment":"production","incident_id":"i","status":"success","timestamp":"2026-11-04T00:00:00Z"}`,
		`{"type":"deploy","pipeline_id":"p","environment":"production","commit_id":"f","status":"failure","timestamp":"2026-11-02T00:30:00Z"}`,
	}
	for i := range 7 {
		events = append(events, fmt.Sprintf(`{"type":"deploy","pipeline_id":"p","environment":"production","commit_id":"c%d","timestamp":"2026-11-0%dT12:00:00Z"}`, i, i+1))
	}
	h := load(t, events)
	q := Query{Pipeline: "p", Environment: "production", From: day("2026-11-01"), To: day("2026-11-08")}
	for _, tc := range []struct {
		benchmark, label, failure, recovery string
	}{
		{"2023", "DORA 2023", medium, medium},
		{"2024", "DORA 2024", high, low},
		{"", "DORA 2024", high, low},
	} {
		q.Benchmark = tc.benchmark
		r, err := h.Report(q)
		require.NoError(t, err)
		require.Equal(t, tc.label, r.TierSource)
		require.Equal(t, int64(8), r.ChangeFailureRate.Deployments)
		require.Equal(t, tc.failure, *r.ChangeFailureRate.Tier, tc.label)
		require.Equal(t, int64(2*86400), *r.RecoveryTime.MedianSeconds)
		require.Equal(t, tc.recovery, *r.RecoveryTime.Tier, tc.label)
		require.Equal(t, r.RecoveryTime, r.TimeToRestore, "the old name carries the same figures")
		require.Equal(t, elite, r.DeploymentFrequency.Tier, "7 in 7 days")
	}
	q.Benchmark = "2022"
	_, err := h.Report(q)
	require.Error(t, err)
}
