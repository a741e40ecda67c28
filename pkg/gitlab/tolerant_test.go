package gitlab_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/gitlab"
)

// Tools that imitate GitLab (Four Keys' data generator among them) write ids as strings and
// times in their language's forms: each variant maps as GitLab's own form does.
func TestParseToleratesImitators(t *testing.T) {
	t.Parallel()
	const (
		project = `"project":{"path_with_namespace":"acme/api"}`
		commit  = `"commit_url":"https://gitlab.example.com/acme/api/-/commit/279484c09fbe69ededfced8c1bb6e6d24616b468"`
		when    = "2026-11-02T14:00:00Z"
	)
	deployment := func(id, at string) []byte {
		return []byte(`{"object_kind":"deployment","status":"success","status_changed_at":` + at + `,"deployment_id":` + id + `,"environment":"production",` + commit + `,` + project + `}`)
	}
	for name, tc := range map[string]struct {
		body    []byte
		key, at string
		wantErr error
	}{
		"GitLab's own: an offset":           {deployment(`15`, `"2026-11-02 16:00:00 +0200"`), "15", when, nil},
		"GitLab's own: UTC":                 {deployment(`15`, `"2026-11-02 14:00:00 UTC"`), "15", when, nil},
		"the id as a string of digits":      {deployment(`"15"`, `"2026-11-02 14:00:00 UTC"`), "15", when, nil},
		"the id as any string":              {deployment(`"deploy-15"`, `"2026-11-02 14:00:00 UTC"`), "deploy-15", when, nil},
		"RFC 3339":                          {deployment(`15`, `"2026-11-02T14:00:00Z"`), "15", when, nil},
		"RFC 3339 with a fraction":          {deployment(`15`, `"2026-11-02T14:00:00.750+00:00"`), "15", "2026-11-02T14:00:00.75Z", nil},
		"naive, with microseconds":          {deployment(`15`, `"2026-11-02 14:00:00.000001"`), "15", "2026-11-02T14:00:00.000001Z", nil},
		"naive, a T":                        {deployment(`15`, `"2026-11-02T14:00:00"`), "15", when, nil},
		"an offset of hours only":           {deployment(`15`, `"2026-11-02 14:00:00+00"`), "15", when, nil},
		"epoch seconds":                     {deployment(`15`, `1793628000`), "15", when, nil},
		"a zone that is only a name":        {deployment(`15`, `"2026-11-02 14:00:00 CEST"`), "", "", gitlab.ErrInvalid},
		"an id that is a boolean":           {deployment(`true`, `"2026-11-02 14:00:00 UTC"`), "", "", gitlab.ErrInvalid},
		"an id that is an array":            {deployment(`[15]`, `"2026-11-02 14:00:00 UTC"`), "", "", gitlab.ErrInvalid},
		"a time that is a string of digits": {deployment(`15`, `"1793628000"`), "", "", gitlab.ErrInvalid},
	} {
		d, err := gitlab.Parse("Deployment Hook", tc.body, gitlab.Options{})
		if tc.wantErr != nil {
			require.ErrorIs(t, err, tc.wantErr, name)
			continue
		}
		require.NoError(t, err, name)
		require.Len(t, d.Set.Deployments, 1, name)
		require.Equal(t, tc.key, d.Set.Deployments[0].Key, name)
		require.Equal(t, at(t, tc.at), d.Set.Deployments[0].DeployedAt, name)
	}

	// Pipelines and jobs: their ids key their deployments.
	deploy := gitlab.Options{DeployPipelines: []string{"deploy", "main"}}
	for _, id := range []string{`99`, `"99"`} {
		d, err := gitlab.Parse("Pipeline Hook", []byte(`{"object_attributes":{"id":`+id+`,"ref":"main","sha":"abc1234","status":"success","finished_at":"2026-11-02 14:00:00 UTC"},`+project+`}`), deploy)
		require.NoError(t, err, id)
		require.Equal(t, "pipeline:99", d.Set.Deployments[0].Key, id)
		d, err = gitlab.Parse("Job Hook", []byte(`{"build_id":`+id+`,"build_name":"deploy","build_status":"success","build_finished_at":"2026-11-02T14:00:00","sha":"abc1234",`+project+`}`), deploy)
		require.NoError(t, err, id)
		require.Equal(t, "job:99", d.Set.Deployments[0].Key, id)
		require.Equal(t, at(t, when), d.Set.Deployments[0].DeployedAt, id)
	}

	// A merge request's iid is its pull_request_id (bigint) when it is a positive integer.
	mr := func(iid string) []byte {
		return []byte(`{"object_kind":"merge_request","object_attributes":{"iid":` + iid + `,"action":"open","created_at":"2026-11-02 14:00:00 UTC","last_commit":{"id":"c2c2c2c2","timestamp":"2026-11-02T13:00:00+01:00"}},` + project + `}`)
	}
	for _, iid := range []string{`5`, `"5"`} {
		d, err := gitlab.Parse("Merge Request Hook", mr(iid), gitlab.Options{})
		require.NoError(t, err, iid)
		require.Equal(t, int64(5), *d.Set.Changes[0].PullRequestID, iid)
		require.Equal(t, at(t, "2026-11-02T12:00:00Z"), *d.Set.Changes[0].CommittedAt, iid)
		require.Empty(t, d.Warnings, iid)
	}
	d, err := gitlab.Parse("Merge Request Hook", mr(`"!5"`), gitlab.Options{})
	require.NoError(t, err)
	require.Nil(t, d.Set.Changes[0].PullRequestID)
	require.Contains(t, d.Warnings[0], "object_attributes.iid")

	// An incident issue's iid names the incident: 7 and "7" are one incident.
	for _, iid := range []string{`7`, `"7"`} {
		d, err := gitlab.Parse("Issue Hook", []byte(`{"object_kind":"issue","object_attributes":{"iid":`+iid+`,"issue_type":"incident","state":"closed","created_at":"2026-11-02 14:00:00 UTC","closed_at":1793631600},`+project+`}`), gitlab.Options{})
		require.NoError(t, err, iid)
		require.Equal(t, "acme/api#7", d.Set.Incidents[0].IncidentID, iid)
		require.Equal(t, at(t, "2026-11-02T15:00:00Z"), *d.Set.Incidents[0].ResolvedAt, iid)
	}
}
