// Package dora is the DORA metrics' read side: the question a client asks (Query), the tiers
// ("DORA 2023") and the answer of GET /api/v1/metrics/dora (Report).
//
// The figures themselves are computed in Postgres by the functions of
// migrations/0002_dora.up.sql, which the Grafana dashboards call too; this package only rates
// them and shapes them. docs/metrics.md ("How the metrics are computed") records the decisions
// DORA.md left open.
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

// TierSource names the benchmark the tiers come from.
const TierSource = "DORA 2023"

// Tiers, best first.
const (
	Elite  = "elite"
	High   = "high"
	Medium = "medium"
	Low    = "low"
)

// Defaults of a Query.
const (
	DefaultEnvironment = "production"
	DefaultWindow      = 90 * 24 * time.Hour
	// MaxBuckets bounds a series: ten years of days.
	MaxBuckets = 3660
)

const day = 24 * time.Hour

// Tier thresholds (DORA 2023). The Grafana dashboards colour their stat panels with the same
// numbers; a test checks that they agree.
const (
	LeadTimeEliteBelow  = day
	LeadTimeHighBelow   = 7 * day
	LeadTimeMediumBelow = 30 * day

	RestoreEliteBelow  = time.Hour
	RestoreHighBelow   = day
	RestoreMediumBelow = 7 * day

	FailureEliteAtMost  = 0.05
	FailureHighAtMost   = 0.10
	FailureMediumAtMost = 0.15
)

// DeploymentFrequencyTier rates deployments over a window of days: elite at one a day or more,
// high at one a week, medium at one in 30 days.
func DeploymentFrequencyTier(deployments int64, days float64) string {
	perDay := float64(deployments) / days
	switch {
	case perDay >= 1:
		return Elite
	case perDay*7 >= 1:
		return High
	case perDay*30 >= 1:
		return Medium
	default:
		return Low
	}
}

// DurationTier rates a median duration in seconds, exact (not rounded: a median of 86,399.5 s
// is under a day), against three upper bounds; nil has no tier.
func DurationTier(seconds *float64, elite, high, medium time.Duration) *string {
	if seconds == nil {
		return nil
	}
	d := *seconds
	switch {
	case d < elite.Seconds():
		return tier(Elite)
	case d < high.Seconds():
		return tier(High)
	case d < medium.Seconds():
		return tier(Medium)
	default:
		return tier(Low)
	}
}

// ChangeFailureTier rates failed out of attempts, exactly (no rounding): 5%, 10%, 15%.
// No attempts, no tier.
func ChangeFailureTier(failed, attempts int64) *string {
	if attempts == 0 {
		return nil
	}
	switch {
	case failed*100 <= 5*attempts:
		return tier(Elite)
	case failed*100 <= 10*attempts:
		return tier(High)
	case failed*100 <= 15*attempts:
		return tier(Medium)
	default:
		return tier(Low)
	}
}

func tier(s string) *string { return &s }

// Query is one question to the metrics API: the figures of the union of Pipelines and the
// pipelines of Teams (all pipelines when both are empty).
type Query struct {
	Pipelines   []string // pipeline_id, each once, in the order given
	Teams       []string // team, each once, in the order given
	Environment string
	From, To    time.Time
	Interval    string // all, day, week, month
}

// ErrBadParameter wraps every problem with a query's parameters.
var ErrBadParameter = errors.New("invalid parameter")

// MaxSelection bounds how many pipeline_id, and how many team, one query may name.
const MaxSelection = 1000

// ParseQuery reads the API's parameters; now fills in a missing `to`. pipeline_id and team may
// each be given several times (blank values are ignored).
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	q := Query{
		Environment: strings.TrimSpace(v.Get("environment")),
		Interval:    v.Get("interval"),
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
