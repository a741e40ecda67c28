package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/stream"
)

const githubSecret = "topsecret"

func startGitHubStack(t *testing.T) *stack {
	return startStack(t, "",
		withEnv("DEVOPSTIC_GITHUB_WEBHOOK_SECRET", "retired-secret,"+githubSecret),
		withEnv("DEVOPSTIC_GITHUB_DEPLOY_WORKFLOWS", "Test"),
	)
}

func sign(body []byte) string {
	mac := hmac.New(sha256.New, []byte(githubSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// deliver sends a GitHub delivery as GitHub does, signed unless sig is given.
func (s *stack) deliver(eventName, delivery string, body []byte, query string, headers ...string) (int, string) {
	s.t.Helper()
	h := []string{"X-GitHub-Event", eventName, "X-Hub-Signature-256", sign(body), "Authorization", ""}
	if delivery != "" {
		h = append(h, "X-GitHub-Delivery", delivery)
	}
	status, out := s.do("POST", "/github/events"+query, "application/json", body, append(h, headers...)...)
	return status, string(out)
}

func (s *stack) streamMessages() uint64 {
	s.t.Helper()
	nc, err := nats.Connect(s.nats.URL, s.nats.Login(stream.RoleAdmin).Options()...)
	require.NoError(s.t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(s.t, err)
	st, err := js.Stream(context.Background(), stream.StreamName)
	require.NoError(s.t, err)
	info, err := st.Info(context.Background())
	require.NoError(s.t, err)
	return info.State.Msgs
}

// Every GitHub fixture goes through HTTP, the stream and the writer into Postgres.
func TestGitHubFixturesReachTheTables(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	files, err := filepath.Glob("../../pkg/github/testdata/*/*.json")
	require.NoError(t, err)
	accepted := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".headers.json") {
			continue
		}
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		eventName := filepath.Base(filepath.Dir(f))
		status, out := s.deliver(eventName, "delivery-"+filepath.Base(filepath.Dir(f))+"-"+filepath.Base(f), body, "")
		switch {
		case eventName == "ping":
			require.Equal(t, http.StatusOK, status, "%s: %s", f, out)
			require.Contains(t, out, `"hook_id"`)
		case strings.Contains(out, `"ignored"`):
			require.Equal(t, http.StatusAccepted, status, "%s: %s", f, out)
		default:
			require.Equal(t, http.StatusAccepted, status, "%s: %s", f, out)
			accepted++
		}
	}
	// pushes with commits x3, pull_request opened/reopened/ready_for_review/synchronize/closed,
	// the approving review, deployment_status success/failure, and the two completed runs of the
	// workflow "Test"
	require.Equal(t, 13, accepted)
	s.waitCount(accepted, `SELECT count(*) FROM events WHERE source = 'github'`)
	s.waitDrained()
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))

	// Times come from the payloads.
	require.Equal(t, 1, s.count(`SELECT count(*) FROM changes WHERE commit_id = '74e03390d6d6b8ba8da3c53bf4c9e6c2cc4e4fa4' OR committed_at = '2024-07-30T21:25:36Z'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE pipeline_id = 'Codertocat/Hello-World' AND status = 'success'
		AND deployed_at = '2019-05-15T15:20:55Z' AND commit_id = 'f95f852bd8fca8fcc58a9a2d6c842781e32a215e'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE pipeline_id = 'baxterthehacker/public-repo' AND status = 'failure'
		AND deployed_at = '2015-05-05T23:40:39Z'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM changes WHERE pipeline_id = 'Codertocat/Hello-World' AND submitted_at = '2019-05-15T15:20:33Z'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE source = 'github' AND deployment_key LIKE 'run:%' AND deployed_at = '2020-10-05T16:33:49Z'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM changes WHERE pipeline_id = 'amplify-security/sl-repro-5941' AND committed_at IS NULL`),
		"the commit with an unreadable timestamp is tracked without a time")
}

func TestGitHubBadDeliveriesPublishNothing(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	body, err := os.ReadFile("../../pkg/github/testdata/push/single-commit.json")
	require.NoError(t, err)
	before := s.streamMessages()

	for name, tc := range map[string]struct {
		event   string
		body    []byte
		headers []string
		want    int
		message string
	}{
		"bad signature":     {"push", body, []string{"X-Hub-Signature-256", "sha256=" + strings.Repeat("0", 64)}, 401, "matches no configured secret"},
		"missing signature": {"push", body, []string{"X-Hub-Signature-256", ""}, 401, "no X-Hub-Signature-256"},
		"wrong secret": {"push", body, []string{"X-Hub-Signature-256", func() string {
			mac := hmac.New(sha256.New, []byte("not-the-secret"))
			mac.Write(body)
			return "sha256=" + hex.EncodeToString(mac.Sum(nil))
		}()}, 401, "matches no configured secret"},
		"body changed after signing": {"push", append(body[:len(body):len(body)], '\n'), []string{"X-Hub-Signature-256", sign(body)}, 401, "matches no configured secret"},
		"unknown kind":               {"marketplace_purchase", []byte(`{}`), nil, 202, "ignored"},
		"malformed JSON":             {"push", []byte(`{"commits": [`), nil, 400, "not a JSON object"},
		"missing fields":             {"deployment_status", []byte(`{"deployment_status":{"state":"success","updated_at":"2026-11-25T10:00:00Z"},"repository":{"name":"api"}}`), nil, 400, "deployment.sha"},
		"no event header":            {"", body, nil, 400, "X-GitHub-Event"},
		"unstorable body":            {"push", replaced(t, body, `"Update README"`, `"\u0000"`), nil, 400, "text Postgres cannot store"},
	} {
		status, out := s.deliver(tc.event, "d-"+name, tc.body, "", tc.headers...)
		require.Equal(t, tc.want, status, "%s: %s", name, out)
		require.Contains(t, out, tc.message, name)
	}
	require.Equal(t, before, s.streamMessages(), "nothing was published")
}

func TestGitHubRedeliveryCountsOnce(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	body, err := os.ReadFile("../../pkg/github/testdata/deployment_status/success.json")
	require.NoError(t, err)
	for range 3 {
		status, out := s.deliver("deployment_status", "72d3162e-cc78-11e3-81ab-4c9367dc0958", body, "")
		require.Equal(t, http.StatusAccepted, status, out)
	}
	// A sender without X-GitHub-Delivery: the body's hash is the id.
	for range 2 {
		status, out := s.deliver("deployment_status", "", body, "?environment=staging")
		require.Equal(t, http.StatusAccepted, status, out)
	}
	s.waitDrained()
	require.Equal(t, 2, s.count(`SELECT count(*) FROM events`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE environment = 'production'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM deployments WHERE environment = 'staging'`), "the URL's environment wins")
}

// A whole GitHub flow gives the DORA figures DORA.md defines, worked out by hand:
// commits c1 (t0) and c2 (t0+1h) pushed to a branch; PR opened at t0+2h, approved at t0+3h,
// squash-merged at t0+4h as M; M pushed to main and deployed at t0+5h; an incident issue
// naming M opened at t0+6h and closed at t0+7h.
func TestGitHubFlowGivesTheDORAFigures(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	ts := func(h int) string { return t0.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }
	repo := `"repository":{"full_name":"acme/api","name":"api"}`
	deliveries := []struct{ event, body string }{
		{"push", `{"ref":"refs/heads/feature","after":"c2c2c2c2","commits":[{"id":"c1c1c1c1","timestamp":"` + ts(0) + `"},{"id":"c2c2c2c2","timestamp":"` + ts(1) + `"}],"head_commit":{"id":"c2c2c2c2","timestamp":"` + ts(1) + `"},` + repo + `}`},
		{"pull_request", `{"action":"opened","pull_request":{"number":5,"created_at":"` + ts(2) + `","merged":false,"head":{"sha":"c2c2c2c2"}},` + repo + `}`},
		{"pull_request_review", `{"action":"submitted","review":{"state":"approved","submitted_at":"` + ts(3) + `","commit_id":"c2c2c2c2"},"pull_request":{"number":5,"head":{"sha":"c2c2c2c2"}},` + repo + `}`},
		{"pull_request", `{"action":"closed","pull_request":{"number":5,"created_at":"` + ts(2) + `","merged":true,"merged_at":"` + ts(4) + `","merge_commit_sha":"aaaa1111","head":{"sha":"c2c2c2c2"}},` + repo + `}`},
		{"push", `{"ref":"refs/heads/main","after":"aaaa1111","commits":[{"id":"aaaa1111","timestamp":"` + ts(4) + `"}],"head_commit":{"id":"aaaa1111","timestamp":"` + ts(4) + `"},` + repo + `}`},
		{"deployment_status", `{"deployment_status":{"id":11,"state":"success","created_at":"` + ts(5) + `"},"deployment":{"id":10,"sha":"aaaa1111","environment":"production"},` + repo + `}`},
		{"issues", `{"action":"opened","issue":{"number":9,"created_at":"` + ts(6) + `","labels":[{"name":"incident"}],"body":"root cause: aaaa1111"},` + repo + `}`},
		{"issues", `{"action":"closed","issue":{"number":9,"created_at":"` + ts(6) + `","closed_at":"` + ts(7) + `","labels":[{"name":"incident"}],"body":"root cause: aaaa1111"},` + repo + `}`},
	}
	// In reverse order: the result may not depend on it.
	for i := len(deliveries) - 1; i >= 0; i-- {
		d := deliveries[i]
		status, out := s.deliver(d.event, fmt.Sprintf("flow-%d", i), []byte(d.body), "")
		require.Equal(t, http.StatusAccepted, status, "%s: %s", d.event, out)
	}
	s.waitCount(len(deliveries), `SELECT count(*) FROM events`)
	s.waitDrained()

	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?pipeline_id=acme/api&from=2026-11-01&to=2026-11-08")), &r))
	lt := r["lead_time_for_changes"].(map[string]any)
	require.Equal(t, 1.0, lt["changes"], "the deployed change is m1")
	require.Equal(t, 5*3600.0, lt["median_seconds"], "from c1's commit, the earliest commit m1 replaced")
	require.Equal(t, 3600.0, lt["review_median_seconds"], "PR opened to approved")
	require.Equal(t, 2*3600.0, lt["deploy_median_seconds"], "approved to deployed")
	cfr := r["change_failure_rate"].(map[string]any)
	require.Equal(t, 1.0, cfr["failed"], "the incident names m1, which this deployment first shipped")
	require.Equal(t, 3600.0, r["failed_deployment_recovery_time"].(map[string]any)["median_seconds"])
}
