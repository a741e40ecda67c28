package githubimport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/githubimport"
	gh "github.com/devopstic/devopstic/pkg/githubimport/githubimporttest"
	"github.com/devopstic/devopstic/pkg/importer"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/webhook"
)

// clock is the client's: a fixed now, and sleeps that are recorded instead of slept.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	waited []time.Duration
}

func (c *clock) client(s *gh.Server) *githubimport.Client {
	return &githubimport.Client{BaseURL: s.URL, HTTP: s.Client(), Retries: 3,
		Now: func() time.Time { return c.now },
		Sleep: func(ctx context.Context, d time.Duration) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.waited = append(c.waited, d)
			return ctx.Err()
		}}
}

// imported runs an import into a dry run's listing and returns its message ids.
func imported(t *testing.T, ctx context.Context, client *githubimport.Client, opts githubimport.Options) ([]string, githubimport.Result, error) {
	t.Helper()
	var out bytes.Buffer
	if opts.Repo == "" {
		opts.Repo = gh.Repo
	}
	res, err := githubimport.Import(ctx, opts, client, &importer.DryRun{W: &out}, nil, time.Now)
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if fields := strings.SplitN(line, " ", 3); len(fields) == 3 {
			ids = append(ids, fields[1])
		}
	}
	return ids, res, err
}

// The whole story, read a page of one item at a time: every pull request, review, deployment
// status and incident that carries a fact, as a delivery the webhooks' code maps.
var storyIDs = []string{
	"github:import:octo/api:pull:1:closed:" + gh.H1 + ":true",
	"github:import:octo/api:pull:1:push:" + gh.H1,
	"github:import:octo/api:review:902",
	"github:import:octo/api:pull:2:closed:" + gh.H2 + ":true",
	"github:import:octo/api:pull:2:push:" + gh.H2,
	"github:import:octo/api:pull:3:opened:" + gh.H3 + ":false",
	"github:import:octo/api:pull:3:push:" + gh.H3,
	"github:import:octo/api:pull:4:closed:" + gh.H4 + ":false",
	"github:import:octo/api:deployment_status:1002",
	"github:import:octo/api:deployment_status:1003",
	"github:import:octo/api:deployment_status:1004",
	"github:import:octo/api:issue:50:closed:" + gh.At(11.75),
	"github:import:octo/api:issue:51:opened:",
}

func TestImportReadsEveryPage(t *testing.T) {
	t.Parallel()
	s := gh.NewServer(t)
	c := &clock{now: time.Now()}
	client := c.client(s)
	ids, res, err := imported(t, context.Background(), client, githubimport.Options{PerPage: 1})
	require.NoError(t, err)
	require.ElementsMatch(t, storyIDs, ids)
	require.Equal(t, githubimport.Counts{PullRequests: 4, Commits: 4, Reviews: 2, Deployments: 3, Statuses: 4, Incidents: 2,
		Sent: len(storyIDs), Skipped: 2}, res.Counts, "the comment review and the deployment in progress carry no fact")
	require.Empty(t, res.Warnings)
	require.Equal(t, 4, s.Requests("/repos/octo/api/pulls"), "4 pages of one")
	require.Equal(t, 2, s.Requests("/repos/octo/api/pulls/1/commits"), "a pull request's commits are paginated too")
	require.Equal(t, 0, s.Requests("/repos/octo/api/pulls/4/commits"), "an abandoned pull request ships nothing")
	require.Empty(t, c.waited)

	t.Run("since", func(t *testing.T) {
		ids, res, err := imported(t, context.Background(), c.client(s), githubimport.Options{PerPage: 2, Since: gh.T.Add(8 * time.Hour)})
		require.NoError(t, err)
		require.Equal(t, 3, res.PullRequests, "#1, updated at 5, is before the window")
		require.Equal(t, 2, res.Deployments, "101, created at 6, is before the window")
		require.NotContains(t, ids, "github:import:octo/api:review:902")
		require.Contains(t, ids, "github:import:octo/api:deployment_status:1003")
	})
}

// Each delivery maps exactly as the same kind of live delivery does, with the options the
// ingest would use, and is marked as imported.
func TestImportedDeliveriesMapLikeWebhooks(t *testing.T) {
	t.Parallel()
	s := gh.NewServer(t)
	var out bytes.Buffer
	opts := github.Options{PipelineID: "api", IncidentLabel: "incident"}
	_, err := githubimport.Import(context.Background(), githubimport.Options{Repo: gh.Repo, GitHub: opts},
		(&clock{now: time.Now()}).client(s), &recordingSink{t: t, out: &out}, nil, time.Now)
	require.NoError(t, err)
	require.Contains(t, out.String(), "pull_request api merged "+gh.H1)
	require.Contains(t, out.String(), "deployment_status api failure "+gh.M2)
	require.Contains(t, out.String(), "issues api success  incident api#50 cause deployment 102")
}

// A completed run of a deploy workflow is imported as the workflow_run delivery GitHub sends,
// and maps to the deployment the live delivery gives. The run is the one of GitHub's own
// workflow_run webhook example (pkg/github/testdata), the same object the REST API lists.
func TestImportedWorkflowRunsAreDeployments(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../github/testdata/workflow_run/completed-success.json")
	require.NoError(t, err)
	var live struct {
		Run map[string]any `json:"workflow_run"`
	}
	require.NoError(t, json.Unmarshal(raw, &live))
	live.Run["name"] = "Deploy" // the workflow's name, which REST lists on the run

	s := gh.NewServer(t)
	s.Runs = []map[string]any{live.Run}
	var out bytes.Buffer
	opts := github.Options{PipelineID: "api", IncidentLabel: "incident", DeployWorkflows: []string{"Deploy"}}
	res, err := githubimport.Import(context.Background(), githubimport.Options{Repo: gh.Repo, GitHub: opts},
		(&clock{now: time.Now()}).client(s), &recordingSink{t: t, out: &out}, nil, time.Now)
	require.NoError(t, err)
	require.Equal(t, 1, res.Runs)
	require.Contains(t, out.String(), "workflow_run api success 3484a3fb816e0859fd6e1cea078d76385ff50625")

	// Without the workflow among the deploy workflows, the runs are not read at all.
	out.Reset()
	res, err = githubimport.Import(context.Background(), githubimport.Options{Repo: gh.Repo, GitHub: github.Options{PipelineID: "api"}},
		(&clock{now: time.Now()}).client(s), &recordingSink{t: t, out: &out}, nil, time.Now)
	require.NoError(t, err)
	require.Zero(t, res.Runs)
	require.NotContains(t, out.String(), "workflow_run")
}

// recordingSink maps every message it is sent with the writer's decoder for GitHub, and lists
// what it says.
type recordingSink struct {
	t   *testing.T
	out *bytes.Buffer
}

func (r *recordingSink) Send(_ context.Context, msgs []stream.Message) error {
	for _, m := range msgs {
		require.Equal(r.t, []string{"github"}, m.Header[importer.HeaderImported])
		set, err := github.Decode(webhook.Header(m.Header), m.Data)
		require.NoError(r.t, err)
		e := set.Event
		fmt.Fprintf(r.out, "%s %s %s %s", e.Kind, e.PipelineID, e.Status, e.CommitID)
		for _, i := range set.Incidents {
			fmt.Fprintf(r.out, " incident %s cause deployment %s", i.IncidentID, i.CauseDeploymentID)
		}
		fmt.Fprintln(r.out)
	}
	return nil
}

func TestImportWaitsOutRateLimitsAndRetriesFailures(t *testing.T) {
	t.Parallel()
	s := gh.NewServer(t)
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	s.Fail("/repos/octo/api/pulls",
		gh.Fault{Status: http.StatusForbidden, Header: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1800000030"},
			Body: `{"message":"API rate limit exceeded for user ID 1."}`},
		gh.Fault{Status: http.StatusForbidden, Header: map[string]string{"Retry-After": "7"},
			Body: `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`},
		gh.Fault{Status: http.StatusBadGateway, Body: `<html>502 Bad Gateway</html>`},
	)
	s.Fail("/repos/octo/api/deployments", gh.Fault{Status: http.StatusTooManyRequests, Body: `{"message":"secondary rate limit"}`})
	s.Fail("/repos/octo/api/deployments/101/statuses", gh.Fault{Status: http.StatusServiceUnavailable}, gh.Fault{Status: http.StatusInternalServerError})
	var waits []string
	client := c.client(s)
	client.Waiting = func(reason string, d time.Duration) { waits = append(waits, fmt.Sprintf("%s %s", d, reason)) }
	ids, _, err := imported(t, context.Background(), client, githubimport.Options{})
	require.NoError(t, err)
	require.ElementsMatch(t, storyIDs, ids, "nothing lost")
	require.Equal(t, []time.Duration{31 * time.Second, 7 * time.Second, time.Second, time.Minute, time.Second, 2 * time.Second}, c.waited,
		"until the reset (and a second), Retry-After, backoff, a minute without Retry-After, backoff doubling")
	require.Contains(t, waits[0], "GitHub's rate limit (until")
	require.Contains(t, waits[1], "secondary rate limit (Retry-After)")
	require.Contains(t, waits[2], "502 Bad Gateway")

	t.Run("a server that keeps failing", func(t *testing.T) {
		s.Fail("/repos/octo/api/issues", slices.Repeat([]gh.Fault{{Status: http.StatusBadGateway}}, 4)...)
		_, _, err := imported(t, context.Background(), c.client(s), githubimport.Options{})
		require.ErrorIs(t, err, githubimport.ErrUnavailable)
		require.ErrorContains(t, err, "failed 4 times")
	})
}

func TestImportRefusals(t *testing.T) {
	t.Parallel()
	s := gh.NewServer(t)
	s.Token = "good-token"
	c := &clock{now: time.Now()}
	for _, tc := range []struct {
		name    string
		repo    string
		token   string
		fault   *gh.Fault
		wantErr error
	}{
		{name: "no token", token: "", wantErr: githubimport.ErrUnauthorized},
		{name: "a refused token", token: "bad", wantErr: githubimport.ErrUnauthorized},
		{name: "no access", token: "good-token", fault: &gh.Fault{Status: http.StatusForbidden,
			Body: `{"message":"Resource not accessible by personal access token"}`}, wantErr: githubimport.ErrForbidden},
		{name: "no such repository", repo: "octo/nothing", token: "good-token", wantErr: githubimport.ErrNotFound},
		{name: "not owner/name", repo: "octo", token: "good-token", wantErr: githubimport.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				s.Fail("/repos/octo/api", *tc.fault)
			}
			client := c.client(s)
			client.Token = tc.token
			ids, _, err := imported(t, context.Background(), client, githubimport.Options{Repo: tc.repo})
			require.ErrorIs(t, err, tc.wantErr)
			require.Empty(t, ids, "nothing sent")
		})
	}
}

// A run stopped halfway (Ctrl-C) leaves a checkpoint; the next run goes on from the page it
// stopped at, and the two together send the whole story.
func TestImportResumesWhereItStopped(t *testing.T) {
	t.Parallel()
	s := gh.NewServer(t)
	c := &clock{now: time.Now()}
	cp := githubimport.CheckpointPath(t.TempDir(), gh.Repo)
	ctx, stop := context.WithCancel(context.Background())
	s.Before = func(r *http.Request) {
		if r.URL.Path == "/repos/octo/api/deployments" && r.URL.Query().Get("page") == "2" {
			stop() // Ctrl-C while the second page of deployments is asked for
		}
	}
	first, res, err := imported(t, ctx, c.client(s), githubimport.Options{PerPage: 1, Checkpoint: cp})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 4, res.PullRequests)
	saved, err := os.ReadFile(cp)
	require.NoError(t, err)
	require.Contains(t, string(saved), `"phase": "deployments"`)
	require.Contains(t, string(saved), `page=2`)
	pullsAsked := s.Requests("/repos/octo/api/pulls")

	s.Before = nil
	second, res, err := imported(t, context.Background(), c.client(s), githubimport.Options{PerPage: 1, Checkpoint: cp})
	require.NoError(t, err)
	require.True(t, res.Resumed)
	require.Equal(t, 4, res.PullRequests, "the counts go on from the checkpoint's")
	require.Equal(t, pullsAsked, s.Requests("/repos/octo/api/pulls"), "the pull requests were not read again")
	require.ElementsMatch(t, storyIDs, slices.Compact(slices.Sorted(slices.Values(append(first, second...)))))
	require.NotContains(t, second, "github:import:octo/api:deployment_status:1004", "the first deployment's page was done")
	_, err = os.Stat(cp)
	require.ErrorIs(t, err, os.ErrNotExist, "a finished import leaves no checkpoint")

	t.Run("restart", func(t *testing.T) {
		require.NoError(t, os.MkdirAll(filepath.Dir(cp), 0o700))
		require.NoError(t, os.WriteFile(cp, saved, 0o600))
		ids, res, err := imported(t, context.Background(), c.client(s), githubimport.Options{PerPage: 1, Checkpoint: cp, Restart: true})
		require.NoError(t, err)
		require.False(t, res.Resumed)
		require.ElementsMatch(t, storyIDs, ids)
	})
}
