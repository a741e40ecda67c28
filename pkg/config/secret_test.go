package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The variables holding secrets are known as such by their names, and those merely near one
// (DEVOPSTIC_TOKEN_TTL) are not.
func TestSecret(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		"DEVOPSTIC_JWT_SECRET", "DEVOPSTIC_PASSWORD", "DEVOPSTIC_DATABASE_PASSWORD", "DEVOPSTIC_DATABASE_URL",
		"DEVOPSTIC_NATS_PASSWORD", "DEVOPSTIC_NATS_URL", "DEVOPSTIC_NATS_INGEST_PASSWORD", "DEVOPSTIC_READER_PASSWORD",
		"DEVOPSTIC_GITHUB_WEBHOOK_SECRET", "DEVOPSTIC_GITLAB_WEBHOOK_SECRET", "DEVOPSTIC_PAGERDUTY_WEBHOOK_SECRET",
		"DEVOPSTIC_ALERTMANAGER_TOKEN", "DEVOPSTIC_WEBHOOK_SECRETS", "DEVOPSTIC_API_KEY",
	} {
		require.True(t, secret(v), v)
	}
	for _, v := range []string{
		"DEVOPSTIC_TOKEN_TTL", "DEVOPSTIC_TOKEN_REFRESH_WINDOW", "DEVOPSTIC_USERNAME", "DEVOPSTIC_NATS_USER",
		"DEVOPSTIC_MAX_BATCH", "DEVOPSTIC_GITHUB_INCIDENT_LABEL", "DEVOPSTIC_HTTP_ADDR", "DEVOPSTIC_DATA_DIR",
	} {
		require.False(t, secret(v), v)
	}
}
