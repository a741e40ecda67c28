package github_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/webhook/webhooktest"
)

// fixture and at read this package's testdata and the times its tests expect.
var fixture, at = webhooktest.Fixture, webhooktest.Time

func TestVerify(t *testing.T) {
	t.Parallel()
	var vectors struct {
		Docs struct {
			Secret  string `json:"secret"`
			Payload string `json:"payload"`
			Sig256  string `json:"X-Hub-Signature-256"`
		} `json:"github_docs_test_vector"`
		Files []struct {
			Payload string `json:"payload_file"`
			Secret  string `json:"secret"`
			Sig256  string `json:"X-Hub-Signature-256"`
			Sig1    string `json:"X-Hub-Signature"`
		} `json:"fixture_files"`
	}
	require.NoError(t, json.Unmarshal(fixture(t, "signature-vectors.json"), &vectors))

	// The example of GitHub's documentation.
	require.NoError(t, github.Verify([]string{vectors.Docs.Secret}, []byte(vectors.Docs.Payload), vectors.Docs.Sig256, ""))
	require.Len(t, vectors.Files, 2)
	for _, f := range vectors.Files {
		body := fixture(t, f.Payload)
		require.NoError(t, github.Verify([]string{f.Secret}, body, f.Sig256, f.Sig1), f.Payload)
		require.NoError(t, github.Verify([]string{f.Secret}, body, "", f.Sig1), "legacy SHA-1 alone: %s", f.Payload)
		require.NoError(t, github.Verify([]string{"retired-secret", f.Secret}, body, f.Sig256, ""), "rotation: %s", f.Payload)

		for name, tc := range map[string]struct {
			secrets []string
			body    []byte
			sig256  string
			sig1    string
		}{
			"wrong secret":               {[]string{"nope"}, body, f.Sig256, ""},
			"body changed after signing": {[]string{f.Secret}, append(body[:len(body):len(body)], ' '), f.Sig256, ""},
			"no signature":               {[]string{f.Secret}, body, "", ""},
			"no secret configured":       {nil, body, f.Sig256, ""},
			"empty secret":               {[]string{""}, body, f.Sig256, ""},
			"no sha256= prefix":          {[]string{f.Secret}, body, f.Sig256[len("sha256="):], ""},
			"not hex":                    {[]string{f.Secret}, body, "sha256=zz", ""},
			"SHA-256 wrong, SHA-1 right": {[]string{f.Secret}, body, "sha256=" + f.Sig256[len("sha256="):][2:] + "00", f.Sig1},
		} {
			require.ErrorIs(t, github.Verify(tc.secrets, tc.body, tc.sig256, tc.sig1), github.ErrSignature, "%s: %s", f.Payload, name)
		}
	}
}

func TestParseFixtures(t *testing.T) {
	t.Parallel()
	repo := "Codertocat/Hello-World"
	for _, tc := range []struct {
		file, event string
		opts        github.Options
		check       func(t *testing.T, set fact.Set, warnings []string)
		wantErr     error
	}{
		{file: "push/single-commit.json", event: "push", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Len(t, s.Changes, 1)
			c := s.Changes[0]
			require.NotNil(t, c.CommittedAt)
			require.Equal(t, s.PushCommits[0].CommitID, c.CommitID)
			require.Equal(t, s.Event.CommitID, s.PushCommits[0].HeadID)
			require.Equal(t, c.PipelineID, s.Event.PipelineID)
		}},
		{file: "push/multiple-commits-merge.json", event: "push", check: func(t *testing.T, s fact.Set, warnings []string) {
			require.Equal(t, "amplify-security/sl-repro-5941", s.Event.PipelineID)
			require.Len(t, s.Changes, 4)
			require.Equal(t, at(t, "2024-07-30T21:25:36Z"), *s.Changes[0].CommittedAt)
			require.Nil(t, s.Changes[3].CommittedAt, "an unreadable commit time is left unknown")
			require.Len(t, warnings, 1)
			require.Contains(t, warnings[0], "commits[3].timestamp")
			require.Len(t, s.PushCommits, 4)
			for _, pc := range s.PushCommits {
				require.Equal(t, "cc62b30b91677b695d3929d6352e7bb541e5ed8c", pc.HeadID)
			}
		}},
		{file: "push/branch-deleted.json", event: "push", wantErr: github.ErrIgnored},
		{file: "push/tag-deleted.json", event: "push", wantErr: github.ErrIgnored},
		{file: "pull_request/opened.json", event: "pull_request", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Equal(t, repo, s.Event.PipelineID)
			require.Len(t, s.Changes, 1)
			require.Equal(t, at(t, "2019-05-15T15:20:33Z"), *s.Changes[0].SubmittedAt)
			require.Equal(t, int64(2), *s.Changes[0].PullRequestID)
			require.Nil(t, s.Changes[0].ApprovedAt)
		}},
		{file: "pull_request/closed-not-merged.json", event: "pull_request", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Empty(t, s.Changes, "an abandoned pull request approves nothing")
			require.Equal(t, "closed", s.Event.Status)
		}},
		{file: "pull_request/synchronize.json", event: "pull_request", check: func(t *testing.T, s fact.Set, _ []string) {
			// The pull request's head after a push to its branch: one of its commits.
			require.Equal(t, []fact.Change{{PipelineID: repo, CommitID: "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
				PullRequestID: ptr(int64(2)), SubmittedAt: ptr(at(t, "2019-05-15T15:20:33Z"))}}, s.Changes)
		}},
		{file: "pull_request_review/submitted-approved.json", event: "pull_request_review", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Len(t, s.Changes, 1)
			require.NotNil(t, s.Changes[0].ApprovedAt)
			require.Equal(t, s.Event.OccurredAt, *s.Changes[0].ApprovedAt)
		}},
		{file: "pull_request_review/submitted-commented.json", event: "pull_request_review", wantErr: github.ErrIgnored},
		{file: "pull_request_review/dismissed.json", event: "pull_request_review", wantErr: github.ErrIgnored},
		{file: "deployment_status/success.json", event: "deployment_status", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Len(t, s.Deployments, 1)
			d := s.Deployments[0]
			require.Equal(t, fact.Deployment{Source: "github", PipelineID: repo, Environment: "production", Key: "145988746",
				DeploymentID: "145988746", Status: "success", DeployedAt: at(t, "2019-05-15T15:20:55Z"),
				CommitID: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e", Commits: []string{"f95f852bd8fca8fcc58a9a2d6c842781e32a215e"}}, d)
		}},
		{file: "deployment_status/failure.json", event: "deployment_status", opts: github.Options{PipelineID: "api", Environment: "prod-eu"},
			check: func(t *testing.T, s fact.Set, _ []string) {
				d := s.Deployments[0]
				require.Equal(t, "failure", d.Status)
				require.Equal(t, "api", d.PipelineID, "the URL's pipeline_id overrides the repository")
				require.Equal(t, "prod-eu", d.Environment, "the URL's environment overrides the payload's")
				require.Equal(t, at(t, "2015-05-05T23:40:39Z"), d.DeployedAt)
			}},
		{file: "deployment_status/in_progress-github-pages.json", event: "deployment_status", wantErr: github.ErrIgnored},
		{file: "workflow_run/completed-success.json", event: "workflow_run", wantErr: github.ErrIgnored},
		{file: "workflow_run/completed-success.json", event: "workflow_run", opts: github.Options{DeployWorkflows: []string{"Test"}, DeployEnvironment: "staging"},
			check: func(t *testing.T, s fact.Set, _ []string) {
				d := s.Deployments[0]
				require.Equal(t, "success", d.Status)
				require.Equal(t, "staging", d.Environment)
				require.Equal(t, "3484a3fb816e0859fd6e1cea078d76385ff50625", d.CommitID)
				require.Equal(t, at(t, "2020-10-05T16:33:49Z"), d.DeployedAt)
			}},
		{file: "workflow_run/requested.json", event: "workflow_run", opts: github.Options{DeployWorkflows: []string{"Test"}}, wantErr: github.ErrIgnored},
		{file: "issues/labeled.json", event: "issues", wantErr: github.ErrIgnored},
		{file: "issues/labeled.json", event: "issues", opts: github.Options{IncidentLabel: "BUG"}, check: func(t *testing.T, s fact.Set, _ []string) {
			require.Len(t, s.Incidents, 1)
			i := s.Incidents[0]
			require.Equal(t, repo+"#1", i.IncidentID)
			require.Equal(t, at(t, "2019-05-15T15:20:18Z"), *i.OpenedAt)
			require.Nil(t, i.ResolvedAt)
			require.Equal(t, "production", i.Environment)
		}},
		{file: "issues/closed.json", event: "issues", wantErr: github.ErrIgnored},
		{file: "check_suite/completed.json", event: "check_suite", wantErr: github.ErrIgnored},
		{file: "create/branch.json", event: "create", wantErr: github.ErrIgnored},
		{file: "delete/branch.json", event: "delete", wantErr: github.ErrIgnored},
		{file: "deployment/created.json", event: "deployment", wantErr: github.ErrIgnored},
		{file: "release/published.json", event: "release", wantErr: github.ErrIgnored},
		{file: "workflow_job/completed-success.json", event: "workflow_job", wantErr: github.ErrIgnored},
	} {
		t.Run(tc.file+"/"+tc.event, func(t *testing.T) {
			d, err := github.Parse(tc.event, fixture(t, tc.file), tc.opts)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "github", d.Set.Event.Source)
			require.Equal(t, tc.event, d.Set.Event.Kind)
			require.False(t, d.Set.Event.OccurredAt.IsZero())
			tc.check(t, d.Set, d.Warnings)
		})
	}
}

// Tools that imitate GitHub send only what a kind needs.
func TestParseMinimalSenders(t *testing.T) {
	t.Parallel()
	d, err := github.Parse("deployment_status", []byte(`{"deployment_status":{"state":"success","updated_at":"2026-11-25 10:00:00"},"deployment":{"sha":"abc1234"}}`),
		github.Options{PipelineID: "api"})
	require.NoError(t, err)
	require.Equal(t, at(t, "2026-11-25T10:00:00Z"), d.Set.Deployments[0].DeployedAt)
	require.Equal(t, "production", d.Set.Deployments[0].Environment)

	d, err = github.Parse("deployment_status", []byte(`{"state":"failure","updated_at":"2026-11-25T10:00:00Z","deployment":{"sha":"abc1234"},"repository":{"name":"api"}}`), github.Options{})
	require.NoError(t, err)
	require.Equal(t, "failure", d.Set.Deployments[0].Status)
	require.Equal(t, "api", d.Set.Deployments[0].PipelineID, "repository.name when that is all there is")

	d, err = github.Parse("issues", []byte(`{"issue":{"number":7,"created_at":"2026-11-25T10:00:00Z","closed_at":"2026-11-25T11:30:00Z",
		"labels":[{"name":"Incident"}],"body":"Outage.\nRoot Cause: 0123abcd\n"},"repository":{"name":"api"}}`), github.Options{})
	require.NoError(t, err)
	inc := d.Set.Incidents[0]
	require.Equal(t, at(t, "2026-11-25T11:30:00Z"), *inc.ResolvedAt)
	require.Equal(t, "0123abcd", inc.CauseCommitID)

	d, err = github.Parse("issues", []byte(`{"issue":{"number":8,"created_at":"2026-11-25T10:00:00Z","labels":[{"name":"incident"}],
		"body":"caused by: deploy-42"},"repository":{"full_name":"org/api"}}`), github.Options{})
	require.NoError(t, err)
	require.Equal(t, "deploy-42", d.Set.Incidents[0].CauseDeploymentID)

	for name, tc := range map[string]struct{ event, body, want string }{
		"no sha":        {"deployment_status", `{"deployment_status":{"state":"success","updated_at":"2026-11-25T10:00:00Z"},"repository":{"name":"api"}}`, "deployment.sha"},
		"no time":       {"deployment_status", `{"deployment_status":{"state":"success"},"deployment":{"sha":"a"},"repository":{"name":"api"}}`, "deployment_status.created_at"},
		"no repository": {"deployment_status", `{"state":"success","updated_at":"2026-11-25T10:00:00Z","deployment":{"sha":"a"}}`, "repository.full_name"},
		"no state":      {"deployment_status", `{"deployment":{"sha":"a"},"repository":{"name":"api"}}`, "deployment_status.state"},
		"not JSON":      {"push", `{"commits":`, "not a JSON object"},
		"no event name": {"", `{}`, "X-GitHub-Event"},
		"bad PR time":   {"pull_request", `{"action":"opened","pull_request":{"number":1,"created_at":"soon","head":{"sha":"a"}},"repository":{"name":"api"}}`, "pull_request.created_at"},
	} {
		_, err := github.Parse(tc.event, []byte(tc.body), github.Options{})
		require.ErrorIs(t, err, github.ErrInvalid, name)
		require.Contains(t, err.Error(), tc.want, name)
	}
}

func TestParseMergedPullRequestLinksHeadAndMergeCommit(t *testing.T) {
	t.Parallel()
	var p map[string]any
	require.NoError(t, json.Unmarshal(fixture(t, "pull_request/closed-not-merged.json"), &p))
	pr := p["pull_request"].(map[string]any)
	pr["merged"], pr["merged_at"], pr["merge_commit_sha"] = true, "2019-05-15T16:00:00Z", "deadbeefdeadbeef"
	body, err := json.Marshal(p)
	require.NoError(t, err)
	d, err := github.Parse("pull_request", body, github.Options{})
	require.NoError(t, err)
	head := pr["head"].(map[string]any)["sha"].(string)
	require.Len(t, d.Set.Changes, 2)
	for _, c := range d.Set.Changes {
		require.Equal(t, at(t, "2019-05-15T16:00:00Z"), *c.MergedAt, "the merge, which approves when no review did")
		require.Nil(t, c.ApprovedAt, "a merge is not a review")
		require.NotNil(t, c.SubmittedAt)
	}
	require.Equal(t, []fact.ChangeLink{{PipelineID: "Codertocat/Hello-World", CommitID: head, LinkedID: "deadbeefdeadbeef"}}, d.Set.Links)
}

// What Postgres cannot store is refused at the edge, not accepted and dead-lettered.
func TestParseRefusesWhatPostgresCannotStore(t *testing.T) {
	t.Parallel()
	body := `{"deployment_status":{"state":"success","updated_at":"2026-11-25T10:00:00Z","description":"%s"},"deployment":{"sha":"abc1234"},"repository":{"name":"api"}}`
	for name, tc := range map[string]struct {
		body string
		opts github.Options
	}{
		"NUL escape":     {strings.Replace(body, "%s", `\u0000`, 1), github.Options{}},
		"invalid UTF-8":  {strings.Replace(body, "%s", "\xff", 1), github.Options{}},
		"lone surrogate": {strings.Replace(body, "%s", `\udfff`, 1), github.Options{}},
		"NUL in the URL": {strings.Replace(body, "%s", "", 1), github.Options{PipelineID: "a\x00b"}},
	} {
		_, err := github.Parse("deployment_status", []byte(tc.body), tc.opts)
		require.ErrorIs(t, err, github.ErrInvalid, name)
		require.ErrorIs(t, err, event.ErrText, name)
	}
}

// FuzzParse feeds Parse every fixture, mutated, under the event name of its folder and others:
// it must never panic, and what it accepts must be a complete fact set.
func FuzzParse(f *testing.F) {
	for _, name := range webhooktest.Fixtures(f, "*/*.json") {
		if strings.HasSuffix(name, ".headers.json") {
			continue
		}
		f.Add(filepath.Dir(name), fixture(f, name), "", "Test")
	}
	f.Add("issues", []byte(`{"issue":{"number":7,"created_at":"2026-11-25T10:00:00Z","closed_at":"2026-11-25 11:30:00","labels":[{"name":"Incident"}],"body":"caused by: deploy-42"},"repository":{"name":"api"}}`), "api", "")
	f.Fuzz(func(t *testing.T, eventName string, body []byte, pipeline, workflow string) {
		d, err := github.Parse(eventName, body, github.Options{PipelineID: pipeline, DeployWorkflows: []string{workflow}})
		if err != nil {
			return
		}
		s := d.Set
		require.Equal(t, "github", s.Event.Source)
		require.Equal(t, eventName, s.Event.Kind)
		webhooktest.RequireComplete(t, s)
	})
}

func ptr[T any](v T) *T { return &v }
