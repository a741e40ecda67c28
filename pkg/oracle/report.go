package oracle

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Query is one question of GET /api/v1/metrics/dora, its defaults already applied.
type Query struct {
	Pipeline    string // "" for every pipeline together
	Environment string
	From, To    time.Time
	Interval    string // all, day, week or month
	// Benchmark names the tiers' benchmark, "2023" or "2024"; "" is the newest, 2024.
	Benchmark string
}

// Report is the answer, field for field as DORA.md shows it, with DORA's current name for time
// to restore (failed deployment recovery time) and the old one beside it, as docs/api.md
// promises for one release.
type Report struct {
	PipelineID  *string `json:"pipeline_id"`
	Environment string  `json:"environment"`
	From        string  `json:"from"`
	To          string  `json:"to"`
	Interval    string  `json:"interval"`
	TierSource  string  `json:"tier_source"`

	DeploymentFrequency struct {
		Deployments int64   `json:"deployments"`
		PerDay      float64 `json:"per_day"`
		PerWeek     float64 `json:"per_week"`
		Tier        string  `json:"tier"`
	} `json:"deployment_frequency"`
	LeadTime struct {
		Changes             int64   `json:"changes"`
		MedianSeconds       *int64  `json:"median_seconds"`
		P90Seconds          *int64  `json:"p90_seconds"`
		MeanSeconds         *int64  `json:"mean_seconds"`
		ReviewMedianSeconds *int64  `json:"review_median_seconds"`
		DeployMedianSeconds *int64  `json:"deploy_median_seconds"`
		Tier                *string `json:"tier"`
	} `json:"lead_time_for_changes"`
	ChangeFailureRate struct {
		Deployments int64    `json:"deployments"`
		Failed      int64    `json:"failed"`
		Rate        *float64 `json:"rate"`
		Tier        *string  `json:"tier"`
	} `json:"change_failure_rate"`
	RecoveryTime  Recovery `json:"failed_deployment_recovery_time"`
	TimeToRestore Recovery `json:"time_to_restore"` // the same, under its old name
	ReworkRate    struct {
		Deployments int64    `json:"deployments"`
		Rework      int64    `json:"rework"`
		Rate        *float64 `json:"rate"`
	} `json:"rework_rate"`
	Series []Bucket `json:"series,omitempty"`
}

// Recovery is failed deployment recovery time (time to restore, until DORA's 2023 report).
type Recovery struct {
	Incidents     int64   `json:"incidents"`
	OpenIncidents int64   `json:"open_incidents"`
	MedianSeconds *int64  `json:"median_seconds"`
	P90Seconds    *int64  `json:"p90_seconds"`
	MeanSeconds   *int64  `json:"mean_seconds"`
	Tier          *string `json:"tier"`
}

// Bucket is one step of a series.
type Bucket struct {
	Start                      string   `json:"start"`
	Deployments                int64    `json:"deployments"`
	Failed                     int64    `json:"failed"`
	ChangeFailureRate          *float64 `json:"change_failure_rate"`
	LeadTimeMedianSeconds      *int64   `json:"lead_time_median_seconds"`
	RecoveryTimeMedianSeconds  *int64   `json:"failed_deployment_recovery_time_median_seconds"`
	TimeToRestoreMedianSeconds *int64   `json:"time_to_restore_median_seconds"` // the same, under its old name
}

// deployment is an attempt as the metrics see it, once every report is in.
type deployment struct {
	pipeline, environment string
	at                    time.Time
	success               bool
	failed                bool // status failure, or named as an incident's cause
	rework                bool // successful while an incident of its pipeline and environment was open
}

// leadTime is one change's contribution to lead time for changes in one environment.
type leadTime struct {
	pipeline   string
	deployed   time.Time // the change's first deployment
	lead       time.Duration
	review     *time.Duration
	deployPart *time.Duration
}

// restore is one resolved incident.
type restore struct {
	pipeline, environment string
	opened, resolved      time.Time
}

// Report answers q from the facts known.
func (h *History) Report(q Query) (Report, error) {
	if q.Interval == "" {
		q.Interval = "all"
	}
	if !q.From.Before(q.To) {
		return Report{}, fmt.Errorf("oracle: from %s is not before to %s", q.From, q.To)
	}
	set, ok := benchmarks[q.Benchmark]
	if !ok {
		return Report{}, fmt.Errorf("oracle: no benchmark %q", q.Benchmark)
	}
	deps, err := h.deployments()
	if err != nil {
		return Report{}, err
	}
	leads := h.leadTimes(q.Environment)
	restores, open := h.restores()

	in := func(pipeline string) bool { return q.Pipeline == "" || pipeline == q.Pipeline }
	var (
		myDeps     []deployment
		myLeads    []leadTime
		myRestores []restore
	)
	for _, d := range deps {
		if in(d.pipeline) && d.environment == q.Environment {
			myDeps = append(myDeps, d)
		}
	}
	for _, l := range leads {
		if in(l.pipeline) {
			myLeads = append(myLeads, l)
		}
	}
	for _, r := range restores {
		if in(r.pipeline) && r.environment == q.Environment {
			myRestores = append(myRestores, r)
		}
	}

	r := Report{
		Environment: q.Environment,
		From:        stamp(q.From),
		To:          stamp(q.To),
		Interval:    q.Interval,
		TierSource:  set.label,
	}
	if q.Pipeline != "" {
		p := q.Pipeline
		r.PipelineID = &p
	}

	// Deployment frequency, change failure rate and rework rate.
	var successes, attempts, failed, rework int64
	for _, d := range myDeps {
		if !within(d.at, q.From, q.To) {
			continue
		}
		attempts++
		if d.failed {
			failed++
		}
		if d.success {
			successes++
			if d.rework {
				rework++
			}
		}
	}
	days := new(big.Rat).SetFrac64(int64(q.To.Sub(q.From)), int64(24*time.Hour))
	perDay := new(big.Rat).Quo(new(big.Rat).SetInt64(successes), days)
	r.DeploymentFrequency.Deployments = successes
	r.DeploymentFrequency.PerDay = round4(perDay)
	r.DeploymentFrequency.PerWeek = round4(new(big.Rat).Mul(perDay, big.NewRat(7, 1)))
	r.DeploymentFrequency.Tier = set.frequencyTier(perDay)

	r.ChangeFailureRate.Deployments = attempts
	r.ChangeFailureRate.Failed = failed
	r.ChangeFailureRate.Rate = ratio(failed, attempts)
	r.ChangeFailureRate.Tier = set.failureTier(failed, attempts)

	r.ReworkRate.Deployments = successes
	r.ReworkRate.Rework = rework
	r.ReworkRate.Rate = ratio(rework, successes)

	// Lead time for changes.
	var lead, review, deployPart []time.Duration
	for _, l := range myLeads {
		if !within(l.deployed, q.From, q.To) {
			continue
		}
		lead = append(lead, l.lead)
		if l.review != nil {
			review = append(review, *l.review)
		}
		if l.deployPart != nil {
			deployPart = append(deployPart, *l.deployPart)
		}
	}
	r.LeadTime.Changes = int64(len(lead))
	r.LeadTime.MedianSeconds = seconds(percentile(lead, half))
	r.LeadTime.P90Seconds = seconds(percentile(lead, ninety))
	r.LeadTime.MeanSeconds = seconds(mean(lead))
	r.LeadTime.ReviewMedianSeconds = seconds(percentile(review, half))
	r.LeadTime.DeployMedianSeconds = seconds(percentile(deployPart, half))
	r.LeadTime.Tier = set.durationTier(percentile(lead, half), func(b tierBounds) time.Duration { return b.leadBelow })

	// Failed deployment recovery time (time to restore).
	var durations []time.Duration
	for _, x := range myRestores {
		if within(x.resolved, q.From, q.To) {
			durations = append(durations, x.resolved.Sub(x.opened))
		}
	}
	r.RecoveryTime.Incidents = int64(len(durations))
	r.RecoveryTime.MedianSeconds = seconds(percentile(durations, half))
	r.RecoveryTime.P90Seconds = seconds(percentile(durations, ninety))
	r.RecoveryTime.MeanSeconds = seconds(mean(durations))
	r.RecoveryTime.Tier = set.durationTier(percentile(durations, half), func(b tierBounds) time.Duration { return b.restoreBelow })
	for _, o := range open {
		// Opened before `to` and not resolved by then.
		if in(o.pipeline) && o.environment == q.Environment && o.opened.Before(q.To) &&
			(o.resolved == nil || !o.resolved.Before(q.To)) {
			r.RecoveryTime.OpenIncidents++
		}
	}
	r.TimeToRestore = r.RecoveryTime

	if q.Interval == "all" {
		return r, nil
	}
	starts, err := bucketStarts(q.From, q.To, q.Interval)
	if err != nil {
		return Report{}, err
	}
	r.Series = []Bucket{}
	for i, start := range starts {
		// Each bucket counts the facts of its calendar span clipped to the window.
		lo, hi := latest(start, q.From), q.To
		if i+1 < len(starts) {
			hi = starts[i+1]
		}
		b := Bucket{Start: stamp(start)}
		for _, d := range myDeps {
			if within(d.at, lo, hi) {
				b.Deployments++
				if d.failed {
					b.Failed++
				}
			}
		}
		b.ChangeFailureRate = ratio(b.Failed, b.Deployments)
		var bl, br []time.Duration
		for _, l := range myLeads {
			if within(l.deployed, lo, hi) {
				bl = append(bl, l.lead)
			}
		}
		for _, x := range myRestores {
			if within(x.resolved, lo, hi) {
				br = append(br, x.resolved.Sub(x.opened))
			}
		}
		b.LeadTimeMedianSeconds = seconds(percentile(bl, half))
		b.RecoveryTimeMedianSeconds = seconds(percentile(br, half))
		b.TimeToRestoreMedianSeconds = b.RecoveryTimeMedianSeconds
		r.Series = append(r.Series, b)
	}
	return r, nil
}

func within(t, from, to time.Time) bool { return !t.Before(from) && t.Before(to) }

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// bucketStarts are the calendar starts (UTC) of the days, ISO weeks or months that overlap
// [from, to), in order. A bucket ends where the next starts, the last at `to`.
func bucketStarts(from, to time.Time, interval string) ([]time.Time, error) {
	from = from.UTC()
	start := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC)
	var next func(time.Time) time.Time
	switch interval {
	case "day":
		next = func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	case "week":
		for start.Weekday() != time.Monday {
			start = start.AddDate(0, 0, -1)
		}
		next = func(t time.Time) time.Time { return t.AddDate(0, 0, 7) }
	case "month":
		start = time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC)
		next = func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }
	default:
		return nil, fmt.Errorf("oracle: interval %q", interval)
	}
	var out []time.Time
	for t := start; t.Before(to); t = next(t) {
		out = append(out, t)
	}
	return out, nil
}

// deployments are every attempt, final, with its failed and rework flags.
func (h *History) deployments() ([]deployment, error) {
	type final struct {
		key attemptKey
		a   *attempt
		deployment
	}
	var all []*final
	for k, a := range h.attempts {
		last := a.final()
		f := &final{key: k, a: a, deployment: deployment{
			pipeline: k.pipeline, environment: k.environment, at: last.at,
			success: last.status == Success, failed: last.status == Failure,
		}}
		all = append(all, f)
	}
	for _, inc := range h.incidents {
		switch {
		case inc.causeDeployment != "":
			for _, f := range all {
				if f.pipeline == inc.pipeline && f.environment == inc.environment && f.a.deploymentID == inc.causeDeployment {
					f.failed = true
				}
			}
		case inc.causeCommit != "":
			commit, ok := h.resolveCommit(inc.pipeline, inc.causeCommit)
			if !ok {
				continue
			}
			// The deployment to the incident's environment that first shipped the commit.
			var first *final
			for _, f := range all {
				if !f.success || f.pipeline != inc.pipeline || f.environment != inc.environment || !h.ships(f.key, f.a, commit) {
					continue
				}
				if first != nil && first.at.Equal(f.at) {
					return nil, fmt.Errorf("%w: %s first shipped by two deployments at %s (ties go by source and id, which the reference does not model)", ErrConflict, commit, f.at)
				}
				if first == nil || f.at.Before(first.at) {
					first = f
				}
			}
			if first != nil {
				first.failed = true
			}
		}
	}
	for _, f := range all {
		if !f.success {
			continue
		}
		for _, inc := range h.incidents {
			if inc.pipeline == f.pipeline && inc.environment == f.environment && inc.openAt(f.at) {
				f.rework = true
				break
			}
		}
	}
	out := make([]deployment, len(all))
	for i, f := range all {
		out[i] = f.deployment
	}
	return out, nil
}

// resolveCommit is the known commit of pipeline that name names: itself, or the one known
// commit that it is a prefix of, when it is at least 7 hex characters (DORA.md).
func (h *History) resolveCommit(pipeline, name string) (string, bool) {
	if _, ok := h.changes[commitKey{pipeline, name}]; ok {
		return name, true
	}
	if len(name) < 7 || strings.Trim(strings.ToLower(name), "0123456789abcdef") != "" {
		return "", false
	}
	var found []string
	for k := range h.changes {
		if k.pipeline == pipeline && strings.HasPrefix(k.commit, name) {
			found = append(found, k.commit)
		}
	}
	if len(found) != 1 {
		return "", false
	}
	return found[0], true
}

// ships says whether the attempt ships commit: its commit_id, its commits, and the commits of
// the push whose head a report deployed.
func (h *History) ships(k attemptKey, a *attempt, commit string) bool {
	if a.ships[commit] {
		return true
	}
	for c := range a.ships {
		if slices.Contains(h.pushes[commitKey{k.pipeline, c}], commit) {
			return true
		}
	}
	return false
}

// openAt says whether the incident was open at t: from its opening (inclusive) to its
// resolution (exclusive), or for good when it was never resolved.
func (i *incident) openAt(t time.Time) bool {
	if i.opened == nil || t.Before(*i.opened) {
		return false
	}
	resolved := i.resolved()
	return resolved == nil || t.Before(*resolved)
}

// resolved is the incident's latest resolution when it comes after its opening.
func (i *incident) resolved() *time.Time {
	if i.opened == nil || i.lastResolved == nil || !i.lastResolved.After(*i.opened) {
		return nil
	}
	return i.lastResolved
}

type openIncident struct {
	pipeline, environment string
	opened                time.Time
	resolved              *time.Time
}

func (h *History) restores() ([]restore, []openIncident) {
	var rs []restore
	var opened []openIncident
	for _, i := range h.incidents {
		if i.opened == nil {
			continue
		}
		opened = append(opened, openIncident{i.pipeline, i.environment, *i.opened, i.resolved()})
		if res := i.resolved(); res != nil {
			rs = append(rs, restore{i.pipeline, i.environment, *i.opened, *res})
		}
	}
	return rs, opened
}

// leadTimes are the lead times of every change first deployed to environment: one per change
// (commits linked together are one change), from its earliest known time to its earliest
// successful deployment there, left out when that is zero or negative.
func (h *History) leadTimes(environment string) []leadTime {
	// The earliest successful deployment there of each commit.
	shipped := map[commitKey]*time.Time{}
	for ak, a := range h.attempts {
		d := a.final()
		if ak.environment != environment || d.status != Success {
			continue
		}
		for c := range a.ships {
			for _, s := range append([]string{c}, h.pushes[commitKey{ak.pipeline, c}]...) {
				k := commitKey{ak.pipeline, s}
				shipped[k] = earliestPtr(shipped[k], &d.at)
			}
		}
	}
	seen := map[commitKey]bool{}
	var out []leadTime
	for k := range h.changes {
		if seen[k] {
			continue
		}
		members := h.change(k)
		for _, m := range members {
			seen[commitKey{k.pipeline, m}] = true
		}
		var times changeTimes
		for _, m := range members {
			ct := h.changes[commitKey{k.pipeline, m}]
			times.committed = earliestPtr(times.committed, ct.committed)
			times.submitted = earliestPtr(times.submitted, ct.submitted)
			times.approved = earliestPtr(times.approved, ct.approved)
			times.mergedUnapproved = earliestPtr(times.mergedUnapproved, ct.mergedUnapproved)
		}
		if times.approved == nil {
			times.approved = times.mergedUnapproved // merged without an approving review
		}
		start := earliestPtr(earliestPtr(times.committed, times.submitted), times.approved)
		if start == nil {
			continue
		}
		var first *time.Time
		for _, m := range members {
			first = earliestPtr(first, shipped[commitKey{k.pipeline, m}])
		}
		if first == nil || !first.After(*start) {
			continue // not deployed there, or zero or negative: left out
		}
		l := leadTime{pipeline: k.pipeline, deployed: *first, lead: first.Sub(*start)}
		if times.submitted != nil && times.approved != nil {
			d := times.approved.Sub(*times.submitted)
			l.review = &d
		}
		if times.approved != nil {
			d := first.Sub(*times.approved)
			l.deployPart = &d
		}
		out = append(out, l)
	}
	return out
}

// change is every commit of k's change: k and the commits linked to it, transitively.
func (h *History) change(k commitKey) []string {
	members := []string{k.commit}
	for i := 0; i < len(members); i++ {
		for _, l := range h.links[commitKey{k.pipeline, members[i]}] {
			if !slices.Contains(members, l) {
				members = append(members, l)
			}
		}
	}
	return members
}

// final is the attempt's latest report, which decides its status and time (docs/api.md, Sending events).
func (a *attempt) final() report {
	last := a.reports[0]
	for _, r := range a.reports[1:] {
		if r.at.After(last.at) {
			last = r
		}
	}
	return last
}

func earliestPtr(a, b *time.Time) *time.Time {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return earliest(a, *b)
}
