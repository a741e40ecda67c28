package webhook_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/webhook"
)

func TestID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		json, want, wantErr string
		number              int64 // 0: not a pull request number
	}{
		{json: `10`, want: "10", number: 10},
		{json: `"10"`, want: "10", number: 10},
		{json: `" 10\t"`, want: "10", number: 10},
		{json: `"010"`, want: "010", number: 10}, // kept as sent: no JSON number is written 010
		{json: `"9f3c2b1a0e8d7c6b5a4f"`, want: "9f3c2b1a0e8d7c6b5a4f"},
		{json: `9007199254740993`, want: "9007199254740993", number: 9007199254740993}, // beyond a float64's integers
		{json: `99999999999999999999`, want: "99999999999999999999"},                   // beyond int64: an id, no number
		{json: `-3`, want: "-3"},
		{json: `0`, want: "0"},
		{json: `null`, want: ""},
		{json: `""`, want: ""},
		{json: `1.5`, want: "1.5"}, // as json.Number read it: stored deliveries still map
		{json: `1e3`, want: "1e3"},
		{json: `true`, wantErr: "a boolean, not a string or a number"},
		{json: `{"id":1}`, wantErr: "an object, not a string or a number"},
		{json: `[1]`, wantErr: "an array, not a string or a number"},
		{json: `"` + strings.Repeat("a", webhook.MaxIDLength+1) + `"`, wantErr: "an id of 257 bytes (at most 256)"},
	} {
		var v struct {
			Deployment struct {
				ID webhook.ID `json:"id"`
			} `json:"deployment"`
		}
		err := json.Unmarshal([]byte(`{"deployment":{"id":`+tc.json+`}}`), &v)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.json)
			require.ErrorContains(t, err, "deployment.id", "the error names the field: %s", tc.json)
			continue
		}
		require.NoError(t, err, tc.json)
		require.Equal(t, tc.want, v.Deployment.ID.String(), tc.json)
		n, ok := v.Deployment.ID.Number()
		require.Equal(t, tc.number != 0, ok, tc.json)
		require.Equal(t, tc.number, map[bool]int64{true: n}[ok], tc.json)
	}
}

func TestPullRequest(t *testing.T) {
	t.Parallel()
	var m webhook.Mapper
	require.Nil(t, m.PullRequest("pull_request.number", ""), "absent")
	require.Equal(t, int64(5), *m.PullRequest("pull_request.number", "5"))
	require.Empty(t, m.Warnings)
	require.Nil(t, m.PullRequest("pull_request.number", "PR-5"))
	require.Equal(t, []string{`pull_request.number "PR-5" is not a positive integer: the change is kept without a pull request number`}, m.Warnings)
}

func TestTime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ json, want, wantErr string }{
		{json: `"2026-11-02 14:00:00.123456"`, want: "2026-11-02 14:00:00.123456"}, // kept as sent: When reads it
		{json: `1793628000`, want: "2026-11-02T14:00:00Z"},
		{json: `1793628000.123456789`, want: "2026-11-02T14:00:00.123456789Z"},
		{json: `0`, want: "1970-01-01T00:00:00Z"},
		{json: `null`, want: ""},
		{json: `1793628000000`, wantErr: "looks like epoch milliseconds"},
		{json: `-1`, wantErr: "before 1970"},
		{json: `{}`, wantErr: "an object, not a time"},
		{json: `false`, wantErr: "a boolean, not a time"},
	} {
		var v struct {
			At webhook.Time `json:"created_at"`
		}
		err := json.Unmarshal([]byte(`{"created_at":`+tc.json+`}`), &v)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.json)
			require.ErrorContains(t, err, "created_at", "the error names the field: %s", tc.json)
			continue
		}
		require.NoError(t, err, tc.json)
		require.Equal(t, tc.want, v.At.String(), tc.json)
	}
	at, err := webhook.When("deployment_status.created_at", webhook.Time("2026-11-02 14:00:00"))
	require.NoError(t, err)
	require.Equal(t, "2026-11-02T14:00:00Z", at.Format("2006-01-02T15:04:05Z07:00"), "naive is UTC")
	_, err = webhook.When("deployment_status.created_at", webhook.Time(""))
	require.ErrorIs(t, err, webhook.ErrInvalid)
	require.ErrorContains(t, err, "deployment_status.created_at is missing")
	_, err = webhook.When("deployment_status.created_at", "1793628000")
	require.ErrorIs(t, err, webhook.ErrInvalid, "a string of digits is no time: epoch seconds are a number")
}
