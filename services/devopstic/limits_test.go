package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// paddedCommit is a native commit event of exactly size bytes, padded by an unknown field.
func paddedCommit(t testing.TB, id string, size int) []byte {
	t.Helper()
	head := `{"id":"` + id + `","type":"commit","pipeline_id":"api","commit_id":"` + id + `","timestamp":1795600800,"note":"`
	require.Greater(t, size, len(head)+2)
	return []byte(head + strings.Repeat("x", size-len(head)-2) + `"}`)
}

// overLimit announces a body of size bytes to path and returns the answer, sending only the
// headers: the server answers 413 from Content-Length alone and closes the connection, so a
// client still writing a megabyte may see a reset instead of the answer.
func (s *stack) overLimit(path string, size int, headers ...string) (int, string) {
	s.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	require.NoError(s.t, err)
	defer conn.Close()
	// A server that waited for the body instead of answering fails the test, not the run.
	require.NoError(s.t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: devopstic\r\nContent-Type: application/json\r\nContent-Length: %d\r\nAuthorization: Bearer %s\r\n",
		path, size, s.token)
	for i := 0; i+1 < len(headers); i += 2 {
		req += headers[i] + ": " + headers[i+1] + "\r\n"
	}
	_, err = conn.Write([]byte(req + "\r\n"))
	require.NoError(s.t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, string(out)
}

// An event as large as DEVOPSTIC_BODY_LIMIT allows is accepted and written: the body limit and
// the stream's largest message are configured together. It was answered 503 with Retry-After,
// forever (the event and its headers exceeded NATS's 1 MiB max_payload). One byte more is a
// 413 that names the limit.
func TestEventAtTheBodyLimitIsWritten(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	limit := s.cfg.HTTP.BodyLimit

	status, out := s.do("POST", "/events", "application/json", paddedCommit(t, "at-the-limit", limit))
	require.Equal(t, http.StatusAccepted, status, "%s", out)

	status, answer := s.overLimit("/events", limit+1)
	require.Equal(t, http.StatusRequestEntityTooLarge, status, answer)
	require.Contains(t, answer, "DEVOPSTIC_BODY_LIMIT")

	s.waitDrained()
	require.Equal(t, 1, s.count(`SELECT count(*) FROM events WHERE commit_id = 'at-the-limit' AND length(payload::text) >= $1`, limit-100))
	require.Equal(t, 0, s.count(`SELECT count(*) FROM events WHERE commit_id <> 'at-the-limit'`))
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))
}

// bigPush is a GitHub push of about size bytes: as many commits as fit, each touching files
// (what makes real pushes large), then padding to exactly size.
func bigPush(t *testing.T, repo string, size int) (body []byte, commits int) {
	t.Helper()
	var p map[string]any
	require.NoError(t, json.Unmarshal(mustRead(t, "../../pkg/github/testdata/push/single-commit.json"), &p))
	p["repository"].(map[string]any)["full_name"] = repo
	template := p["commits"].([]any)[0].(map[string]any)
	files := make([]string, 40)
	for i := range files {
		files[i] = fmt.Sprintf("src/module/package/file_%03d.go", i)
	}
	commit := func(i int) map[string]any {
		c := map[string]any{}
		for k, v := range template {
			c[k] = v
		}
		c["id"] = fmt.Sprintf("%040x", i+1)
		c["timestamp"] = fmt.Sprintf("2026-11-25T%02d:%02d:%02dZ", i/3600, i/60%60, i%60)
		c["modified"] = files
		return c
	}
	sizeWith := func(n int) int {
		list := make([]any, n)
		for i := range list {
			list[i] = commit(i)
		}
		p["commits"], p["head_commit"] = list, list[n-1]
		out, err := json.Marshal(p)
		require.NoError(t, err)
		return len(out)
	}
	one, two := sizeWith(1), sizeWith(2)
	n := 1 + (size-64-one)/(two-one)
	for sizeWith(n) > size-64 {
		n--
	}
	out, err := json.Marshal(p)
	require.NoError(t, err)
	pad := size - len(out) - len(`,"padding":""`)
	require.GreaterOrEqual(t, pad, 0)
	out = append(out[:len(out)-1], []byte(`,"padding":"`+strings.Repeat("p", pad)+`"}`)...)
	require.Len(t, out, size)
	return out, n
}

// GitHub sends deliveries of up to 25 MB; DevOpstic takes a delivery of up to
// DEVOPSTIC_BODY_LIMIT (1 MB by default: hundreds of commits, each listing its files), and answers a larger one 413
// naming the limit, so that GitHub shows the delivery failed and it can be redelivered once the
// limit is raised (docs/webhooks.md). What is accepted is written whole.
func TestLargeGitHubPush(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	limit := s.cfg.HTTP.BodyLimit

	body, commits := bigPush(t, "acme/large", limit)
	require.Greater(t, commits, 300, "a push at the limit holds hundreds of commits")
	status, out := s.deliver("push", "large-push", body, "")
	require.Equal(t, http.StatusAccepted, status, out)

	over, _ := bigPush(t, "acme/too-large", limit+1)
	status, out = s.overLimit("/github/events", len(over), "X-GitHub-Event", "push", "X-GitHub-Delivery", "too-large-push",
		"X-Hub-Signature-256", sign(over))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, out)
	require.Contains(t, out, "DEVOPSTIC_BODY_LIMIT")

	s.waitDrained()
	require.Equal(t, commits, s.count(`SELECT count(*) FROM changes WHERE pipeline_id = 'acme/large' AND committed_at IS NOT NULL`))
	require.Equal(t, commits, s.count(`SELECT count(*) FROM push_commits WHERE pipeline_id = 'acme/large'`))
	require.Zero(t, s.count(`SELECT count(*) FROM events WHERE pipeline_id = 'acme/too-large'`))
	require.Zero(t, s.count(`SELECT count(*) FROM dead_letters`))
}

// A publish the stream refuses as too large is a 413 that says what the largest message is,
// never a 503: a client retries a 503 (Retry-After: 2) forever, and this one can never fit.
// The body limit and max_payload agree at start (TestBodyLimitMustFitNATS), so it takes NATS
// reconfigured under a running ingest, here a restart with a smaller max_payload.
func TestTooLargeForTheStreamIs413(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	s.postJSON(http.StatusAccepted, string(paddedCommit(t, "before", 2000)))

	s.nats.Stop()
	s.nats.SetMaxPayload(64 << 10)
	require.NoError(t, s.nats.Start())
	require.True(t, assertEventually(func() bool {
		status, _ := s.do("GET", "/readyz", "", nil)
		return status == http.StatusOK
	}, 30*time.Second), "the ingest never reconnected")

	big := paddedCommit(t, "big", 100<<10) // under DEVOPSTIC_BODY_LIMIT, over max_payload
	status, header, out := httpCall(t, http.DefaultClient, s.base, "POST", "/events", s.token, big)
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", out)
	require.Empty(t, header.Get("Retry-After"))
	require.Contains(t, string(out), "at most 65536 bytes")
	require.Contains(t, string(out), "max_payload")

	// A batch is all or nothing: the small event before the big one is not published either.
	status, out = s.do("POST", "/events", "application/json", []byte("["+string(paddedCommit(t, "small", 500))+","+string(big)+"]"))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", out)
	require.Contains(t, string(out), "event 2 of 2")

	s.postJSON(http.StatusAccepted, string(paddedCommit(t, "after", 2000)))
	s.waitCount(1, `SELECT count(*) FROM events WHERE commit_id = 'after'`)
	s.waitDrained()
	require.Equal(t, 2, s.count(`SELECT count(*) FROM events`), "only before and after")
	require.EqualValues(t, 2, s.streamMessages())
}

// The ingest refuses to start when a body it would take could not be a message of the NATS
// server it publishes to, and says which two settings disagree; the all-in-one's embedded
// server takes its max_payload from the body limit.
func TestBodyLimitMustFitNATS(t *testing.T) {
	t.Parallel()
	const limit = 4 << 20 // over NATS's default max_payload, 1 MiB
	env := func(n *testenv.NATS) map[string]string {
		return map[string]string{
			"DEVOPSTIC_DATABASE_URL": testenv.Postgres(t),
			"DEVOPSTIC_NATS_URL":     n.URL,
			"DEVOPSTIC_DATA_DIR":     n.DataDir,
			"DEVOPSTIC_JWT_SECRET":   strings.Repeat("s", 40),
			"DEVOPSTIC_USERNAME":     "ci",
			"DEVOPSTIC_PASSWORD":     "hunter2-hunter2",
			"DEVOPSTIC_BODY_LIMIT":   strconv.Itoa(limit),
		}
	}

	t.Run("an external NATS server too small", func(t *testing.T) {
		var cfg config.AllInOne
		require.NoError(t, config.Parse(&cfg, env(testenv.StartNATS(t))))
		require.NoError(t, cfg.Validate())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = serve(ctx, cfg, ln, slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
		require.Error(t, err)
		require.Contains(t, err.Error(), "DEVOPSTIC_BODY_LIMIT")
		require.Contains(t, err.Error(), "takes at most 1048576 (its max_payload): raise max_payload to at least 4227072")
	})

	t.Run("the embedded server follows the limit", func(t *testing.T) {
		s := startStack(t, "", withEnv("DEVOPSTIC_BODY_LIMIT", strconv.Itoa(limit)), embeddedNATS(t, t.TempDir()))
		status, out := s.do("POST", "/events", "application/json", paddedCommit(t, "four-mib", limit))
		require.Equal(t, http.StatusAccepted, status, "%s", out)
		s.waitCount(1, `SELECT count(*) FROM events WHERE commit_id = 'four-mib'`)
	})
}
