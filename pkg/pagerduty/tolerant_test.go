package pagerduty_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/pagerduty"
)

// Tools that imitate PagerDuty write its ids as numbers and its times in other forms: each
// variant maps as PagerDuty's own form does, and 42 and "42" are one incident.
func TestParseToleratesImitators(t *testing.T) {
	t.Parallel()
	body := func(eventID, incidentID, occurred, created string) []byte {
		return []byte(`{"event":{"id":` + eventID + `,"event_type":"incident.resolved","occurred_at":` + occurred +
			`,"data":{"id":` + incidentID + `,"created_at":` + created + `,"service":{"summary":"api"}}}}`)
	}
	const opened, resolved = "2026-11-02T14:00:00Z", "2026-11-02T15:00:00Z"
	for name, tc := range map[string]struct {
		body              []byte
		eventID, incident string
		opened, resolved  string
		wantErr           error
	}{
		"PagerDuty's own":               {body(`"01BZ"`, `"PFQZPSY"`, `"2026-11-02T15:00:00.000Z"`, `"2026-11-02T14:00:00Z"`), "01BZ", "PFQZPSY", opened, resolved, nil},
		"ids as numbers":                {body(`7`, `42`, `"2026-11-02T15:00:00Z"`, `"2026-11-02T14:00:00Z"`), "7", "42", opened, resolved, nil},
		"ids as strings of digits":      {body(`"7"`, `"42"`, `"2026-11-02T15:00:00Z"`, `"2026-11-02T14:00:00Z"`), "7", "42", opened, resolved, nil},
		"naive times":                   {body(`7`, `42`, `"2026-11-02 15:00:00"`, `"2026-11-02T14:00:00.000000"`), "7", "42", opened, resolved, nil},
		"offsets without a colon":       {body(`7`, `42`, `"2026-11-02T16:00:00+0100"`, `"2026-11-02T15:00:00+0100"`), "7", "42", opened, resolved, nil},
		"epoch seconds":                 {body(`7`, `42`, `1793631600`, `1793628000`), "7", "42", opened, resolved, nil},
		"UTC by name":                   {body(`7`, `42`, `"2026-11-02 15:00:00 UTC"`, `"2026-11-02 14:00:00 GMT"`), "7", "42", opened, resolved, nil},
		"an incident id that is a list": {body(`7`, `[42]`, `"2026-11-02T15:00:00Z"`, `null`), "", "", "", "", pagerduty.ErrInvalid},
		"an empty incident id":          {body(`7`, `""`, `"2026-11-02T15:00:00Z"`, `null`), "", "", "", "", pagerduty.ErrInvalid},
		"epoch milliseconds":            {body(`7`, `42`, `1793631600000`, `null`), "", "", "", "", pagerduty.ErrInvalid},
	} {
		d, err := pagerduty.Parse(tc.body, pagerduty.Options{})
		if tc.wantErr != nil {
			require.ErrorIs(t, err, tc.wantErr, name)
			continue
		}
		require.NoError(t, err, name)
		require.Equal(t, tc.eventID, d.EventID, name)
		inc := d.Set.Incidents[0]
		require.Equal(t, tc.incident, inc.IncidentID, name)
		require.Equal(t, at(t, tc.opened), *inc.OpenedAt, name)
		require.Equal(t, at(t, tc.resolved), *inc.ResolvedAt, name)
	}
}
