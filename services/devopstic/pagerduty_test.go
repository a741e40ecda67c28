package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const pagerdutySecret = "pd-s3cret"

func startPagerDutyStack(t *testing.T, secrets string) *stack {
	return startStack(t, "", withEnv("DEVOPSTIC_PAGERDUTY_WEBHOOK_SECRET", secrets))
}

func signPagerDuty(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// deliverPagerDuty sends a V3 webhook as PagerDuty does, signed with the stack's secret unless
// headers replace the signature.
func (s *stack) deliverPagerDuty(body []byte, query string, headers ...string) (int, string) {
	s.t.Helper()
	h := []string{"X-PagerDuty-Signature", signPagerDuty(pagerdutySecret, body), "X-Webhook-Id", "PWEBHOOK", "Authorization", ""}
	status, out := s.do("POST", "/pagerduty/incidents"+query, "application/json", body, append(h, headers...)...)
	return status, string(out)
}

// withIncident is a PagerDuty fixture with another event id, incident id and time: the
// fixtures belong to three different incidents, and a pair is needed to time a restore.
func withIncident(t *testing.T, body []byte, eventID, incidentID, occurredAt string) []byte {
	t.Helper()
	var p map[string]any
	require.NoError(t, json.Unmarshal(body, &p))
	e := p["event"].(map[string]any)
	e["id"], e["occurred_at"] = eventID, occurredAt
	e["data"].(map[string]any)["id"] = incidentID
	out, err := json.Marshal(p)
	require.NoError(t, err)
	return out
}

// Every PagerDuty fixture goes through HTTP, the stream and the writer into Postgres.
func TestPagerDutyFixturesReachTheTables(t *testing.T) {
	t.Parallel()
	s := startPagerDutyStack(t, "retired-secret,"+pagerdutySecret)
	triggered := mustRead(t, "../../pkg/pagerduty/testdata/incident.triggered.json")
	resolved := mustRead(t, "../../pkg/pagerduty/testdata/incident.resolved.json")
	acknowledged := mustRead(t, "../../pkg/pagerduty/testdata/incident.acknowledged.json")

	for _, body := range [][]byte{triggered, resolved,
		// PFQZPSY, triggered at 13:35:29.781 by the fixture, resolved an hour later.
		withIncident(t, resolved, "01BZYIL05THJDFF2Y08X9SVMTV", "PFQZPSY", "2021-06-04T14:35:29.781Z")} {
		status, out := s.deliverPagerDuty(body, "")
		require.Equal(t, http.StatusAccepted, status, out)
		require.NotContains(t, out, "ignored")
	}
	status, out := s.deliverPagerDuty(acknowledged, "")
	require.Equal(t, http.StatusAccepted, status, out)
	require.Contains(t, out, `"ignored"`)
	s.waitCount(3, `SELECT count(*) FROM events WHERE source = 'pagerduty'`)
	s.waitDrained()
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))

	require.Equal(t, 1, s.count(`SELECT count(*) FROM events WHERE id = 'pagerduty:01BZYIL05THJDFF2Y08X9SVMTU' AND kind = 'incident_triggered'`),
		"the event id is PagerDuty's")
	require.Equal(t, 1, s.count(`SELECT count(*) FROM incidents WHERE source = 'pagerduty' AND incident_id = 'PFQZPSY' AND pipeline_id = 'pig208'
		AND environment = 'production' AND opened_at = '2021-06-04T13:35:29.781Z' AND resolved_at = '2021-06-04T14:35:29.781Z'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM incidents WHERE source = 'pagerduty' AND incident_id = 'PCPZE64'
		AND opened_at IS NULL AND last_resolved_at = '2021-06-04T13:16:53.816Z'`), "a resolution whose trigger never came")
	require.Equal(t, 2, s.count(`SELECT count(*) FROM incidents`))

	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?pipeline_id=pig208&from=2021-06-01&to=2021-06-08")), &r))
	require.Equal(t, 3600.0, r["failed_deployment_recovery_time"].(map[string]any)["median_seconds"])
}

// The signature of PagerDuty's own Go library's test verifies over HTTP too (the body is an
// incident.priority_updated, which DevOpstic does not use: 202 ignored rather than 401).
func TestPagerDutyPublishedSignatureVerifies(t *testing.T) {
	t.Parallel()
	var v struct {
		Secret    string `json:"secret"`
		Body      string `json:"body"`
		Signature string `json:"X-PagerDuty-Signature"`
		Mismatch  string `json:"mismatch"`
	}
	require.NoError(t, json.Unmarshal(mustRead(t, "../../pkg/pagerduty/testdata/signature-vector.json"), &v))
	s := startPagerDutyStack(t, pagerdutySecret+","+v.Secret)
	status, out := s.deliverPagerDuty([]byte(v.Body), "", "X-PagerDuty-Signature", v.Signature)
	require.Equal(t, http.StatusAccepted, status, out)
	require.Contains(t, out, "incident.priority_updated")
	status, out = s.deliverPagerDuty([]byte(v.Body), "", "X-PagerDuty-Signature", v.Mismatch)
	require.Equal(t, http.StatusUnauthorized, status, out)
}

func TestPagerDutyBadDeliveriesPublishNothing(t *testing.T) {
	t.Parallel()
	s := startPagerDutyStack(t, pagerdutySecret)
	body := mustRead(t, "../../pkg/pagerduty/testdata/incident.triggered.json")
	before := s.streamMessages()

	for name, tc := range map[string]struct {
		body    []byte
		headers []string
		want    int
		message string
	}{
		"bad signature":              {body, []string{"X-PagerDuty-Signature", "v1=" + strings.Repeat("0", 64)}, 401, "matches no configured secret"},
		"missing signature":          {body, []string{"X-PagerDuty-Signature", ""}, 401, "no X-PagerDuty-Signature"},
		"wrong secret":               {body, []string{"X-PagerDuty-Signature", signPagerDuty("not-the-secret", body)}, 401, "matches no configured secret"},
		"body changed after signing": {append(body[:len(body):len(body)], '\n'), []string{"X-PagerDuty-Signature", signPagerDuty(pagerdutySecret, body)}, 401, "matches no configured secret"},
		"not a v1 signature":         {body, []string{"X-PagerDuty-Signature", "sha256=" + strings.Repeat("0", 64)}, 401, "no v1="},
		"unknown kind":               {mustRead(t, "../../pkg/pagerduty/testdata/incident.acknowledged.json"), nil, 202, "ignored"},
		"malformed JSON":             {[]byte(`{"event": {`), nil, 400, "not a JSON object"},
		"missing fields":             {[]byte(`{"event":{"id":"E9","event_type":"incident.triggered","occurred_at":"2026-11-25T10:00:00Z","data":{"service":{"summary":"api"}}}}`), nil, 400, "event.data.id"},
		"no service":                 {[]byte(`{"event":{"id":"E9","event_type":"incident.triggered","occurred_at":"2026-11-25T10:00:00Z","data":{"id":"P1"}}}`), nil, 400, "event.data.service.summary"},
		"unstorable body":            {replaced(t, body, `"Test Incident 3"`, `"\u0000"`), nil, 400, "text Postgres cannot store"},
	} {
		status, out := s.deliverPagerDuty(tc.body, "", tc.headers...)
		require.Equal(t, tc.want, status, "%s: %s", name, out)
		require.Contains(t, out, tc.message, name)
	}
	require.Equal(t, before, s.streamMessages(), "nothing was published")
}

func TestPagerDutyRedeliveryCountsOnce(t *testing.T) {
	t.Parallel()
	s := startPagerDutyStack(t, pagerdutySecret)
	body := mustRead(t, "../../pkg/pagerduty/testdata/incident.triggered.json")
	for range 3 {
		status, out := s.deliverPagerDuty(body, "")
		require.Equal(t, http.StatusAccepted, status, out)
	}
	s.waitDrained()
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM incidents WHERE opened_at = '2021-06-04T13:35:29.781Z'`))
}
