package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/githubimport"
	"github.com/devopstic/devopstic/pkg/githubimport/githubimporttest"
	"github.com/devopstic/devopstic/pkg/gitimport"
	"github.com/devopstic/devopstic/pkg/gitimport/gitimporttest"
)

// storyBase is the Monday the import story (gitimporttest.Story) starts on; its figures are
// asked for the week from it.
var storyBase = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

const storyWeek = "from=2026-03-02&to=2026-03-09"

// storyByTags is the story's report with its v* tags as the deployments, worked out by hand:
// v1.0.0 (hour 4) ships c1 (3h) and c2 (2h); v1.1.0 (hour 13) ships c3 (2h), f1 (3h), f2 (1h)
// and m1 (0h: left out); v1.2.0 (hour 27) ships c4 (2h). Lead times 1,2,2,2,3,3 hours: median
// 2h, p90 3h, mean 13/6h = 7800s. 3 deployments in 7 days. c5 is not deployed.
const storyByTags = `{
  "pipeline_id": "%s", "environment": "production",
  "from": "2026-03-02T00:00:00Z", "to": "2026-03-09T00:00:00Z", "interval": "all",
  "tier_source": "DORA 2024",
  "deployment_frequency": {"deployments": 3, "per_day": 0.4286, "per_week": 3, "tier": "high"},
  "lead_time_for_changes": {"changes": 6, "median_seconds": 7200, "p90_seconds": 10800, "mean_seconds": 7800,
                            "review_median_seconds": null, "deploy_median_seconds": null, "tier": "elite"},
  "change_failure_rate": {"deployments": 3, "failed": 0, "rate": 0, "tier": "elite"},
  "failed_deployment_recovery_time": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
                                      "mean_seconds": null, "tier": null},
  "rework_rate": {"deployments": 3, "rework": 0, "rate": 0},
  "time_to_restore": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
                      "mean_seconds": null, "tier": null}
}`

// storyByMerges is the story's report with main's merges as the deployments: m1 (hour 13) ships
// everything before it: c1 (12h), c2 (11h), c3 (2h), f1 (3h), f2 (1h), m1 (0h: left out). Lead
// times 1,2,3,11,12 hours: median 3h, p90 11.6h = 41760s, mean 29/5h = 20880s.
const storyByMerges = `{
  "pipeline_id": "%s", "environment": "production",
  "from": "2026-03-02T00:00:00Z", "to": "2026-03-09T00:00:00Z", "interval": "all",
  "tier_source": "DORA 2024",
  "deployment_frequency": {"deployments": 1, "per_day": 0.1429, "per_week": 1, "tier": "high"},
  "lead_time_for_changes": {"changes": 5, "median_seconds": 10800, "p90_seconds": 41760, "mean_seconds": 20880,
                            "review_median_seconds": null, "deploy_median_seconds": null, "tier": "elite"},
  "change_failure_rate": {"deployments": 1, "failed": 0, "rate": 0, "tier": "elite"},
  "failed_deployment_recovery_time": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
                                      "mean_seconds": null, "tier": null},
  "rework_rate": {"deployments": 1, "rework": 0, "rate": 0},
  "time_to_restore": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
                      "mean_seconds": null, "tier": null}
}`

// importInto runs `devopstic import ...` against the stack, returning what it printed.
func (s *stack) importInto(args ...string) (string, error) {
	s.t.Helper()
	var out bytes.Buffer
	err := importHistory(context.Background(), s.cfg, append([]string{"import"}, args...), &out, io.Discard)
	return out.String(), err
}

func TestImportGitGivesTheHandComputedFigures(t *testing.T) {
	t.Parallel()
	story := gitimporttest.BuildStory(t, storyBase)
	s := startStack(t, "")

	out, err := s.importInto("git", story.Repo.Dir, "--pipeline", "api", "--deploys", "tags=v*", "--since", "all")
	require.NoError(t, err)
	require.Contains(t, out, "changes: 8 commits, history from 2026-03-02T01:00:00Z to 2026-03-03T06:00:00Z")
	require.Contains(t, out, "deployments: 3 tags matching v* (1 more match but are not on main: left out)")
	require.Contains(t, out, "git cannot tell reviews, incidents or failed deployments")
	require.Contains(t, out, "sent 11 events to pipeline api")
	out, err = s.importInto("git", "--deploys", "merges", story.Repo.Dir, "--pipeline", "api-merges", "--since", "2026-03-01")
	require.NoError(t, err, out)
	s.waitDrained()

	require.JSONEq(t, fmt.Sprintf(storyByTags, "api"), s.getJSON("/api/v1/metrics/dora?pipeline_id=api&"+storyWeek))
	require.JSONEq(t, fmt.Sprintf(storyByMerges, "api-merges"), s.getJSON("/api/v1/metrics/dora?pipeline_id=api-merges&"+storyWeek))
	require.Equal(t, 11+8+1, s.count(`SELECT count(*) FROM events WHERE headers->'`+"Devopstic-Imported"+`' = '["git"]'`),
		"every event is marked as imported")

	t.Run("importing again changes nothing", func(t *testing.T) {
		messages, tables := s.streamMessages(), s.dump()
		_, err := s.importInto("git", story.Repo.Dir, "--pipeline", "api", "--deploys", "tags=v*", "--since", "all")
		require.NoError(t, err)
		require.Equal(t, messages, s.streamMessages(), "the stream dropped every message as a duplicate")
		s.waitDrained()
		require.Equal(t, tables, s.dump())
	})

	t.Run("bad input is a clear error and sends nothing", func(t *testing.T) {
		messages := s.streamMessages()
		for _, tc := range []struct {
			args    []string
			wantErr error
			says    string
		}{
			{[]string{t.TempDir(), "--pipeline", "api"}, gitimport.ErrNotRepository, "not a git repository"},
			{[]string{story.Repo.Dir, "--pipeline", "api", "--branch", "trunk"}, gitimport.ErrUnknownBranch, `unknown branch "trunk"`},
			{[]string{story.Repo.Dir}, gitimport.ErrInvalid, "--pipeline is required"},
			{[]string{story.Repo.Dir, "--pipeline", "api", "--deploys", "releases"}, gitimport.ErrInvalid, "--deploys must be"},
		} {
			_, err := s.importInto(append([]string{"git"}, tc.args...)...)
			require.ErrorIs(t, err, tc.wantErr)
			require.ErrorContains(t, err, tc.says)
		}
		_, err := s.importInto("git", story.Repo.Dir, "--pipeline", "api", "--since", "last week")
		require.ErrorContains(t, err, "--since")
		require.Equal(t, messages, s.streamMessages())
	})

	t.Run("a dry run sends nothing", func(t *testing.T) {
		messages := s.streamMessages()
		out, err := s.importInto("git", story.Repo.Dir, "--pipeline", "api-dry", "--deploys", "tags=v*", "--since", "all", "--dry-run")
		require.NoError(t, err)
		require.Contains(t, out, "devopstic.events.native.deploy native:api-dry:git:deploy:production:"+story.C2+":0 {")
		require.Contains(t, out, "dry run: 11 events would be sent; nothing was")
		require.Equal(t, messages, s.streamMessages())
	})
}

// The story told live instead: its pushes (GitHub webhooks) and its deployments (native deploy
// events from CI) give the same figures as the import.
func TestImportGitEqualsTheSameHistoryDeliveredLive(t *testing.T) {
	t.Parallel()
	story := gitimporttest.BuildStory(t, storyBase)
	s := startGitHubStack(t)
	push := func(delivery, head string, ids ...string) {
		type commit struct {
			ID        string `json:"id"`
			Timestamp string `json:"timestamp"`
		}
		var commits []commit
		for _, id := range ids {
			c, err := story.Repo.Repo.CommitObject(plumbing.NewHash(id))
			require.NoError(t, err)
			commits = append(commits, commit{ID: id, Timestamp: c.Committer.When.UTC().Format(time.RFC3339)})
		}
		body, err := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": head, "commits": commits,
			"head_commit": commits[len(commits)-1], "repository": map[string]any{"full_name": "octo/api"}})
		require.NoError(t, err)
		status, out := s.deliver("push", delivery, body, "?pipeline_id=api")
		require.Equal(t, http.StatusAccepted, status, out)
	}
	deploy := func(commit string, at time.Time) string {
		return fmt.Sprintf(`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":%q,"timestamp":%q}`, commit, at.Format(time.RFC3339))
	}
	push("p1", story.C2, story.C1, story.C2)
	push("p2", story.M1, story.C3, story.F1, story.F2, story.M1)
	push("p3", story.C4, story.C4)
	push("p4", story.C5, story.C5)
	s.postJSON(http.StatusAccepted, "["+strings.Join([]string{
		deploy(story.C2, story.At(4)), deploy(story.M1, story.At(13)), deploy(story.C4, story.At(27)),
	}, ",")+"]")
	s.waitDrained()
	live := s.getJSON("/api/v1/metrics/dora?pipeline_id=api&" + storyWeek)
	require.JSONEq(t, fmt.Sprintf(storyByTags, "api"), live)

	_, err := s.importInto("git", story.Repo.Dir, "--pipeline", "api-imported", "--deploys", "tags=v*", "--since", "all")
	require.NoError(t, err)
	s.waitDrained()
	require.JSONEq(t, strings.Replace(live, `"api"`, `"api-imported"`, 1), s.getJSON("/api/v1/metrics/dora?pipeline_id=api-imported&"+storyWeek))
}

// The key assertion of import github: the same story delivered live as webhooks and imported
// from the REST API gives the same report; and imported over the live deliveries (the same
// pipeline) it counts nothing twice.
func TestImportGitHubEqualsTheSameStoryDeliveredLive(t *testing.T) {
	t.Parallel()
	gitHub := githubimporttest.NewServer(t)
	s := startGitHubStack(t)
	for i, w := range githubimporttest.Webhooks() {
		status, out := s.deliver(w.Event, fmt.Sprintf("live-%d", i), []byte(w.Body), "")
		require.Contains(t, []int{http.StatusAccepted}, status, "%s: %s", w.Event, out)
	}
	s.waitDrained()
	report := func(pipeline string) string {
		return s.getJSON("/api/v1/metrics/dora?pipeline_id=" + url.QueryEscape(pipeline) + "&" + storyWeek)
	}
	live := report(githubimporttest.Repo)
	var r struct {
		DF  struct{ Deployments int }         `json:"deployment_frequency"`
		CFR struct{ Deployments, Failed int } `json:"change_failure_rate"`
		TTR struct {
			Incidents     int    `json:"incidents"`
			OpenIncidents int    `json:"open_incidents"`
			Median        *int64 `json:"median_seconds"`
		} `json:"failed_deployment_recovery_time"`
		LT struct{ Changes int } `json:"lead_time_for_changes"`
	}
	require.NoError(t, json.Unmarshal([]byte(live), &r))
	require.Equal(t, 2, r.DF.Deployments, "101 and 103")
	require.Equal(t, 3, r.CFR.Deployments)
	require.Equal(t, 1, r.CFR.Failed, "102 failed, and is #50's cause")
	require.Equal(t, 1, r.TTR.Incidents)
	require.Equal(t, 1, r.TTR.OpenIncidents, "#51")
	require.Equal(t, 1, r.TTR.OpenIncidents, "#51")
	require.Equal(t, int64(3600), *r.TTR.Median, "#50: from 10:45 to 11:45")
	require.Positive(t, r.LT.Changes)

	out, err := s.importInto("github", githubimporttest.Repo, "--api-url", gitHub.URL, "--pipeline", "imported", "--since", "2026-03-01")
	require.NoError(t, err)
	require.Contains(t, out, "imported octo/api: 4 pull requests (4 commits, 2 reviews), 3 deployments (4 statuses), 0 workflow runs, 2 incidents: 13 deliveries sent")
	s.waitDrained()
	require.JSONEq(t, strings.Replace(live, `"`+githubimporttest.Repo+`"`, `"imported"`, 1), report("imported"))
	require.Equal(t, 13, s.count(`SELECT count(*) FROM events WHERE headers->'Devopstic-Imported' = '["github"]'`))

	t.Run("over the live deliveries, nothing counts twice", func(t *testing.T) {
		before, messages := s.dump(), s.streamMessages()
		_, err := s.importInto("github", githubimporttest.Repo, "--api-url", gitHub.URL, "--since", "2026-03-01")
		require.NoError(t, err)
		require.Equal(t, messages+13, s.streamMessages(), "sent, not dropped as the import into another pipeline's duplicates")
		s.waitDrained()
		require.JSONEq(t, live, report(githubimporttest.Repo))
		after := s.dump()
		for _, table := range []string{"deployments", "incidents", "changes"} {
			require.Len(t, after[table], len(before[table]), "%s: the imported facts are the live ones", table)
		}
	})

	t.Run("refusals send nothing", func(t *testing.T) {
		messages := s.streamMessages()
		gitHub.Token = "the-right-one"
		_, err := s.importInto("github", githubimporttest.Repo, "--api-url", gitHub.URL, "--token", "a-wrong-one")
		require.ErrorIs(t, err, githubimport.ErrUnauthorized)
		_, err = s.importInto("github", "octo/nothing", "--api-url", gitHub.URL, "--token", "the-right-one")
		require.ErrorIs(t, err, githubimport.ErrNotFound)
		require.Equal(t, messages, s.streamMessages())
	})
}

// BenchmarkImportGitHub imports the test GitHub's story into a new pipeline each time, through
// a running stack, and reports the deliveries per second that reached the stream (acknowledged).
//
//	go test -run '^$' -bench ImportGitHub -benchtime 200x ./services/devopstic/
func BenchmarkImportGitHub(b *testing.B) {
	gitHub := githubimporttest.NewServer(b)
	s := startStack(b, "")
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := s.importInto("github", githubimporttest.Repo, "--api-url", gitHub.URL, "--pipeline", fmt.Sprintf("bench-%d", i), "--since", "all"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(13*b.N)/time.Since(start).Seconds(), "deliveries/s")
}
