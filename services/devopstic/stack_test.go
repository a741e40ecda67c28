package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// TestMain doubles as a writer process: the fault tests re-run this test binary with
// DEVOPSTIC_TEST_RUN_WRITER=1 to get writers they can SIGKILL (see runWriterProcess).
func TestMain(m *testing.M) {
	if os.Getenv("DEVOPSTIC_TEST_RUN_WRITER") == "1" {
		runWriterProcess()
	}
	testenv.Main(m)
}

// stack is the all-in-one service running in the test process against a real Postgres and a
// real NATS server, reached over real HTTP.
type stack struct {
	t     testing.TB
	base  string
	token string
	db    *pgxpool.Pool
	nats  *testenv.NATS
	stop  func()
	cfg   config.AllInOne
}

type stackOption func(env map[string]string)

func withEnv(k, v string) stackOption { return func(env map[string]string) { env[k] = v } }

// startStack runs serve with its own database (dbURL, or a fresh one when "") and NATS server.
func startStack(t testing.TB, dbURL string, opts ...stackOption) *stack {
	t.Helper()
	return startStackLogging(t, dbURL, nil, opts...)
}

// startStackLogging is startStack with the service's logs, from debug level up, written to logs
// instead of the test's log (when logs is not nil).
func startStackLogging(t testing.TB, dbURL string, logs io.Writer, opts ...stackOption) *stack {
	t.Helper()
	if dbURL == "" {
		dbURL = testenv.Postgres(t)
	}
	n := testenv.StartNATS(t)
	env := map[string]string{
		"DEVOPSTIC_DATABASE_URL":      dbURL,
		"DEVOPSTIC_NATS_URL":          n.URL,
		"DEVOPSTIC_DATA_DIR":          n.DataDir, // its password file: each role connects as its own user
		"DEVOPSTIC_JWT_SECRET":        strings.Repeat("s", 40),
		"DEVOPSTIC_USERNAME":          "ci",
		"DEVOPSTIC_PASSWORD":          "hunter2-hunter2",
		"DEVOPSTIC_PUBLISH_TIMEOUT":   "2s",
		"DEVOPSTIC_WRITER_BATCH_WAIT": "10ms",
		"DEVOPSTIC_WRITER_RETRY_MAX":  "200ms",
	}
	for _, o := range opts {
		o(env)
	}
	var cfg config.AllInOne
	require.NoError(t, config.Parse(&cfg, env))
	require.NoError(t, cfg.Validate())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if logs != nil {
		log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() { done <- serve(ctx, cfg, ln, log) }()

	s := &stack{t: t, base: "http://" + ln.Addr().String(), nats: n, cfg: cfg}
	var once bool
	s.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s")
		}
	}
	t.Cleanup(s.stop)

	readyz := s.base + "/readyz"
	if addr := env["DEVOPSTIC_ADMIN_ADDR"]; addr != "" {
		readyz = "http://" + addr + "/readyz" // it left the public address
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(readyz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "service never became ready")

	status, body := s.do("POST", "/tokens", "application/json", []byte(`{"username":"ci","password":"hunter2-hunter2"}`))
	require.Equal(t, http.StatusOK, status, "%s", body)
	var tok struct{ Token string }
	require.NoError(t, json.Unmarshal(body, &tok))
	s.token = tok.Token

	poolCfg, err := pgxpool.ParseConfig(dbURL)
	require.NoError(t, err)
	poolCfg.ConnConfig.RuntimeParams["timezone"] = "UTC" // table dumps print times in UTC
	s.db, err = pgxpool.NewWithConfig(context.Background(), poolCfg)
	require.NoError(t, err)
	t.Cleanup(s.db.Close)
	return s
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// do sends a request with the stack's token (when it has one) and returns status and body.
func (s *stack) do(method, path, contentType string, body []byte, headers ...string) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, bytes.NewReader(body))
	require.NoError(s.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, out
}

// postJSON posts events and requires the given status.
func (s *stack) postJSON(wantStatus int, body string) []byte {
	s.t.Helper()
	status, out := s.do("POST", "/events", "application/json", []byte(body))
	require.Equal(s.t, wantStatus, status, "%s", out)
	return out
}

func (s *stack) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	require.NoError(s.t, s.db.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// waitCount waits until query counts want rows.
func (s *stack) waitCount(want int, query string, args ...any) {
	s.t.Helper()
	var last int
	ok := assertEventually(func() bool {
		last = s.count(query, args...)
		return last == want
	}, 30*time.Second)
	require.True(s.t, ok, "waited for %d rows from %q, last saw %d", want, query, last)
}

func assertEventually(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
