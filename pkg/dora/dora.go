// Package dora is the DORA metrics' read side: the question a client asks (Query), the tiers
// (Benchmark: DORA's published tier bounds of one report year) and the answer of GET
// /api/v1/metrics/dora (Report).
//
// The figures themselves are computed in Postgres by the functions of
// migrations/0002_dora.up.sql and its successors, which the Grafana dashboards call too; this
// package only rates them and shapes them. The benchmarks are data too (migration 0013), read
// through pkg/store, so the dashboards rate with the same numbers. docs/metrics.md ("How the
// metrics are computed", "Benchmarks") records the decisions DORA.md left open.
package dora

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/store"
)

// Defaults of a Query.
const (
	DefaultEnvironment = "production"
	DefaultWindow      = 90 * 24 * time.Hour
	// MaxBuckets bounds a series: ten years of days.
	MaxBuckets = 3660
)

// Query is one question to the metrics API: the figures of the union of Pipelines and the
// pipelines of Teams (all pipelines when both are empty).
type Query struct {
	Pipelines   []string // pipeline_id, each once, in the order given
	Teams       []string // team, each once, in the order given
	Environment string
	From, To    time.Time
	Interval    string // all, day, week, month
	// Benchmark names the tiers' benchmark ("2024"); "" is the default (Benchmarks.Get).
	Benchmark string
}

// ErrBadParameter wraps every problem with a query's parameters.
var ErrBadParameter = errors.New("invalid parameter")

// MaxSelection bounds how many pipeline_id, and how many team, one query may name.
const MaxSelection = 1000

// ParseQuery reads the API's parameters; now fills in a missing `to`. pipeline_id and team may
// each be given several times (blank values are ignored). benchmark is only read here: which
// benchmarks exist is data, and Benchmarks.Get refuses one that does not.
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	q := Query{
		Environment: strings.TrimSpace(v.Get("environment")),
		Interval:    v.Get("interval"),
		Benchmark:   strings.TrimSpace(v.Get("benchmark")),
	}
	var err error
	if q.Pipelines, err = selection(v, "pipeline_id"); err != nil {
		return Query{}, err
	}
	if q.Teams, err = selection(v, "team"); err != nil {
		return Query{}, err
	}
	if q.Environment == "" {
		q.Environment = DefaultEnvironment
	}
	switch q.Interval {
	case "":
		q.Interval = "all"
	case "all", "day", "week", "month":
	default:
		return Query{}, fmt.Errorf("%w: interval must be all, day, week or month, not %q", ErrBadParameter, q.Interval)
	}
	q.To = now.UTC().Truncate(time.Second)
	if s := v.Get("to"); s != "" {
		if q.To, err = parseInstant("to", s); err != nil {
			return Query{}, err
		}
	}
	q.From = q.To.Add(-DefaultWindow)
	if s := v.Get("from"); s != "" {
		if q.From, err = parseInstant("from", s); err != nil {
			return Query{}, err
		}
	}
	if !q.From.Before(q.To) {
		return Query{}, fmt.Errorf("%w: from (%s) must be before to (%s)", ErrBadParameter, q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	if n := len(Buckets(q.From, q.To, q.Interval)); n > MaxBuckets {
		return Query{}, fmt.Errorf("%w: interval=%s makes %d buckets over this window; at most %d", ErrBadParameter, q.Interval, n, MaxBuckets)
	}
	return q, nil
}

// selection reads every value of the parameter name, trimmed, blanks left out, each once.
func selection(v url.Values, name string) ([]string, error) {
	var out []string
	for _, s := range v[name] {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) > MaxSelection {
		return nil, fmt.Errorf("%w: %s is given %d different values; at most %d", ErrBadParameter, name, len(out), MaxSelection)
	}
	return out, nil
}

func parseInstant(name, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: %s must be an RFC 3339 time or a YYYY-MM-DD date (UTC midnight), not %q", ErrBadParameter, name, s)
}

// Buckets are the starts of the buckets of [from, to): from itself for "all", else every UTC
// day, ISO week (Monday) or month overlapping the window. Postgres's dora_buckets makes the
// same list; this one only sizes a query before it runs.
func Buckets(from, to time.Time, interval string) []time.Time {
	if interval == "all" {
		return []time.Time{from}
	}
	from, to = from.UTC(), to.UTC()
	start := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC)
	next := func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	switch interval {
	case "week":
		start = start.AddDate(0, 0, -((int(start.Weekday()) + 6) % 7))
		next = func(t time.Time) time.Time { return t.AddDate(0, 0, 7) }
	case "month":
		start = time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC)
		next = func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }
	}
	var out []time.Time
	for t := start; t.Before(to); t = next(t) {
		out = append(out, t)
		if len(out) > MaxBuckets {
			break
		}
	}
	return out
}

// StoreQuery is the store's form of q.
func (q Query) StoreQuery() store.MetricsQuery {
	return store.MetricsQuery{Pipelines: q.Pipelines, Teams: q.Teams, Environment: q.Environment, From: q.From, To: q.To, Unit: q.Interval}
}
