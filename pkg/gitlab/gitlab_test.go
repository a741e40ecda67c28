package gitlab_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/gitlab"
	"github.com/devopstic/devopstic/pkg/webhook/webhooktest"
)

// fixture and at read this package's testdata and the times its tests expect.
var fixture, at = webhooktest.Fixture, webhooktest.Time

// eventHeader is the X-Gitlab-Event value of a fixture, from its name (push_hook.json is a
// "Push Hook").
func eventHeader(file string) string {
	return map[string]string{
		"deployment_hook": "Deployment Hook", "issue_hook": "Issue Hook", "job_hook": "Job Hook",
		"merge_request_hook": "Merge Request Hook", "pipeline_hook": "Pipeline Hook", "push_hook": "Push Hook",
		"release_hook": "Release Hook", "tag_push_hook": "Tag Push Hook",
	}[stem(file)]
}

func stem(file string) string {
	base := filepath.Base(file)
	for i, r := range base {
		if r == '.' {
			return base[:i]
		}
	}
	return base
}

func TestVerify(t *testing.T) {
	t.Parallel()
	require.NoError(t, gitlab.Verify([]string{"s3cret"}, "s3cret"))
	require.NoError(t, gitlab.Verify([]string{"retired", "s3cret"}, "s3cret"), "rotation")
	for name, tc := range map[string]struct {
		secrets []string
		token   string
	}{
		"no token":             {[]string{"s3cret"}, ""},
		"wrong token":          {[]string{"s3cret"}, "s3cret "},
		"prefix of the secret": {[]string{"s3cret"}, "s3c"},
		"no secret configured": {nil, "s3cret"},
		"empty secret":         {[]string{""}, "x"},
	} {
		require.ErrorIs(t, gitlab.Verify(tc.secrets, tc.token), gitlab.ErrToken, name)
	}
}

func TestParseFixtures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file    string
		opts    gitlab.Options
		check   func(t *testing.T, set fact.Set, warnings []string)
		wantErr error
	}{
		{file: "push_hook.json", check: func(t *testing.T, s fact.Set, warnings []string) {
			require.Equal(t, "push", s.Event.Kind)
			require.Equal(t, "mike/diaspora", s.Event.PipelineID)
			require.Len(t, s.Changes, 2)
			require.Equal(t, "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327", s.Changes[0].CommitID)
			require.Equal(t, at(t, "2011-12-12T12:27:31Z"), *s.Changes[0].CommittedAt)
			require.Equal(t, at(t, "2012-01-03T21:36:29Z"), *s.Changes[1].CommittedAt)
			require.Equal(t, at(t, "2012-01-03T21:36:29Z"), s.Event.OccurredAt, "the latest commit")
			require.Len(t, s.PushCommits, 2)
			for _, pc := range s.PushCommits {
				require.Equal(t, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", pc.HeadID)
			}
			require.Equal(t, []string{"the push has 4 commits and lists 2"}, warnings)
		}},
		{file: "push_hook.branch_delete.json", wantErr: gitlab.ErrIgnored},
		{file: "tag_push_hook.json", wantErr: gitlab.ErrIgnored},
		{file: "merge_request_hook.open.json", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Equal(t, "merge_request", s.Event.Kind)
			require.Equal(t, "gitlabhq/gitlab-test", s.Event.PipelineID)
			require.Len(t, s.Changes, 1)
			c := s.Changes[0]
			require.Equal(t, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", c.CommitID)
			require.Equal(t, at(t, "2013-12-03T17:23:34Z"), *c.SubmittedAt)
			require.Equal(t, at(t, "2012-01-03T21:36:29Z"), *c.CommittedAt, "last_commit.timestamp")
			require.Equal(t, int64(1), *c.PullRequestID)
			require.Nil(t, c.ApprovedAt)
		}},
		{file: "merge_request_hook.reopen.json", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Equal(t, at(t, "2017-12-10T17:01:11Z"), *s.Changes[0].SubmittedAt)
		}},
		{file: "merge_request_hook.close.json", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Empty(t, s.Changes, "an abandoned merge request approves nothing")
			require.Equal(t, "closed", s.Event.Status)
		}},
		{file: "merge_request_hook.merge.json", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Equal(t, "merged", s.Event.Status)
			merged := at(t, "2017-12-10T17:08:07Z")
			require.Equal(t, merged, s.Event.OccurredAt)
			require.Len(t, s.Changes, 2)
			for _, c := range s.Changes {
				require.Equal(t, merged, *c.MergedAt, "the merge, which approves when no approval did")
				require.Nil(t, c.ApprovedAt, "a merge is not an approval")
				require.Equal(t, at(t, "2017-12-10T17:01:11Z"), *c.SubmittedAt)
			}
			require.Equal(t, []fact.ChangeLink{{PipelineID: "gitlab-org/hello-world",
				CommitID: "c4c79227ed610f1151f05bbc5be33b4f340d39c8", LinkedID: "78a76ee6b4992a6baf64c59fc4c44c7323d60438"}}, s.Links)
		}},
		{file: "deployment_hook.json", check: func(t *testing.T, s fact.Set, _ []string) {
			require.Equal(t, []fact.Deployment{{Source: "gitlab", PipelineID: "root/test-deployment-webhooks", Environment: "staging",
				Key: "15", DeploymentID: "15", Status: "success", DeployedAt: at(t, "2021-04-28T19:50:00Z"),
				CommitID: "279484c09fbe69ededfced8c1bb6e6d24616b468", Commits: []string{"279484c09fbe69ededfced8c1bb6e6d24616b468"}}}, s.Deployments)
		}},
		{file: "deployment_hook.json", opts: gitlab.Options{PipelineID: "api", Environment: "production"}, check: func(t *testing.T, s fact.Set, _ []string) {
			require.Equal(t, "api", s.Deployments[0].PipelineID, "the URL's pipeline_id overrides the project")
			require.Equal(t, "production", s.Deployments[0].Environment, "the URL's environment overrides the payload's")
		}},
		{file: "issue_hook.open.json", wantErr: gitlab.ErrIgnored},
		{file: "issue_hook.open.json", opts: gitlab.Options{IncidentLabel: "api"}, check: func(t *testing.T, s fact.Set, _ []string) {
			require.Equal(t, []fact.Incident{{Source: "gitlab", IncidentID: "gitlabhq/gitlab-test#23", PipelineID: "gitlabhq/gitlab-test",
				Environment: "production", OpenedAt: ptr(at(t, "2013-12-03T17:15:43Z"))}}, s.Incidents)
		}},
		{file: "issue_hook.close.json", wantErr: gitlab.ErrIgnored},
		{file: "issue_hook.close.json", opts: gitlab.Options{IncidentLabel: "Critical", PipelineID: "web"}, check: func(t *testing.T, s fact.Set, _ []string) {
			i := s.Incidents[0]
			require.Equal(t, "gitlab-org/hello-world#1", i.IncidentID, "keyed by the project, whatever the URL says")
			require.Equal(t, "web", i.PipelineID)
			require.Equal(t, at(t, "2017-12-10T16:37:38Z"), *i.OpenedAt)
			require.Equal(t, at(t, "2017-12-10T16:41:28Z"), *i.ResolvedAt)
			require.Equal(t, "success", s.Event.Status)
		}},
		{file: "pipeline_hook.json", wantErr: gitlab.ErrIgnored},
		{file: "job_hook.json", wantErr: gitlab.ErrIgnored},
		{file: "job_hook.created.json", wantErr: gitlab.ErrIgnored},
		// The fixture's pipeline has no name: its ref, master, names it.
		{file: "pipeline_hook.json", opts: gitlab.Options{DeployPipelines: []string{"release", "MASTER"}}, check: func(t *testing.T, s fact.Set, _ []string) {
			require.Equal(t, []fact.Deployment{{Source: "gitlab", PipelineID: "gitlab-org/gitlab-test", Environment: "production",
				Key: "pipeline:31", DeploymentID: "31", Status: "success", DeployedAt: at(t, "2016-08-12T15:26:29Z"),
				CommitID: "bcbb5ec396a2c0f828686f14fac9b80b780504f2", Commits: []string{"bcbb5ec396a2c0f828686f14fac9b80b780504f2"}}}, s.Deployments)
			require.Equal(t, at(t, "2016-08-12T15:26:29Z"), s.Event.OccurredAt, "finished_at, not created_at")
		}},
		{file: "pipeline_hook.json", opts: gitlab.Options{DeployPipelines: []string{"deploy"}}, wantErr: gitlab.ErrIgnored},
		// The fixture's job has no project: ?pipeline_id= names the pipeline.
		{file: "job_hook.json", opts: gitlab.Options{DeployPipelines: []string{"Auto_Deploy:Start"}, DeployEnvironment: "gprd", PipelineID: "release-tools"}, check: func(t *testing.T, s fact.Set, _ []string) {
			require.Equal(t, []fact.Deployment{{Source: "gitlab", PipelineID: "release-tools", Environment: "gprd",
				Key: "job:3580121225", DeploymentID: "3580121225", Status: "success", DeployedAt: at(t, "2023-01-10T13:50:54Z"),
				CommitID: "95d49d1efbd941908580e79d65e4b5ecaf4a8305", Commits: []string{"95d49d1efbd941908580e79d65e4b5ecaf4a8305"}}}, s.Deployments)
		}},
		{file: "job_hook.json", opts: gitlab.Options{DeployPipelines: []string{"auto_deploy:start"}}, wantErr: gitlab.ErrInvalid},
		{file: "job_hook.created.json", opts: gitlab.Options{DeployPipelines: []string{"test"}, PipelineID: "api"}, wantErr: gitlab.ErrIgnored},
		{file: "release_hook.json", wantErr: gitlab.ErrIgnored},
	} {
		t.Run(tc.file+"/"+tc.opts.IncidentLabel+strings.Join(tc.opts.DeployPipelines, ","), func(t *testing.T) {
			d, err := gitlab.Parse(eventHeader(tc.file), fixture(t, tc.file), tc.opts)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "gitlab", d.Set.Event.Source)
			require.Equal(t, gitlab.Kind(eventHeader(tc.file)), d.Set.Event.Kind)
			require.False(t, d.Set.Event.OccurredAt.IsZero())
			tc.check(t, d.Set, d.Warnings)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestParseMappings(t *testing.T) {
	t.Parallel()
	project := `"project":{"path_with_namespace":"acme/api"}`

	d, err := gitlab.Parse("Merge Request Hook", []byte(`{"object_attributes":{"iid":4,"action":"approved","created_at":"2026-11-25 09:00:00 UTC",
		"updated_at":"2026-11-25 10:00:00 UTC","last_commit":{"id":"abc1234"}},`+project+`}`), gitlab.Options{})
	require.NoError(t, err)
	require.Equal(t, at(t, "2026-11-25T10:00:00Z"), *d.Set.Changes[0].ApprovedAt)
	require.Nil(t, d.Set.Changes[0].SubmittedAt)

	// A fast-forward merge has no merge commit: the change is the head alone.
	d, err = gitlab.Parse("Merge Request Hook", []byte(`{"object_attributes":{"iid":4,"action":"merge","created_at":"2026-11-25T09:00:00Z",
		"updated_at":"2026-11-25T11:00:00Z","merge_commit_sha":null,"last_commit":{"id":"abc1234"}},`+project+`}`), gitlab.Options{})
	require.NoError(t, err)
	require.Len(t, d.Set.Changes, 1)
	require.Empty(t, d.Set.Links)

	d, err = gitlab.Parse("Deployment Hook", []byte(`{"status":"failed","status_changed_at":"2026-11-25 12:00:00 +0200","deployment_id":7,
		"environment":"production","short_sha":"abc1234","commit_url":"https://gitlab.example.com/acme/api/-/commit/abc1234def5678"}`),
		gitlab.Options{PipelineID: "api"})
	require.NoError(t, err)
	require.Equal(t, "failure", d.Set.Deployments[0].Status)
	require.Equal(t, at(t, "2026-11-25T10:00:00Z"), d.Set.Deployments[0].DeployedAt)
	require.Equal(t, "abc1234def5678", d.Set.Deployments[0].CommitID)

	for _, status := range []string{"running", "canceled", "created"} {
		_, err = gitlab.Parse("Deployment Hook", []byte(`{"status":"`+status+`","status_changed_at":"2026-11-25T10:00:00Z"}`), gitlab.Options{})
		require.ErrorIs(t, err, gitlab.ErrIgnored, status)
	}

	// A named pipeline is matched by its name, not its ref; a failed one is a failed deployment,
	// and the URL's environment overrides DEVOPSTIC_GITLAB_DEPLOY_ENVIRONMENT.
	deploy := gitlab.Options{DeployPipelines: []string{"Deploy"}, DeployEnvironment: "staging"}
	pipeline := func(name, status string) []byte {
		return []byte(`{"object_kind":"pipeline","object_attributes":{"id":77,"name":"` + name + `","ref":"main","sha":"abc1234",
			"status":"` + status + `","finished_at":"2026-11-25 12:00:00 +0200"},` + project + `}`)
	}
	d, err = gitlab.Parse("Pipeline Hook", pipeline("deploy", "failed"), deploy)
	require.NoError(t, err)
	require.Equal(t, "pipeline", d.Set.Event.Kind)
	dep := d.Set.Deployments[0]
	require.Equal(t, "failure", dep.Status)
	require.Equal(t, "staging", dep.Environment)
	require.Equal(t, "pipeline:77", dep.Key)
	require.Equal(t, "acme/api", dep.PipelineID)
	require.Equal(t, at(t, "2026-11-25T10:00:00Z"), dep.DeployedAt)
	d, err = gitlab.Parse("Pipeline Hook", pipeline("deploy", "success"), gitlab.Options{DeployPipelines: []string{"deploy"}, Environment: "eu"})
	require.NoError(t, err)
	require.Equal(t, "eu", d.Set.Deployments[0].Environment)
	_, err = gitlab.Parse("Pipeline Hook", pipeline("nightly", "success"), gitlab.Options{DeployPipelines: []string{"main"}})
	require.ErrorIs(t, err, gitlab.ErrIgnored, "a named pipeline is not matched by its ref")
	for _, status := range []string{"running", "canceled", "skipped", "manual"} {
		_, err = gitlab.Parse("Pipeline Hook", pipeline("deploy", status), deploy)
		require.ErrorIs(t, err, gitlab.ErrIgnored, status)
	}
	_, err = gitlab.Parse("Pipeline Hook", pipeline("deploy", "success"), gitlab.Options{})
	require.ErrorIs(t, err, gitlab.ErrIgnored, "no DEVOPSTIC_GITLAB_DEPLOY_PIPELINES")

	// GitLab's incident issue type, with no label; the cause named in the description.
	d, err = gitlab.Parse("Confidential Issue Hook", []byte(`{"object_attributes":{"iid":9,"issue_type":"incident","state":"closed",
		"created_at":"2026-11-25T10:00:00Z","closed_at":"2026-11-25T11:00:00Z","description":"Outage.\r\nRoot cause: 0123abcd"},`+project+`}`),
		gitlab.Options{Environment: "eu"})
	require.NoError(t, err)
	inc := d.Set.Incidents[0]
	require.Equal(t, "acme/api#9", inc.IncidentID)
	require.Equal(t, "eu", inc.Environment)
	require.Equal(t, "0123abcd", inc.CauseCommitID)
	require.Equal(t, at(t, "2026-11-25T11:00:00Z"), *inc.ResolvedAt)

	// A reopened incident opens again, whatever closed_at it still carries.
	d, err = gitlab.Parse("Issue Hook", []byte(`{"object_attributes":{"iid":9,"action":"reopen","state":"opened","type":"INCIDENT",
		"created_at":"2026-11-25T10:00:00Z","closed_at":"2026-11-25T11:00:00Z"},`+project+`}`), gitlab.Options{})
	require.NoError(t, err)
	require.Nil(t, d.Set.Incidents[0].ResolvedAt)

	// A system hook names its kind in the body.
	d, err = gitlab.Parse("System Hook", fixture(t, "push_hook.json"), gitlab.Options{})
	require.NoError(t, err)
	require.Len(t, d.Set.Changes, 2)

	for name, tc := range map[string]struct{ event, body, want string }{
		"not JSON":              {"Push Hook", `{"commits":`, "not a JSON object"},
		"no event header":       {"", `{}`, "X-Gitlab-Event"},
		"no project":            {"Push Hook", `{"after":"a1","commits":[{"id":"a1","timestamp":"2026-11-25T10:00:00Z"}]}`, "project.path_with_namespace"},
		"no commit id":          {"Push Hook", `{"after":"a1","commits":[{"timestamp":"2026-11-25T10:00:00Z"}],` + project + `}`, "commits[0].id"},
		"no readable time":      {"Push Hook", `{"after":"a1","commits":[{"id":"a1","timestamp":"soon"}],` + project + `}`, "readable timestamp"},
		"MR without commit":     {"Merge Request Hook", `{"object_attributes":{"action":"open","created_at":"2026-11-25T10:00:00Z"},` + project + `}`, "last_commit.id"},
		"MR without time":       {"Merge Request Hook", `{"object_attributes":{"action":"open","last_commit":{"id":"a"}},` + project + `}`, "object_attributes.created_at"},
		"MR without attrs":      {"Merge Request Hook", `{` + project + `}`, "object_attributes is missing"},
		"deploy without time":   {"Deployment Hook", `{"status":"success","commit_url":"x/commit/abc1234",` + project + `}`, "status_changed_at"},
		"deploy without sha":    {"Deployment Hook", `{"status":"success","status_changed_at":"2026-11-25T10:00:00Z",` + project + `}`, "commit_url"},
		"deploy without state":  {"Deployment Hook", `{"status_changed_at":"2026-11-25T10:00:00Z",` + project + `}`, "status is missing"},
		"incident without iid":  {"Issue Hook", `{"object_attributes":{"issue_type":"incident","created_at":"2026-11-25T10:00:00Z"},` + project + `}`, "object_attributes.iid"},
		"pipeline without sha":  {"Pipeline Hook", `{"object_attributes":{"ref":"deploy","status":"success","finished_at":"2026-11-25T10:00:00Z"},` + project + `}`, "object_attributes.sha"},
		"pipeline without time": {"Pipeline Hook", `{"object_attributes":{"ref":"deploy","status":"success","sha":"a1"},` + project + `}`, "object_attributes.finished_at"},
		"job without status":    {"Job Hook", `{"build_name":"deploy","sha":"a1",` + project + `}`, "build_status"},
		"job with a bad time":   {"Job Hook", `{"build_name":"deploy","build_status":"failed","sha":"a1","build_finished_at":"later",` + project + `}`, "build_finished_at"},
		"bad closing time":      {"Issue Hook", `{"object_attributes":{"iid":1,"issue_type":"incident","state":"closed","created_at":"2026-11-25T10:00:00Z","closed_at":"later"},` + project + `}`, "object_attributes.closed_at"},
	} {
		_, err := gitlab.Parse(tc.event, []byte(tc.body), gitlab.Options{DeployPipelines: []string{"deploy"}})
		require.ErrorIs(t, err, gitlab.ErrInvalid, name)
		require.Contains(t, err.Error(), tc.want, name)
	}
}

// FuzzParse feeds Parse every fixture, mutated: it must never panic, and what it accepts
// must be a complete fact set.
func FuzzParse(f *testing.F) {
	for _, name := range webhooktest.Fixtures(f, "*.json") {
		f.Add(eventHeader(name), fixture(f, name), "")
	}
	f.Add("Issue Hook", []byte(`{"object_attributes":{"iid":1,"issue_type":"incident","state":"closed","created_at":"2026-11-25T10:00:00Z"},"project":{"name":"a"}}`), "incident")
	f.Fuzz(func(t *testing.T, eventName string, body []byte, label string) {
		d, err := gitlab.Parse(eventName, body, gitlab.Options{IncidentLabel: label, DeployPipelines: []string{label, "master"}})
		if err != nil {
			return
		}
		s := d.Set
		require.Equal(t, "gitlab", s.Event.Source)
		webhooktest.RequireComplete(t, s)
	})
}

// What Postgres cannot store is refused at the edge, not accepted and dead-lettered.
func TestParseRefusesWhatPostgresCannotStore(t *testing.T) {
	t.Parallel()
	push := `{"after":"a1","commits":[{"id":"a1","timestamp":"2026-11-25T10:00:00Z","message":"%s"}],"project":{"path_with_namespace":"a/b"}}`
	for name, tc := range map[string]struct {
		body string
		opts gitlab.Options
		want string
	}{
		"NUL escape":        {strings.Replace(push, "%s", `\u0000`, 1), gitlab.Options{}, "body"},
		"invalid UTF-8":     {strings.Replace(push, "%s", "\xff", 1), gitlab.Options{}, "body"},
		"lone surrogate":    {strings.Replace(push, "%s", `\ud800`, 1), gitlab.Options{}, "body"},
		"NUL in the URL":    {strings.Replace(push, "%s", "", 1), gitlab.Options{PipelineID: "a\x00"}, "pipeline_id"},
		"binary in the URL": {strings.Replace(push, "%s", "", 1), gitlab.Options{Environment: "\xfe"}, "environment"},
	} {
		_, err := gitlab.Parse("Push Hook", []byte(tc.body), tc.opts)
		require.ErrorIs(t, err, gitlab.ErrInvalid, name)
		require.ErrorIs(t, err, event.ErrText, name)
		require.Contains(t, err.Error(), tc.want, name)
	}
}
