package pagerduty_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/pagerduty"
	"github.com/devopstic/devopstic/pkg/webhook/webhooktest"
)

// fixture and at read this package's testdata and the times its tests expect.
var fixture, at = webhooktest.Fixture, webhooktest.Time

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// The signature of go-pagerduty's own test (see testdata/signature-vector.json) verifies.
func TestVerifyPublishedVector(t *testing.T) {
	t.Parallel()
	var v struct {
		Secret    string `json:"secret"`
		Body      string `json:"body"`
		Signature string `json:"X-PagerDuty-Signature"`
		Mismatch  string `json:"mismatch"`
	}
	require.NoError(t, json.Unmarshal(fixture(t, "signature-vector.json"), &v))
	require.NoError(t, pagerduty.Verify([]string{v.Secret}, []byte(v.Body), v.Signature))
	require.ErrorIs(t, pagerduty.Verify([]string{v.Secret}, []byte(v.Body), v.Mismatch), pagerduty.ErrSignature)
	require.ErrorIs(t, pagerduty.Verify([]string{v.Secret}, []byte(v.Body+" "), v.Signature), pagerduty.ErrSignature)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := fixture(t, "incident.triggered.json")
	good := sign("s3cret", body)
	other := sign("other", body)
	for name, header := range map[string]string{
		"one signature":             good,
		"the second of two matches": other + "," + good,
		"spaces after commas":       other + ", " + good,
		"an unknown scheme besides": "v2=abc," + good,
	} {
		require.NoError(t, pagerduty.Verify([]string{"s3cret"}, body, header), name)
	}
	require.NoError(t, pagerduty.Verify([]string{"retired", "s3cret"}, body, good), "rotation")

	for name, tc := range map[string]struct {
		secrets []string
		body    []byte
		header  string
	}{
		"no signature":               {[]string{"s3cret"}, body, ""},
		"wrong secret":               {[]string{"s3cret"}, body, other},
		"body changed after signing": {[]string{"s3cret"}, append(body[:len(body):len(body)], '\n'), good},
		"no v1= prefix":              {[]string{"s3cret"}, body, strings.TrimPrefix(good, "v1=")},
		"not hex":                    {[]string{"s3cret"}, body, "v1=zz"},
		"truncated":                  {[]string{"s3cret"}, body, good[:20]},
		"no secret configured":       {nil, body, good},
		"empty secret":               {[]string{""}, body, sign("", body)},
	} {
		require.ErrorIs(t, pagerduty.Verify(tc.secrets, tc.body, tc.header), pagerduty.ErrSignature, name)
	}
}

func TestParseFixtures(t *testing.T) {
	t.Parallel()
	d, err := pagerduty.Parse(fixture(t, "incident.triggered.json"), pagerduty.Options{})
	require.NoError(t, err)
	require.Equal(t, "01BZYIL05THJDFF2Y08X9SVMTU", d.EventID)
	require.Equal(t, []fact.Incident{{Source: "pagerduty", IncidentID: "PFQZPSY", PipelineID: "pig208", Environment: "production",
		OpenedAt: ptr(at(t, "2021-06-04T13:35:29.781Z"))}}, d.Set.Incidents)
	e := d.Set.Event
	require.Equal(t, "incident_triggered", e.Kind)
	require.Equal(t, "failure", e.Status)
	require.Equal(t, at(t, "2021-06-04T13:35:29.781Z"), e.OccurredAt)

	d, err = pagerduty.Parse(fixture(t, "incident.resolved.json"), pagerduty.Options{PipelineID: "api", Environment: "eu"})
	require.NoError(t, err)
	require.Equal(t, []fact.Incident{{Source: "pagerduty", IncidentID: "PCPZE64", PipelineID: "api", Environment: "eu",
		ResolvedAt: ptr(at(t, "2021-06-04T13:16:53.816Z"))}}, d.Set.Incidents)
	require.Equal(t, "success", d.Set.Event.Status)

	_, err = pagerduty.Parse(fixture(t, "incident.acknowledged.json"), pagerduty.Options{})
	require.ErrorIs(t, err, pagerduty.ErrIgnored)
}

func ptr[T any](v T) *T { return &v }

func TestParse(t *testing.T) {
	t.Parallel()
	// A resolution that says when the incident was created gives the whole incident.
	d, err := pagerduty.Parse([]byte(`{"event":{"id":"E1","event_type":"incident.resolved","occurred_at":"2026-11-25T11:00:00Z",
		"data":{"id":"P1","created_at":"2026-11-25T10:00:00Z","service":{"summary":"api"}}}}`), pagerduty.Options{})
	require.NoError(t, err)
	require.Equal(t, at(t, "2026-11-25T10:00:00Z"), *d.Set.Incidents[0].OpenedAt)
	require.Equal(t, at(t, "2026-11-25T11:00:00Z"), *d.Set.Incidents[0].ResolvedAt)

	for _, kind := range []string{"pagey.ping", "incident.acknowledged", "incident.reassigned", "service.updated"} {
		_, err := pagerduty.Parse([]byte(`{"event":{"event_type":"`+kind+`"}}`), pagerduty.Options{})
		require.ErrorIs(t, err, pagerduty.ErrIgnored, kind)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"not JSON":      {`{"event":`, "not a JSON object"},
		"V2 webhook":    {`{"messages":[]}`, "only V3"},
		"no event type": {`{"event":{"id":"E1"}}`, "event.event_type"},
		"no incident":   {`{"event":{"event_type":"incident.triggered","occurred_at":"2026-11-25T10:00:00Z"}}`, "event.data.id"},
		"no service":    {`{"event":{"event_type":"incident.triggered","occurred_at":"2026-11-25T10:00:00Z","data":{"id":"P1"}}}`, "event.data.service.summary"},
		"no time":       {`{"event":{"event_type":"incident.triggered","data":{"id":"P1","service":{"summary":"api"}}}}`, "event.occurred_at"},
		"bad time":      {`{"event":{"event_type":"incident.triggered","occurred_at":"yesterday","data":{"id":"P1","service":{"summary":"api"}}}}`, "event.occurred_at"},
	} {
		_, err := pagerduty.Parse([]byte(tc.body), pagerduty.Options{})
		require.ErrorIs(t, err, pagerduty.ErrInvalid, name)
		require.Contains(t, err.Error(), tc.want, name)
	}
}

// FuzzParse feeds Parse every fixture, mutated: it must never panic, and what it accepts
// must be a complete incident.
func FuzzParse(f *testing.F) {
	for _, name := range webhooktest.Fixtures(f, "incident.*.json") {
		f.Add(fixture(f, name), "")
	}
	f.Add([]byte(`{"event":{"id":"E1","event_type":"incident.resolved","occurred_at":"2026-11-25T11:00:00Z","data":{"id":"P1","created_at":"2026-11-25 10:00:00 UTC","service":{"summary":"api"}}}}`), "web")
	f.Fuzz(func(t *testing.T, body []byte, pipeline string) {
		d, err := pagerduty.Parse(body, pagerduty.Options{PipelineID: pipeline})
		if err != nil {
			return
		}
		require.Len(t, d.Set.Incidents, 1)
		i := d.Set.Incidents[0]
		require.NotEmpty(t, i.IncidentID)
		require.NotEmpty(t, i.PipelineID)
		require.True(t, i.OpenedAt != nil || i.ResolvedAt != nil)
		require.False(t, d.Set.Event.OccurredAt.IsZero())
		require.NotContains(t, d.Set.Event.Kind, ".", "a subject token")
	})
}

// What Postgres cannot store is refused at the edge, not accepted and dead-lettered.
func TestParseRefusesWhatPostgresCannotStore(t *testing.T) {
	t.Parallel()
	body := `{"event":{"id":"E1","event_type":"incident.triggered","occurred_at":"2026-11-25T10:00:00Z","data":{"id":"P1","title":"%s","service":{"summary":"api"}}}}`
	for name, tc := range map[string]struct {
		body string
		opts pagerduty.Options
	}{
		"NUL escape":     {strings.Replace(body, "%s", `\u0000`, 1), pagerduty.Options{}},
		"invalid UTF-8":  {strings.Replace(body, "%s", "\xc3", 1), pagerduty.Options{}},
		"NUL in the URL": {strings.Replace(body, "%s", "", 1), pagerduty.Options{PipelineID: "\x00"}},
	} {
		_, err := pagerduty.Parse([]byte(tc.body), tc.opts)
		require.ErrorIs(t, err, pagerduty.ErrInvalid, name)
		require.ErrorIs(t, err, event.ErrText, name)
	}
}
