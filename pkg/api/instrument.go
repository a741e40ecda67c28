package api

import (
	"context"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/devopstic/devopstic/pkg/stream"
)

// apiMetrics are the ingest's series in the registry Deps.Metrics.
type apiMetrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	accepted        *prometheus.CounterVec
	publishFailures prometheus.Counter
}

// newAPIMetrics registers the API's series in reg; with a nil reg they count into nothing.
func newAPIMetrics(reg *prometheus.Registry) apiMetrics {
	m := apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "devopstic_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status class (2xx, 4xx, 5xx, ...)."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "devopstic_http_request_duration_seconds",
			Help: "Time to answer an HTTP request, by route pattern.", Buckets: prometheus.DefBuckets}, []string{"route"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "devopstic_events_accepted_total",
			Help: "Events the stream acknowledged (answered 202), by source: native, github, gitlab, pagerduty, alertmanager."}, []string{"source"}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "devopstic_publish_failures_total",
			Help: "Requests whose events the stream did not acknowledge (answered 503)."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.accepted, m.publishFailures)
	}
	return m
}

// measure counts every request by route pattern and status class and times it. It runs
// outside logRequests, which has already turned a handler's error into its status.
func (s *server) measure(c *fiber.Ctx) error {
	start, own := time.Now(), c.Route()
	err := c.Next()
	route := c.Route().Path
	if c.Route() == own {
		route = "unmatched" // no route matched (a 404 or 405): keep the label's values bounded
	}
	class := strconv.Itoa(c.Response().StatusCode()/100) + "xx"
	s.metrics.requests.WithLabelValues(route, class).Inc()
	s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	return err
}

// publish publishes msgs of one source and counts them: accepted once the stream has all of
// them, a publish failure otherwise.
func (s *server) publish(ctx context.Context, source string, msgs []stream.Message) error {
	if err := s.deps.Publisher.Publish(ctx, msgs); err != nil {
		s.metrics.publishFailures.Inc()
		return err
	}
	s.metrics.accepted.WithLabelValues(source).Add(float64(len(msgs)))
	return nil
}

// getMetrics answers the registry in the Prometheus text format 0.0.4, which every scraper
// reads. (promhttp's handler is for net/http, not fiber.) A collector that fails, the stream's
// backlog while NATS does not answer, leaves its series out and is logged; the rest is answered.
func (s *server) getMetrics(c *fiber.Ctx) error {
	families, err := s.deps.Metrics.Gather()
	if err != nil {
		s.deps.Log.Warn("gather metrics", "error", err)
	}
	c.Set(fiber.HeaderContentType, string(expfmt.FmtText))
	c.Set(fiber.HeaderCacheControl, "no-store")
	enc := expfmt.NewEncoder(c, expfmt.FmtText)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return err
		}
	}
	return nil
}
