package github_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/github"
)

// Tools that imitate GitHub (Four Keys' data generator, scripts, CI plugins) write ids as
// strings and times as their language prints them: each variant maps as GitHub's own form does.
func TestParseToleratesImitators(t *testing.T) {
	t.Parallel()
	const (
		sha  = "b4d1c6a9e3f2a7c8d9e0f1a2b3c4d5e6f7a8b9c0"
		hex  = "9f3c2b1a0e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
		repo = `"repository":{"full_name":"acme/api"}`
		// 2026-11-02T14:00:00Z
		when  = "2026-11-02T14:00:00Z"
		epoch = "1793628000"
	)
	status := func(statusID, deploymentID, at string) []byte {
		d := `"deployment":{"sha":"` + sha + `"`
		if deploymentID != "" {
			d += `,"id":` + deploymentID
		}
		return []byte(`{"deployment_status":{"id":` + statusID + `,"state":"success","updated_at":` + at + `},` + d + `},` + repo + `}`)
	}
	for name, tc := range map[string]struct {
		body    []byte
		key     string // the deployment's key
		at      string // its time, RFC 3339
		wantErr error
	}{
		// generate_data.py: a hex status id, no deployment id, Python's str(datetime) in UTC.
		"Four Keys: hex status id, naive time with microseconds": {status(`"`+hex+`"`, "", `"2026-11-02 14:00:00.123456"`), hex, "2026-11-02T14:00:00.123456Z", nil},
		"status id as a number":                                  {status(`11`, "", `"`+when+`"`), "11", when, nil},
		"status id as a string of digits":                        {status(`"11"`, "", `"`+when+`"`), "11", when, nil},
		"deployment id as a number":                              {status(`11`, `10`, `"`+when+`"`), "10", when, nil},
		"deployment id as a string of digits":                    {status(`11`, `"10"`, `"`+when+`"`), "10", when, nil},
		"deployment id as a string, padded":                      {status(`11`, `" 10 "`, `"`+when+`"`), "10", when, nil},
		"naive, a T":                                             {status(`11`, `10`, `"2026-11-02T14:00:00"`), "10", when, nil},
		"an offset without a colon":                              {status(`11`, `10`, `"2026-11-02T16:00:00+0200"`), "10", when, nil},
		"an offset of hours only":                                {status(`11`, `10`, `"2026-11-02 16:00:00+02"`), "10", when, nil},
		"fractional seconds and an offset":                       {status(`11`, `10`, `"2026-11-02T14:00:00.5+00:00"`), "10", "2026-11-02T14:00:00.5Z", nil},
		"lower-case t and z":                                     {status(`11`, `10`, `"2026-11-02t14:00:00z"`), "10", when, nil},
		"Go's time.String":                                       {status(`11`, `10`, `"2026-11-02 15:00:00 +0100 CET"`), "10", when, nil},
		"epoch seconds":                                          {status(`11`, `10`, epoch), "10", when, nil},
		"epoch seconds with a fraction":                          {status(`11`, `10`, epoch+`.25`), "10", "2026-11-02T14:00:00.25Z", nil},
		"epoch milliseconds":                                     {status(`11`, `10`, epoch+`000`), "", "", github.ErrInvalid},
		"an id that is an object":                                {status(`{"a":1}`, `10`, `"`+when+`"`), "", "", github.ErrInvalid},
		"an id that is a fraction, as json.Number read it":       {status(`1.5`, ``, `"`+when+`"`), "1.5", when, nil},
		"an id that is a boolean":                                {status(`true`, `10`, `"`+when+`"`), "", "", github.ErrInvalid},
		"a time that is not one":                                 {status(`11`, `10`, `"soon"`), "", "", github.ErrInvalid},
	} {
		d, err := github.Parse("deployment_status", tc.body, github.Options{})
		if tc.wantErr != nil {
			require.ErrorIs(t, err, tc.wantErr, name)
			continue
		}
		require.NoError(t, err, name)
		require.Len(t, d.Set.Deployments, 1, name)
		require.Equal(t, tc.key, d.Set.Deployments[0].Key, name)
		require.Equal(t, tc.key, d.Set.Deployments[0].DeploymentID, name)
		require.Equal(t, at(t, tc.at), d.Set.Deployments[0].DeployedAt, name)
	}
}

// A pull request's and an issue's number map the same whether it is 5 or "5". A number that
// is no integer cannot be a pull_request_id (bigint): the change is kept without it, with a
// warning, and the delivery's payload keeps what was sent.
func TestParseNumbersAsStrings(t *testing.T) {
	t.Parallel()
	repo := `"repository":{"full_name":"acme/api"}`
	pr := func(number string) []byte {
		return []byte(`{"action":"opened","pull_request":{"number":` + number + `,"created_at":"2026-11-02 14:00:00 UTC","head":{"sha":"c2c2c2c2"}},` + repo + `}`)
	}
	for number, want := range map[string]int64{`5`: 5, `"5"`: 5, `" 5"`: 5} {
		d, err := github.Parse("pull_request", pr(number), github.Options{})
		require.NoError(t, err, number)
		require.Equal(t, want, *d.Set.Changes[0].PullRequestID, number)
		require.Equal(t, want, *d.Set.Event.PullRequestID, number)
		require.Empty(t, d.Warnings, number)
	}
	for _, number := range []string{`"PR-5"`, `"99999999999999999999"`, `-3`, `"0"`} {
		d, err := github.Parse("pull_request", pr(number), github.Options{})
		require.NoError(t, err, number)
		require.Len(t, d.Set.Changes, 1, number)
		require.Nil(t, d.Set.Changes[0].PullRequestID, number)
		require.Nil(t, d.Set.Event.PullRequestID, number)
		require.Len(t, d.Warnings, 1, number)
		require.Contains(t, d.Warnings[0], "pull_request.number", number)
	}
	review := []byte(`{"action":"submitted","review":{"state":"approved","submitted_at":"2026-11-02T14:00:00","commit_id":"c2c2c2c2"},"pull_request":{"number":"5","head":{"sha":"c2c2c2c2"}},` + repo + `}`)
	d, err := github.Parse("pull_request_review", review, github.Options{})
	require.NoError(t, err)
	require.Equal(t, int64(5), *d.Set.Changes[0].PullRequestID)

	issue := func(number string) []byte {
		return []byte(`{"action":"closed","issue":{"number":` + number + `,"created_at":"2026-11-02 14:00:00","closed_at":1793631600,"labels":[{"name":"Incident"}]},` + repo + `}`)
	}
	for _, number := range []string{`9`, `"9"`} {
		d, err := github.Parse("issues", issue(number), github.Options{})
		require.NoError(t, err, number)
		require.Equal(t, "acme/api#9", d.Set.Incidents[0].IncidentID, number)
		require.Equal(t, at(t, "2026-11-02T15:00:00Z"), *d.Set.Incidents[0].ResolvedAt, number)
	}
	d, err = github.Parse("issues", issue(`"INC-7"`), github.Options{})
	require.NoError(t, err, "an incident id is text: any string names it")
	require.Equal(t, "acme/api#INC-7", d.Set.Incidents[0].IncidentID)
	_, err = github.Parse("issues", issue(`""`), github.Options{})
	require.ErrorIs(t, err, github.ErrInvalid)

	run := func(id, attempt string) []byte {
		return []byte(`{"action":"completed","workflow_run":{"id":` + id + `,"run_attempt":` + attempt + `,"name":"Deploy","head_sha":"c2c2c2c2","conclusion":"success","updated_at":"2026-11-02T14:00:00.000Z"},` + repo + `}`)
	}
	for _, v := range [][2]string{{`42`, `2`}, {`"42"`, `"2"`}} {
		d, err := github.Parse("workflow_run", run(v[0], v[1]), github.Options{DeployWorkflows: []string{"Deploy"}})
		require.NoError(t, err, v)
		require.Equal(t, "run:42/2", d.Set.Deployments[0].Key, v)
	}
}
