package main

import (
	"slices"
	"testing"
	"time"

	"github.com/devopstic/devopstic/pkg/history"
)

// BenchmarkRandomHistories times GET /api/v1/metrics/dora over the property test's hostile
// histories (pkg/history, every shape: multi-commit deployments, redeploys, merge commits,
// incidents naming deployments, full and short SHAs, reopened incidents, shuffled and
// duplicated deliveries), seeds 1 and up written into one stack until it holds at least 10,000
// events (loaded twice: Go runs a benchmark once with b.N = 1 first), so that their pipelines (which share names) hold thousands of facts each. Each of
// b.N requests is the next of the histories' random queries (pipelines or all, environments,
// windows, intervals). It reports the slowest request (goal: none over 100 ms), p95 and p50,
// against a baseline from the same run: GET /api/v1/pipelines, an index read.
//
//	go test -run '^$' -bench RandomHistories -benchtime 2000x ./services/devopstic/
func BenchmarkRandomHistories(b *testing.B) {
	s := startStack(b, "", withEnv("DEVOPSTIC_GITHUB_WEBHOOK_SECRET", githubSecret))
	var queries []history.Query
	written := 0
	for seed := uint64(1); written < 10_000; seed++ {
		// Seeds reuse event ids (the first copy written wins), so count what was written.
		h := history.Generate(seed, map[history.Shape]bool{history.ShortSHA: true, history.TierBounds: true, history.GitHubMerge: true})
		s.deliverHistory(h.Deliveries)
		s.waitDrained()
		queries = append(queries, h.Queries...)
		written = s.count(`SELECT count(*) FROM events`)
	}

	timed := func(path string) time.Duration {
		start := time.Now()
		s.getJSON(path)
		return time.Since(start)
	}
	baseline := make([]time.Duration, 0, 200)
	for range 200 {
		baseline = append(baseline, timed("/api/v1/pipelines"))
	}
	slices.Sort(baseline)

	b.ResetTimer()
	durations := make([]time.Duration, 0, b.N)
	var slowest string
	for i := range b.N {
		q := queries[i%len(queries)]
		path := "/api/v1/metrics/dora?" + q.Values().Encode()
		d := timed(path)
		if len(durations) == 0 || d > slices.Max(durations) {
			slowest = path
		}
		durations = append(durations, d)
	}
	b.StopTimer()
	slices.Sort(durations)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(durations[len(durations)-1]), "slowest-ms")
	b.ReportMetric(ms(durations[len(durations)*95/100]), "p95-ms")
	b.ReportMetric(ms(durations[len(durations)/2]), "p50-ms")
	b.ReportMetric(ms(baseline[len(baseline)*95/100]), "baseline-p95-ms")
	b.Logf("%d events; %d queries; slowest: GET %s", written, len(queries), slowest)
}
