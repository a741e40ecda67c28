package main

import (
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

const alertmanagerToken = "am-t0ken"

func startAlertmanagerStack(t *testing.T, opts ...stackOption) *stack {
	return startStack(t, "", append([]stackOption{withEnv("DEVOPSTIC_ALERTMANAGER_TOKEN", "retired-token,"+alertmanagerToken)}, opts...)...)
}

// deliverAlertmanager posts a notification as Alertmanager does, with authorization as the
// Authorization header.
func (s *stack) deliverAlertmanager(body []byte, query, authorization string) (int, string) {
	s.t.Helper()
	status, out := s.do("POST", "/alertmanager/alerts"+query, "application/json", body, "Authorization", authorization)
	return status, string(out)
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// Every Alertmanager fixture goes through HTTP, the stream and the writer into Postgres.
func TestAlertmanagerFixturesReachTheTables(t *testing.T) {
	t.Parallel()
	// Two of the fixtures' alerts are warnings: pick them too.
	s := startAlertmanagerStack(t, withEnv("DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL", "severity=~critical|warning"))
	bearer := "Bearer " + alertmanagerToken
	for _, tc := range []struct{ file, query string }{
		{"firing.json", "?pipeline_id=andromeda"}, // no service or job label
		{"firing.minimal.json", ""},               // job docker_nodes
		{"resolved.json", "?pipeline_id=monitoring&environment=staging"},
		{"resolved.multiple-alerts.json", "?pipeline_id=disks"},
	} {
		status, out := s.deliverAlertmanager(mustRead(t, "../../pkg/alertmanager/testdata/"+tc.file), tc.query, bearer)
		require.Equal(t, http.StatusAccepted, status, "%s: %s", tc.file, out)
		require.NotContains(t, out, "ignored", tc.file)
	}
	s.waitCount(4, `SELECT count(*) FROM events WHERE source = 'alertmanager'`)
	s.waitDrained()
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))

	// One delivery, two incidents.
	require.Equal(t, 2, s.count(`SELECT count(*) FROM incidents WHERE source = 'alertmanager' AND pipeline_id = 'andromeda'
		AND incident_id IN ('a1bc48475b20e73d@2020-02-06T00:17:58.432911368Z', 'c2ea85182f28cbd9@2020-02-06T00:17:58.432911368Z')
		AND environment = 'production' AND opened_at = '2020-02-06T00:17:58.432911Z' AND last_resolved_at IS NULL`),
		"Postgres keeps microseconds")
	require.Equal(t, 1, s.count(`SELECT count(*) FROM incidents WHERE pipeline_id = 'docker_nodes' AND opened_at = '2018-03-07T11:33:21.873077Z'
		AND last_resolved_at IS NULL AND incident_id LIKE '%@2018-03-07T11:33:21.873077559Z'`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM incidents WHERE pipeline_id = 'monitoring' AND environment = 'staging'
		AND incident_id = 'dd19ae3d4e06ac55@2019-01-28T20:26:23.868893Z'
		AND opened_at = '2019-01-28T20:26:23.868893Z' AND resolved_at = '2019-01-28T20:27:23.868893Z'`))
	// Of its two alerts only the critical one is picked (the other is "severe").
	require.Equal(t, 1, s.count(`SELECT count(*) FROM incidents WHERE pipeline_id = 'disks' AND opened_at = '2017-05-09T07:01:37.803Z'
		AND resolved_at = '2017-05-09T07:08:37.81827Z'`))
	require.Equal(t, 5, s.count(`SELECT count(*) FROM incidents`))
}

func TestAlertmanagerBadDeliveriesPublishNothing(t *testing.T) {
	t.Parallel()
	s := startAlertmanagerStack(t)
	body := []byte(`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"severity":"critical","service":"api"},
		"startsAt":"2026-11-25T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f1"}]}`)
	before := s.streamMessages()
	for name, tc := range map[string]struct {
		body          []byte
		authorization string
		want          int
		message       string
	}{
		"missing token":        {body, "", 401, "no Authorization header"},
		"wrong token":          {body, "Bearer not-the-token", 401, "matches no configured token"},
		"wrong basic password": {body, basicAuth("alertmanager", "not-the-token"), 401, "matches no configured token"},
		"token as user name":   {body, basicAuth(alertmanagerToken, ""), 401, "empty token"},
		"another scheme":       {body, "Token " + alertmanagerToken, 401, "Bearer or Basic"},
		"no incident alert":    {mustRead(t, "../../pkg/alertmanager/testdata/firing.minimal.json"), "Bearer " + alertmanagerToken, 202, "ignored"},
		"malformed JSON":       {[]byte(`{"alerts": [`), "Bearer " + alertmanagerToken, 400, "not a JSON object"},
		"not a notification":   {[]byte(`{"event":{}}`), "Bearer " + alertmanagerToken, 400, "alerts is missing"},
		"missing fields":       {mustRead(t, "../../pkg/alertmanager/testdata/firing.json"), "Bearer " + alertmanagerToken, 400, "alerts[0].labels.service"},
		"unstorable body":      {replaced(t, body, `"api"`, `"\ud800"`), "Bearer " + alertmanagerToken, 400, "text Postgres cannot store"},
	} {
		status, out := s.deliverAlertmanager(tc.body, "", tc.authorization)
		require.Equal(t, tc.want, status, "%s: %s", name, out)
		require.Contains(t, out, tc.message, name)
	}
	require.Equal(t, before, s.streamMessages(), "nothing was published")
}

func TestAlertmanagerRedeliveryCountsOnce(t *testing.T) {
	t.Parallel()
	s := startAlertmanagerStack(t)
	body := mustRead(t, "../../pkg/alertmanager/testdata/firing.json")
	// Bearer or basic auth, as Alertmanager's http_config sends them: the same notification.
	for _, auth := range []string{"Bearer " + alertmanagerToken, basicAuth("alertmanager", alertmanagerToken), "Bearer retired-token"} {
		status, out := s.deliverAlertmanager(body, "?pipeline_id=andromeda", auth)
		require.Equal(t, http.StatusAccepted, status, out)
	}
	s.waitDrained()
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events`), "no delivery id: the body's hash dedupes")
	require.Equal(t, 2, s.count(`SELECT count(*) FROM incidents`))
}
