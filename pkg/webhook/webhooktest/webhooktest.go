// Package webhooktest holds what the tests of the webhook sources share: reading a delivery
// from the testdata of the package under test, writing the times their expectations name, and
// checking that what a parser accepts is complete.
package webhooktest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/fact"
)

// Fixture reads testdata/name, a delivery as its sender sends it.
func Fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// Fixtures names the files of testdata that glob matches (such as "*.json"), as Fixture takes
// them: the seed corpus of a fuzz test.
func Fixtures(t testing.TB, glob string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", glob))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no testdata/%s", glob)
	names := make([]string, len(files))
	for i, file := range files {
		names[i], err = filepath.Rel("testdata", file)
		require.NoError(t, err)
	}
	return names
}

// Time reads an RFC 3339 time (with or without fractional seconds), in UTC.
func Time(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return v.UTC()
}

// RequireComplete checks what a fact set that a parser accepted must hold, whatever the
// delivery was: a pipeline and a time, a commit for every change, a key and a final status for
// every deployment, an id and an opening for every incident.
func RequireComplete(t testing.TB, s fact.Set) {
	t.Helper()
	require.NotEmpty(t, s.Event.PipelineID)
	require.False(t, s.Event.OccurredAt.IsZero())
	for _, c := range s.Changes {
		require.NotEmpty(t, c.CommitID)
	}
	for _, dep := range s.Deployments {
		require.NotEmpty(t, dep.Key)
		require.Contains(t, []string{"success", "failure"}, dep.Status)
	}
	for _, i := range s.Incidents {
		require.NotEmpty(t, i.IncidentID)
		require.NotNil(t, i.OpenedAt)
	}
}
