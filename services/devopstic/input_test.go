package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type problem struct {
	Index   *int   `json:"index"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

type errorAnswer struct {
	Error   string    `json:"error"`
	Details []problem `json:"details"`
}

// Every class of bad input gets its precise status, names what is wrong, and changes nothing.
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", withEnv("DEVOPSTIC_BODY_LIMIT", "65536"), withEnv("DEVOPSTIC_MAX_BATCH", "50"))

	deploy := `{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"abc","timestamp":1795600800}`
	many := "[" + strings.TrimSuffix(strings.Repeat(deploy+",", 51), ",") + "]"
	huge := fmt.Sprintf(`{"type":"commit","pipeline_id":"api","commit_id":"abc","note":"%s"}`, strings.Repeat("x", 70000))
	at := func(i int) *int { return &i }

	cases := []struct {
		name        string
		contentType string
		body        string
		noToken     bool
		token       string
		wantStatus  int
		wantError   string
		wantDetails []problem
		// overLimit sends only the headers (see stack.overLimit): the server answers from
		// Content-Length and closes, and a client still writing the body may see a broken
		// pipe instead of the answer (it did, once, on a busy machine).
		overLimit bool
	}{
		{name: "malformed JSON", body: `{"type":"deploy",`, wantStatus: 400, wantError: "malformed body"},
		{name: "empty body", body: ``, wantStatus: 400, wantError: "no event"},
		{name: "not an object", body: `"deploy"`, wantStatus: 400, wantDetails: []problem{{Field: "", Message: "must be a JSON object, not string"}}},
		{name: "wrong types", body: `{"type":"deploy","pipeline_id":5,"environment":"production","commit_id":["abc"],"timestamp":true}`,
			wantStatus: 400, wantDetails: []problem{
				{Field: "pipeline_id", Message: "must be a string"},
				{Field: "commit_id", Message: "must be a string"},
				{Field: "timestamp", Message: "must be epoch seconds or an RFC 3339 string"},
			}},
		{name: "missing fields", body: `{"type":"deploy","pipeline_id":"api"}`, wantStatus: 400, wantDetails: []problem{
			{Field: "environment", Message: "is required for deploy events"},
			{Field: "commit_id", Message: "is required for deploy events"},
		}},
		{name: "missing type", body: `{"pipeline_id":"api"}`, wantStatus: 400, wantDetails: []problem{{Field: "type", Message: "is required"}}},
		{name: "unknown type", body: `{"type":"release","pipeline_id":"api"}`, wantStatus: 400, wantDetails: []problem{
			{Field: "type", Message: "must be one of commit, submit, approve, deploy, incident_status_change"}}},
		{name: "unknown status", body: `{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"abc","status":"ok"}`,
			wantStatus: 400, wantDetails: []problem{{Field: "status", Message: `must be "success" or "failure"`}}},
		{name: "milliseconds", body: `{"type":"commit","pipeline_id":"api","commit_id":"abc","timestamp":1795600800000}`,
			wantStatus: 400, wantDetails: []problem{{Field: "timestamp", Message: "looks like epoch milliseconds; send epoch seconds"}}},
		{name: "bad time string", body: `{"type":"commit","pipeline_id":"api","commit_id":"abc","timestamp":"yesterday"}`,
			wantStatus: 400, wantDetails: []problem{{Field: "timestamp", Message: `"yesterday" is not an RFC 3339 time such as 2026-11-25T10:00:00Z`}}},
		{name: "one bad event spoils the batch", body: "[" + deploy + "," + deploy + `,{"type":"deploy","pipeline_id":"api","environment":"production"}]`,
			wantStatus: 400, wantDetails: []problem{{Index: at(2), Field: "commit_id", Message: "is required for deploy events"}}},
		{name: "bad NDJSON line", contentType: "application/x-ndjson", body: deploy + "\n{oops\n", wantStatus: 400, wantError: "line 2"},
		{name: "too many events", body: many, wantStatus: 413, wantError: "51 events, at most 50"},
		{name: "body over the limit", body: huge, overLimit: true, wantStatus: 413, wantError: "larger than the limit"},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: deploy, wantStatus: 415, wantError: "unsupported content type"},
		{name: "text content type", contentType: "text/plain", body: deploy, wantStatus: 415, wantError: "unsupported content type"},
		{name: "no token", noToken: true, body: deploy, wantStatus: 401, wantError: "Authorization: Bearer"},
		{name: "forged token", token: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaSJ9.", body: deploy, wantStatus: 401, wantError: "invalid or expired token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			headers := []string{}
			if tc.noToken {
				headers = append(headers, "Authorization", "")
			}
			if tc.token != "" {
				headers = append(headers, "Authorization", "Bearer "+tc.token)
			}
			var (
				status int
				body   []byte
			)
			if tc.overLimit {
				var answer string
				status, answer = s.overLimit("/events", len(tc.body))
				body = []byte(answer)
			} else {
				status, body = s.do("POST", "/events", ct, []byte(tc.body), headers...)
			}
			require.Equal(t, tc.wantStatus, status, "%s", body)
			var answer errorAnswer
			require.NoError(t, json.Unmarshal(body, &answer), "%s", body)
			require.Contains(t, answer.Error, tc.wantError)
			if tc.wantDetails != nil {
				require.ElementsMatch(t, tc.wantDetails, answer.Details)
			}
		})
	}

	t.Run("bad login", func(t *testing.T) {
		status, body := s.do("POST", "/tokens", "application/json", []byte(`{"username":"ci","password":"wrong"}`))
		require.Equal(t, http.StatusUnauthorized, status, "%s", body)
		require.NotContains(t, string(body), "token\"")
	})
	t.Run("bad read parameters", func(t *testing.T) {
		for _, q := range []string{"limit=abc", "limit=0", "limit=5000", "skip=-1", "from=yesterday", "from=2026-11-25&to=2026-11-01", "type=release"} {
			status, body := s.do("GET", "/events?"+q, "", nil)
			require.Equal(t, http.StatusBadRequest, status, "%s: %s", q, body)
		}
	})

	// Nothing above reached the tables: a good event posted last is the only one there.
	s.postJSON(http.StatusAccepted, `{"id":"sentinel","type":"commit","pipeline_id":"api","commit_id":"abc","timestamp":1795600800}`)
	s.waitCount(1, `SELECT count(*) FROM events WHERE id = 'native:api:sentinel'`)
	s.waitDrained()
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events`))
}

func TestBatchesAndNDJSON(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	body := s.postJSON(http.StatusAccepted, `[
	  {"type":"commit","pipeline_id":"api","commit_id":"a","timestamp":1795600000},
	  {"type":"commit","pipeline_id":"api","commit_id":"b","timestamp":1795600001}]`)
	var accepted struct {
		Accepted int
		IDs      []string
	}
	require.NoError(t, json.Unmarshal(body, &accepted))
	require.Equal(t, 2, accepted.Accepted)
	require.Len(t, accepted.IDs, 2)

	status, out := s.do("POST", "/events", "application/x-ndjson", []byte(
		"{\"type\":\"commit\",\"pipeline_id\":\"api\",\"commit_id\":\"c\",\"timestamp\":1795600002}\n\n"+
			"{\"type\":\"commit\",\"pipeline_id\":\"api\",\"commit_id\":\"d\",\"timestamp\":\"2026-11-25T10:00:03.5+01:00\"}\n"))
	require.Equal(t, http.StatusAccepted, status, "%s", out)
	s.waitCount(4, `SELECT count(*) FROM changes`)
	require.Equal(t, 1, s.count(`SELECT count(*) FROM changes WHERE commit_id = 'd' AND committed_at = '2026-11-25T09:00:03.5Z'`))

	status, out = s.do("GET", "/events?limit=3&skip=1", "", nil)
	require.Equal(t, http.StatusOK, status, "%s", out)
	var page struct {
		Items []struct {
			CommitID string `json:"commit_id"`
		}
		Count, Skip, Limit int
	}
	require.NoError(t, json.Unmarshal(out, &page))
	require.Equal(t, 4, page.Count)
	require.Equal(t, 1, page.Skip)
	require.Equal(t, 3, page.Limit)
	// newest first: c (10:00:02Z), b, a, d (09:00:03.5Z); skipping one leaves b, a, d
	require.Equal(t, []string{"b", "a", "d"}, []string{page.Items[0].CommitID, page.Items[1].CommitID, page.Items[2].CommitID})
}

func TestRetriedPostsAreCountedOnce(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")

	// Without an id: the content hash (timestamp included) is the id.
	noID := `{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"abc","timestamp":1795600800}`
	first := s.postJSON(http.StatusAccepted, noID)
	second := s.postJSON(http.StatusAccepted, noID)
	require.JSONEq(t, string(first), string(second), "a retry must get the same id")
	// The same commit deployed an hour later is another deployment.
	s.postJSON(http.StatusAccepted, `{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"abc","timestamp":1795604400}`)

	// With an id, such as a webhook delivery id: the id alone decides.
	delivery := `{"id":"72d3162e-cc78-11e3-81ab-4c9367dc0958","type":"commit","pipeline_id":"api","commit_id":"def","timestamp":1795600000}`
	s.postJSON(http.StatusAccepted, delivery)
	s.postJSON(http.StatusAccepted, delivery)

	// And a duplicate that JetStream cannot catch (outside its window, or a replay): Postgres does.
	s.publishRaw([]string{noID, delivery}, time.Now())

	s.waitDrained()
	require.Equal(t, 3, s.count(`SELECT count(*) FROM events`))
	require.Equal(t, 2, s.count(`SELECT count(*) FROM deployments`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events WHERE id = 'native:api:72d3162e-cc78-11e3-81ab-4c9367dc0958'`))
}
