// Package scenario generates delivery histories whose DORA metrics are known in closed form:
// the demo data of `make demo`, and an oracle for the tests of the metrics API.
//
// Each pipeline deploys on a fixed rhythm; every change has the same lead time, review time
// and deploy time; every k-th attempt fails; every m-th successful deployment causes an incident
// that lasts a fixed time and ends before the next deployment. The generator draws those
// parameters from a seed, and Expected computes the figures from the parameters alone — never
// from the events — so comparing the two checks the whole pipeline.
//
// Week is a smaller history with the shapes a rhythm does not have (retries, redeploys, several
// commits a deployment, incidents named by deployment or commit, one still open), whose figures
// were worked out by hand.
package scenario

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Config shapes a scenario.
type Config struct {
	Seed        uint64
	Pipelines   int
	Start       time.Time
	Days        int
	Environment string // where the deployments go; "production" when empty
}

// Pipeline is one pipeline's rhythm.
type Pipeline struct {
	ID string
	// Every is the time between deployment attempts; the n-th (from 1) is at
	// Start + (n-1)*Every + Every/2.
	Every time.Duration
	// Lead is from commit to deployment; the PR is opened Submit after the commit and
	// approved Review after that.
	Lead, Submit, Review time.Duration
	// FailEvery: attempts n with n%FailEvery == 0 fail (0: none do).
	FailEvery int
	// IncidentEvery: successful attempts n with n%IncidentEvery == 0 cause an incident opened
	// 10 minutes later and resolved Restore after that (0: none do).
	IncidentEvery int
	Restore       time.Duration
}

// Scenario is a generated history.
type Scenario struct {
	Config    Config
	Pipelines []Pipeline
}

const incidentDelay = 10 * time.Minute

// Generate draws each pipeline's rhythm from the seed.
func Generate(cfg Config) Scenario {
	if cfg.Environment == "" {
		cfg.Environment = "production"
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	pick := func(options ...time.Duration) time.Duration { return options[rng.IntN(len(options))] }
	s := Scenario{Config: cfg}
	for i := range cfg.Pipelines {
		p := Pipeline{
			ID:            fmt.Sprintf("service-%02d", i+1),
			Every:         pick(6*time.Hour, 24*time.Hour, 72*time.Hour, 168*time.Hour),
			Lead:          pick(2*time.Hour, 20*time.Hour, 3*24*time.Hour, 10*24*time.Hour),
			Submit:        5 * time.Minute,
			Review:        pick(10*time.Minute, time.Hour, 40*time.Minute),
			FailEvery:     []int{0, 4, 10, 20}[rng.IntN(4)],
			IncidentEvery: []int{0, 5, 15}[rng.IntN(3)],
		}
		// An incident ends before the next deployment: no rework, a closed form for restore.
		p.Restore = pick(20*time.Minute, 2*time.Hour)
		if p.Every >= 72*time.Hour {
			p.Restore = pick(20*time.Minute, 2*time.Hour, 30*time.Hour)
		}
		s.Pipelines = append(s.Pipelines, p)
	}
	return s
}

// End is the end of the scenario's window.
func (s Scenario) End() time.Time {
	return s.Config.Start.Add(time.Duration(s.Config.Days) * 24 * time.Hour)
}

func (p Pipeline) attempts(days int) int {
	return int(time.Duration(days) * 24 * time.Hour / p.Every)
}

func (p Pipeline) fails(n int) bool { return p.FailEvery > 0 && n%p.FailEvery == 0 }

func (p Pipeline) causesIncident(n int) bool {
	return !p.fails(n) && p.IncidentEvery > 0 && n%p.IncidentEvery == 0
}

// Events are the scenario as native events (JSON objects), each with its own id.
func (s Scenario) Events() []json.RawMessage {
	env := s.Config.Environment
	var out []json.RawMessage
	add := func(v map[string]any) {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err) // maps of strings and numbers always marshal
		}
		out = append(out, b)
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	for _, p := range s.Pipelines {
		for n := 1; n <= p.attempts(s.Config.Days); n++ {
			at := s.Config.Start.Add(time.Duration(n-1)*p.Every + p.Every/2)
			commit := fmt.Sprintf("%s-c%04d", p.ID, n)
			deployment := fmt.Sprintf("%s-d%04d", p.ID, n)
			id := func(kind string) string { return fmt.Sprintf("scenario-%d-%s-%04d-%s", s.Config.Seed, p.ID, n, kind) }
			if p.fails(n) {
				add(map[string]any{"id": id("deploy"), "type": "deploy", "pipeline_id": p.ID, "environment": env,
					"commit_id": commit + "-broken", "deployment_id": deployment, "status": "failure", "timestamp": ts(at)})
				continue
			}
			committed := at.Add(-p.Lead)
			add(map[string]any{"id": id("commit"), "type": "commit", "pipeline_id": p.ID, "commit_id": commit, "timestamp": ts(committed)})
			add(map[string]any{"id": id("submit"), "type": "submit", "pipeline_id": p.ID, "commit_id": commit, "pull_request_id": n, "timestamp": ts(committed.Add(p.Submit))})
			add(map[string]any{"id": id("approve"), "type": "approve", "pipeline_id": p.ID, "commit_id": commit, "pull_request_id": n, "timestamp": ts(committed.Add(p.Submit + p.Review))})
			add(map[string]any{"id": id("deploy"), "type": "deploy", "pipeline_id": p.ID, "environment": env,
				"commit_id": commit, "deployment_id": deployment, "status": "success", "timestamp": ts(at)})
			if p.causesIncident(n) {
				incident := map[string]any{"type": "incident_status_change", "pipeline_id": p.ID, "environment": env,
					"incident_id": fmt.Sprintf("%s-i%04d", p.ID, n)}
				// Half the incidents name their cause by deployment, half by commit.
				if n%2 == 0 {
					incident["deployment_id"] = deployment
				} else {
					incident["commit_id"] = commit
				}
				opened := map[string]any{"id": id("opened"), "status": "failure", "timestamp": ts(at.Add(incidentDelay))}
				resolved := map[string]any{"id": id("resolved"), "status": "success", "timestamp": ts(at.Add(incidentDelay + p.Restore))}
				for k, v := range incident {
					opened[k], resolved[k] = v, v
				}
				add(opened)
				add(resolved)
			}
		}
	}
	return out
}

// Figures are a pipeline's expected metrics over the whole window, as the API reports them.
type Figures struct {
	Deployments          int64
	PerDay               float64
	Attempts, Failed     int64
	ChangeFailureRate    float64
	Changes              int64
	LeadTimeSeconds      int64 // median, p90 and mean alike: every change takes the same time
	ReviewSeconds        int64
	DeployLeadSeconds    int64
	Incidents            int64
	RestoreSeconds       *int64 // nil when there are no incidents
	Rework, OpenIncident int64
}

// Expected computes a pipeline's figures from its parameters alone.
func (s Scenario) Expected(p Pipeline) Figures {
	n := int64(p.attempts(s.Config.Days))
	multiples := func(k int64) int64 {
		if k == 0 {
			return 0
		}
		return n / k
	}
	fe, ie := int64(p.FailEvery), int64(p.IncidentEvery)
	failedStatus := multiples(fe)
	incidents := multiples(ie)
	if fe > 0 && ie > 0 {
		incidents -= multiples(lcm(fe, ie)) // an attempt that failed causes no incident
	}
	success := n - failedStatus
	f := Figures{
		Deployments:       success,
		PerDay:            round4(float64(success) / float64(s.Config.Days)),
		Attempts:          n,
		Failed:            failedStatus + incidents,
		Changes:           success,
		LeadTimeSeconds:   int64(p.Lead.Seconds()),
		ReviewSeconds:     int64(p.Review.Seconds()),
		DeployLeadSeconds: int64((p.Lead - p.Submit - p.Review).Seconds()),
		Incidents:         incidents,
	}
	if n > 0 {
		f.ChangeFailureRate = round4(float64(f.Failed) / float64(n))
	}
	if incidents > 0 {
		r := int64(p.Restore.Seconds())
		f.RestoreSeconds = &r
	}
	return f
}

func lcm(a, b int64) int64 {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }
