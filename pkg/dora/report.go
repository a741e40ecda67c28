package dora

import (
	"fmt"
	"time"

	"github.com/devopstic/devopstic/pkg/store"
)

// Report is the answer of GET /api/v1/metrics/dora, as DORA.md shows it, with DORA's current
// names: the keys in DORA's order since 2024, throughput (deployment frequency, lead time for
// changes, failed deployment recovery time) then instability (change failure rate, rework rate).
type Report struct {
	// PipelineID is the pipeline when the query named exactly one and no team; else null.
	PipelineID *string `json:"pipeline_id"`
	// Teams are the teams the query named, when it named any.
	Teams []string `json:"teams,omitempty"`
	// Pipelines, when the query named teams or several pipelines, are the pipelines whose union
	// the figures are for (empty for a team without any).
	Pipelines   *[]string `json:"pipelines,omitempty"`
	Environment string    `json:"environment"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Interval    string    `json:"interval"`
	// TierSource names the benchmark the tiers come from (its Label: "DORA 2024").
	TierSource string `json:"tier_source"`

	DeploymentFrequency          DeploymentFrequency          `json:"deployment_frequency"`
	LeadTime                     LeadTime                     `json:"lead_time_for_changes"`
	FailedDeploymentRecoveryTime FailedDeploymentRecoveryTime `json:"failed_deployment_recovery_time"`
	ChangeFailureRate            ChangeFailureRate            `json:"change_failure_rate"`
	ReworkRate                   ReworkRate                   `json:"rework_rate"`
	// TimeToRestore is FailedDeploymentRecoveryTime under the name DORA used until 2023, the
	// same figures.
	//
	// Deprecated: kept one release for clients to move (docs/api.md, "Deprecated fields");
	// removed in DevOpstic 0.3.0.
	TimeToRestore FailedDeploymentRecoveryTime `json:"time_to_restore"`
	Series        []Bucket                     `json:"series,omitempty"`
}

// DeploymentFrequency counts successful deployments.
type DeploymentFrequency struct {
	Deployments int64   `json:"deployments"`
	PerDay      float64 `json:"per_day"`
	PerWeek     float64 `json:"per_week"`
	Tier        string  `json:"tier"`
}

// LeadTime is lead time for changes, in seconds.
type LeadTime struct {
	Changes             int64   `json:"changes"`
	MedianSeconds       *int64  `json:"median_seconds"`
	P90Seconds          *int64  `json:"p90_seconds"`
	MeanSeconds         *int64  `json:"mean_seconds"`
	ReviewMedianSeconds *int64  `json:"review_median_seconds"`
	DeployMedianSeconds *int64  `json:"deploy_median_seconds"`
	Tier                *string `json:"tier"`
}

// ChangeFailureRate is the share of deployment attempts that failed.
type ChangeFailureRate struct {
	Deployments int64    `json:"deployments"`
	Failed      int64    `json:"failed"`
	Rate        *float64 `json:"rate"`
	Tier        *string  `json:"tier"`
}

// FailedDeploymentRecoveryTime is how long resolved incidents lasted, in seconds: DORA's
// failed deployment recovery time, called time to restore until 2023.
type FailedDeploymentRecoveryTime struct {
	Incidents     int64   `json:"incidents"`
	OpenIncidents int64   `json:"open_incidents"`
	MedianSeconds *int64  `json:"median_seconds"`
	P90Seconds    *int64  `json:"p90_seconds"`
	MeanSeconds   *int64  `json:"mean_seconds"`
	Tier          *string `json:"tier"`
}

// ReworkRate is the share of successful deployments made while an incident was open.
type ReworkRate struct {
	Deployments int64    `json:"deployments"`
	Rework      int64    `json:"rework"`
	Rate        *float64 `json:"rate"`
}

// Bucket is one step of a series. Deployments and Failed are change-failure-rate counts:
// every attempt, and the failed ones (docs/metrics.md, "How the metrics are computed").
type Bucket struct {
	Start                                     time.Time `json:"start"`
	Deployments                               int64     `json:"deployments"`
	Failed                                    int64     `json:"failed"`
	ChangeFailureRate                         *float64  `json:"change_failure_rate"`
	LeadTimeMedianSeconds                     *int64    `json:"lead_time_median_seconds"`
	FailedDeploymentRecoveryTimeMedianSeconds *int64    `json:"failed_deployment_recovery_time_median_seconds"`
	// TimeToRestoreMedianSeconds is FailedDeploymentRecoveryTimeMedianSeconds under its old name.
	//
	// Deprecated: removed in DevOpstic 0.3.0, with Report.TimeToRestore.
	TimeToRestoreMedianSeconds *int64 `json:"time_to_restore_median_seconds"`
}

// NewReport rates what the store computed for q against b, and shapes it. b is the benchmark
// q names (Benchmarks.Get(q.Benchmark)): the caller resolves it, so that an unknown name is
// refused before the metrics are computed.
func NewReport(q Query, m store.Metrics, b Benchmark) (Report, error) {
	n := len(m.Deployments)
	if n == 0 || len(m.LeadTime) != n || len(m.Restore) != n {
		return Report{}, fmt.Errorf("metrics rows do not line up: %d deployments, %d lead time, %d restore", n, len(m.LeadTime), len(m.Restore))
	}
	d, lt, tr := m.Deployments[0], m.LeadTime[0], m.Restore[0]
	r := Report{
		Environment: q.Environment,
		From:        q.From,
		To:          q.To,
		Interval:    q.Interval,
		TierSource:  b.Label,
		DeploymentFrequency: DeploymentFrequency{
			Deployments: d.Deployments,
			PerDay:      d.PerDay,
			PerWeek:     d.PerWeek,
			Tier:        b.DeploymentFrequencyTier(d.Deployments, q.From, q.To),
		},
		LeadTime: LeadTime{
			Changes:             lt.Changes,
			MedianSeconds:       lt.Median,
			P90Seconds:          lt.P90,
			MeanSeconds:         lt.Mean,
			ReviewMedianSeconds: lt.ReviewMedian,
			DeployMedianSeconds: lt.DeployMedian,
			Tier:                b.LeadTimeTier(lt.MedianExact),
		},
		ChangeFailureRate: ChangeFailureRate{
			Deployments: d.Attempts,
			Failed:      d.Failed,
			Rate:        d.ChangeFailureRate,
			Tier:        b.ChangeFailureRateTier(d.Failed, d.Attempts),
		},
		FailedDeploymentRecoveryTime: FailedDeploymentRecoveryTime{
			Incidents:     tr.Incidents,
			OpenIncidents: m.OpenIncidents,
			MedianSeconds: tr.Median,
			P90Seconds:    tr.P90,
			MeanSeconds:   tr.Mean,
			Tier:          b.RecoveryTimeTier(tr.MedianExact),
		},
		ReworkRate: ReworkRate{Deployments: d.Deployments, Rework: d.Rework, Rate: d.ReworkRate},
	}
	r.TimeToRestore = r.FailedDeploymentRecoveryTime
	switch {
	case len(q.Teams) == 0 && len(q.Pipelines) == 1:
		r.PipelineID = &q.Pipelines[0]
	case len(q.Teams) > 0 || len(q.Pipelines) > 1:
		r.Teams = q.Teams
		pipelines := m.Pipelines
		if pipelines == nil {
			pipelines = []string{}
		}
		r.Pipelines = &pipelines
	}
	if q.Interval == "all" {
		return r, nil
	}
	r.Series = make([]Bucket, 0, n-1)
	for i := 1; i < n; i++ {
		d, lt, tr := m.Deployments[i], m.LeadTime[i], m.Restore[i]
		if d.Start == nil || lt.Start == nil || tr.Start == nil || !d.Start.Equal(*lt.Start) || !d.Start.Equal(*tr.Start) {
			return Report{}, fmt.Errorf("metrics bucket %d does not line up", i)
		}
		r.Series = append(r.Series, Bucket{
			Start:                 d.Start.UTC(),
			Deployments:           d.Attempts,
			Failed:                d.Failed,
			ChangeFailureRate:     d.ChangeFailureRate,
			LeadTimeMedianSeconds: lt.Median,
			FailedDeploymentRecoveryTimeMedianSeconds: tr.Median,
			TimeToRestoreMedianSeconds:                tr.Median,
		})
	}
	return r, nil
}
