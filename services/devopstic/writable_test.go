package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// "202 means written": what Postgres would refuse (a jsonb number out of numeric's range, text
// it cannot keep, a header that becomes events.id) is a 400 at the edge, never a 202 followed by
// a dead letter. TestAcceptedIsWritable (pkg/api) holds the same as a property; this is the
// whole path: HTTP, NATS, the writer, Postgres.
func TestUnstorableInputIsRefusedAtTheEdge(t *testing.T) {
	t.Parallel()
	s := startStack(t, "",
		withEnv("DEVOPSTIC_GITHUB_WEBHOOK_SECRET", githubSecret),
		withEnv("DEVOPSTIC_GITLAB_WEBHOOK_SECRET", gitlabSecret),
		withEnv("DEVOPSTIC_PAGERDUTY_WEBHOOK_SECRET", pagerdutySecret))

	commit := func(extra string) string {
		return `{"type":"commit","pipeline_id":"api","commit_id":"abc","timestamp":1795600800,` + extra + `}`
	}
	native := map[string]string{
		"a number over numeric's range":         commit(`"note":1e1000000`),
		"a negative one":                        commit(`"note":[-1e131072]`),
		"a number below numeric's scale":        commit(`"note":{"x":1e-16384}`),
		"a scale hidden in the mantissa":        commit(`"note":1.5e-16383`),
		"an exponent of the mantissa's weight":  commit(`"note":0.1e131073`),
		"a zero with an absurd exponent":        commit(`"note":0e-999999999`),
		"a NUL in an unknown field's name":      commit(`"n\u0000te":1`),
		"a lone surrogate in an unknown field":  commit(`"note":"\ud800"`),
		"nesting deeper than documented":        commit(`"note":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000)),
		"in a batch, the second event's number": `[` + commit(`"n":1`) + `,` + commit(`"n":-1E+999999`) + `]`,
	}
	for name, body := range native {
		t.Run(name, func(t *testing.T) {
			status, out := s.do("POST", "/events", "application/json", []byte(body))
			require.Equal(t, http.StatusBadRequest, status, "%s", out)
			var answer errorAnswer
			require.NoError(t, json.Unmarshal(out, &answer), "%s", out)
			require.NotEmpty(t, answer.Details, "%s", out)
		})
	}

	push := mustRead(t, "../../pkg/github/testdata/push/single-commit.json")
	gitlabPush := mustRead(t, "../../pkg/gitlab/testdata/push_hook.json")
	pagerduty := mustRead(t, "../../pkg/pagerduty/testdata/incident.triggered.json")
	webhooks := map[string]func() (int, string){
		"GitHub: a delivery id that is not UTF-8": func() (int, string) {
			return s.deliver("push", "\xff\xfe-72d3162e", push, "")
		},
		"GitHub: a body with a number over numeric's range": func() (int, string) {
			return s.deliver("push", "d-1", []byte(strings.Replace(string(push), `"size":`, `"huge":1e1000000,"size":`, 1)), "")
		},
		"GitLab: an event UUID that is not UTF-8": func() (int, string) {
			return s.deliverGitLab("Push Hook", "\xc3\x28-uuid", gitlabPush, "")
		},
		"GitLab: an idempotency key that is not UTF-8": func() (int, string) {
			return s.deliverGitLab("Push Hook", "", gitlabPush, "", "Idempotency-Key", "key-\xe2\x82")
		},
		"PagerDuty: a webhook id that is not UTF-8": func() (int, string) {
			return s.deliverPagerDuty(pagerduty, "", "X-Webhook-Id", "P\xffWEBHOOK")
		},
	}
	for name, deliver := range webhooks {
		t.Run(name, func(t *testing.T) {
			status, out := deliver()
			require.Equal(t, http.StatusBadRequest, status, "%s", out)
		})
	}

	// None of it reached the stream: a good event posted last is the only one written, and
	// nothing was dead-lettered.
	s.postJSON(http.StatusAccepted, commit(`"note":[1e131071,-9.99e-16381,0e999999,"\ud83d\ude00"]`))
	s.waitDrained()
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events`))
	require.EqualValues(t, 1, s.streamMessages())
}
