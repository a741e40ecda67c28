package stream_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/stream"
)

// The embedded server's passwords are made once, readable by their owner only, and kept.
func TestLocalPasswords(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "data", stream.PasswordsFile) // the data directory is made too
	first, err := stream.LocalPasswords(path)
	require.NoError(t, err)
	require.Len(t, first, len(stream.Roles))
	seen := map[string]bool{}
	for _, r := range stream.Roles {
		require.Regexp(t, `^[0-9a-f]{64}$`, first[r])
		require.False(t, seen[first[r]], "a password per role")
		seen[first[r]] = true
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(raw), "DEVOPSTIC_NATS_ADMIN_PASSWORD="+first[stream.RoleAdmin]+"\n")

	again, err := stream.LocalPasswords(path)
	require.NoError(t, err)
	require.Equal(t, first, again, "kept across restarts")

	// A line removed by hand: that password alone is made again.
	var kept []string
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, stream.RoleWriter.PasswordVar()) {
			kept = append(kept, line)
		}
	}
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(kept, "\n")), 0o600))
	third, err := stream.LocalPasswords(path)
	require.NoError(t, err)
	require.Equal(t, first[stream.RoleIngest], third[stream.RoleIngest])
	require.Equal(t, first[stream.RoleAdmin], third[stream.RoleAdmin])
	require.NotEqual(t, first[stream.RoleWriter], third[stream.RoleWriter])
	require.NotEmpty(t, third[stream.RoleWriter])

	// A file others may read is refused, not used.
	require.NoError(t, os.Chmod(path, 0o644))
	_, err = stream.LocalPasswords(path)
	require.ErrorContains(t, err, "may be read by other users (mode 0644): run chmod 600 on it")
}

// The embedded server starts only with a password for every role.
func TestServerNeedsPasswords(t *testing.T) {
	t.Parallel()
	_, err := stream.RunServer(stream.ServerConfig{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1})
	require.ErrorContains(t, err, "no NATS password for the role ingest")
}
