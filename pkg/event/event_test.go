package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
)

// received is the receive time the tests hand to Decode; no test event carries it.
var received = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// withFields returns base with fields set (as raw JSON) or removed (when the value is "").
func withFields(t *testing.T, base string, fields map[string]string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(base), &m))
	for k, v := range fields {
		if v == "" {
			delete(m, k)
			continue
		}
		m[k] = json.RawMessage(v)
	}
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out
}

// problems decodes raw, requires a validation error and returns its problems.
func problems(t *testing.T, raw []byte) []event.Problem {
	t.Helper()
	e, err := event.Decode(raw, received)
	require.Error(t, err)
	require.ErrorIs(t, err, event.ErrInvalid)
	require.Equal(t, event.Event{}, e)
	var verr *event.ValidationError
	require.ErrorAs(t, err, &verr)
	return verr.Problems
}

func decode(t *testing.T, raw string) event.Event {
	t.Helper()
	e, err := event.Decode([]byte(raw), received)
	require.NoError(t, err)
	return e
}

const (
	baseCommit   = `{"type":"commit","pipeline_id":"shop","commit_id":"abc123","timestamp":1561003507}`
	baseDeploy   = `{"type":"deploy","pipeline_id":"shop","environment":"production","commit_id":"abc123","timestamp":1561003507}`
	baseIncident = `{"type":"incident_status_change","pipeline_id":"shop","environment":"production","incident_id":"INC-1","status":"failure","timestamp":1561003507}`
)

func TestDecodeFullDeploy(t *testing.T) {
	t.Parallel()
	raw := `{
		"id": "ci-run-42",
		"type": "deploy",
		"pipeline_id": "shop",
		"environment": "production",
		"commit_id": "abc123",
		"commits": ["def456", "abc123"],
		"pull_request_id": 232,
		"deployment_id": "dep-9",
		"status": "failure",
		"timestamp": 1561003507
	}`
	pr := int64(232)
	want := event.Event{
		ID:            "native:shop:ci-run-42",
		Type:          event.TypeDeploy,
		PipelineID:    "shop",
		Environment:   "production",
		CommitID:      "abc123",
		Commits:       []string{"def456", "abc123"},
		PullRequestID: &pr,
		DeploymentID:  "dep-9",
		Status:        event.StatusFailure,
		Timestamp:     time.Date(2019, 6, 20, 4, 5, 7, 0, time.UTC),
		ClientID:      "ci-run-42",
	}
	require.Equal(t, want, decode(t, raw))
}

func TestDecodeValidTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
	}{
		{"commit", baseCommit},
		{"submit", `{"type":"submit","pipeline_id":"shop","commit_id":"abc123"}`},
		{"approve", `{"type":"approve","pipeline_id":"shop","commit_id":"abc123"}`},
		{"deploy", baseDeploy},
		{"incident without commit", baseIncident},
		{"incident naming its cause", `{"type":"incident_status_change","pipeline_id":"shop","environment":"production","incident_id":"INC-1","commit_id":"abc","deployment_id":"d1"}`},
		{"empty commits on a commit", `{"type":"commit","pipeline_id":"shop","commit_id":"abc123","commits":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := decode(t, tt.raw)
			require.NotEmpty(t, e.ID)
		})
	}
}

func TestDecodeProblems(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return `"` + strings.Repeat("a", n) + `"` }
	tests := []struct {
		name string
		raw  []byte
		want []event.Problem
	}{
		{
			name: "empty object",
			raw:  []byte(`{}`),
			want: []event.Problem{{Field: "type", Message: "is required"}, {Field: "pipeline_id", Message: "is required"}},
		},
		{
			name: "unknown type",
			raw:  withFields(t, baseCommit, map[string]string{"type": `"release"`}),
			want: []event.Problem{{Field: "type", Message: "must be one of commit, submit, approve, deploy, incident_status_change"}},
		},
		{
			name: "type in upper case",
			raw:  withFields(t, baseCommit, map[string]string{"type": `"COMMIT"`}),
			want: []event.Problem{{Field: "type", Message: "must be one of commit, submit, approve, deploy, incident_status_change"}},
		},
		{
			name: "commit without pipeline_id",
			raw:  withFields(t, baseCommit, map[string]string{"pipeline_id": ""}),
			want: []event.Problem{{Field: "pipeline_id", Message: "is required"}},
		},
		{
			name: "blank pipeline_id",
			raw:  withFields(t, baseCommit, map[string]string{"pipeline_id": `"   "`}),
			want: []event.Problem{{Field: "pipeline_id", Message: "is required"}},
		},
		{
			name: "commit without commit_id",
			raw:  withFields(t, baseCommit, map[string]string{"commit_id": ""}),
			want: []event.Problem{{Field: "commit_id", Message: "is required for commit events"}},
		},
		{
			name: "submit without commit_id",
			raw:  []byte(`{"type":"submit","pipeline_id":"shop"}`),
			want: []event.Problem{{Field: "commit_id", Message: "is required for submit events"}},
		},
		{
			name: "approve without commit_id",
			raw:  []byte(`{"type":"approve","pipeline_id":"shop"}`),
			want: []event.Problem{{Field: "commit_id", Message: "is required for approve events"}},
		},
		{
			name: "deploy without environment and commit_id",
			raw:  []byte(`{"type":"deploy","pipeline_id":"shop"}`),
			want: []event.Problem{
				{Field: "environment", Message: "is required for deploy events"},
				{Field: "commit_id", Message: "is required for deploy events"},
			},
		},
		{
			name: "incident without environment and incident_id",
			raw:  []byte(`{"type":"incident_status_change","pipeline_id":"shop"}`),
			want: []event.Problem{
				{Field: "environment", Message: "is required for incident_status_change events"},
				{Field: "incident_id", Message: "is required for incident_status_change events"},
			},
		},
		{
			name: "unknown status",
			raw:  withFields(t, baseCommit, map[string]string{"status": `"ok"`}),
			want: []event.Problem{{Field: "status", Message: `must be "success" or "failure"`}},
		},
		{
			name: "commits on a commit event",
			raw:  withFields(t, baseCommit, map[string]string{"commits": `["a"]`}),
			want: []event.Problem{{Field: "commits", Message: "is only meaningful on deploy events"}},
		},
		{
			name: "commits on an incident",
			raw:  withFields(t, baseIncident, map[string]string{"commits": `["a"]`}),
			want: []event.Problem{{Field: "commits", Message: "is only meaningful on deploy events"}},
		},
		{
			name: "empty first commit",
			raw:  withFields(t, baseDeploy, map[string]string{"commits": `[""]`}),
			want: []event.Problem{{Field: "commits[0]", Message: "must be a commit id of 1 to 256 characters"}},
		},
		{
			name: "blank second commit",
			raw:  withFields(t, baseDeploy, map[string]string{"commits": `["a", "  "]`}),
			want: []event.Problem{{Field: "commits[1]", Message: "must be a commit id of 1 to 256 characters"}},
		},
		{
			name: "id with a space",
			raw:  withFields(t, baseCommit, map[string]string{"id": `"run 42"`}),
			want: []event.Problem{{Field: "id", Message: "must be printable ASCII without spaces"}},
		},
		{
			name: "id with a tab",
			raw:  withFields(t, baseCommit, map[string]string{"id": `"run\t42"`}),
			want: []event.Problem{{Field: "id", Message: "must be printable ASCII without spaces"}},
		},
		{
			name: "id with a control character",
			raw:  withFields(t, baseCommit, map[string]string{"id": `"run\u000142"`}),
			want: []event.Problem{{Field: "id", Message: "must be printable ASCII without spaces"}},
		},
		{
			name: "id with DEL",
			raw:  withFields(t, baseCommit, map[string]string{"id": `"run\u007f"`}),
			want: []event.Problem{{Field: "id", Message: "must be printable ASCII without spaces"}},
		},
		{
			name: "id not ASCII",
			raw:  withFields(t, baseCommit, map[string]string{"id": `"déploiement"`}),
			want: []event.Problem{{Field: "id", Message: "must be printable ASCII without spaces"}},
		},
		{
			name: "id of 129 characters",
			raw:  withFields(t, baseCommit, map[string]string{"id": long(129)}),
			want: []event.Problem{{Field: "id", Message: "must be at most 128 characters"}},
		},
		{
			name: "pipeline_id of 257 characters",
			raw:  withFields(t, baseCommit, map[string]string{"pipeline_id": long(257)}),
			want: []event.Problem{{Field: "pipeline_id", Message: "must be at most 256 characters"}},
		},
		{
			name: "fractional pull_request_id",
			raw:  withFields(t, baseCommit, map[string]string{"pull_request_id": `1.5`}),
			want: []event.Problem{{Field: "pull_request_id", Message: "must be a positive integer"}},
		},
		{
			name: "zero pull_request_id",
			raw:  withFields(t, baseCommit, map[string]string{"pull_request_id": `0`}),
			want: []event.Problem{{Field: "pull_request_id", Message: "must be a positive integer"}},
		},
		{
			name: "negative pull_request_id",
			raw:  withFields(t, baseCommit, map[string]string{"pull_request_id": `-3`}),
			want: []event.Problem{{Field: "pull_request_id", Message: "must be a positive integer"}},
		},
		{
			name: "fractional deployment_id",
			raw:  withFields(t, baseDeploy, map[string]string{"deployment_id": `1.5`}),
			want: []event.Problem{{Field: "deployment_id", Message: "must be a string or an integer"}},
		},
		{
			name: "fractional incident_id",
			raw:  withFields(t, baseIncident, map[string]string{"incident_id": `2.5`}),
			want: []event.Problem{{Field: "incident_id", Message: "must be a string or an integer"}},
		},
		{
			name: "timestamp in milliseconds",
			raw:  withFields(t, baseCommit, map[string]string{"timestamp": `1561003507000`}),
			want: []event.Problem{{Field: "timestamp", Message: "looks like epoch milliseconds; send epoch seconds"}},
		},
		{
			name: "negative timestamp",
			raw:  withFields(t, baseCommit, map[string]string{"timestamp": `-1`}),
			want: []event.Problem{{Field: "timestamp", Message: "must be epoch seconds (a non-negative number) or an RFC 3339 string"}},
		},
		{
			name: "timestamp not RFC 3339",
			raw:  withFields(t, baseCommit, map[string]string{"timestamp": `"yesterday"`}),
			want: []event.Problem{{Field: "timestamp", Message: `"yesterday" is not an RFC 3339 time such as 2026-11-25T10:00:00Z`}},
		},
		{
			name: "timestamp before 1970",
			raw:  withFields(t, baseCommit, map[string]string{"timestamp": `"1969-12-31T23:59:59Z"`}),
			want: []event.Problem{{Field: "timestamp", Message: "must not be before 1970"}},
		},
		{
			name: "several problems at once",
			raw:  []byte(`{"type":"deploy","status":"maybe","id":"a b"}`),
			want: []event.Problem{
				{Field: "pipeline_id", Message: "is required"},
				{Field: "environment", Message: "is required for deploy events"},
				{Field: "commit_id", Message: "is required for deploy events"},
				{Field: "status", Message: `must be "success" or "failure"`},
				{Field: "id", Message: "must be printable ASCII without spaces"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := problems(t, tt.raw)
			require.ElementsMatch(t, tt.want, got)
			for _, p := range got {
				require.Nil(t, p.Index, "a single event's problems carry no index")
			}
		})
	}
}

func TestDecodeWrongJSONType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		field   string
		value   string
		base    string
		message string
	}{
		{"type", `1`, baseCommit, "must be a string"},
		{"type", `["commit"]`, baseCommit, "must be a string"},
		{"pipeline_id", `42`, baseCommit, "must be a string"},
		{"environment", `true`, baseDeploy, "must be a string"},
		{"commit_id", `{}`, baseCommit, "must be a string"},
		{"commit_id", `123`, baseCommit, "must be a string"},
		{"deployment_id", `true`, baseDeploy, "must be a string"},
		{"deployment_id", `{}`, baseDeploy, "must be a string"},
		{"incident_id", `false`, baseIncident, "must be a string"},
		{"incident_id", `["INC-1"]`, baseIncident, "must be a string"},
		{"status", `1`, baseCommit, "must be a string"},
		{"status", `true`, baseCommit, "must be a string"},
		{"id", `7`, baseCommit, "must be a string"},
		{"pull_request_id", `"abc"`, baseCommit, "must be an integer"},
		{"pull_request_id", `true`, baseCommit, "must be an integer"},
		{"pull_request_id", `[1]`, baseCommit, "must be an integer"},
		{"commits", `"abc123"`, baseDeploy, "must be an array of strings"},
		{"commits", `[1, 2]`, baseDeploy, "must be an array of strings"},
		{"commits", `{"a":"b"}`, baseDeploy, "must be an array of strings"},
		{"timestamp", `true`, baseCommit, "must be epoch seconds or an RFC 3339 string"},
		{"timestamp", `{}`, baseCommit, "must be epoch seconds or an RFC 3339 string"},
		{"timestamp", `[1561003507]`, baseCommit, "must be epoch seconds or an RFC 3339 string"},
	}
	for _, tt := range tests {
		t.Run(tt.field+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			got := problems(t, withFields(t, tt.base, map[string]string{tt.field: tt.value}))
			// Exactly one problem: a field of the wrong type is not also reported as missing.
			require.Len(t, got, 1, "%+v", got)
			require.Equal(t, tt.field, got[0].Field)
			require.True(t, strings.HasPrefix(got[0].Message, tt.message), "message %q", got[0].Message)
		})
	}
}

func TestDecodeNotAnObject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
	}{
		{"null", `null`},
		{"array", `[{"type":"commit"}]`},
		{"string", `"commit"`},
		{"number", `42`},
		{"invalid JSON", `{"type":`},
		{"two objects", `{"type":"commit"} {"type":"deploy"}`},
		{"empty", ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := problems(t, []byte(tt.raw))
			require.Len(t, got, 1)
			require.Empty(t, got[0].Field)
			require.NotEmpty(t, got[0].Message)
		})
	}
}

// A stray closing bracket after the object is data after the object, as much as a second one.
func TestDecodeTrailingCloser(t *testing.T) {
	t.Parallel()
	for _, trailer := range []string{"}", "]", " }"} {
		t.Run(trailer, func(t *testing.T) {
			t.Parallel()
			got := problems(t, []byte(baseCommit+trailer))
			require.Equal(t, []event.Problem{{Field: "", Message: "has data after the JSON object"}}, got)
		})
	}
}

func TestDecodeNullIsAbsent(t *testing.T) {
	t.Parallel()
	raw := `{"type":"commit","pipeline_id":"shop","commit_id":"abc","environment":null,"commits":null,
		"pull_request_id":null,"deployment_id":null,"incident_id":null,"status":null,"id":null,"timestamp":null}`
	e := decode(t, raw)
	require.Empty(t, e.Environment)
	require.Nil(t, e.Commits)
	require.Nil(t, e.PullRequestID)
	require.Empty(t, e.DeploymentID)
	require.Empty(t, e.IncidentID)
	require.Equal(t, event.StatusSuccess, e.Status)
	require.Empty(t, e.ClientID)
	require.True(t, strings.HasPrefix(e.ID, "sha256-"))
	require.True(t, e.TimeInferred)
	require.Equal(t, received, e.Timestamp)

	// A null required field is missing, not of the wrong type.
	got := problems(t, withFields(t, baseCommit, map[string]string{"pipeline_id": `null`, "type": `null`}))
	require.ElementsMatch(t, []event.Problem{
		{Field: "type", Message: "is required"},
		{Field: "pipeline_id", Message: "is required"},
	}, got)
}

func TestDecodeStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status string
		want   string
	}{
		{"", event.StatusSuccess},
		{`""`, event.StatusSuccess},
		{`"success"`, event.StatusSuccess},
		{`"failure"`, event.StatusFailure},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			t.Parallel()
			e, err := event.Decode(withFields(t, baseDeploy, map[string]string{"status": tt.status}), received)
			require.NoError(t, err)
			require.Equal(t, tt.want, e.Status)
		})
	}
}

func TestDecodeTimestamp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ts   string
		want time.Time
	}{
		{"epoch seconds", `1561003507`, time.Date(2019, 6, 20, 4, 5, 7, 0, time.UTC)},
		{"fractional epoch seconds", `1561003507.25`, time.Date(2019, 6, 20, 4, 5, 7, 250_000_000, time.UTC)},
		{"epoch seconds with milliseconds", `1561003507.123`, time.Date(2019, 6, 20, 4, 5, 7, 123_000_000, time.UTC)},
		{"epoch zero", `0`, time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"epoch in exponent form", `1.561003507e9`, time.Date(2019, 6, 20, 4, 5, 7, 0, time.UTC)},
		{"RFC 3339 UTC", `"2019-06-20T04:05:07Z"`, time.Date(2019, 6, 20, 4, 5, 7, 0, time.UTC)},
		{"RFC 3339 with offset", `"2019-06-20T06:05:07+02:00"`, time.Date(2019, 6, 20, 4, 5, 7, 0, time.UTC)},
		{"RFC 3339 negative offset", `"2019-06-19T23:05:07.5-05:00"`, time.Date(2019, 6, 20, 4, 5, 7, 500_000_000, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := event.Decode(withFields(t, baseCommit, map[string]string{"timestamp": tt.ts}), received)
			require.NoError(t, err)
			require.Equal(t, tt.want, e.Timestamp)
			require.Equal(t, time.UTC, e.Timestamp.Location())
			require.False(t, e.TimeInferred)
		})
	}
}

func TestDecodeInferredTime(t *testing.T) {
	t.Parallel()
	local := time.Date(2026, 11, 25, 11, 0, 0, 0, time.FixedZone("CET", 3600))
	e, err := event.Decode(withFields(t, baseCommit, map[string]string{"timestamp": ""}), local)
	require.NoError(t, err)
	require.True(t, e.TimeInferred)
	require.Equal(t, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), e.Timestamp)
}

func TestDecodeIdentifiers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		deploymentID   string
		incidentID     string
		wantDeployment string
		wantIncident   string
	}{
		{"integers", `42`, `7`, "42", "7"},
		{"large integers", `9007199254740993`, `123456789012`, "9007199254740993", "123456789012"},
		{"strings", `"dep-42"`, `"INC-7"`, "dep-42", "INC-7"},
		{"numeric strings", `"42"`, `"007"`, "42", "007"},
		// A string is a string, even when it reads like a number that is not an integer.
		{"version-like strings", `"1.5"`, `"2e3"`, "1.5", "2e3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := withFields(t, baseIncident, map[string]string{"deployment_id": tt.deploymentID, "incident_id": tt.incidentID})
			e, err := event.Decode(raw, received)
			require.NoError(t, err)
			require.Equal(t, tt.wantDeployment, e.DeploymentID)
			require.Equal(t, tt.wantIncident, e.IncidentID)
		})
	}
}

func TestDecodePullRequest(t *testing.T) {
	t.Parallel()
	e := decode(t, string(withFields(t, baseCommit, map[string]string{"pull_request_id": `232`})))
	require.NotNil(t, e.PullRequestID)
	require.Equal(t, int64(232), *e.PullRequestID)
}

func TestDecodeCommitsTrimmed(t *testing.T) {
	t.Parallel()
	e := decode(t, string(withFields(t, baseDeploy, map[string]string{"commits": `[" a1 ", "b2"]`})))
	require.Equal(t, []string{"a1", "b2"}, e.Commits)
}

func TestDecodeIgnoresUnknownFields(t *testing.T) {
	t.Parallel()
	plain := decode(t, baseCommit)
	extra := decode(t, string(withFields(t, baseCommit, map[string]string{
		"author": `"ada"`, "labels": `{"team":"core"}`, "retries": `[1,2]`,
	})))
	require.Equal(t, plain, extra)
}

func TestDecodeIDOf128Characters(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("x", 128)
	e := decode(t, string(withFields(t, baseCommit, map[string]string{"id": `"` + id + `"`})))
	require.Equal(t, "native:shop:"+id, e.ID)
	require.Equal(t, id, e.ClientID)
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	idOf := func(t *testing.T, raw string, at time.Time) event.Event {
		t.Helper()
		e, err := event.Decode([]byte(raw), at)
		require.NoError(t, err)
		return e
	}

	t.Run("content id", func(t *testing.T) {
		t.Parallel()
		e := idOf(t, baseCommit, received)
		require.True(t, strings.HasPrefix(e.ID, "sha256-"), e.ID)
		require.Len(t, e.ID, len("sha256-")+32)
		require.Empty(t, e.ClientID)
	})

	t.Run("same content, other key order and spacing", func(t *testing.T) {
		t.Parallel()
		a := idOf(t, `{"type":"deploy","pipeline_id":"shop","environment":"production","commit_id":"abc","timestamp":1561003507}`, received)
		b := idOf(t, "{\n  \"timestamp\" : 1561003507,\n\t\"commit_id\": \"abc\",  \"environment\":\"production\",\r\n \"pipeline_id\":\"shop\", \"type\": \"deploy\"\n}", received.Add(time.Hour))
		require.Equal(t, a.ID, b.ID)
	})

	t.Run("same instant, other notation", func(t *testing.T) {
		t.Parallel()
		a := idOf(t, `{"type":"commit","pipeline_id":"shop","commit_id":"abc","timestamp":1561003507}`, received)
		b := idOf(t, `{"type":"commit","pipeline_id":"shop","commit_id":"abc","timestamp":"2019-06-20T06:05:07+02:00"}`, received)
		require.Equal(t, a.ID, b.ID)
	})

	t.Run("default status spelled out", func(t *testing.T) {
		t.Parallel()
		a := idOf(t, baseDeploy, received)
		b := idOf(t, string(withFields(t, baseDeploy, map[string]string{"status": `"success"`})), received)
		require.Equal(t, a.ID, b.ID)
	})

	t.Run("integer and string deployment_id", func(t *testing.T) {
		t.Parallel()
		a := idOf(t, string(withFields(t, baseDeploy, map[string]string{"deployment_id": `42`})), received)
		b := idOf(t, string(withFields(t, baseDeploy, map[string]string{"deployment_id": `"42"`})), received)
		require.Equal(t, a.ID, b.ID)
	})

	t.Run("different timestamp", func(t *testing.T) {
		t.Parallel()
		a := idOf(t, baseCommit, received)
		b := idOf(t, string(withFields(t, baseCommit, map[string]string{"timestamp": `1561003508`})), received)
		require.NotEqual(t, a.ID, b.ID)
	})

	t.Run("each field counts", func(t *testing.T) {
		t.Parallel()
		base := idOf(t, baseDeploy, received).ID
		for field, value := range map[string]string{
			"type":            `"commit"`,
			"pipeline_id":     `"shop2"`,
			"environment":     `"staging"`,
			"commit_id":       `"abc124"`,
			"commits":         `["def"]`,
			"pull_request_id": `1`,
			"deployment_id":   `"d"`,
			"incident_id":     `"i"`,
			"status":          `"failure"`,
		} {
			e := idOf(t, string(withFields(t, baseDeploy, map[string]string{field: value})), received)
			require.NotEqual(t, base, e.ID, field)
		}
	})

	t.Run("no id nor timestamp takes the receive time", func(t *testing.T) {
		t.Parallel()
		raw := `{"type":"commit","pipeline_id":"shop","commit_id":"abc"}`
		first := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		a := idOf(t, raw, first)
		b := idOf(t, raw, first.Add(time.Second))
		require.True(t, a.TimeInferred)
		require.Equal(t, first, a.Timestamp)
		require.NotEqual(t, a.ID, b.ID)
		again := idOf(t, raw, first)
		require.Equal(t, a.ID, again.ID)
	})

	t.Run("receive time does not matter when the event has a time", func(t *testing.T) {
		t.Parallel()
		a := idOf(t, baseCommit, received)
		b := idOf(t, baseCommit, received.Add(time.Minute))
		require.Equal(t, a.ID, b.ID)
	})

	t.Run("client id kept, within its pipeline", func(t *testing.T) {
		t.Parallel()
		e := idOf(t, string(withFields(t, baseCommit, map[string]string{"id": `"GH-run:9/attempt.2"`})), received)
		require.Equal(t, "native:shop:GH-run:9/attempt.2", e.ID)
		require.Equal(t, "GH-run:9/attempt.2", e.ClientID)
	})

	// A client id is unique per pipeline: the same id in two pipelines is two events, and no
	// two (pipeline, id) pairs spell the same event id, however the pipeline is named.
	t.Run("client id scoped by pipeline", func(t *testing.T) {
		t.Parallel()
		withID := func(pipeline, id string) string {
			p, _ := json.Marshal(pipeline)
			q, _ := json.Marshal(id)
			return string(withFields(t, baseCommit, map[string]string{"pipeline_id": string(p), "id": string(q)}))
		}
		seen := map[string][2]string{}
		for _, pair := range [][2]string{
			{"shop", "run-1"}, {"billing", "run-1"}, {"a", "b:c"}, {"a:b", "c"}, {"a%3Ab", "c"}, {"a b", "c"},
			{"a+b", "c"}, {"acme/api", "run-1"}, {"acme", "api:run-1"}, {"é", "x"}, {"%C3%A9", "x"}, {"a\nb", "c"},
		} {
			e := idOf(t, withID(pair[0], pair[1]), received)
			require.True(t, strings.HasPrefix(e.ID, "native:"), e.ID)
			for _, c := range []byte(e.ID) {
				require.True(t, c > ' ' && c <= '~', "id %q is printable ASCII", e.ID)
			}
			if other, ok := seen[e.ID]; ok {
				t.Fatalf("%q in %q and %q in %q share the id %q", pair[1], pair[0], other[1], other[0], e.ID)
			}
			seen[e.ID] = pair
		}
		require.Equal(t, "native:acme/api:run-1", idOf(t, withID("acme/api", "run-1"), received).ID)
	})

	t.Run("order of commits", func(t *testing.T) {
		t.Parallel()
		a := idOf(t, string(withFields(t, baseDeploy, map[string]string{"commits": `["c1","c2","c3"]`})), received)
		b := idOf(t, string(withFields(t, baseDeploy, map[string]string{"commits": `["c3","c1","c2"]`})), received)
		require.Equal(t, a.ID, b.ID)
		require.Equal(t, []string{"c3", "c1", "c2"}, b.Commits, "the event keeps the client's order")
	})

	// Commit ids are free strings: a comma inside one must not make it two.
	t.Run("commits are not confused by commas", func(t *testing.T) {
		t.Parallel()
		a := idOf(t, string(withFields(t, baseDeploy, map[string]string{"commits": `["c1,c2"]`})), received)
		b := idOf(t, string(withFields(t, baseDeploy, map[string]string{"commits": `["c1","c2"]`})), received)
		require.NotEqual(t, a.ID, b.ID)
	})
}

func TestDecodeAllErrorsWrapInvalid(t *testing.T) {
	t.Parallel()
	_, err := event.Decode([]byte(`{}`), received)
	require.True(t, errors.Is(err, event.ErrInvalid))
	require.EqualError(t, err, "invalid event: type: is required; pipeline_id: is required")
}

func TestFacts(t *testing.T) {
	t.Parallel()
	at := time.Date(2019, 6, 20, 4, 5, 7, 0, time.UTC)
	recv := time.Date(2026, 11, 25, 11, 0, 0, 0, time.FixedZone("CET", 3600))
	ptr := func(t time.Time) *time.Time { return &t }

	t.Run("event row", func(t *testing.T) {
		t.Parallel()
		raw := json.RawMessage(`{"type":"commit","pipeline_id":"shop","commit_id":"abc","timestamp":1561003507,"pull_request_id":5}`)
		e := decode(t, string(raw))
		set := event.Facts(e, raw, recv, 17)
		pr := int64(5)
		require.Equal(t, fact.Event{
			ID:            e.ID,
			Source:        "native",
			Kind:          "commit",
			PipelineID:    "shop",
			CommitID:      "abc",
			PullRequestID: &pr,
			Status:        "success",
			OccurredAt:    at,
			ReceivedAt:    time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
			StreamSeq:     17,
			Payload:       raw,
		}, set.Event)
	})

	t.Run("commit, submit and approve set their one time", func(t *testing.T) {
		t.Parallel()
		pr := int64(9)
		tests := []struct {
			typ  string
			want fact.Change
		}{
			{"commit", fact.Change{PipelineID: "shop", CommitID: "abc", PullRequestID: &pr, CommittedAt: ptr(at)}},
			{"submit", fact.Change{PipelineID: "shop", CommitID: "abc", PullRequestID: &pr, SubmittedAt: ptr(at)}},
			{"approve", fact.Change{PipelineID: "shop", CommitID: "abc", PullRequestID: &pr, ApprovedAt: ptr(at)}},
		}
		for _, tt := range tests {
			raw := `{"type":"` + tt.typ + `","pipeline_id":"shop","commit_id":"abc","pull_request_id":9,"timestamp":1561003507}`
			set := event.Facts(decode(t, raw), json.RawMessage(raw), recv, 1)
			require.Equal(t, []fact.Change{tt.want}, set.Changes, tt.typ)
			require.Empty(t, set.Deployments, tt.typ)
			require.Empty(t, set.Incidents, tt.typ)
		}
	})

	t.Run("deploy without deployment_id", func(t *testing.T) {
		t.Parallel()
		raw := `{"type":"deploy","pipeline_id":"shop","environment":"production","commit_id":"c2",
			"commits":["c3","c1","c2","c1"],"status":"failure","timestamp":1561003507}`
		e := decode(t, raw)
		set := event.Facts(e, json.RawMessage(raw), recv, 1)
		require.Equal(t, []fact.Deployment{{
			Source:      "native",
			PipelineID:  "shop",
			Environment: "production",
			Key:         e.ID,
			Status:      "failure",
			DeployedAt:  at,
			CommitID:    "c2",
			Commits:     []string{"c1", "c2", "c3"},
			EventID:     e.ID,
		}}, set.Deployments)
		require.Equal(t, []fact.Change{
			{PipelineID: "shop", CommitID: "c1"},
			{PipelineID: "shop", CommitID: "c2"},
			{PipelineID: "shop", CommitID: "c3"},
		}, set.Changes)
		require.Empty(t, set.Incidents)
		require.Equal(t, []string{"c3", "c1", "c2", "c1"}, e.Commits, "Facts does not reorder the event's commits")
	})

	t.Run("deploy with deployment_id", func(t *testing.T) {
		t.Parallel()
		raw := `{"id":"run-1","type":"deploy","pipeline_id":"shop","environment":"production","commit_id":"c2","deployment_id":77,"timestamp":1561003507}`
		set := event.Facts(decode(t, raw), json.RawMessage(raw), recv, 1)
		require.Len(t, set.Deployments, 1)
		d := set.Deployments[0]
		require.Equal(t, "77", d.Key)
		require.Equal(t, "77", d.DeploymentID)
		require.Equal(t, "native:shop:run-1", d.EventID)
		require.Equal(t, "success", d.Status)
		require.Equal(t, []string{"c2"}, d.Commits)
		require.Equal(t, []fact.Change{{PipelineID: "shop", CommitID: "c2"}}, set.Changes)
	})

	t.Run("incident opened", func(t *testing.T) {
		t.Parallel()
		raw := `{"type":"incident_status_change","pipeline_id":"shop","environment":"production","incident_id":"INC-1",
			"status":"failure","deployment_id":"d1","commit_id":"c1","timestamp":1561003507}`
		set := event.Facts(decode(t, raw), json.RawMessage(raw), recv, 1)
		require.Equal(t, []fact.Incident{{
			Source:            "native",
			IncidentID:        "INC-1",
			PipelineID:        "shop",
			Environment:       "production",
			OpenedAt:          ptr(at),
			CauseDeploymentID: "d1",
			CauseCommitID:     "c1",
		}}, set.Incidents)
		require.Empty(t, set.Changes)
		require.Empty(t, set.Deployments)
	})

	t.Run("incident resolved", func(t *testing.T) {
		t.Parallel()
		raw := `{"type":"incident_status_change","pipeline_id":"shop","environment":"production","incident_id":"INC-1","timestamp":1561003507}`
		set := event.Facts(decode(t, raw), json.RawMessage(raw), recv, 1)
		require.Equal(t, []fact.Incident{{
			Source:      "native",
			IncidentID:  "INC-1",
			PipelineID:  "shop",
			Environment: "production",
			ResolvedAt:  ptr(at),
		}}, set.Incidents)
	})
}

// A content id must never change between versions: within the duplicate window, a CI job that
// retries its POST across an upgrade would otherwise be counted twice. The value was computed by
// the first implementation (fmt.Fprintf into the hash), before contentID was rewritten for speed.
func TestContentIDIsStable(t *testing.T) {
	t.Parallel()
	e, err := event.Decode([]byte(`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"abc",
		"commits":["b","a"],"pull_request_id":7,"deployment_id":"run-9","status":"success",
		"timestamp":"2026-11-25T10:00:00.123Z"}`), time.Now())
	require.NoError(t, err)
	require.Equal(t, "sha256-af525e687ae65df7f758221903cfd248", e.ID)
}

// BenchmarkDecode is the edge's and the writer's cost of one event: a deploy without an id,
// so its content id is computed.
func BenchmarkDecode(b *testing.B) {
	raw := []byte(`{"type":"deploy","pipeline_id":"pipeline-0042","environment":"production","commit_id":"pipeline-0042-000017","deployment_id":"d-17","status":"success","timestamp":1790000300}`)
	now := time.Now()
	for b.Loop() {
		if _, err := event.Decode(raw, now); err != nil {
			b.Fatal(err)
		}
	}
}
