package alertmanager_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/alertmanager"
	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/webhook/webhooktest"
)

// fixture and at read this package's testdata and the times its tests expect.
var fixture, at = webhooktest.Fixture, webhooktest.Time

func ptr[T any](v T) *T { return &v }

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestVerify(t *testing.T) {
	t.Parallel()
	tokens := []string{"retired", "t0ken"}
	for name, header := range map[string]string{
		"bearer":                     "Bearer t0ken",
		"bearer, any case":           "bearer t0ken",
		"basic, token as password":   basic("alertmanager", "t0ken"),
		"basic, no user name":        basic("", "t0ken"),
		"the retired token, rotated": "Bearer retired",
	} {
		require.NoError(t, alertmanager.Verify(tokens, header), name)
	}
	for name, tc := range map[string]struct {
		tokens []string
		header string
	}{
		"no header":            {tokens, ""},
		"wrong token":          {tokens, "Bearer t0ken2"},
		"prefix of the token":  {tokens, "Bearer t0k"},
		"token as user name":   {tokens, basic("t0ken", "")},
		"basic, not base64":    {tokens, "Basic !!!"},
		"another scheme":       {tokens, "Token t0ken"},
		"no scheme":            {tokens, "t0ken"},
		"no token configured":  {nil, "Bearer t0ken"},
		"empty token":          {[]string{""}, "Bearer "},
		"empty bearer matches": {[]string{""}, basic("a", "")},
	} {
		require.ErrorIs(t, alertmanager.Verify(tc.tokens, tc.header), alertmanager.ErrCredentials, name)
	}
}

func TestParseSelector(t *testing.T) {
	t.Parallel()
	ms, err := alertmanager.ParseSelector("severity=critical, team = payments")
	require.NoError(t, err)
	require.Equal(t, []alertmanager.Matcher{{Name: "severity", Value: "critical"}, {Name: "team", Value: "payments"}}, ms)
	for _, bad := range []string{"", "severity", "=critical", "severity=", "severity=critical,", "severity=~", "severity=~(", "=~a"} {
		_, err := alertmanager.ParseSelector(bad)
		require.Error(t, err, bad)
	}
}

// Prometheus' own test vectors for model.LabelSet.Fingerprint (prometheus/common,
// model/signature_test.go), in hexadecimal.
func TestFingerprint(t *testing.T) {
	t.Parallel()
	require.Equal(t, fmt.Sprintf("%016x", uint64(14695981039346656037)), alertmanager.Fingerprint(nil))
	require.Equal(t, fmt.Sprintf("%016x", uint64(5799056148416392346)),
		alertmanager.Fingerprint(map[string]string{"name": "garland, briggs", "fear": "love is not enough"}))
	require.Equal(t, fmt.Sprintf("%016x", uint64(3195800080984914717)),
		alertmanager.Fingerprint(map[string]string{"first-label": "first-label-value", "second-label": "second-label-value"}))
}

func TestParseFixtures(t *testing.T) {
	t.Parallel()
	started := at(t, "2020-02-06T00:17:58.432911368Z")

	// firing.json: two critical alerts, neither with a service or job label.
	_, err := alertmanager.Parse(fixture(t, "firing.json"), alertmanager.Options{})
	require.ErrorIs(t, err, alertmanager.ErrInvalid)
	require.Contains(t, err.Error(), "alerts[0].labels.service")
	d, err := alertmanager.Parse(fixture(t, "firing.json"), alertmanager.Options{PipelineID: "andromeda"})
	require.NoError(t, err)
	require.Equal(t, []fact.Incident{
		{Source: "alertmanager", IncidentID: "a1bc48475b20e73d@2020-02-06T00:17:58.432911368Z", PipelineID: "andromeda", Environment: "production", OpenedAt: &started},
		{Source: "alertmanager", IncidentID: "c2ea85182f28cbd9@2020-02-06T00:17:58.432911368Z", PipelineID: "andromeda", Environment: "production", OpenedAt: &started},
	}, d.Set.Incidents)
	require.Equal(t, "firing", d.Set.Event.Kind)
	require.Equal(t, "failure", d.Set.Event.Status)
	require.Equal(t, started, d.Set.Event.OccurredAt)
	require.Empty(t, d.Set.Event.IncidentID, "two incidents: the event names neither")

	// firing.minimal.json: a warning, no fingerprint; picked by another selector.
	_, err = alertmanager.Parse(fixture(t, "firing.minimal.json"), alertmanager.Options{})
	require.ErrorIs(t, err, alertmanager.ErrIgnored)
	d, err = alertmanager.Parse(fixture(t, "firing.minimal.json"), alertmanager.Options{Selector: "severity=warning,monitor=master"})
	require.NoError(t, err)
	i := d.Set.Incidents[0]
	require.Equal(t, "docker_nodes", i.PipelineID, "the job label")
	labels := map[string]string{"alertname": "high_memory_load", "instance": "instance-with-hyphen_and_underscore",
		"job": "docker_nodes", "monitor": "master", "severity": "warning"}
	require.Equal(t, alertmanager.Fingerprint(labels)+"@2018-03-07T11:33:21.873077559Z", i.IncidentID, "the fingerprint Alertmanager would send")
	require.Equal(t, at(t, "2018-03-07T11:33:21.873077559Z"), *i.OpenedAt)
	require.Nil(t, i.ResolvedAt)

	// resolved.json: a warning; picked, it is resolved at endsAt.
	_, err = alertmanager.Parse(fixture(t, "resolved.json"), alertmanager.Options{})
	require.ErrorIs(t, err, alertmanager.ErrIgnored)
	d, err = alertmanager.Parse(fixture(t, "resolved.json"), alertmanager.Options{Selector: "severity=warning", PipelineID: "monitoring", Environment: "staging"})
	require.NoError(t, err)
	require.Equal(t, []fact.Incident{{Source: "alertmanager", IncidentID: "dd19ae3d4e06ac55@2019-01-28T20:26:23.868893Z", PipelineID: "monitoring",
		Environment: "staging", OpenedAt: ptr(at(t, "2019-01-28T20:26:23.868893Z")), ResolvedAt: ptr(at(t, "2019-01-28T20:27:23.868893Z"))}}, d.Set.Incidents)
	require.Equal(t, "resolved", d.Set.Event.Kind)
	require.Equal(t, "success", d.Set.Event.Status)
	require.Equal(t, at(t, "2019-01-28T20:27:23.868893Z"), d.Set.Event.OccurredAt)

	// resolved.multiple-alerts.json: of two alerts only the second is critical.
	d, err = alertmanager.Parse(fixture(t, "resolved.multiple-alerts.json"), alertmanager.Options{PipelineID: "disks"})
	require.NoError(t, err)
	require.Len(t, d.Set.Incidents, 1)
	require.Equal(t, at(t, "2017-05-09T07:01:37.803Z"), *d.Set.Incidents[0].OpenedAt)
	require.Equal(t, at(t, "2017-05-09T07:08:37.81827Z"), *d.Set.Incidents[0].ResolvedAt)
	require.Equal(t, "dd19ae3d4e06ac55@2017-05-09T07:01:37.803Z", d.Set.Event.IncidentID)
}

func TestParse(t *testing.T) {
	t.Parallel()
	body := []byte(`{"version":"4","status":"firing","alerts":[
		{"status":"firing","labels":{"severity":"CRITICAL","service":"api","env":"eu"},"startsAt":"2026-11-25T10:00:00Z","endsAt":"2026-11-25T10:05:00Z","fingerprint":"f1"},
		{"status":"resolved","labels":{"severity":"critical","service":"web","job":"node","environment":"us"},"startsAt":"2026-11-25T09:00:00Z","endsAt":"2026-11-25T09:30:00Z","fingerprint":"f2"},
		{"status":"firing","labels":{"severity":"critical"},"startsAt":"2026-11-25T10:00:00Z","fingerprint":"f3"},
		{"status":"firing","labels":{"severity":"info","service":"api"},"startsAt":"2026-11-25T10:00:00Z","fingerprint":"f4"}]}`)
	d, err := alertmanager.Parse(body, alertmanager.Options{})
	require.NoError(t, err)
	require.Equal(t, []fact.Incident{
		{Source: "alertmanager", IncidentID: "f1@2026-11-25T10:00:00Z", PipelineID: "api", Environment: "eu",
			OpenedAt: ptr(at(t, "2026-11-25T10:00:00Z")), ResolvedAt: nil},
		{Source: "alertmanager", IncidentID: "f2@2026-11-25T09:00:00Z", PipelineID: "web", Environment: "us",
			OpenedAt: ptr(at(t, "2026-11-25T09:00:00Z")), ResolvedAt: ptr(at(t, "2026-11-25T09:30:00Z"))},
	}, d.Set.Incidents, "a firing alert's endsAt is a forecast, not a resolution; the info alert is not picked")
	require.Equal(t, []string{"alerts[2].labels.service (or job) is missing: add ?pipeline_id= to the webhook URL"}, d.Warnings)
	require.Equal(t, "failure", d.Set.Event.Status, "something is still firing")

	// A regular expression, anchored: "critical|page" picks critical and page, not "critical-ish".
	d, err = alertmanager.Parse([]byte(`{"alerts":[
		{"labels":{"severity":"page","service":"a"},"startsAt":"2026-11-25T10:00:00Z"},
		{"labels":{"severity":"critical-ish","service":"b"},"startsAt":"2026-11-25T10:00:00Z"},
		{"labels":{"service":"c"},"startsAt":"2026-11-25T10:00:00Z"}]}`), alertmanager.Options{Selector: "severity=~critical|page"})
	require.NoError(t, err)
	require.Len(t, d.Set.Incidents, 1)
	require.Equal(t, "a", d.Set.Incidents[0].PipelineID)

	// The URL's labels win over the alerts'.
	d, err = alertmanager.Parse(body, alertmanager.Options{PipelineID: "shop", Environment: "prod"})
	require.NoError(t, err)
	require.Len(t, d.Set.Incidents, 3)
	for _, i := range d.Set.Incidents {
		require.Equal(t, "shop", i.PipelineID)
		require.Equal(t, "prod", i.Environment)
	}

	for name, tc := range map[string]struct {
		body    string
		wantErr error
		want    string
	}{
		"not JSON":          {`{"alerts":[`, alertmanager.ErrInvalid, "not a JSON object"},
		"not Alertmanager":  {`{"event":{}}`, alertmanager.ErrInvalid, "alerts is missing"},
		"no alert picked":   {`{"alerts":[{"labels":{"severity":"warning","service":"a"},"startsAt":"2026-11-25T10:00:00Z"}]}`, alertmanager.ErrIgnored, "severity=critical"},
		"empty":             {`{"alerts":[]}`, alertmanager.ErrIgnored, "no alert"},
		"no start":          {`{"alerts":[{"labels":{"severity":"critical","service":"a"}}]}`, alertmanager.ErrInvalid, "alerts[0].startsAt is missing"},
		"zero start":        {`{"alerts":[{"labels":{"severity":"critical","service":"a"},"startsAt":"0001-01-01T00:00:00Z"}]}`, alertmanager.ErrInvalid, "alerts[0].startsAt"},
		"bad start":         {`{"alerts":[{"labels":{"severity":"critical","service":"a"},"startsAt":"now"}]}`, alertmanager.ErrInvalid, "alerts[0].startsAt"},
		"resolved, no end":  {`{"status":"resolved","alerts":[{"labels":{"severity":"critical","service":"a"},"startsAt":"2026-11-25T10:00:00Z"}]}`, alertmanager.ErrInvalid, "alerts[0].endsAt"},
		"resolved, end 0":   {`{"alerts":[{"status":"resolved","labels":{"severity":"critical","service":"a"},"startsAt":"2026-11-25T10:00:00Z","endsAt":"0001-01-01T00:00:00Z"}]}`, alertmanager.ErrInvalid, "alerts[0].endsAt"},
		"labels not a map":  {`{"alerts":[{"labels":["severity"]}]}`, alertmanager.ErrInvalid, "not a JSON object"},
		"alerts not a list": {`{"alerts":{}}`, alertmanager.ErrInvalid, "not a JSON object"},
	} {
		_, err := alertmanager.Parse([]byte(tc.body), alertmanager.Options{})
		require.ErrorIs(t, err, tc.wantErr, name)
		require.Contains(t, err.Error(), tc.want, name)
	}
}

// FuzzParse feeds Parse every fixture, mutated: it must never panic, and every incident it
// maps must be complete.
func FuzzParse(f *testing.F) {
	for _, name := range webhooktest.Fixtures(f, "*.json") {
		f.Add(fixture(f, name), "", "severity=critical")
		f.Add(fixture(f, name), "svc", "severity=warning")
	}
	f.Fuzz(func(t *testing.T, body []byte, pipeline, selector string) {
		d, err := alertmanager.Parse(body, alertmanager.Options{PipelineID: pipeline, Selector: selector})
		if err != nil {
			return
		}
		require.NotEmpty(t, d.Set.Incidents)
		for _, i := range d.Set.Incidents {
			require.NotEmpty(t, i.IncidentID)
			require.NotEmpty(t, i.PipelineID)
			require.NotEmpty(t, i.Environment)
			require.NotNil(t, i.OpenedAt)
		}
		require.False(t, d.Set.Event.OccurredAt.IsZero())
		require.Contains(t, []string{"firing", "resolved", "alerts"}, d.Set.Event.Kind)
	})
}

// What Postgres cannot store is refused at the edge, not accepted and dead-lettered.
func TestParseRefusesWhatPostgresCannotStore(t *testing.T) {
	t.Parallel()
	body := `{"alerts":[{"labels":{"severity":"critical","service":"api"},"annotations":{"summary":"%s"},"startsAt":"2026-11-25T10:00:00Z"}]}`
	for name, tc := range map[string]struct {
		body string
		opts alertmanager.Options
	}{
		"NUL escape":     {strings.Replace(body, "%s", `\u0000`, 1), alertmanager.Options{}},
		"invalid UTF-8":  {strings.Replace(body, "%s", "\x80", 1), alertmanager.Options{}},
		"NUL in the URL": {strings.Replace(body, "%s", "", 1), alertmanager.Options{Environment: "\x00"}},
	} {
		_, err := alertmanager.Parse([]byte(tc.body), tc.opts)
		require.ErrorIs(t, err, alertmanager.ErrInvalid, name)
		require.ErrorIs(t, err, event.ErrText, name)
	}
}
