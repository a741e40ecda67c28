package api_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/api"
)

// A webhook source without a secret is off: 404, and the log names the variable to set.
func TestWebhookWithoutSecretIsOff(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	app := api.New(api.Config{BodyLimit: 1 << 20, MaxBatch: 10}, api.Deps{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	for path, variable := range map[string]string{
		"/github/events":       "DEVOPSTIC_GITHUB_WEBHOOK_SECRET",
		"/gitlab/events":       "DEVOPSTIC_GITLAB_WEBHOOK_SECRET",
		"/pagerduty/incidents": "DEVOPSTIC_PAGERDUTY_WEBHOOK_SECRET",
		"/alertmanager/alerts": "DEVOPSTIC_ALERTMANAGER_TOKEN",
	} {
		logs.Reset()
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := app.Test(req, -1)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", path, body)
		require.Contains(t, string(body), "not enabled on this server", path)
		require.Contains(t, logs.String(), variable+" is not set", path)
	}
}
