package cdevents_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/cdevents"
)

// Tools that imitate CDEvents write ids as numbers where the spec asks for strings, and times
// in other forms than RFC 3339: each variant maps as the spec's own form does, and 7 and "7"
// are one CloudEvent, one deployment, one incident.
func TestParseToleratesImitators(t *testing.T) {
	t.Parallel()
	cloudEvent := func(id, typ, contextID, timestamp, subject string) []byte {
		return []byte(`{"specversion":"1.0","id":` + id + `,"source":"/ci","type":"dev.cdevents.` + typ + `.0.2.0",` +
			`"datacontenttype":"application/json","data":{"context":{"specversion":"0.5.0","id":` + contextID +
			`,"source":"/ci","type":"dev.cdevents.` + typ + `.0.2.0","timestamp":` + timestamp + `},"subject":` + subject + `}}`)
	}
	deployed := func(id, timestamp, env string) []byte {
		return cloudEvent(id, "service.deployed", id, timestamp, `{"id":"api","content":{"environment":{"id":`+env+`},"artifactId":"pkg:golang/api@1a2b3c4d"}}`)
	}
	const when = "2026-11-02T14:00:00Z"
	for name, tc := range map[string]struct {
		body    []byte
		env, at string
		wantErr error
	}{
		"the spec's own":                {deployed(`"7"`, `"2026-11-02T14:00:00Z"`, `"production"`), "production", when, nil},
		"ids as numbers":                {deployed(`7`, `"2026-11-02T14:00:00Z"`, `3`), "3", when, nil},
		"naive, with a fraction":        {deployed(`7`, `"2026-11-02T14:00:00.000"`, `"production"`), "production", when, nil},
		"a space and UTC":               {deployed(`7`, `"2026-11-02 14:00:00 UTC"`, `"production"`), "production", when, nil},
		"an offset without colon":       {deployed(`7`, `"2026-11-02T15:00:00+0100"`, `"production"`), "production", when, nil},
		"epoch seconds":                 {deployed(`7`, `1793628000`, `"production"`), "production", when, nil},
		"an id that is an object":       {deployed(`{}`, `"2026-11-02T14:00:00Z"`, `"production"`), "", "", cdevents.ErrInvalid},
		"an environment that is a list": {deployed(`7`, `"2026-11-02T14:00:00Z"`, `["production"]`), "", "", cdevents.ErrInvalid},
	} {
		envs, err := cdevents.Read(cdevents.MediaStructured, noHeaders, tc.body, 10)
		if err == nil {
			var d cdevents.Delivery
			d, err = cdevents.Parse(envs[0], cdevents.Options{})
			if err == nil {
				require.Equal(t, "7", envs[0].ID, name)
				// The deployment is keyed by the CloudEvent, the same whether its id was 7 or "7".
				require.Equal(t, envs[0].Key(), d.Set.Deployments[0].Key, name)
				require.Equal(t, "7", d.Set.Deployments[0].DeploymentID, name)
				require.Equal(t, tc.env, d.Set.Deployments[0].Environment, name)
				require.Equal(t, at(t, tc.at), d.Set.Deployments[0].DeployedAt, name)
			}
		}
		if tc.wantErr != nil {
			require.ErrorIs(t, err, tc.wantErr, name)
			continue
		}
		require.NoError(t, err, name)
	}
	a, err := cdevents.Read(cdevents.MediaStructured, noHeaders, deployed(`7`, `1793628000`, `"production"`), 10)
	require.NoError(t, err)
	b, err := cdevents.Read(cdevents.MediaStructured, noHeaders, deployed(`"7"`, `"2026-11-02T14:00:00Z"`, `"production"`), 10)
	require.NoError(t, err)
	require.Equal(t, a[0].MessageID(), b[0].MessageID(), "7 and \"7\" are one CloudEvent: a resend counts once")

	// An incident's id (subject.id) and its service's: 42 and "42" are one incident of one pipeline.
	for _, id := range []string{`42`, `"42"`} {
		body := cloudEvent(`"i1"`, "incident.detected", `"i1"`, `"2026-11-02 14:00:00"`, `{"id":`+id+`,"content":{"service":{"id":`+id+`}}}`)
		envs, err := cdevents.Read(cdevents.MediaStructured, noHeaders, body, 10)
		require.NoError(t, err, id)
		d, err := cdevents.Parse(envs[0], cdevents.Options{})
		require.NoError(t, err, id)
		require.Equal(t, "42", d.Set.Incidents[0].IncidentID, id)
		require.Equal(t, "42", d.Set.Incidents[0].PipelineID, id)
		require.Equal(t, at(t, when), *d.Set.Incidents[0].OpenedAt, id)
	}
}
