package cdevents_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/cdevents"
	"github.com/devopstic/devopstic/pkg/cdevents/cdeventstest"
	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/webhook"
	"github.com/devopstic/devopstic/pkg/webhook/webhooktest"
)

var fixture, at = webhooktest.Fixture, webhooktest.Time

var versions = []string{"v0.4", "v0.5"}

// The spec's examples' times and ids.
const (
	exampleTime    = "2023-03-20T14:27:05.315384Z"
	incidentTime   = "2022-11-11T13:52:20.079Z"
	exampleDigest  = "sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"
	resolvedDigest = "sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93439"
)

func header(pairs ...string) func(string) string {
	h := http.Header{}
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Set(pairs[i], pairs[i+1])
	}
	return h.Get
}

func noHeaders(string) string { return "" }

// read is Read and Parse of a request holding one event.
func read(t *testing.T, contentType string, h func(string) string, body []byte, opts cdevents.Options) (cdevents.Envelope, cdevents.Delivery, error) {
	t.Helper()
	envs, err := cdevents.Read(contentType, h, body, 100)
	if err != nil {
		return cdevents.Envelope{}, cdevents.Delivery{}, err
	}
	require.Len(t, envs, 1)
	d, err := cdevents.Parse(envs[0], opts)
	return envs[0], d, err
}

// Each of the spec's examples, of both versions, maps to the facts the mapping says, alike in
// structured and binary mode; Decode, the writer's path, maps the stream message the same.
func TestSpecExamples(t *testing.T) {
	t.Parallel()
	deployed := func(kind string) func(t *testing.T, s fact.Set) {
		return func(t *testing.T, s fact.Set) {
			require.Equal(t, kind, s.Event.Kind)
			require.Equal(t, "mySubject123", s.Event.PipelineID)
			require.Len(t, s.Deployments, 1)
			d := s.Deployments[0]
			require.Equal(t, fact.Deployment{Source: "cdevents", PipelineID: "mySubject123", Environment: "test123",
				Key: d.Key, DeploymentID: "271069a8-fc18-44f1-b38f-9d70a1695819", Status: "success",
				DeployedAt: at(t, exampleTime), CommitID: exampleDigest, Commits: []string{exampleDigest}}, d)
			require.Equal(t, []fact.Change{{PipelineID: "mySubject123", CommitID: exampleDigest}}, s.Changes)
			if kind != "service_rolledback" {
				require.Empty(t, s.Incidents, "only a rollback marks what it links to")
				return
			}
			// The example links (as its trigger, and as the chain's previous event) to one
			// event: taken for the deployment it reverts.
			when := at(t, exampleTime)
			require.Equal(t, []fact.Incident{{Source: "cdevents", PipelineID: "mySubject123", Environment: "test123",
				IncidentID: s.Incidents[0].IncidentID, ResolvedAt: &when, CauseDeploymentID: "5328c37f-bb7e-4bb7-84ea-9f5f85e4a7ce"}}, s.Incidents)
		}
	}
	change := func(kind string, submitted bool) func(t *testing.T, s fact.Set) {
		return func(t *testing.T, s fact.Set) {
			require.Equal(t, kind, s.Event.Kind)
			when := at(t, exampleTime)
			c := fact.Change{PipelineID: "TestRepo/TestOrg", CommitID: "mySubject123"}
			if submitted {
				c.SubmittedAt = &when
			} else {
				c.ApprovedAt = &when
			}
			require.Equal(t, []fact.Change{c}, s.Changes)
			require.Equal(t, when, s.Event.OccurredAt)
		}
	}
	opened := func(kind string) func(t *testing.T, s fact.Set) {
		return func(t *testing.T, s fact.Set) {
			require.Equal(t, kind, s.Event.Kind)
			when := at(t, incidentTime)
			require.Equal(t, []fact.Incident{{Source: "cdevents", IncidentID: "incident-123", PipelineID: "myApp", Environment: "prod1",
				OpenedAt: &when, CauseCommitID: exampleDigest}}, s.Incidents)
			require.Equal(t, "failure", s.Event.Status)
		}
	}
	for name, check := range map[string]func(t *testing.T, s fact.Set){
		"change_created":     change("change_created", true),
		"change_reviewed":    change("change_reviewed", false),
		"change_merged":      change("change_merged", false),
		"service_deployed":   deployed("service_deployed"),
		"service_upgraded":   deployed("service_upgraded"),
		"service_rolledback": deployed("service_rolledback"),
		"incident_detected":  opened("incident_detected"),
		"incident_reported":  opened("incident_reported"),
		"incident_resolved": func(t *testing.T, s fact.Set) {
			when := at(t, incidentTime)
			require.Equal(t, []fact.Incident{{Source: "cdevents", IncidentID: "incident-123", PipelineID: "myApp", Environment: "prod1",
				ResolvedAt: &when}}, s.Incidents, "a resolution's artifact fixed the incident: it names no cause")
			require.Equal(t, "success", s.Event.Status)
		},
	} {
		for _, v := range versions {
			t.Run(v+"/"+name, func(t *testing.T) {
				t.Parallel()
				cd := fixture(t, v+"/"+name+".json")
				env, structured, err := read(t, cdevents.MediaStructured, noHeaders, cdeventstest.Structured(t, cd), cdevents.Options{})
				require.NoError(t, err)
				check(t, structured.Set)
				webhooktest.RequireComplete(t, withoutResolutions(structured.Set))
				require.Equal(t, "cdevents", structured.Set.Event.Source)

				benv, binary, err := read(t, "application/json", header(cdeventstest.BinaryHeaders(t, cd)...), cd, cdevents.Options{})
				require.NoError(t, err)
				require.Equal(t, env.MessageID(), benv.MessageID(), "the mode does not change the CloudEvent's identity")
				structured.Set.Event.Payload, binary.Set.Event.Payload = nil, nil
				require.Equal(t, structured.Set, binary.Set)

				// The writer's path: the stream message as the ingest publishes it.
				h := webhook.Header{cdevents.HeaderOptions: {`{}`}}
				for k, v := range benv.Headers() {
					h[k] = []string{v}
				}
				decoded, err := cdevents.Decode(h, benv.Raw)
				require.NoError(t, err)
				decoded.Event.Payload = nil
				require.Equal(t, binary.Set, decoded)
				decoded, err = cdevents.Decode(webhook.Header{}, env.Raw)
				require.NoError(t, err)
				decoded.Event.Payload = nil
				require.Equal(t, structured.Set, decoded)
			})
		}
	}
}

// withoutResolutions leaves out the incidents that only a resolution names, which
// RequireComplete (every incident has an opening) does not expect.
func withoutResolutions(s fact.Set) fact.Set {
	var kept []fact.Incident
	for _, i := range s.Incidents {
		if i.OpenedAt != nil {
			kept = append(kept, i)
		}
	}
	s.Incidents = kept
	return s
}

func TestBatch(t *testing.T) {
	t.Parallel()
	var cds [][]byte
	for i, name := range []string{"change_created", "service_deployed", "incident_detected"} {
		cds = append(cds, cdeventstest.WithID(t, fixture(t, "v0.5/"+name+".json"), fmt.Sprint("batch-", i)))
	}
	envs, err := cdevents.Read(cdevents.MediaBatch+"; charset=utf-8", noHeaders, cdeventstest.Batch(t, cds...), 100)
	require.NoError(t, err)
	require.Len(t, envs, 3)
	ids := map[string]bool{}
	for i, e := range envs {
		require.Equal(t, i, e.Index)
		_, err := cdevents.Parse(e, cdevents.Options{})
		require.NoError(t, err)
		ids[e.MessageID()] = true
	}
	require.Len(t, ids, 3)

	_, err = cdevents.Read(cdevents.MediaBatch, noHeaders, cdeventstest.Batch(t, cds...), 2)
	require.ErrorIs(t, err, event.ErrTooMany)
	_, err = cdevents.Read(cdevents.MediaBatch, noHeaders, cdeventstest.Structured(t, cds[0]), 100)
	require.ErrorIs(t, err, cdevents.ErrInvalid)
	require.ErrorContains(t, err, "JSON array")
	// One bad event spoils the batch, and is named by its place.
	bad := strings.Replace(string(cdeventstest.Batch(t, cds...)), `"specversion":"1.0"`, `"specversion":"0.3"`, 1)
	_, err = cdevents.Read(cdevents.MediaBatch, noHeaders, []byte(bad), 100)
	require.ErrorIs(t, err, cdevents.ErrInvalid)
	require.ErrorContains(t, err, "[0].specversion")
}

// The URL's pipeline and environment win over the event's, for every kind.
func TestOptions(t *testing.T) {
	t.Parallel()
	opts := cdevents.Options{PipelineID: "checkout", Environment: "production"}
	for _, name := range []string{"change_merged", "service_deployed", "incident_detected"} {
		_, d, err := read(t, cdevents.MediaStructured, noHeaders, cdeventstest.Structured(t, fixture(t, "v0.5/"+name+".json")), opts)
		require.NoError(t, err)
		require.Equal(t, "checkout", d.Set.Event.PipelineID, name)
		for _, dep := range d.Set.Deployments {
			require.Equal(t, "production", dep.Environment)
		}
		for _, i := range d.Set.Incidents {
			require.Equal(t, "production", i.Environment)
		}
	}
}

// The rollback rule: a rollback is a deployment, and each deployment it links to (by the
// CloudEvent id of the event that deployed it) is the cause of an incident that only the
// rollback resolves, which counts that deployment as failed.
func TestRollbackMarksTheDeploymentsItLinksAsFailed(t *testing.T) {
	t.Parallel()
	cd := cdeventstest.Set(t, fixture(t, "v0.5/service_rolledback.json"), func(cd map[string]any) {
		cd["context"].(map[string]any)["links"] = []any{
			map[string]any{"linkType": "RELATION", "linkKind": "REVERTS", "target": map[string]any{"contextId": "deploy-42"}},
			map[string]any{"linkType": "PATH", "from": map[string]any{"contextId": "deploy-42"}},
			map[string]any{"linkType": "END", "from": map[string]any{"contextId": "271069a8-fc18-44f1-b38f-9d70a1695819"}},
		}
	})
	env, d, err := read(t, cdevents.MediaStructured, noHeaders, cdeventstest.Structured(t, cd), cdevents.Options{})
	require.NoError(t, err)
	require.Len(t, d.Set.Deployments, 1)
	require.Equal(t, "success", d.Set.Deployments[0].Status, "a rollback is a deployment")
	when := at(t, exampleTime)
	require.Equal(t, []fact.Incident{{Source: "cdevents", IncidentID: "rollback:" + env.Key() + ":deploy-42", PipelineID: "mySubject123",
		Environment: "test123", ResolvedAt: &when, CauseDeploymentID: "deploy-42"}}, d.Set.Incidents,
		"one per deployment named, never the rollback itself")

	// A deployment's links name nothing failed.
	deployed := cdeventstest.Set(t, cd, func(cd map[string]any) {
		cd["context"].(map[string]any)["type"] = "dev.cdevents.service.deployed.0.3.0"
	})
	doc := strings.Replace(string(cdeventstest.Structured(t, deployed)), "rolledback", "deployed", 1)
	_, d, err = read(t, cdevents.MediaStructured, noHeaders, []byte(doc), cdevents.Options{})
	require.NoError(t, err)
	require.Empty(t, d.Set.Incidents)
}

func TestBadEvents(t *testing.T) {
	t.Parallel()
	deployed := fixture(t, "v0.5/service_deployed.json")
	good := cdeventstest.Structured(t, deployed)
	edit := func(doc []byte, f func(ce map[string]any)) []byte { return cdeventstest.Set(t, doc, f) }
	data := func(f func(cd map[string]any)) []byte {
		return edit(good, func(ce map[string]any) { f(ce["data"].(map[string]any)) })
	}
	content := func(f func(c map[string]any)) []byte {
		return data(func(cd map[string]any) { f(cd["subject"].(map[string]any)["content"].(map[string]any)) })
	}
	for name, tc := range map[string]struct {
		contentType string
		headers     []string
		body        []byte
		wantErr     error
		message     string
	}{
		"plain JSON":               {"application/json", nil, deployed, cdevents.ErrMedia, "ce-* headers"},
		"no content type":          {"", nil, good, cdevents.ErrMedia, "application/cloudevents+json"},
		"binary, not JSON":         {"text/plain", cdeventstest.BinaryHeaders(t, deployed), deployed, cdevents.ErrMedia, "application/json"},
		"not JSON":                 {cdevents.MediaStructured, nil, []byte(`{"specversion":`), cdevents.ErrInvalid, "not a JSON object"},
		"an array":                 {cdevents.MediaStructured, nil, []byte(`[]`), cdevents.ErrInvalid, "not a JSON object"},
		"no id":                    {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { delete(ce, "id") }), cdevents.ErrInvalid, "id is missing"},
		"no source":                {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { ce["source"] = "" }), cdevents.ErrInvalid, "source is missing"},
		"an object for an id":      {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { ce["id"] = map[string]any{} }), cdevents.ErrInvalid, "id must be a string or a number"},
		"CloudEvents 0.3":          {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { ce["specversion"] = "0.3" }), cdevents.ErrInvalid, `specversion is "0.3"`},
		"binary without ce-id":     {"application/json", []string{"ce-specversion", "1.0", "ce-source", "s", "ce-type", "dev.cdevents.service.deployed.0.3.0"}, deployed, cdevents.ErrInvalid, "header ce-id is missing"},
		"binary header with a tab": {"application/json", append(cdeventstest.BinaryHeaders(t, deployed), "ce-subject", "a\tb"), deployed, cdevents.ErrInvalid, "header Ce-Subject"},
		"base64 data":              {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { delete(ce, "data"); ce["data_base64"] = "e30=" }), cdevents.ErrInvalid, "data_base64"},
		"XML data":                 {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { ce["datacontenttype"] = "application/xml" }), cdevents.ErrInvalid, "datacontenttype"},
		"a NUL in the data":        {cdevents.MediaStructured, nil, []byte(strings.Replace(string(good), "test123", `\u0000`, 1)), cdevents.ErrInvalid, "text Postgres cannot store"},

		"unknown CDEvent": {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { ce["type"] = "dev.cdevents.pipelinerun.started.0.2.0" }), cdevents.ErrIgnored, "does not use pipelinerun.started"},
		"not a CDEvent":   {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { ce["type"] = "com.example.object.created" }), cdevents.ErrIgnored, "not a CDEvent type"},
		"no data":         {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { delete(ce, "data") }), cdevents.ErrInvalid, "data must be the CDEvent"},
		"data a string":   {cdevents.MediaStructured, nil, edit(good, func(ce map[string]any) { ce["data"] = "{}" }), cdevents.ErrInvalid, "data must be the CDEvent"},
		"no context":      {cdevents.MediaStructured, nil, data(func(cd map[string]any) { delete(cd, "context") }), cdevents.ErrInvalid, "data.context is missing"},
		"no spec version": {cdevents.MediaStructured, nil, data(func(cd map[string]any) { delete(cd["context"].(map[string]any), "specversion") }), cdevents.ErrInvalid, "data.context.specversion is missing"},
		"CDEvents 0.3":    {cdevents.MediaStructured, nil, data(func(cd map[string]any) { cd["context"].(map[string]any)["specversion"] = "0.3.0" }), cdevents.ErrInvalid, `data.context.specversion is "0.3.0"`},
		"types disagree":  {cdevents.MediaStructured, nil, data(func(cd map[string]any) { cd["context"].(map[string]any)["type"] = "dev.cdevents.service.removed.0.3.0" }), cdevents.ErrInvalid, "data.context.type"},
		"no time":         {cdevents.MediaStructured, nil, edit(data(func(cd map[string]any) { delete(cd["context"].(map[string]any), "timestamp") }), func(ce map[string]any) { delete(ce, "time") }), cdevents.ErrInvalid, "data.context.timestamp is missing"},
		"a bad time":      {cdevents.MediaStructured, nil, data(func(cd map[string]any) { cd["context"].(map[string]any)["timestamp"] = "yesterday" }), cdevents.ErrInvalid, "data.context.timestamp"},
		"no subject id":   {cdevents.MediaStructured, nil, data(func(cd map[string]any) { delete(cd["subject"].(map[string]any), "id") }), cdevents.ErrInvalid, "data.subject.id is missing"},
		"no environment":  {cdevents.MediaStructured, nil, content(func(c map[string]any) { delete(c, "environment") }), cdevents.ErrInvalid, "data.subject.content.environment.id is missing"},
		"no artifact":     {cdevents.MediaStructured, nil, content(func(c map[string]any) { delete(c, "artifactId") }), cdevents.ErrInvalid, "data.subject.content.artifactId is missing"},
		"binary, no artifact": {"application/json", cdeventstest.BinaryHeaders(t, deployed), cdeventstest.Set(t, deployed, func(cd map[string]any) {
			delete(cd["subject"].(map[string]any)["content"].(map[string]any), "artifactId")
		}), cdevents.ErrInvalid, "body.subject.content.artifactId is missing"},
		"an incident with no service": {cdevents.MediaStructured, nil, edit(cdeventstest.Structured(t, cdeventstest.Set(t, fixture(t, "v0.4/incident_detected.json"), func(cd map[string]any) { delete(cd["subject"].(map[string]any)["content"].(map[string]any), "service") })), func(map[string]any) {}), cdevents.ErrInvalid, "data.subject.content.service.id is missing (or add ?pipeline_id="},
		"a change with no repository": {cdevents.MediaStructured, nil, cdeventstest.Structured(t, cdeventstest.Set(t, fixture(t, "v0.4/change_merged.json"), func(cd map[string]any) {
			delete(cd["subject"].(map[string]any)["content"].(map[string]any), "repository")
		})), cdevents.ErrInvalid, "data.subject.content.repository.id is missing"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, _, err := read(t, tc.contentType, header(tc.headers...), tc.body, cdevents.Options{})
			require.ErrorIs(t, err, tc.wantErr)
			require.ErrorContains(t, err, tc.message)
		})
	}
}

// Lenient where the spec is strict: a time without its zone, an artifactId that is no purl, a
// type without its version.
func TestLenient(t *testing.T) {
	t.Parallel()
	cd := cdeventstest.Set(t, fixture(t, "v0.5/service_deployed.json"), func(cd map[string]any) {
		cd["context"].(map[string]any)["timestamp"] = "2026-11-02 09:00:00"
		delete(cd["context"].(map[string]any), "type")
		cd["subject"].(map[string]any)["content"].(map[string]any)["artifactId"] = "v1.2.3"
	})
	h := header("ce-specversion", "1.0", "ce-id", "x", "ce-source", "/ci", "ce-type", "dev.cdevents.service.deployed")
	_, d, err := read(t, "", h, cd, cdevents.Options{})
	require.NoError(t, err)
	require.Equal(t, "v1.2.3", d.Set.Deployments[0].CommitID)
	require.Equal(t, at(t, "2026-11-02T09:00:00Z"), d.Set.Deployments[0].DeployedAt)
}

func TestCommit(t *testing.T) {
	t.Parallel()
	for artifact, want := range map[string]string{
		"pkg:oci/myapp@sha256%3A0b31b1c0":                         "sha256:0b31b1c0",
		"pkg:golang/mygit.com/myorg/myapp@234fd47e07d1004f0aed9c": "234fd47e07d1004f0aed9c",
		"pkg:github/acme/api@1a2b3c4d?repository_url=x#sub":       "1a2b3c4d",
		"pkg:npm/%40angular/animation@12.3.1":                     "12.3.1",
		"pkg:oci/myapp":                                           "pkg:oci/myapp",
		"pkg:oci/myapp@":                                          "pkg:oci/myapp@",
		"927aa808433d17e3":                                        "927aa808433d17e3",
		"six-1.14.0-py2.py3-none-any.whl":                         "six-1.14.0-py2.py3-none-any.whl",
	} {
		require.Equal(t, want, cdevents.Commit(artifact), artifact)
	}
}

// A CloudEvent is its source and id: the same pair is the same message, another pair another,
// even one that joins to the same text.
func TestMessageID(t *testing.T) {
	t.Parallel()
	e := func(source, id string) string { return cdevents.Envelope{Source: source, ID: id}.MessageID() }
	require.Equal(t, e("/ci", "1"), e("/ci", "1"))
	require.NotEqual(t, e("/ci", "1"), e("/ci", "2"))
	require.NotEqual(t, e("/ci", "1"), e("/cd", "1"))
	require.NotEqual(t, e("/ci1", "2"), e("/ci", "12"))
	require.True(t, strings.HasPrefix(e("/ci", "1"), "cdevents:"))
}

func TestEventType(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]string{
		"dev.cdevents.service.deployed.0.3.0": "service.deployed",
		"dev.cdevents.change.created":         "change.created",
		"dev.cdevents.change":                 "",
		"dev.cdevents..created.0.1.0":         "",
		"dev.cdevents.change..0.1.0":          "",
		"io.cdevents.change.created.0.1.0":    "",
	} {
		name, _, ok := cdevents.EventType(typ)
		require.Equal(t, want, name, typ)
		require.Equal(t, want != "", ok, typ)
	}
}
