package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/webhook"
)

// Every source reads an incident's cause with Cause: a fix here is a fix for all of them.
func TestCause(t *testing.T) {
	t.Parallel()
	for description, want := range map[string][2]string{
		"Root cause: 0123abcd":                      {"0123abcd", ""},
		"Outage.\r\ncaused by:   deploy-42\nmore":   {"", "deploy-42"},
		"  ROOT CAUSE : ABCDEF0 and more words":     {"ABCDEF0", ""},
		"root cause: abc123":                        {"", "abc123"}, // six hex digits: too short for a commit
		"caused by: 0123abcd\nroot cause: deploy-1": {"0123abcd", ""},
		"the root cause: 0123abcd":                  {"", ""}, // not at the start of its line
		"no cause named here":                       {"", ""},
		"":                                          {"", ""},
	} {
		commit, deployment := webhook.Cause(description)
		require.Equal(t, want, [2]string{commit, deployment}, description)
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	body := []byte(`{"a":1}`)
	sig := func(secret string) []byte {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		return mac.Sum(nil)
	}
	require.True(t, webhook.MatchHMAC(sha256.New, []string{"old", "new"}, body, sig("new")), "rotation")
	require.True(t, webhook.MatchHMAC(sha256.New, []string{"new"}, body, []byte("junk"), sig("new")), "any of several signatures")
	require.False(t, webhook.MatchHMAC(sha256.New, []string{"other"}, body, sig("new")))
	require.False(t, webhook.MatchHMAC(sha256.New, []string{""}, body, sig("")), "an empty secret matches nothing")
	require.False(t, webhook.MatchHMAC(sha256.New, nil, body, sig("new")), "no secret refuses everything")

	require.True(t, webhook.MatchToken([]string{"old", "t0ken"}, "t0ken"), "rotation")
	require.False(t, webhook.MatchToken([]string{"t0ken"}, "t0k"))
	require.False(t, webhook.MatchToken([]string{""}, ""), "an empty secret matches nothing")
	require.False(t, webhook.MatchToken(nil, "t0ken"), "no secret refuses everything")
}

func TestDecodeReadsTheOptionsTheIngestStamped(t *testing.T) {
	t.Parallel()
	type options struct{ PipelineID string }
	parse := func(opts options) (fact.Set, error) {
		return fact.Set{Event: fact.Event{PipelineID: opts.PipelineID}}, nil
	}
	set, err := webhook.Decode(webhook.Header{"Opts": {`{"PipelineID":"api"}`}}, "Opts", parse)
	require.NoError(t, err)
	require.Equal(t, "api", set.Event.PipelineID)

	set, err = webhook.Decode(webhook.Header{}, "Opts", parse)
	require.NoError(t, err)
	require.Empty(t, set.Event.PipelineID, "no header: the zero options")

	_, err = webhook.Decode(webhook.Header{"Opts": {`{`}}, "Opts", parse)
	require.ErrorContains(t, err, "header Opts")
}

func TestMapper(t *testing.T) {
	t.Parallel()
	m := webhook.Mapper{Source: "git", Named: "acme/api", NamedBy: "repository.name"}
	require.Equal(t, "acme/api", m.Pipeline())
	require.Equal(t, "staging", m.Environment("staging"))
	require.Equal(t, "production", m.Environment(""))
	m.URLPipeline, m.URLEnvironment = "api", "eu"
	require.Equal(t, "api", m.Pipeline(), "the URL overrides the payload")
	require.Equal(t, "eu", m.Environment("staging"), "the URL overrides the payload")

	err := (&webhook.Mapper{NamedBy: "repository.name"}).RequirePipeline()
	require.ErrorIs(t, err, webhook.ErrInvalid)
	require.ErrorContains(t, err, "repository.name is missing")

	// An unreadable commit time is a warning: the change is still tracked.
	require.NoError(t, m.Push("b", "head nor after", []webhook.Commit{{ID: "a", Timestamp: "2026-11-25T10:00:00Z"}, {ID: "b", Timestamp: "soon"}}, ""))
	require.Len(t, m.Set.Changes, 2)
	require.Len(t, m.Set.PushCommits, 2)
	require.Len(t, m.Warnings, 1)
	require.Contains(t, m.Warnings[0], "commits[1].timestamp")
	require.Equal(t, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), m.Set.Event.OccurredAt)
	require.ErrorIs(t, (&webhook.Mapper{}).Push("", "x", []webhook.Commit{{ID: "a", Timestamp: "soon"}}, ""), webhook.ErrInvalid)
}
