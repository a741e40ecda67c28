package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// DORA's benchmarks live in dora_benchmarks and dora_benchmark_tiers (migration 0013): data, so
// that the API, the first page and the Grafana dashboards rate with the same numbers. pkg/dora
// rates with them; the dashboards call the migration's dora_*_tier functions.

// Benchmark is one set of tier bounds and the report it comes from.
type Benchmark struct {
	// Name is what ?benchmark= takes: the report's year ("2024").
	Name string
	// Label is what the answer's tier_source says ("DORA 2024").
	Label       string
	ReportYear  int
	ReportTitle string
	ReportURL   string
	SourceNote  string
	// Tiers are the bounds of elite, high and medium, best first; low is whatever meets none.
	Tiers []BenchmarkTier
}

// BenchmarkTier is the bound a value must meet for one tier, as dora_benchmark_tiers keeps it.
type BenchmarkTier struct {
	Tier string
	// DeploysAtLeast successful deployments per DeploysPerDays days, or more.
	DeploysAtLeast, DeploysPerDays int64
	// LeadTimeBelowSeconds: the median lead time must be strictly below.
	LeadTimeBelowSeconds int64
	// ChangeFailureRateAtMost is a fraction as Postgres writes the numeric ("0.05"), so that it
	// is read exactly.
	ChangeFailureRateAtMost string
	// RecoveryBelowSeconds: the median failed deployment recovery time must be strictly below.
	RecoveryBelowSeconds int64
}

// Benchmarks lists every benchmark, the newest report first, each with its tiers best first.
func (s *Store) Benchmarks(ctx context.Context) ([]Benchmark, error) {
	rows, _ := s.pool.Query(ctx, `
SELECT b.benchmark, b.label, b.report_year, b.report_title, b.report_url, b.source_note,
       t.tier, t.deploys_at_least, t.deploys_per_days, t.lead_time_below_seconds,
       t.change_failure_rate_at_most::text, t.recovery_below_seconds
FROM dora_benchmarks b
JOIN dora_benchmark_tiers t ON t.benchmark = b.benchmark
ORDER BY b.report_year DESC, t.rank`)
	var out []Benchmark
	var b Benchmark
	var t BenchmarkTier
	_, err := pgx.ForEachRow(rows, []any{&b.Name, &b.Label, &b.ReportYear, &b.ReportTitle, &b.ReportURL, &b.SourceNote,
		&t.Tier, &t.DeploysAtLeast, &t.DeploysPerDays, &t.LeadTimeBelowSeconds, &t.ChangeFailureRateAtMost, &t.RecoveryBelowSeconds,
	}, func() error {
		if len(out) == 0 || out[len(out)-1].Name != b.Name {
			out = append(out, Benchmark{Name: b.Name, Label: b.Label, ReportYear: b.ReportYear, ReportTitle: b.ReportTitle,
				ReportURL: b.ReportURL, SourceNote: b.SourceNote})
		}
		last := &out[len(out)-1]
		last.Tiers = append(last.Tiers, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("DORA benchmarks: %w", err)
	}
	return out, nil
}
