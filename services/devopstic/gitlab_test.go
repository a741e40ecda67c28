package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const gitlabSecret = "gl-s3cret"

func startGitLabStack(t *testing.T, opts ...stackOption) *stack {
	return startStack(t, "", append([]stackOption{
		withEnv("DEVOPSTIC_GITLAB_WEBHOOK_SECRET", "retired-secret,"+gitlabSecret),
		withEnv("DEVOPSTIC_GITLAB_INCIDENT_LABEL", "Critical"),
	}, opts...)...)
}

// gitlabEvent is the X-Gitlab-Event value of a fixture: push_hook.json is a "Push Hook".
func gitlabEvent(file string) string {
	stem, _, _ := strings.Cut(filepath.Base(file), ".")
	words := strings.Split(stem, "_")
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}

// deliverGitLab sends a delivery as GitLab does, with the stack's token unless headers
// replace it.
func (s *stack) deliverGitLab(eventName, uuid string, body []byte, query string, headers ...string) (int, string) {
	s.t.Helper()
	h := []string{"X-Gitlab-Event", eventName, "X-Gitlab-Token", gitlabSecret, "Authorization", ""}
	if uuid != "" {
		h = append(h, "X-Gitlab-Event-UUID", uuid)
	}
	status, out := s.do("POST", "/gitlab/events"+query, "application/json", body, append(h, headers...)...)
	return status, string(out)
}

// Every GitLab fixture goes through HTTP, the stream and the writer into Postgres.
func TestGitLabFixturesReachTheTables(t *testing.T) {
	t.Parallel()
	s := startGitLabStack(t)
	files, err := filepath.Glob("../../pkg/gitlab/testdata/*.json")
	require.NoError(t, err)
	require.Len(t, files, 14)
	var accepted, ignored []string
	for _, f := range files {
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		status, out := s.deliverGitLab(gitlabEvent(f), "uuid-"+filepath.Base(f), body, "")
		require.Equal(t, http.StatusAccepted, status, "%s: %s", f, out)
		if strings.Contains(out, `"ignored"`) {
			ignored = append(ignored, filepath.Base(f))
		} else {
			accepted = append(accepted, filepath.Base(f))
		}
	}
	require.ElementsMatch(t, []string{"deployment_hook.json", "issue_hook.close.json", "merge_request_hook.close.json",
		"merge_request_hook.merge.json", "merge_request_hook.open.json", "merge_request_hook.reopen.json", "push_hook.json"}, accepted)
	require.ElementsMatch(t, []string{"issue_hook.open.json", "job_hook.created.json", "job_hook.json", "pipeline_hook.json",
		"push_hook.branch_delete.json", "release_hook.json", "tag_push_hook.json"}, ignored,
		"no incident label, CI hooks, a branch deletion, a release, a tag")
	s.waitCount(len(accepted), `SELECT count(*) FROM events WHERE source = 'gitlab'`)
	s.waitDrained()
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))

	// Times come from the payloads.
	require.Equal(t, 2, s.count(`SELECT count(*) FROM changes WHERE pipeline_id = 'mike/diaspora' AND (
		(commit_id = 'b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327' AND committed_at = '2011-12-12T14:27:31+02:00') OR
		(commit_id = 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7' AND committed_at = '2012-01-03T23:36:29+02:00'))`))
	require.Equal(t, 2, s.count(`SELECT count(*) FROM push_commits WHERE pipeline_id = 'mike/diaspora' AND head_id = 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM changes WHERE pipeline_id = 'gitlabhq/gitlab-test' AND commit_id = 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7'
		AND submitted_at = '2013-12-03T17:23:34Z' AND committed_at = '2012-01-03T21:36:29Z' AND approved_at IS NULL AND pull_request_id = 1`))
	// The merge request: head and merge commit are one change, submitted when opened, merged
	// (which approves it, as no approval did).
	require.Equal(t, 2, s.count(`SELECT count(*) FROM changes WHERE pipeline_id = 'gitlab-org/hello-world'
		AND commit_id IN ('c4c79227ed610f1151f05bbc5be33b4f340d39c8', '78a76ee6b4992a6baf64c59fc4c44c7323d60438')
		AND change_id = '78a76ee6b4992a6baf64c59fc4c44c7323d60438'
		AND submitted_at = '2017-12-10T17:01:11Z' AND merged_at = '2017-12-10T17:08:07Z' AND approved_at IS NULL`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM change_links WHERE pipeline_id = 'gitlab-org/hello-world'
		AND commit_id = 'c4c79227ed610f1151f05bbc5be33b4f340d39c8' AND linked_id = '78a76ee6b4992a6baf64c59fc4c44c7323d60438'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE source = 'gitlab' AND pipeline_id = 'root/test-deployment-webhooks'
		AND environment = 'staging' AND deployment_key = '15' AND status = 'success' AND deployed_at = '2021-04-28T19:50:00Z'
		AND commit_id = '279484c09fbe69ededfced8c1bb6e6d24616b468'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM incidents WHERE source = 'gitlab' AND incident_id = 'gitlab-org/hello-world#1'
		AND environment = 'production' AND opened_at = '2017-12-10T16:37:38Z' AND resolved_at = '2017-12-10T16:41:28Z'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events WHERE source = 'gitlab' AND kind = 'merge_request' AND status = 'closed'`),
		"the closed merge request is kept as an event")
	require.Equal(t, 1, s.count(`SELECT count(*) FROM incidents`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments`))
}

func TestGitLabBadDeliveriesPublishNothing(t *testing.T) {
	t.Parallel()
	s := startGitLabStack(t)
	body, err := os.ReadFile("../../pkg/gitlab/testdata/push_hook.json")
	require.NoError(t, err)
	before := s.streamMessages()

	// GitLab's token is a shared secret, not a signature: there is no body to change after
	// signing, and the token is all there is to check.
	type delivery struct {
		event   string
		body    []byte
		query   string
		headers []string
		want    int
		message string
	}
	deploy := `{"status":"success","commit_url":"https://gitlab.example.com/a/b/-/commit/abcdef1","project":{"path_with_namespace":"a/b"}}`
	for name, tc := range map[string]delivery{
		"missing token":        {"Push Hook", body, "", []string{"X-Gitlab-Token", ""}, 401, "no X-Gitlab-Token"},
		"wrong secret":         {"Push Hook", body, "", []string{"X-Gitlab-Token", "not-the-secret"}, 401, "matches no configured secret"},
		"secret's prefix":      {"Push Hook", body, "", []string{"X-Gitlab-Token", gitlabSecret[:4]}, 401, "matches no configured secret"},
		"unknown kind":         {"Note Hook", []byte(`{}`), "", nil, 202, "ignored"},
		"pipeline hook":        {"Pipeline Hook", []byte(`{"object_kind":"pipeline"}`), "", nil, 202, "ignored"},
		"malformed JSON":       {"Push Hook", []byte(`{"commits": [`), "", nil, 400, "not a JSON object"},
		"missing fields":       {"Deployment Hook", []byte(deploy), "", nil, 400, "status_changed_at"},
		"no project":           {"Merge Request Hook", []byte(`{"object_attributes":{"action":"open","created_at":"2026-11-25T10:00:00Z","last_commit":{"id":"a"}}}`), "", nil, 400, "project.path_with_namespace"},
		"no event header":      {"", body, "", nil, 400, "X-Gitlab-Event"},
		"branch deletion":      {"Push Hook", mustRead(t, "../../pkg/gitlab/testdata/push_hook.branch_delete.json"), "", nil, 202, "branch deletion"},
		"a deploy, unfinished": {"Deployment Hook", []byte(`{"status":"running","status_changed_at":"2026-11-25T10:00:00Z"}`), "", nil, 202, "not final"},
		"unstorable body":      {"Push Hook", replaced(t, body, `"fixed readme\n"`, `"\u0000"`), "", nil, 400, "text Postgres cannot store"},
		"unstorable URL":       {"Push Hook", body, "?pipeline_id=a%00b", nil, 400, `query parameter \"pipeline_id\" must be UTF-8 text`},
	} {
		status, out := s.deliverGitLab(tc.event, "u-"+name, tc.body, tc.query, tc.headers...)
		require.Equal(t, tc.want, status, "%s: %s", name, out)
		require.Contains(t, out, tc.message, name)
	}
	require.Equal(t, before, s.streamMessages(), "nothing was published")
}

// replaced is body with old replaced by new once; old must be there.
func replaced(t *testing.T, body []byte, old, new string) []byte {
	t.Helper()
	require.Contains(t, string(body), old)
	return []byte(strings.Replace(string(body), old, new, 1))
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func TestGitLabRedeliveryCountsOnce(t *testing.T) {
	t.Parallel()
	s := startGitLabStack(t)
	body := mustRead(t, "../../pkg/gitlab/testdata/deployment_hook.json")
	for range 3 {
		status, out := s.deliverGitLab("Deployment Hook", "2a4b6c8d-0000-4000-8000-000000000001", body, "")
		require.Equal(t, http.StatusAccepted, status, out)
	}
	// GitLab 17.4+ also sends Idempotency-Key; alone, it names the delivery.
	for range 2 {
		status, out := s.deliverGitLab("Deployment Hook", "", body, "?environment=eu", "Idempotency-Key", "k-1")
		require.Equal(t, http.StatusAccepted, status, out)
	}
	// A sender without either: the body's hash is the id.
	for range 2 {
		status, out := s.deliverGitLab("Deployment Hook", "", body, "?environment=production")
		require.Equal(t, http.StatusAccepted, status, out)
	}
	s.waitDrained()
	require.Equal(t, 3, s.count(`SELECT count(*) FROM events`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE environment = 'staging'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE environment = 'eu'`), "the URL's environment wins")
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE environment = 'production'`))
}

// A whole GitLab flow, with incidents from all three incident sources, gives the DORA figures
// DORA.md defines, worked out by hand:
// commits c1 (t0) and c2 (t0+1h) pushed to a branch; MR opened at t0+2h, approved at t0+3h,
// merged at t0+4h as M; M pushed to main and deployed at t0+5h; an incident issue naming M
// opened at t0+6h and closed at t0+7h (1h); a PagerDuty incident from t0+8h to t0+10h (2h);
// an Alertmanager alert from t0+11h to t0+14h (3h).
func TestGitLabFlowGivesTheDORAFigures(t *testing.T) {
	t.Parallel()
	s := startGitLabStack(t,
		withEnv("DEVOPSTIC_PAGERDUTY_WEBHOOK_SECRET", pagerdutySecret),
		withEnv("DEVOPSTIC_ALERTMANAGER_TOKEN", alertmanagerToken))
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	ts := func(h int) string { return t0.Add(time.Duration(h) * time.Hour).Format("2006-01-02 15:04:05 UTC") }
	project := `"project":{"path_with_namespace":"acme/api","name":"api"}`
	mr := func(action, updated, extra string) string {
		return `{"object_kind":"merge_request","object_attributes":{"iid":5,"action":"` + action + `","created_at":"` + ts(2) +
			`","updated_at":"` + updated + `","last_commit":{"id":"c2c2c2c2","timestamp":"` + ts(1) + `"}` + extra + `},` + project + `}`
	}
	issue := func(action, state, closedAt string) string {
		return `{"object_kind":"issue","object_attributes":{"iid":9,"action":"` + action + `","state":"` + state + `","created_at":"` + ts(6) +
			`","closed_at":` + closedAt + `,"description":"Checkout down.\nroot cause: aaaa1111"},"labels":[{"title":"critical"}],` + project + `}`
	}
	deliveries := []struct{ event, body string }{
		{"Push Hook", `{"object_kind":"push","ref":"refs/heads/feature","after":"c2c2c2c2","checkout_sha":"c2c2c2c2","commits":[{"id":"c1c1c1c1","timestamp":"` + ts(0) + `"},{"id":"c2c2c2c2","timestamp":"` + ts(1) + `"}],` + project + `}`},
		{"Merge Request Hook", mr("open", ts(2), "")},
		{"Merge Request Hook", mr("approved", ts(3), "")},
		{"Merge Request Hook", mr("merge", ts(4), `,"merge_commit_sha":"aaaa1111"`)},
		{"Push Hook", `{"object_kind":"push","ref":"refs/heads/main","after":"aaaa1111","commits":[{"id":"aaaa1111","timestamp":"` + ts(4) + `"}],` + project + `}`},
		{"Deployment Hook", `{"object_kind":"deployment","status":"success","status_changed_at":"` + ts(5) + `","deployment_id":10,"environment":"production",` +
			`"short_sha":"aaaa1111","commit_url":"https://gitlab.example.com/acme/api/-/commit/aaaa1111",` + project + `}`},
		{"Issue Hook", issue("open", "opened", "null")},
		{"Issue Hook", issue("close", "closed", `"`+ts(7)+`"`)},
	}
	// In reverse order: the result may not depend on it.
	for i := len(deliveries) - 1; i >= 0; i-- {
		d := deliveries[i]
		status, out := s.deliverGitLab(d.event, fmt.Sprintf("flow-%d", i), []byte(d.body), "")
		require.Equal(t, http.StatusAccepted, status, "%s: %s", d.event, out)
		require.NotContains(t, out, "ignored", d.event)
	}
	rfc := func(h int) string { return t0.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }
	pd := func(id, kind string, h int) []byte {
		return []byte(`{"event":{"id":"` + id + `","event_type":"` + kind + `","resource_type":"incident","occurred_at":"` + rfc(h) +
			`","data":{"id":"PINC1","type":"incident","service":{"id":"PSVC","summary":"Checkout API"}}}}`)
	}
	for _, body := range [][]byte{pd("E2", "incident.resolved", 10), pd("E1", "incident.triggered", 8)} {
		status, out := s.deliverPagerDuty(body, "?pipeline_id=acme/api")
		require.Equal(t, http.StatusAccepted, status, out)
	}
	am := func(status, endsAt string) []byte {
		return []byte(`{"version":"4","status":"` + status + `","alerts":[{"status":"` + status + `","labels":{"alertname":"Errors",` +
			`"severity":"critical","service":"acme/api"},"startsAt":"` + rfc(11) + `","endsAt":"` + endsAt + `","fingerprint":"fp1"}]}`)
	}
	for _, body := range [][]byte{am("resolved", rfc(14)), am("firing", "0001-01-01T00:00:00Z")} {
		status, out := s.deliverAlertmanager(body, "", "Bearer "+alertmanagerToken)
		require.Equal(t, http.StatusAccepted, status, out)
	}
	s.waitCount(len(deliveries)+4, `SELECT count(*) FROM events`)
	s.waitDrained()
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))

	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?pipeline_id=acme/api&from=2026-11-01&to=2026-11-08")), &r))
	lt := r["lead_time_for_changes"].(map[string]any)
	require.Equal(t, 1.0, lt["changes"], "the deployed change is M")
	require.Equal(t, 5*3600.0, lt["median_seconds"], "from c1's commit, the earliest commit M replaced")
	require.Equal(t, 3600.0, lt["review_median_seconds"], "MR opened to approved")
	require.Equal(t, 2*3600.0, lt["deploy_median_seconds"], "approved to deployed")
	require.Equal(t, 1.0, r["deployment_frequency"].(map[string]any)["deployments"])
	cfr := r["change_failure_rate"].(map[string]any)
	require.Equal(t, 1.0, cfr["failed"], "the incident issue names M, which this deployment first shipped")
	ttr := r["failed_deployment_recovery_time"].(map[string]any)
	require.Equal(t, 3.0, ttr["incidents"], "GitLab, PagerDuty and Alertmanager each gave one")
	require.Equal(t, 2*3600.0, ttr["median_seconds"], "median of 1h, 2h and 3h")
	require.Equal(t, 0.0, ttr["open_incidents"])
}

// A pipeline named in DEVOPSTIC_GITLAB_DEPLOY_PIPELINES is a deployment at its finished_at;
// other pipelines and jobs stay ignored.
func TestGitLabDeployPipelineIsADeployment(t *testing.T) {
	t.Parallel()
	s := startGitLabStack(t,
		withEnv("DEVOPSTIC_GITLAB_DEPLOY_PIPELINES", "release, Master"),
		withEnv("DEVOPSTIC_GITLAB_DEPLOY_ENVIRONMENT", "prod-eu"))
	body := mustRead(t, "../../pkg/gitlab/testdata/pipeline_hook.json")
	status, out := s.deliverGitLab("Pipeline Hook", "pipeline-1", body, "")
	require.Equal(t, http.StatusAccepted, status, out)
	require.NotContains(t, out, "ignored")
	status, out = s.deliverGitLab("Job Hook", "job-1", mustRead(t, "../../pkg/gitlab/testdata/job_hook.json"), "?pipeline_id=api")
	require.Equal(t, http.StatusAccepted, status, out)
	require.Contains(t, out, `"ignored"`, "the job auto_deploy:start is not named")
	s.waitCount(1, `SELECT count(*) FROM deployments`)
	s.waitDrained()
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE source = 'gitlab' AND pipeline_id = 'gitlab-org/gitlab-test'
		AND environment = 'prod-eu' AND deployment_key = 'pipeline:31' AND status = 'success' AND deployed_at = '2016-08-12T15:26:29Z'
		AND commit_id = 'bcbb5ec396a2c0f828686f14fac9b80b780504f2'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events WHERE source = 'gitlab' AND kind = 'pipeline'`))
}
