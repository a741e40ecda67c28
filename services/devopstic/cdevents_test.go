package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/cdevents"
	"github.com/devopstic/devopstic/pkg/cdevents/cdeventstest"
)

// CloudEvents HTTP modes, as sendCDEvents sends them.
const (
	structuredMode = "structured"
	binaryMode     = "binary"
	batchMode      = "batch"
)

// sendCDEvents posts CDEvents to path (/cdevents, with its query) as CloudEvents in mode, with
// the stack's token; a structured or binary request carries one event.
func (s *stack) sendCDEvents(mode, path string, cds ...[]byte) (int, string) {
	s.t.Helper()
	var status int
	var out []byte
	switch mode {
	case structuredMode:
		require.Len(s.t, cds, 1)
		status, out = s.do("POST", path, cdevents.MediaStructured, cdeventstest.Structured(s.t, cds[0]))
	case binaryMode:
		require.Len(s.t, cds, 1)
		status, out = s.do("POST", path, "application/json", cds[0], cdeventstest.BinaryHeaders(s.t, cds[0])...)
	case batchMode:
		status, out = s.do("POST", path, cdevents.MediaBatch, cdeventstest.Batch(s.t, cds...))
	default:
		s.t.Fatalf("no mode %q", mode)
	}
	return status, string(out)
}

// doraKeys reads a DORA report's keys (its objects, such as deployment_frequency), by name.
func (s *stack) doraKeys(path string) map[string]map[string]any {
	s.t.Helper()
	var report map[string]json.RawMessage
	require.NoError(s.t, json.Unmarshal([]byte(s.getJSON(path)), &report))
	keys := map[string]map[string]any{}
	for name, raw := range report {
		var key map[string]any
		if json.Unmarshal(raw, &key) == nil {
			keys[name] = key
		}
	}
	return keys
}

// cdeventsExamples are the spec's examples of a version (testdata/v0.4, v0.5), by file name,
// each with a context id of its own (the examples of a version share one).
func cdeventsExamples(t *testing.T, version string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("../../pkg/cdevents/testdata/" + version + "/*.json")
	require.NoError(t, err)
	require.Len(t, files, 9)
	out := map[string][]byte{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		out[name] = cdeventstest.WithID(t, mustRead(t, f), version+"-"+name)
	}
	return out
}

// Every example of the spec, of both versions, goes through HTTP, the stream and the writer into
// the tables and the metrics: 0.4 in structured mode, 0.5 in binary mode, then all of them again
// in one batch, which changes nothing (a CloudEvent's source and id are its identity).
func TestCDEventsSpecExamplesReachTheMetrics(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	v04, v05 := cdeventsExamples(t, "v0.4"), cdeventsExamples(t, "v0.5")
	var all [][]byte
	for name, cd := range v04 {
		status, out := s.sendCDEvents(structuredMode, "/cdevents", cd)
		require.Equal(t, http.StatusAccepted, status, "%s: %s", name, out)
		require.Contains(t, out, `"accepted":1`)
		all = append(all, cd)
	}
	for name, cd := range v05 {
		status, out := s.sendCDEvents(binaryMode, "/cdevents", cd)
		require.Equal(t, http.StatusAccepted, status, "%s: %s", name, out)
		all = append(all, cd)
	}
	s.waitCount(18, `SELECT count(*) FROM events WHERE source = 'cdevents'`)
	status, out := s.sendCDEvents(batchMode, "/cdevents", all...)
	require.Equal(t, http.StatusAccepted, status, out)
	require.Contains(t, out, `"accepted":18`)
	s.waitDrained()
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))
	require.Equal(t, 18, s.count(`SELECT count(*) FROM events`), "the resent batch counted once")

	// Binary mode kept its attributes beside the CDEvent; structured mode its document.
	require.Equal(t, 9, s.count(`SELECT count(*) FROM events WHERE headers->'Ce-Id' IS NOT NULL AND payload ? 'context'`))
	require.Equal(t, 9, s.count(`SELECT count(*) FROM events WHERE payload->>'specversion' = '1.0' AND payload->'data' ? 'context'`))

	// Times from the events, and every kind in its table.
	require.Equal(t, 1, s.count(`SELECT count(*) FROM changes WHERE pipeline_id = 'TestRepo/TestOrg' AND commit_id = 'mySubject123'
		AND submitted_at = '2023-03-20T14:27:05.315384Z' AND approved_at = '2023-03-20T14:27:05.315384Z'`))
	require.Equal(t, 6, s.count(`SELECT count(*) FROM deployments WHERE source = 'cdevents' AND pipeline_id = 'mySubject123'
		AND environment = 'test123' AND status = 'success' AND deployed_at = '2023-03-20T14:27:05.315384Z'
		AND commit_id = 'sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM incidents WHERE source = 'cdevents' AND incident_id = 'incident-123'
		AND pipeline_id = 'myApp' AND environment = 'prod1' AND opened_at = '2022-11-11T13:52:20.079Z'
		AND cause_commit_id = 'sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427'`))
	require.Equal(t, 2, s.count(`SELECT count(*) FROM incidents WHERE incident_id LIKE 'rollback:%'
		AND cause_deployment_id = '5328c37f-bb7e-4bb7-84ea-9f5f85e4a7ce' AND opened_at IS NULL`),
		"each rollback names the event its links point at as what it reverts")

	r := s.doraKeys("/api/v1/metrics/dora?pipeline_id=mySubject123&environment=test123&from=2023-03-20&to=2023-03-21")
	require.Equal(t, 6.0, r["deployment_frequency"]["deployments"])
	require.Equal(t, 0.0, r["change_failure_rate"]["failed"], "the examples' links name no deployment")
	r = s.doraKeys("/api/v1/metrics/dora?pipeline_id=myApp&environment=prod1&from=2022-11-11&to=2022-11-12")
	// The examples resolve the incident at the instant it opened: not a restore, so still open.
	require.Equal(t, 1.0, r["failed_deployment_recovery_time"]["open_incidents"])

	// The tables are a function of the stream: both modes map again to the same rows, from the
	// events table (the binary attributes from its headers) and from the stream.
	want := fullDump(t, s.db)
	_, err := s.db.Exec(context.Background(), `DELETE FROM deployments; DELETE FROM incidents; DELETE FROM changes`)
	require.NoError(t, err)
	for _, args := range [][]string{{"rebuild"}, {"rebuild", "--from-stream"}} {
		out, err := s.admin(args...)
		require.NoError(t, err, out)
		require.Contains(t, out, "18 events mapped")
		compareDumps(t, strings.Join(args, " "), want, fullDump(t, s.db))
	}
}

// A flow of CDEvents in every mode, sent in reverse order, some twice, gives the figures DORA.md
// defines, worked out by hand. Pipeline acme/api (the repository's and the service's id),
// production, t0 = Monday 2026-11-02 09:00 UTC; c1, c2, c3 are commits (the changes' ids and the
// artifacts' purl versions).
//
//	t0     c1 created        t0+1h  c1 reviewed     t0+2h  c1 merged
//	t0+3h  D1 deployed c1
//	t0+4h  c2 created        t0+5h  c2 merged (no review: approved at the merge)
//	t0+6h  D2 upgraded to c2
//	t0+7h  R1 rolled back to c1, linking to D2's event: D2 failed
//	t0+8h  c3 created        t0+9h  c3 reviewed     t0+10h c3 merged
//	t0+12h D3 upgraded to c3
//	t0+13h inc-1 detected, its artifact c3: D3 (the first to ship c3) failed;  t0+15h inc-1 resolved
//	t0+20h inc-2 reported, no artifact;  t0+21h inc-2 resolved
//
// Deployment frequency: D1, D2, R1, D3 = 4 in the week, 4/7 = 0.5714 a day, 4 a week.
// Change failure rate: D2 (the rollback) and D3 (inc-1) of 4 = 0.5.
// Lead time, each change from its earliest time to its first deployment: c1 3h (R1 ships it
// again, later), c2 2h, c3 4h: median 3h, mean 3h, p90 3h + 0.8 × 1h = 3.8h. Review (approved −
// submitted): 1h, 1h, 1h. Deployment (deployed − approved): 2h, 1h, 3h: median 2h.
// Failed deployment recovery time: inc-1 2h, inc-2 1h: median and mean 1.5h, p90 1h + 0.9 × 1h = 1.9h; none
// open, and the rollback's incident (no opening) is not one. Rework: no deployment while an
// incident was open.
func TestCDEventsFlowGivesTheDORAFigures(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	ts := func(h float64) string { return t0.Add(time.Duration(h * float64(time.Hour))).Format(time.RFC3339) }
	ctx := func(id, typ string, h float64, extra string) string {
		return `"context":{"specversion":"0.5.0","id":"` + id + `","source":"/acme/ci","type":"dev.cdevents.` + typ + `","timestamp":"` + ts(h) + `"` + extra + `}`
	}
	change := func(id, commit, predicate string, h float64) []byte {
		return []byte(`{` + ctx(id, "change."+predicate+".0.3.0", h, "") + `,"subject":{"id":"` + commit + `","content":{"repository":{"id":"acme/api"}}}}`)
	}
	service := func(id, predicate, commit string, h float64, links string) []byte {
		return []byte(`{` + ctx(id, "service."+predicate+".0.3.0", h, links) + `,"subject":{"id":"acme/api","content":{"environment":{"id":"production"},"artifactId":"pkg:github/acme/api@` + commit + `"}}}`)
	}
	incident := func(id, incidentID, predicate string, h float64, artifact string) []byte {
		content := `"service":{"id":"acme/api"},"environment":{"id":"production"}`
		if artifact != "" {
			content += `,"artifactId":"pkg:github/acme/api@` + artifact + `"`
		}
		return []byte(`{` + ctx(id, "incident."+predicate+".0.3.0", h, "") + `,"subject":{"id":"` + incidentID + `","content":{` + content + `}}}`)
	}
	const c1, c2, c3 = "c1c1c1c1c1c1", "c2c2c2c2c2c2", "c3c3c3c3c3c3"
	changes := [][]byte{
		change("e1", c1, "created", 0), change("e2", c1, "reviewed", 1), change("e3", c1, "merged", 2),
		change("e4", c2, "created", 4), change("e5", c2, "merged", 5),
		change("e6", c3, "created", 8), change("e7", c3, "reviewed", 9), change("e8", c3, "merged", 10),
	}
	deployments := [][]byte{
		service("D1", "deployed", c1, 3, ""), service("D2", "upgraded", c2, 6, ""),
		service("R1", "rolledback", c1, 7, `,"links":[{"linkType":"RELATION","linkKind":"REVERTS","target":{"contextId":"D2"}}]`),
		service("D3", "upgraded", c3, 12, ""),
	}
	incidents := [][]byte{
		incident("i1", "inc-1", "detected", 13, c3), incident("i2", "inc-1", "resolved", 15, c3),
		incident("i3", "inc-2", "reported", 20, ""), incident("i4", "inc-2", "resolved", 21, ""),
	}
	// Incidents first, in structured mode; then the deployments in binary mode, the rollback
	// through the URL that carries the credential; then the changes in one batch, twice.
	for i := len(incidents) - 1; i >= 0; i-- {
		status, out := s.sendCDEvents(structuredMode, "/cdevents", incidents[i])
		require.Equal(t, http.StatusAccepted, status, out)
	}
	for i := len(deployments) - 1; i >= 0; i-- {
		path := "/cdevents"
		if i == 2 {
			path, s.token = "/webhook/"+s.token+"/cdevents", ""
		}
		status, out := s.sendCDEvents(binaryMode, path, deployments[i])
		require.Equal(t, http.StatusAccepted, status, out)
		if i == 2 {
			s.token = strings.TrimSuffix(strings.TrimPrefix(path, "/webhook/"), "/cdevents")
		}
	}
	for range 2 {
		status, out := s.sendCDEvents(batchMode, "/cdevents", changes...)
		require.Equal(t, http.StatusAccepted, status, out)
	}
	s.waitCount(len(changes)+len(deployments)+len(incidents), `SELECT count(*) FROM events`)
	s.waitDrained()
	require.Equal(t, len(changes)+len(deployments)+len(incidents), s.count(`SELECT count(*) FROM events`))

	r := s.doraKeys("/api/v1/metrics/dora?pipeline_id=acme/api&from=2026-11-02&to=2026-11-09")
	df := r["deployment_frequency"]
	require.Equal(t, 4.0, df["deployments"])
	require.Equal(t, 0.5714, df["per_day"])
	require.Equal(t, 4.0, df["per_week"])
	cfr := r["change_failure_rate"]
	require.Equal(t, 4.0, cfr["deployments"])
	require.Equal(t, 2.0, cfr["failed"], "D2 by the rollback, D3 by inc-1")
	require.Equal(t, 0.5, cfr["rate"])
	lt := r["lead_time_for_changes"]
	require.Equal(t, 3.0, lt["changes"])
	require.Equal(t, 3*3600.0, lt["median_seconds"])
	require.Equal(t, 3*3600.0, lt["mean_seconds"])
	require.Equal(t, 3.8*3600, lt["p90_seconds"])
	require.Equal(t, 3600.0, lt["review_median_seconds"])
	require.Equal(t, 2*3600.0, lt["deploy_median_seconds"])
	ttr := r["failed_deployment_recovery_time"]
	require.Equal(t, 2.0, ttr["incidents"])
	require.Equal(t, 0.0, ttr["open_incidents"])
	require.Equal(t, 1.5*3600, ttr["median_seconds"])
	require.Equal(t, 1.5*3600, ttr["mean_seconds"])
	require.Equal(t, 1.9*3600, ttr["p90_seconds"])
	require.Equal(t, 0.0, r["rework_rate"]["rework"])
}

// What the ingest refuses changes nothing; what it does not use is answered 202 and published
// nowhere. Unknown types are 202, not 400: a broker (Knative, Tekton's CloudEvents controller)
// sends every event to its sink and retries what is refused.
func TestCDEventsBadEventsPublishNothing(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", withEnv("DEVOPSTIC_MAX_BATCH", "2"))
	deployed := mustRead(t, "../../pkg/cdevents/testdata/v0.5/service_deployed.json")
	started := cdeventstest.Set(t, deployed, func(cd map[string]any) {
		cd["context"].(map[string]any)["type"] = "dev.cdevents.pipelinerun.started.0.2.0"
	})
	noArtifact := cdeventstest.Set(t, deployed, func(cd map[string]any) {
		delete(cd["subject"].(map[string]any)["content"].(map[string]any), "artifactId")
	})
	before := s.streamMessages()

	status, out := s.sendCDEvents(structuredMode, "/cdevents", started)
	require.Equal(t, http.StatusAccepted, status, out)
	require.JSONEq(t, `{"ignored":"ignored: DevOpstic does not use pipelinerun.started events"}`, out)

	status, out = s.sendCDEvents(batchMode, "/cdevents", started, started)
	require.Equal(t, http.StatusAccepted, status, out)
	require.Contains(t, out, `"accepted":0`)
	require.Contains(t, out, `"index":1`)

	for name, tc := range map[string]struct {
		status  int
		send    func() (int, string)
		message string
	}{
		"no credential": {401, func() (int, string) {
			token := s.token
			s.token = ""
			defer func() { s.token = token }()
			return s.sendCDEvents(structuredMode, "/cdevents", deployed)
		}, "unauthorized"},
		"a bad credential in the path": {401, func() (int, string) { return s.sendCDEvents(structuredMode, "/webhook/nope/cdevents", deployed) }, "unauthorized"},
		"no artifact":                  {400, func() (int, string) { return s.sendCDEvents(binaryMode, "/cdevents", noArtifact) }, "body.subject.content.artifactId is missing"},
		"a bad event spoils its batch": {400, func() (int, string) { return s.sendCDEvents(batchMode, "/cdevents", deployed, noArtifact) }, "[1].data.subject.content.artifactId is missing"},
		"plain JSON": {415, func() (int, string) {
			status, out := s.do("POST", "/cdevents", "application/json", deployed)
			return status, string(out)
		}, "ce-* headers"},
		"a NUL": {400, func() (int, string) {
			return s.sendCDEvents(structuredMode, "/cdevents", []byte(strings.Replace(string(deployed), "test123", `\u0000`, 1)))
		}, "text Postgres cannot store"},
		"too many": {413, func() (int, string) {
			return s.sendCDEvents(batchMode, "/cdevents", deployed, cdeventstest.WithID(t, deployed, "2"), cdeventstest.WithID(t, deployed, "3"))
		}, "at most 2"},
	} {
		status, out := tc.send()
		require.Equal(t, tc.status, status, "%s: %s", name, out)
		require.Contains(t, out, tc.message, name)
	}
	require.Equal(t, before, s.streamMessages(), "nothing was published")
}
