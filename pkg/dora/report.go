package dora

import (
	"fmt"
	"time"

	"github.com/devopstic/devopstic/pkg/store"
)

// Report is the answer of GET /api/v1/metrics/dora, as DORA.md shows it.
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
	TierSource  string    `json:"tier_source"`

	DeploymentFrequency DeploymentFrequency `json:"deployment_frequency"`
	LeadTime            LeadTime            `json:"lead_time_for_changes"`
	ChangeFailureRate   ChangeFailureRate   `json:"change_failure_rate"`
	TimeToRestore       TimeToRestore       `json:"time_to_restore"`
	ReworkRate          ReworkRate          `json:"rework_rate"`
	Series              []Bucket            `json:"series,omitempty"`
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

// TimeToRestore is how long resolved incidents lasted, in seconds.
type TimeToRestore struct {
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
	Start                      time.Time `json:"start"`
	Deployments                int64     `json:"deployments"`
	Failed                     int64     `json:"failed"`
	ChangeFailureRate          *float64  `json:"change_failure_rate"`
	LeadTimeMedianSeconds      *int64    `json:"lead_time_median_seconds"`
	TimeToRestoreMedianSeconds *int64    `json:"time_to_restore_median_seconds"`
}

// days is the length of [from, to) in days. Not to.Sub(from): a time.Duration holds 292 years
// at most, and a longer window (from=1000-01-01) would be rated on a third of its length.
func days(from, to time.Time) float64 {
	seconds := float64(to.Unix()-from.Unix()) + float64(to.Nanosecond()-from.Nanosecond())/1e9
	return seconds / (24 * 60 * 60)
}

// NewReport rates and shapes what the store computed for q.
func NewReport(q Query, m store.Metrics) (Report, error) {
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
		TierSource:  TierSource,
		DeploymentFrequency: DeploymentFrequency{
			Deployments: d.Deployments,
			PerDay:      d.PerDay,
			PerWeek:     d.PerWeek,
			Tier:        DeploymentFrequencyTier(d.Deployments, days(q.From, q.To)),
		},
		LeadTime: LeadTime{
			Changes:             lt.Changes,
			MedianSeconds:       lt.Median,
			P90Seconds:          lt.P90,
			MeanSeconds:         lt.Mean,
			ReviewMedianSeconds: lt.ReviewMedian,
			DeployMedianSeconds: lt.DeployMedian,
			Tier:                DurationTier(lt.MedianExact, LeadTimeEliteBelow, LeadTimeHighBelow, LeadTimeMediumBelow),
		},
		ChangeFailureRate: ChangeFailureRate{
			Deployments: d.Attempts,
			Failed:      d.Failed,
			Rate:        d.ChangeFailureRate,
			Tier:        ChangeFailureTier(d.Failed, d.Attempts),
		},
		TimeToRestore: TimeToRestore{
			Incidents:     tr.Incidents,
			OpenIncidents: m.OpenIncidents,
			MedianSeconds: tr.Median,
			P90Seconds:    tr.P90,
			MeanSeconds:   tr.Mean,
			Tier:          DurationTier(tr.MedianExact, RestoreEliteBelow, RestoreHighBelow, RestoreMediumBelow),
		},
		ReworkRate: ReworkRate{Deployments: d.Deployments, Rework: d.Rework, Rate: d.ReworkRate},
	}
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
			Start:                      d.Start.UTC(),
			Deployments:                d.Attempts,
			Failed:                     d.Failed,
			ChangeFailureRate:          d.ChangeFailureRate,
			LeadTimeMedianSeconds:      lt.Median,
			TimeToRestoreMedianSeconds: tr.Median,
		})
	}
	return r, nil
}
