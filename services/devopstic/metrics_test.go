package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	require.Equal(t, float64(requests), m[`devopstic_http_requests_total{route="/events",code="2xx"}`])
	require.Equal(t, float64(1), m[`devopstic_http_requests_total{route="/events",code="4xx"}`])
	require.Equal(t, float64(requests+1), m[`devopstic_http_request_duration_seconds_count{route="/events"}`])
	require.Zero(t, m["devopstic_publish_failures_total"])
	require.Zero(t, m["devopstic_writer_dead_lettered_total"])
	require.GreaterOrEqual(t, m["devopstic_writer_batches_total"], float64(1))
	require.LessOrEqual(t, m["devopstic_writer_batches_total"], float64(posted))
	require.Positive(t, m["devopstic_writer_last_batch_size"])
	require.Equal(t, posted, s.count(`SELECT count(*) FROM events WHERE pipeline_id = 'metrics'`))

	status, _, _ := httpCall(t, http.DefaultClient, s.base, "GET", "/no-such-path", "", nil)
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, float64(1), scrape(t, s.base)[`devopstic_http_requests_total{route="unmatched",code="4xx"}`],
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
