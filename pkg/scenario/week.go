package scenario

// Week is a week of pipeline "api" whose metrics were worked out by hand, for the tests that
// check a computation of the metrics against them: the metrics API's (services/devopstic) and
// the reference implementation's (pkg/oracle). Each is a native event as posted to POST
// /events. Times are UTC; the window of interest is [2026-11-01, 2026-11-08).
//
// The answers, worked out from the events:
//
//	production deployments in the week: 06:00 11-01 (c1), 12:00 11-02 (failed), 14:00 11-02 (c2),
//	10:00 11-03 (c3+c4, cause of i1), 10:00 11-04 (redeploy c4), 01:00 11-05 (c5, cause of i2),
//	10:00 11-06 (redeploy c7), 23:30 11-07 (c6, during i3): 7 successful of 8, 3 failed, 1 rework.
//	lead times: 3600 (c4), 3600 (c5), 7200 (c3), 12600 (c6), 21600 (c1), 50400 (c2):
//	median (7200+12600)/2 = 9900; p90 at rank 4.5 = 21600 + 0.5*28800 = 36000; mean 99000/6 = 16500;
//	review: 7200 (c1), 1800 (c2) -> 4500; deploy: 10800 (c1), 41400 (c2) -> 26100.
//	restore: 7200 (i1), 1800 (i2): median 4500, p90 1800 + 0.9*5400 = 6660, mean 4500; i3 still open at the end.
var Week = []string{
	// before the window: c7 first deployed on 10-31, so a redeploy in the window is not its lead time
	`{"type":"commit","pipeline_id":"api","commit_id":"c7","timestamp":"2026-10-30T10:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c7","timestamp":"2026-10-31T10:00:00Z"}`,
	// c1: reviewed, to staging first, then production: lead 6h, review 2h, deploy 3h
	`{"type":"commit","pipeline_id":"api","commit_id":"c1","timestamp":"2026-11-01T00:00:00Z"}`,
	`{"type":"submit","pipeline_id":"api","commit_id":"c1","pull_request_id":1,"timestamp":"2026-11-01T01:00:00Z"}`,
	`{"type":"approve","pipeline_id":"api","commit_id":"c1","pull_request_id":1,"timestamp":"2026-11-01T03:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"staging","commit_id":"c1","timestamp":"2026-11-01T04:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c1","timestamp":"2026-11-01T06:00:00Z"}`,
	// c2: the first deploy fails, the redeploy succeeds: lead 14h, review 30m, deploy 11h30
	`{"type":"commit","pipeline_id":"api","commit_id":"c2","timestamp":"2026-11-02T00:00:00Z"}`,
	`{"type":"submit","pipeline_id":"api","commit_id":"c2","pull_request_id":2,"timestamp":"2026-11-02T02:00:00Z"}`,
	`{"type":"approve","pipeline_id":"api","commit_id":"c2","pull_request_id":2,"timestamp":"2026-11-02T02:30:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c2","status":"failure","timestamp":"2026-11-02T12:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c2","timestamp":"2026-11-02T14:00:00Z"}`,
	// c3 and c4 ship together (lead 2h and 1h); incident i1 names that deployment by id (2h to restore)
	`{"type":"commit","pipeline_id":"api","commit_id":"c3","timestamp":"2026-11-03T08:00:00Z"}`,
	`{"type":"commit","pipeline_id":"api","commit_id":"c4","timestamp":"2026-11-03T09:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c4","commits":["c3"],"deployment_id":"dep-4","timestamp":"2026-11-03T10:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"failure","deployment_id":"dep-4","timestamp":"2026-11-03T11:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"success","timestamp":"2026-11-03T13:00:00Z"}`,
	// a redeploy of c4: a deployment, not a new lead time
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c4","timestamp":"2026-11-04T10:00:00Z"}`,
	// c5 (lead 1h) is named by incident i2 as its cause: its deployment failed (30m to restore)
	`{"type":"commit","pipeline_id":"api","commit_id":"c5","timestamp":"2026-11-05T00:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c5","timestamp":"2026-11-05T01:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i2","status":"failure","commit_id":"c5","timestamp":"2026-11-05T02:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i2","status":"success","timestamp":"2026-11-05T02:30:00Z"}`,
	// a redeploy of c7, first deployed before the window
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c7","timestamp":"2026-11-06T10:00:00Z"}`,
	// i3 opens late and is resolved after the window; c6 (lead 3h30) ships while it is open: rework
	`{"type":"commit","pipeline_id":"api","commit_id":"c6","timestamp":"2026-11-07T20:00:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i3","status":"failure","timestamp":"2026-11-07T23:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c6","timestamp":"2026-11-07T23:30:00Z"}`,
	`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i3","status":"success","timestamp":"2026-11-08T01:00:00Z"}`,
	// another pipeline, to be left out when asking for "api"
	`{"type":"commit","pipeline_id":"web","commit_id":"w1","timestamp":"2026-11-02T00:00:00Z"}`,
	`{"type":"deploy","pipeline_id":"web","environment":"production","commit_id":"w1","status":"failure","timestamp":"2026-11-02T01:00:00Z"}`,
}

// WeekReport is the answer for Week's pipeline "api" in production over [2026-11-01,
// 2026-11-08) (GET /api/v1/metrics/dora?pipeline_id=api&from=2026-11-01&to=2026-11-08).
const WeekReport = `{
  "pipeline_id": "api", "environment": "production",
  "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "interval": "all",
  "tier_source": "DORA 2024",
  "deployment_frequency": {"deployments": 7, "per_day": 1, "per_week": 7, "tier": "elite"},
  "lead_time_for_changes": {"changes": 6, "median_seconds": 9900, "p90_seconds": 36000, "mean_seconds": 16500,
                            "review_median_seconds": 4500, "deploy_median_seconds": 26100, "tier": "elite"},
  "failed_deployment_recovery_time": {"incidents": 2, "open_incidents": 1, "median_seconds": 4500, "p90_seconds": 6660,
                                      "mean_seconds": 4500, "tier": "high"},
  "change_failure_rate": {"deployments": 8, "failed": 3, "rate": 0.375, "tier": "low"},
  "rework_rate": {"deployments": 7, "rework": 1, "rate": 0.1429},
  "time_to_restore": {"incidents": 2, "open_incidents": 1, "median_seconds": 4500, "p90_seconds": 6660,
                      "mean_seconds": 4500, "tier": "high"}
}`

// WeekByDay is the series of the same question by day (&interval=day).
const WeekByDay = `[
  {"start":"2026-11-01T00:00:00Z","deployments":1,"failed":0,"change_failure_rate":0,"lead_time_median_seconds":21600,"failed_deployment_recovery_time_median_seconds":null,"time_to_restore_median_seconds":null},
  {"start":"2026-11-02T00:00:00Z","deployments":2,"failed":1,"change_failure_rate":0.5,"lead_time_median_seconds":50400,"failed_deployment_recovery_time_median_seconds":null,"time_to_restore_median_seconds":null},
  {"start":"2026-11-03T00:00:00Z","deployments":1,"failed":1,"change_failure_rate":1,"lead_time_median_seconds":5400,"failed_deployment_recovery_time_median_seconds":7200,"time_to_restore_median_seconds":7200},
  {"start":"2026-11-04T00:00:00Z","deployments":1,"failed":0,"change_failure_rate":0,"lead_time_median_seconds":null,"failed_deployment_recovery_time_median_seconds":null,"time_to_restore_median_seconds":null},
  {"start":"2026-11-05T00:00:00Z","deployments":1,"failed":1,"change_failure_rate":1,"lead_time_median_seconds":3600,"failed_deployment_recovery_time_median_seconds":1800,"time_to_restore_median_seconds":1800},
  {"start":"2026-11-06T00:00:00Z","deployments":1,"failed":0,"change_failure_rate":0,"lead_time_median_seconds":null,"failed_deployment_recovery_time_median_seconds":null,"time_to_restore_median_seconds":null},
  {"start":"2026-11-07T00:00:00Z","deployments":1,"failed":0,"change_failure_rate":0,"lead_time_median_seconds":12600,"failed_deployment_recovery_time_median_seconds":null,"time_to_restore_median_seconds":null}
]`

// EmptyWeekReport is the answer for "api" in production over [2026-10-01, 2026-10-08), a
// week before any of Week's events: counts of zero, statistics and tiers null.
const EmptyWeekReport = `{
  "pipeline_id": "api", "environment": "production",
  "from": "2026-10-01T00:00:00Z", "to": "2026-10-08T00:00:00Z", "interval": "all",
  "tier_source": "DORA 2024",
  "deployment_frequency": {"deployments": 0, "per_day": 0, "per_week": 0, "tier": "low"},
  "lead_time_for_changes": {"changes": 0, "median_seconds": null, "p90_seconds": null, "mean_seconds": null,
                            "review_median_seconds": null, "deploy_median_seconds": null, "tier": null},
  "failed_deployment_recovery_time": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
                                      "mean_seconds": null, "tier": null},
  "change_failure_rate": {"deployments": 0, "failed": 0, "rate": null, "tier": null},
  "rework_rate": {"deployments": 0, "rework": 0, "rate": null},
  "time_to_restore": {"incidents": 0, "open_incidents": 0, "median_seconds": null, "p90_seconds": null,
                      "mean_seconds": null, "tier": null}
}`
