package metrics_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/metrics"
)

func exposition(t *testing.T, r *metrics.Registry) string {
	t.Helper()
	var b strings.Builder
	require.NoError(t, r.Write(&b))
	return b.String()
}

func TestWriteCounterWithLabelsAndHistogram(t *testing.T) {
	t.Parallel()
	r := metrics.NewRegistry()
	reqs := r.CounterVec("http_requests_total", "HTTP requests, by route and status class.", "route", "code")
	reqs.With("/events", "2xx").Add(3)
	reqs.With("/events", "4xx").Inc()
	reqs.With(`/a"b\c`, "5xx").Inc()
	h := r.Histogram("request_duration_seconds", "Request duration\nin seconds.", []float64{0.1, 1, 0.5})
	for _, x := range []float64{0.05, 0.1, 0.3, 2} {
		h.Observe(x)
	}
	r.Gauge("last_batch_size", "Messages in the last batch.").Set(42)

	want := `# HELP http_requests_total HTTP requests, by route and status class.
# TYPE http_requests_total counter
http_requests_total{route="/a\"b\\c",code="5xx"} 1
http_requests_total{route="/events",code="2xx"} 3
http_requests_total{route="/events",code="4xx"} 1
# HELP last_batch_size Messages in the last batch.
# TYPE last_batch_size gauge
last_batch_size 42
# HELP request_duration_seconds Request duration\nin seconds.
# TYPE request_duration_seconds histogram
request_duration_seconds_bucket{le="0.1"} 2
request_duration_seconds_bucket{le="0.5"} 3
request_duration_seconds_bucket{le="1"} 3
request_duration_seconds_bucket{le="+Inf"} 4
request_duration_seconds_sum 2.45
request_duration_seconds_count 4
`
	require.Equal(t, want, exposition(t, r))
}

func TestWriteLabelledHistogramAndUnusedFamily(t *testing.T) {
	t.Parallel()
	r := metrics.NewRegistry()
	r.CounterVec("events_total", "Events.", "source")
	r.HistogramVec("duration_seconds", "Duration.", []float64{1}, "route").With("/x").Observe(0.5)

	want := `# HELP duration_seconds Duration.
# TYPE duration_seconds histogram
duration_seconds_bucket{route="/x",le="1"} 1
duration_seconds_bucket{route="/x",le="+Inf"} 1
duration_seconds_sum{route="/x"} 0.5
duration_seconds_count{route="/x"} 1
# HELP events_total Events.
# TYPE events_total counter
`
	require.Equal(t, want, exposition(t, r))
}

func TestRegisterTwice(t *testing.T) {
	t.Parallel()
	r := metrics.NewRegistry()
	r.Counter("a_total", "A.").Inc()
	r.Counter("a_total", "A.").Inc()
	require.Equal(t, uint64(2), r.Counter("a_total", "A.").Value(), "the same name is the same counter")
	require.Panics(t, func() { r.Gauge("a_total", "A.") })
	require.Panics(t, func() { r.CounterVec("b_total", "B.", "x").With("1", "2") })
	require.Panics(t, func() { r.Counter("bad-name", "B.") })
}

func TestNilCountsNothing(t *testing.T) {
	t.Parallel()
	var r *metrics.Registry
	r.Counter("a_total", "A.").Inc()
	r.CounterVec("b_total", "B.", "x").With("y").Add(2)
	r.Gauge("c", "C.").Set(1)
	r.Histogram("d", "D.", metrics.DefaultBuckets).Observe(1)
	r.HistogramVec("e", "E.", metrics.DefaultBuckets, "x").With("y").Observe(1)
	require.Equal(t, "", exposition(t, r))
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	r := metrics.NewRegistry()
	c := r.CounterVec("n_total", "N.", "worker")
	h := r.Histogram("h", "H.", []float64{1})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				c.With(string(rune('a' + w%2))).Inc()
				h.Observe(0.5)
				_ = r.Write(&strings.Builder{})
			}
		}()
	}
	wg.Wait()
	require.Equal(t, uint64(4000), c.With("a").Value())
	require.Equal(t, uint64(4000), c.With("b").Value())
	require.Contains(t, exposition(t, r), "h_count 8000\n")
	require.Contains(t, exposition(t, r), "h_sum 4000\n")
}
