package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ---- 4. End to end

// pollEvery is how often the end-to-end step looks for the rows: its figures' resolution.
const pollEvery = 5 * time.Millisecond

// measureEndToEnd posts single events at a steady rate with a writer running, and times each
// from its 202 to its row in the derived changes table, found by polling Postgres.
func (r *runner) measureEndToEnd(ctx context.Context) error {
	w, err := r.startWriter()
	if err != nil {
		return err
	}
	defer func() { _ = w.stop() }() // stopped below; this is for the error paths

	var (
		mu      sync.Mutex
		pending = map[string]time.Time{} // commit id → its 202
		delays  []time.Duration
	)
	commit := func(i int) string { return "e2e-" + strconv.Itoa(i) }
	pollCtx, stopPolling := context.WithCancel(ctx)
	polled := make(chan error, 1)
	go func() { polled <- r.pollRows(pollCtx, &mu, pending, &delays) }()

	next := func(_, i int) (*http.Request, int) {
		body := fmt.Appendf(nil, `{"id":%q,"type":"commit","pipeline_id":%q,"commit_id":%q,"timestamp":%d}`,
			commit(i), e2ePipeline, commit(i), YearEnd.Unix())
		return r.eventsRequest("application/json", body), 1
	}
	accepted := func(i int, at time.Time) {
		mu.Lock()
		pending[commit(i)] = at
		mu.Unlock()
	}
	sent, failed, firstFail, elapsed := paced(ctx, 32, r.sizes.steadyRate, r.sizes.steady, http.StatusAccepted, next, accepted)
	if failed > 0 {
		fmt.Fprintf(r.cfg.Progress, "      %d of %d requests failed, the first: %s\n", failed, sent, firstFail)
	}

	// Every accepted event must reach its row.
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		left := len(pending)
		mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			stopPolling()
			return fmt.Errorf("%d accepted events had no row 60s after the load ended", left)
		}
		time.Sleep(pollEvery)
	}
	stopPolling()
	if err := <-polled; err != nil {
		return err
	}
	if r.rss["writer-steady"], err = w.peakRSS(); err != nil {
		return err
	}
	if err := w.stop(); err != nil {
		return err
	}

	slices.Sort(delays)
	rate := float64(sent) / elapsed.Seconds()
	r.add(Row{Figure: fmt.Sprintf("end to end: %d events/s for %s, from the 202 to the derived row (polled every %s)",
		r.sizes.steadyRate, r.sizes.steady, pollEvery),
		Measured: fmt.Sprintf("p50 %s, p99 %s, max %s (%s sent, %d failed)", millis(percentile(delays, 0.5)),
			millis(percentile(delays, 0.99)), millis(percentile(delays, 1)), perSecond(rate), failed),
		Target:  "p99 < 1 s",
		Verdict: verdict(failed == 0 && percentile(delays, 0.99) < time.Second)})
	return nil
}

// pollRows looks for the pending commits' rows in changes every pollEvery and records, for
// each row found, the time since its 202. It returns when ctx is done.
func (r *runner) pollRows(ctx context.Context, mu *sync.Mutex, pending map[string]time.Time, delays *[]time.Duration) error {
	for {
		mu.Lock()
		ids := make([]string, 0, len(pending))
		for id := range pending {
			ids = append(ids, id)
		}
		mu.Unlock()
		if len(ids) > 0 {
			// A join on the primary key, not commit_id = ANY($2): with the stale statistics of
			// a table that just took a million rows, the planner chose a sequential scan that
			// compared every row with every pending id, seconds per poll.
			rows, err := r.pool.Query(ctx, `SELECT c.commit_id FROM unnest($2::text[]) AS p(commit_id)
				JOIN changes c ON c.pipeline_id = $1 AND c.commit_id = p.commit_id`, e2ePipeline, ids)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("poll changes: %w", err)
			}
			var found []string
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return fmt.Errorf("poll changes: %w", err)
				}
				found = append(found, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil && ctx.Err() == nil {
				return fmt.Errorf("poll changes: %w", err)
			}
			seen := time.Now()
			mu.Lock()
			for _, id := range found {
				*delays = append(*delays, seen.Sub(pending[id]))
				delete(pending, id)
			}
			mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pollEvery):
		}
	}
}

// ---- 5. Metrics API

// measureMetrics loads a year of history (LoadYear) and times GET /api/v1/metrics/dora, one
// request after the other, against a baseline in the same run: one index scan counting a
// pipeline's deployments in the window, straight over SQL.
func (r *runner) measureMetrics(ctx context.Context) error {
	fmt.Fprintf(r.cfg.Progress, "      loading %d events of %d pipelines with COPY\n", r.sizes.history, Pipelines)
	loaded, err := LoadYear(ctx, r.cfg.DatabaseURL, "pipeline", r.sizes.history, r.cfg.Progress)
	if err != nil {
		return err
	}
	from, to := YearEnd.AddDate(0, 0, -90), YearEnd
	window := "&from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339)
	pipeline := func(i int) string { return PipelineName("pipeline", (i*7919)%Pipelines) }

	baseline, err := timeRequests(r.sizes.requests, func(i int) error {
		var n int
		return r.pool.QueryRow(ctx, `SELECT count(*) FROM deployments WHERE pipeline_id = $1 AND environment = 'production'
			AND deployed_at >= $2 AND deployed_at < $3`, pipeline(i), from, to).Scan(&n)
	})
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	baselineText := fmt.Sprintf("p50 %s, p95 %s (index scan)", millis(percentile(baseline, 0.5)), millis(percentile(baseline, 0.95)))
	cases := []struct {
		figure, query string
		requests      int
		target        time.Duration // the goal for p95; 0 for none
	}{
		{"one pipeline, 90 days", "pipeline_id=%s", r.sizes.requests, 50 * time.Millisecond},
		{"one pipeline, 90 days, interval=week", "interval=week&pipeline_id=%s", r.sizes.requests, 0},
		{"all pipelines, 90 days", "", max(r.sizes.requests/10, 5), time.Second},
		{"all pipelines, 90 days, interval=week", "interval=week", max(r.sizes.requests/10, 5), 0},
	}
	client := newClient(1)
	for _, c := range cases {
		durations, err := timeRequests(c.requests, func(i int) error {
			q := c.query
			if strings.Contains(q, "%s") {
				q = fmt.Sprintf(q, url.QueryEscape(pipeline(i)))
			}
			req, err := http.NewRequest(http.MethodGet, r.ingestURL+"/api/v1/metrics/dora?"+q+window, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+r.token)
			status, body, err := send(client, req)
			if err != nil {
				return err
			}
			if status != http.StatusOK {
				return fmt.Errorf("GET /api/v1/metrics/dora?%s: %d %s", q, status, body)
			}
			return nil
		})
		if err != nil {
			return err
		}
		row := Row{Figure: fmt.Sprintf("metrics API at %d events: %s (%d requests)", loaded, c.figure, c.requests),
			Measured: fmt.Sprintf("p50 %s, p95 %s", millis(percentile(durations, 0.5)), millis(percentile(durations, 0.95))),
			Baseline: baselineText,
			Ratio:    fmt.Sprintf("%.0f (p95)", float64(percentile(durations, 0.95))/float64(percentile(baseline, 0.95)))}
		if c.target > 0 {
			row.Target = "p95 < " + c.target.String()
			row.Verdict = verdict(percentile(durations, 0.95) < c.target)
		}
		r.add(row)
	}
	return nil
}

// timeRequests runs do n times, one after the other, and returns the sorted durations.
func timeRequests(n int, do func(i int) error) ([]time.Duration, error) {
	durations := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if err := do(i); err != nil {
			return nil, err
		}
		durations = append(durations, time.Since(start))
	}
	slices.Sort(durations)
	return durations, nil
}

// ---- 6. Memory

func (r *runner) memoryRows() {
	if rss, err := r.ingest.peakRSS(); err == nil {
		r.add(Row{Figure: "memory: ingest peak RSS over the whole run (ingest, end to end, metrics API)", Measured: mebibytes(rss),
			Target: "< 150 MiB", Verdict: verdict(rss < 150<<20)})
	} else {
		r.add(Row{Figure: "memory: ingest peak RSS over the whole run (ingest, end to end, metrics API)", Measured: err.Error()})
	}
	backlog := max(r.rss["writer-empty"], r.rss["writer-full"])
	steady := r.rss["writer-steady"]
	r.add(Row{Figure: fmt.Sprintf("memory: writer peak RSS draining a backlog of %d events", r.backlog), Measured: mebibytes(backlog),
		Baseline: mebibytes(steady) + " (steady load, no backlog)",
		Ratio:    fmt.Sprintf("%.2f", float64(backlog)/float64(max(steady, 1))),
		Target:   "bounded: < 2× the steady load's", Verdict: verdict(steady > 0 && backlog < 2*steady)})
}
