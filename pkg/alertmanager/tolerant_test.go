package alertmanager_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/alertmanager"
)

// Tools that imitate Alertmanager write its times in other forms and its fingerprint as a
// number: each variant maps as Alertmanager's own form does.
func TestParseToleratesImitators(t *testing.T) {
	t.Parallel()
	body := func(fingerprint, starts, ends string) []byte {
		return []byte(`{"version":"4","status":"resolved","alerts":[{"status":"resolved","labels":{"severity":"critical","service":"api"},` +
			`"startsAt":` + starts + `,"endsAt":` + ends + `,"fingerprint":` + fingerprint + `}]}`)
	}
	const opened, resolved = "2026-11-02T14:00:00Z", "2026-11-02T15:00:00Z"
	for name, tc := range map[string]struct {
		body     []byte
		incident string
		resolved string
		wantErr  error
	}{
		"Alertmanager's own":        {body(`"c0ffee"`, `"2026-11-02T14:00:00Z"`, `"2026-11-02T15:00:00.000000000Z"`), "c0ffee@" + opened, resolved, nil},
		"Go's time.String":          {body(`"c0ffee"`, `"2026-11-02 15:00:00 +0100 CET"`, `"2026-11-02 15:00:00 +0000 UTC"`), "c0ffee@" + opened, resolved, nil},
		"a fingerprint as a number": {body(`12345`, `"2026-11-02T14:00:00Z"`, `"2026-11-02T15:00:00Z"`), "12345@" + opened, resolved, nil},
		"naive times":               {body(`"c0ffee"`, `"2026-11-02T14:00:00"`, `"2026-11-02 15:00:00.0"`), "c0ffee@" + opened, resolved, nil},
		"lower-case t and z":        {body(`"c0ffee"`, `"2026-11-02t14:00:00z"`, `"2026-11-02t15:00:00z"`), "c0ffee@" + opened, resolved, nil},
		"epoch seconds":             {body(`"c0ffee"`, `1793628000`, `1793631600`), "c0ffee@" + opened, resolved, nil},
		"a fingerprint object":      {body(`{}`, `"2026-11-02T14:00:00Z"`, `"2026-11-02T15:00:00Z"`), "", "", alertmanager.ErrInvalid},
		"a time that is a boolean":  {body(`"c0ffee"`, `true`, `"2026-11-02T15:00:00Z"`), "", "", alertmanager.ErrInvalid},
	} {
		d, err := alertmanager.Parse(tc.body, alertmanager.Options{})
		if tc.wantErr != nil {
			require.ErrorIs(t, err, tc.wantErr, name)
			continue
		}
		require.NoError(t, err, name)
		inc := d.Set.Incidents[0]
		require.Equal(t, tc.incident, inc.IncidentID, name)
		require.Equal(t, at(t, opened), *inc.OpenedAt, name)
		require.Equal(t, at(t, tc.resolved), *inc.ResolvedAt, name)
	}
}
