package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/testenv"
)

// scrape reads GET base/metrics into series (name{labels} as written) and their values.
func scrape(t testing.TB, base string) map[string]float64 {
	t.Helper()
	status, h, body := httpCall(t, http.DefaultClient, base, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Equal(t, "text/plain; version=0.0.4; charset=utf-8", h.Get("Content-Type"))
	series := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, "sample line %q", line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, "sample line %q", line)
		series[line[:i]] = v
	}
	return series
}

// GET /metrics counts what was accepted and written, exactly: the ingest's and the writer's
// series share one registry in the all-in-one.
func TestMetricsCountAcceptedAndWritten(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	before := scrape(t, s.base)
	require.Zero(t, before[`devopstic_events_accepted_total{source="native"}`])
	require.Zero(t, before["devopstic_writer_messages_written_total"])
	require.Contains(t, before, "devopstic_publish_failures_total", "every series without labels is there from the start")

	const requests, perRequest = 4, 5
	for r := range requests {
		var events []string
		for i := range perRequest {
			events = append(events, fmt.Sprintf(`{"type":"commit","pipeline_id":"metrics","commit_id":"c%d-%d","timestamp":%d}`, r, i, 1790000000+10*r+i))
		}
		s.postJSON(http.StatusAccepted, "["+strings.Join(events, ",")+"]")
	}
	s.postJSON(http.StatusBadRequest, `{"type":"commit"}`) // refused: counted as a 4xx, accepts nothing
	const posted = requests * perRequest

	var m map[string]float64
	ok := assertEventually(func() bool {
		m = scrape(t, s.base)
		return m["devopstic_writer_messages_written_total"] >= posted
	}, 30*time.Second)
	require.True(t, ok, "the writer never wrote %d messages: %v", posted, m)
	require.Equal(t, float64(posted), m["devopstic_writer_messages_written_total"])
	require.Equal(t, float64(posted), m[`devopstic_events_accepted_total{source="native"}`])
	require.Equal(t, float64(requests), m[`devopstic_http_requests_total{code="2xx",route="/events"}`])
	require.Equal(t, float64(1), m[`devopstic_http_requests_total{code="4xx",route="/events"}`])
	require.Equal(t, float64(requests+1), m[`devopstic_http_request_duration_seconds_count{route="/events"}`])
	require.Zero(t, m["devopstic_publish_failures_total"])
	require.Zero(t, m["devopstic_writer_dead_lettered_total"])
	require.GreaterOrEqual(t, m["devopstic_writer_batches_total"], float64(1))
	require.LessOrEqual(t, m["devopstic_writer_batches_total"], float64(posted))
	require.Positive(t, m["devopstic_writer_last_batch_size"])
	require.Equal(t, posted, s.count(`SELECT count(*) FROM events WHERE pipeline_id = 'metrics'`))

	status, _, _ := httpCall(t, http.DefaultClient, s.base, "GET", "/no-such-path", "", nil)
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, float64(1), scrape(t, s.base)[`devopstic_http_requests_total{code="4xx",route="unmatched"}`],
		"an unknown path is one label value, not one per path: %v", scrape(t, s.base))
}

// With DEVOPSTIC_ADMIN_ADDR, /metrics is served there only, like /readyz.
func TestMetricsOnAdminAddress(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	adminAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	s := startStack(t, "", withEnv("DEVOPSTIC_ADMIN_ADDR", adminAddr))

	status, _, _ := httpCall(t, http.DefaultClient, s.base, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusNotFound, status, "/metrics left the public address")
	s.postJSON(http.StatusAccepted, `{"type":"commit","pipeline_id":"metrics","commit_id":"c1","timestamp":1790000000}`)
	var m map[string]float64
	ok := assertEventually(func() bool {
		m = scrape(t, "http://"+adminAddr)
		return m["devopstic_writer_messages_written_total"] >= 1
	}, 30*time.Second)
	require.True(t, ok, "the writer never wrote the event: %v", m)
	require.Equal(t, float64(1), m[`devopstic_events_accepted_total{source="native"}`])
	require.Equal(t, float64(1), m["devopstic_writer_messages_written_total"])
}

// The stream's backlog and the writer's lag, read over GET /metrics while Postgres is down: the
// events wait in the stream, the backlog counts them and the lag grows with the time they wait;
// once Postgres is back and they are written, both read 0. The process's and the Go runtime's
// series come with them.
func TestMetricsBacklogAndLag(t *testing.T) {
	t.Parallel()
	cluster, dbURL := testenv.PrivatePostgres(t)
	s := startStack(t, dbURL)
	var m map[string]float64
	ok := assertEventually(func() bool {
		m = scrape(t, s.base)
		_, ok := m["devopstic_stream_backlog_messages"]
		return ok
	}, 30*time.Second)
	require.True(t, ok, "no devopstic_stream_backlog_messages: %v", m)
	require.Zero(t, m["devopstic_stream_backlog_messages"])
	require.Zero(t, m["devopstic_writer_lag_seconds"])
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "go_goroutines"} {
		require.Positive(t, m[name], name)
	}

	require.NoError(t, cluster.Stop())
	const waiting = 5
	for i := range waiting {
		s.postJSON(http.StatusAccepted, fmt.Sprintf(`{"type":"commit","pipeline_id":"lag","commit_id":"c%d","timestamp":%d}`, i, 1790000000+i))
	}
	ok = assertEventually(func() bool {
		m = scrape(t, s.base)
		return m["devopstic_stream_backlog_messages"] == waiting && m["devopstic_writer_lag_seconds"] > 0
	}, 30*time.Second)
	require.True(t, ok, "the backlog never read %d with a lag: %v", waiting, m)
	lag := m["devopstic_writer_lag_seconds"]
	time.Sleep(1500 * time.Millisecond)
	m = scrape(t, s.base)
	require.Equal(t, float64(waiting), m["devopstic_stream_backlog_messages"])
	require.GreaterOrEqual(t, m["devopstic_writer_lag_seconds"], lag+1, "the lag grows while the events wait")

	require.NoError(t, cluster.StartAgain(context.Background()))
	s.waitCount(waiting, `SELECT count(*) FROM events WHERE pipeline_id = 'lag'`)
	ok = assertEventually(func() bool {
		m = scrape(t, s.base)
		return m["devopstic_stream_backlog_messages"] == 0 && m["devopstic_writer_lag_seconds"] == 0
	}, 30*time.Second)
	require.True(t, ok, "the backlog and the lag never returned to 0: %v", m)
}
