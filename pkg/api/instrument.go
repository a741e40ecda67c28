package api

import (
	"context"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/devopstic/devopstic/pkg/metrics"
	"github.com/devopstic/devopstic/pkg/stream"
)

// apiMetrics are the ingest's series in the registry Deps.Metrics.
type apiMetrics struct {
	requests        *metrics.CounterVec
	duration        *metrics.HistogramVec
	accepted        *metrics.CounterVec
	publishFailures *metrics.Counter
}

func newAPIMetrics(reg *metrics.Registry) apiMetrics {
	return apiMetrics{
		requests: reg.CounterVec("devopstic_http_requests_total",
			"HTTP requests answered, by route pattern and status class (2xx, 4xx, 5xx, ...).", "route", "code"),
		duration: reg.HistogramVec("devopstic_http_request_duration_seconds",
			"Time to answer an HTTP request, by route pattern.", metrics.DefaultBuckets, "route"),
		accepted: reg.CounterVec("devopstic_events_accepted_total",
			"Events the stream acknowledged (answered 202), by source: native, github, gitlab, pagerduty, alertmanager.", "source"),
		publishFailures: reg.Counter("devopstic_publish_failures_total",
			"Requests whose events the stream did not acknowledge (answered 503)."),
	}
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
	s.metrics.requests.With(route, class).Inc()
	s.metrics.duration.With(route).Observe(time.Since(start).Seconds())
	return err
}

// publish publishes msgs of one source and counts them: accepted once the stream has all of
// them, a publish failure otherwise.
func (s *server) publish(ctx context.Context, source string, msgs []stream.Message) error {
	if err := s.deps.Publisher.Publish(ctx, msgs); err != nil {
		s.metrics.publishFailures.Inc()
		return err
	}
	s.metrics.accepted.With(source).Add(uint64(len(msgs)))
	return nil
}

// getMetrics answers the registry in the Prometheus text format.
func (s *server) getMetrics(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, metrics.ContentType)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return s.deps.Metrics.Write(c)
}
