package importer_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/importer"
)

func TestParseTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "", want: time.Time{}},
		{in: "all", want: time.Time{}},
		{in: "90d", want: now.AddDate(0, 0, -90)},
		{in: "36h", want: now.Add(-36 * time.Hour)},
		{in: "2026-01-31", want: time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)},
		{in: "2026-01-31T10:00:00+02:00", want: time.Date(2026, 1, 31, 8, 0, 0, 0, time.UTC)},
		{in: "last week", wantErr: true},
		{in: "-3d", wantErr: true},
	} {
		got, err := importer.ParseTime(tc.in, now)
		if tc.wantErr {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.True(t, tc.want.Equal(got), "%s: %s", tc.in, got)
	}
}

func TestNativeValidatesAndMarks(t *testing.T) {
	t.Parallel()
	msg, err := importer.Native([]byte(`{"id":"git:commit:abc","type":"commit","pipeline_id":"api","commit_id":"abc","timestamp":"2026-03-02T01:00:00Z"}`), time.Now(), "git")
	require.NoError(t, err)
	require.Equal(t, "devopstic.events.native.commit", msg.Subject)
	require.Equal(t, event.ScopedID("api", "git:commit:abc"), msg.ID)
	require.Equal(t, []string{"git"}, msg.Header[importer.HeaderImported])

	_, err = importer.Native([]byte(`{"type":"deploy","pipeline_id":"api","commit_id":"abc"}`), time.Now(), "git")
	require.ErrorIs(t, err, event.ErrInvalid, "a deploy needs its environment")
}
