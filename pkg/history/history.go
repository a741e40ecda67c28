// Package history generates random delivery histories for the DORA property test: native
// events (POST /events) and GitHub deliveries of several pipelines and environments, in the
// shapes that have broken metrics before, the order and repetition they are delivered in, and
// the questions to ask the metrics API about them. Everything follows from a seed, so a failing
// history is re-run by its seed alone.
//
// Native pipelines: changes known by commit, pull request and approval times (or by nothing but
// a deployment), an earlier commit time learnt late, approvals before submissions, times with
// milliseconds; deployments shipping several commits (the head listed again, duplicates in the
// list), failed attempts and retries, one attempt reported twice with a deployment id (a failure
// then a success, or the reverse; the first report listing the head only), redeploys and
// rollbacks, a deployment id reused by another environment, deployment ids sent as numbers,
// changes deployed before or at their commit (lead time zero or negative).
//
// GitHub repositories (the pipeline names with a slash): pushes to main of one to three commits
// whose timestamps are in any offset, deployment statuses of main's head (success, failure,
// error; queued, in_progress and pending, which are no deployment; a final status followed by
// another), redeploys; deliveries redelivered, sent again under another delivery id, or
// without one. With GitHubMerge, pull requests too.
//
// Every pipeline: incidents (native events) opened and resolved, reopened, alerted twice,
// resolved "before" they opened, never resolved, or known only by their resolution, opened or
// resolved the very second of a deployment, lasting exactly a tier's bound, naming their cause by
// deployment id, by a deployment id no deployment has, by a full SHA (deployed there or not, by
// a push or by a deploy event), by an unknown SHA, or by a prefix two commits share; the same
// SHA in two pipelines; events with and without a client `id` (the same ids in every pipeline,
// as ids are per pipeline), timestamps as epoch seconds or RFC 3339 in any offset. Deliveries are
// shuffled, in batches, as JSON arrays or NDJSON, some again (re-rendered, or straight onto the
// stream past its deduplication). Questions: windows of an hour to the whole history, some
// starting or ending on an event's very instant, given as dates, UTC or offset times; each
// pipeline or all, each environment or one unknown; every interval.
//
// It never reuses a client id for different content within a pipeline (issue 13 has not set
// that rule yet), never names two causes for one incident or moves an incident between
// pipelines or environments, never makes two reports of one pipeline and environment at the
// same instant (the contract breaks such ties by source and id, which a reference would have to
// hash like the writer), and leaves squash and rebase merges to issue 13's decision on what a
// change is for each source.
package history

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Shape names a kind of history that the generator leaves out unless asked for. Each is one
// the metrics API once got wrong (see Shapes), kept apart so that a failure can be told to be
// one of them; the property test asks for all of them.
type Shape string

// Shapes a history leaves out unless asked for. Each was a mismatch between the metrics API
// and DORA.md until the derived facts of issue 13 (migrations/0009).
const (
	// ShortSHA: incidents naming their cause by a unique prefix of 7 to 12 hex characters of a
	// commit. DORA.md: "A commit may be named by a prefix of at least 7 hex characters when
	// exactly one known commit of the pipeline has it." The SQL compared cause_commit_id with
	// full commit ids only, so the deployment was not counted as failed (seed 3 showed it).
	ShortSHA Shape = "short-sha"
	// TierBounds: changes whose lead time is exactly an hour, a day (or a second either side),
	// a week or 30 days, so that a median falls half a second below a tier's bound. DORA.md
	// rates "lead time (median) < 1 day" as elite and docs/metrics.md says tiers are "rated on exact
	// values ..., not on the rounded figures shown"; the API rated the median rounded to whole
	// seconds, so a median of 86399.5 s was "high" (seed 24 showed it).
	TierBounds Shape = "tier-bounds"
	// GitHubMerge: GitHub pull requests (opened, approved or not, pushed in one or two pushes)
	// merged by a merge commit, whose push to main lists the branch's commits and the merge
	// commit. DORA.md: "A merged pull request ties its head commit and its merge commit
	// together: both are the same change"; a change's first deployment is per change. The SQL
	// counted the head and the merge commit as separate changes, folded the head's push into
	// both, and decided first deployments per commit (seed 1 showed it).
	GitHubMerge Shape = "github-merge"
)

// AllShapes are every optional shape.
var AllShapes = []Shape{ShortSHA, TierBounds, GitHubMerge}

// ParseShapes reads a list such as "short-sha,other", "all" or "none"; "" is none.
func ParseShapes(s string) (map[Shape]bool, error) {
	out := map[Shape]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "", name == "none":
		case name == "all":
			for _, sh := range AllShapes {
				out[sh] = true
			}
		case slices.Contains(AllShapes, Shape(name)):
			out[Shape(name)] = true
		default:
			return nil, fmt.Errorf("history: unknown shape %q (known: all, %v)", name, AllShapes)
		}
	}
	return out, nil
}

// History is a generated history: the distinct events, how they are delivered, and what to
// ask.
type History struct {
	Seed   uint64
	Events []json.RawMessage // each distinct native event once
	// Webhooks are each distinct GitHub delivery once (Mode GitHub).
	Webhooks []Delivery
	// Deliveries deliver every event at least once, some twice or more, in a shuffled order.
	Deliveries []Delivery
	Queries    []Query
	// Pipelines and Environments are those the events use.
	Pipelines, Environments []string
}

// Mode is how a delivery reaches DevOpstic.
type Mode int

// Modes of delivery.
const (
	// PostJSON posts the events as one JSON array (or one object when there is one).
	PostJSON Mode = iota
	// PostNDJSON posts them as NDJSON.
	PostNDJSON
	// Publish puts them straight on the stream without a Nats-Msg-Id, as a redelivery or a
	// replay does: JetStream's deduplication does not see them, Postgres's keys must.
	Publish
	// GitHub posts one GitHub webhook delivery, signed, to /github/events: Events holds its
	// body, Name its X-GitHub-Event and ID its X-GitHub-Delivery ("" for none).
	GitHub
)

// Delivery is one request (or one run of stream messages) of events.
type Delivery struct {
	Mode     Mode
	Events   []json.RawMessage
	Name, ID string
}

// Query is one question to GET /api/v1/metrics/dora.
type Query struct {
	Pipeline    string // "" for all pipelines
	Environment string // "" leaves the parameter out: production
	From, To    time.Time
	Interval    string // "" leaves the parameter out: all
	// Dates sends from and to as YYYY-MM-DD (both are UTC midnights); Offset sends them as
	// RFC 3339 in that zone.
	Dates  bool
	Offset *time.Location
	// Benchmark is the tiers' benchmark ("" leaves the parameter out: the newest).
	Benchmark string
}

// Values are the query's URL parameters.
func (q Query) Values() url.Values {
	v := url.Values{}
	if q.Pipeline != "" {
		v.Set("pipeline_id", q.Pipeline)
	}
	if q.Environment != "" {
		v.Set("environment", q.Environment)
	}
	if q.Interval != "" {
		v.Set("interval", q.Interval)
	}
	if q.Benchmark != "" {
		v.Set("benchmark", q.Benchmark)
	}
	format := func(t time.Time) string {
		switch {
		case q.Dates:
			return t.Format(time.DateOnly)
		case q.Offset != nil:
			return t.In(q.Offset).Format(time.RFC3339Nano)
		default:
			return t.Format(time.RFC3339Nano)
		}
	}
	v.Set("from", format(q.From))
	v.Set("to", format(q.To))
	return v
}

// Generate makes the history of seed, with the optional shapes given.
func Generate(seed uint64, shapes map[Shape]bool) *History {
	g := &gen{
		rng:    rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		shapes: shapes,
		used:   map[string]map[int64]bool{},
		ids:    map[string]int{},
	}
	h := &History{Seed: seed}
	g.start = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC).Add(time.Duration(g.rng.IntN(60*24)) * time.Hour)
	g.span = time.Duration(20+g.rng.IntN(40)) * 24 * time.Hour

	// The names with a slash are GitHub repositories: their changes and deployments come as
	// GitHub deliveries, their incidents as native events.
	pool := []string{"api", "web", "acme/billing", "it's ops", "svc.payments", "acme/shop"}
	g.rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	h.Pipelines = pool[:2+g.rng.IntN(2)]
	h.Environments = []string{"production", "staging"}
	if g.rng.IntN(3) == 0 {
		h.Environments = append(h.Environments, "eu-prod")
	}
	for _, p := range h.Pipelines {
		if strings.Contains(p, "/") {
			g.githubPipeline(p, h.Environments)
			continue
		}
		g.pipeline(p, h.Environments)
	}
	h.Events, h.Webhooks = g.events, g.webhooks
	h.Deliveries = g.deliveries()
	h.Queries = g.queries(h.Pipelines, h.Environments)
	return h
}

type gen struct {
	rng        *rand.Rand
	shapes     map[Shape]bool
	start      time.Time
	span       time.Duration
	events     []json.RawMessage
	rendered   []map[string]any // events[i] before marshalling, to render again
	used       map[string]map[int64]bool
	ids        map[string]int // next client id per pipeline
	incidents  int
	allCommits []string    // every SHA made so far, for twins and reuse across pipelines
	instants   []time.Time // of every event, for windows that start or end on one
	webhooks   []Delivery
	deployment int // GitHub deployment ids
}

type change struct {
	sha string
	at  time.Time // its commit time, known or not
}

type attempt struct {
	id      string // deployment id, "" when none
	at      time.Time
	success bool
	ships   []string
}

func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

func (g *gen) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(g.rng.Int64N(int64(hi-lo)/int64(time.Second)+1))*time.Second
}

// sha is a new 40-hex commit id; now and then a twin of an earlier one (sharing its first 8
// characters, so that a prefix names two commits), or an earlier one of another pipeline.
func (g *gen) sha(pipelineCommits []string) string {
	b := make([]byte, 20)
	for i := range b {
		b[i] = byte(g.rng.IntN(256))
	}
	s := hex.EncodeToString(b)
	if len(g.allCommits) > 0 && g.chance(0.06) {
		twin := g.allCommits[g.rng.IntN(len(g.allCommits))]
		s = twin[:8] + s[8:]
	} else if len(g.allCommits) > 0 && g.chance(0.03) {
		other := g.allCommits[g.rng.IntN(len(g.allCommits))]
		if !slices.Contains(pipelineCommits, other) {
			s = other // the same SHA in another pipeline: another change
		}
	}
	g.allCommits = append(g.allCommits, s)
	return s
}

// instant reserves t (moved on by whole seconds until free) among the reports of a pipeline
// and environment, so that no two are at the same instant.
func (g *gen) instant(pipeline, env string, t time.Time) time.Time {
	key := pipeline + "\x00" + env
	if g.used[key] == nil {
		g.used[key] = map[int64]bool{}
	}
	t = t.Truncate(time.Second)
	for g.used[key][t.Unix()] {
		t = t.Add(time.Second)
	}
	g.used[key][t.Unix()] = true
	return t
}

// emit adds an event, with a client id or without, its time rendered one of three ways.
func (g *gen) emit(e map[string]any, at time.Time) {
	pipeline := e["pipeline_id"].(string)
	if g.chance(0.5) {
		g.ids[pipeline]++
		e["id"] = fmt.Sprintf("e-%d", g.ids[pipeline]) // the same ids in every pipeline
	}
	switch e["type"] {
	case "commit", "submit", "approve":
		if g.chance(0.15) { // milliseconds: lead and review times of fractional seconds
			at = at.Add(time.Duration(1+g.rng.IntN(999)) * time.Millisecond)
		}
	}
	e["timestamp"] = g.renderTime(at)
	g.instants = append(g.instants, at)
	g.rendered = append(g.rendered, e)
	g.events = append(g.events, mustJSON(e))
}

var zones = []*time.Location{time.FixedZone("", 2*3600), time.FixedZone("", -7*3600), time.FixedZone("", 5*3600+1800)}

func (g *gen) renderTime(at time.Time) any {
	switch g.rng.IntN(5) {
	case 0, 1:
		if ms := at.Nanosecond() / 1e6; ms != 0 {
			return json.Number(fmt.Sprintf("%d.%03d", at.Unix(), ms))
		}
		return json.Number(fmt.Sprint(at.Unix()))
	case 2, 3:
		return at.UTC().Format(time.RFC3339Nano)
	default:
		return at.In(zones[g.rng.IntN(len(zones))]).Format(time.RFC3339Nano)
	}
}

// unemit takes back the last event emitted.
func (g *gen) unemit() {
	g.events = g.events[:len(g.events)-1]
	g.rendered = g.rendered[:len(g.rendered)-1]
	g.instants = g.instants[:len(g.instants)-1]
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings, numbers and lists always marshal
	}
	return b
}

// pipeline generates one pipeline's changes, deployments and incidents.
func (g *gen) pipeline(p string, envs []string) {
	var (
		changes []change
		shas    []string
	)
	n := 10 + g.rng.IntN(20)
	for range n {
		c := change{sha: g.sha(shas), at: g.start.Add(g.between(0, g.span))}
		shas = append(shas, c.sha)
		changes = append(changes, c)
	}
	slices.SortFunc(changes, func(a, b change) int { return a.at.Compare(b.at) })
	for i, c := range changes {
		g.changeEvents(p, i+1, c)
	}

	attempts := map[string][]attempt{}
	runs := 0
	for _, env := range envs {
		var first map[string]time.Time
		attempts[env], first = g.deployments(p, env, changes, &runs)
		// Lead times on the tiers' bounds (TierBounds): a commit time learnt late, exactly so
		// long before the change's first deployment.
		for _, c := range changes {
			if at, ok := first[c.sha]; ok && g.chance(0.1) {
				bound := []time.Duration{time.Hour, 24 * time.Hour, 24*time.Hour - time.Second, 24*time.Hour + time.Second,
					7 * 24 * time.Hour, 30 * 24 * time.Hour, 30*24*time.Hour + time.Second}[g.rng.IntN(7)]
				g.emit(map[string]any{"type": "commit", "pipeline_id": p, "commit_id": c.sha}, at.Add(-bound))
				if !g.shapes[TierBounds] {
					g.unemit() // made all the same, so that the rest of the history stays the same
				}
			}
		}
	}
	g.incidentsIn(p, envs, attempts, shas)
}

// changeEvents are what is known of a change before it is deployed.
func (g *gen) changeEvents(p string, pr int, c change) {
	base := func(kind string) map[string]any {
		return map[string]any{"type": kind, "pipeline_id": p, "commit_id": c.sha}
	}
	if g.chance(0.85) {
		g.emit(base("commit"), c.at)
		if g.chance(0.1) { // an earlier time for the same commit, learnt late
			g.emit(base("commit"), c.at.Add(-g.between(time.Second, 3*time.Hour)))
		}
	}
	var submitted time.Time
	if g.chance(0.6) {
		submitted = c.at.Add(g.between(time.Minute, 6*time.Hour))
		e := base("submit")
		e["pull_request_id"] = pr
		g.emit(e, submitted)
	}
	if (!submitted.IsZero() && g.chance(0.7)) || g.chance(0.1) {
		approved := c.at.Add(g.between(2*time.Minute, 2*24*time.Hour))
		if !submitted.IsZero() {
			approved = submitted.Add(g.between(time.Minute, 30*time.Hour))
			if g.chance(0.1) {
				approved = submitted.Add(-g.between(time.Second, time.Hour)) // clock skew: a negative review time
			}
		}
		e := base("approve")
		e["pull_request_id"] = pr
		g.emit(e, approved)
	}
}

// deployments are an environment's deploy attempts: each ships the changes committed since the
// last successful one, some fail and are retried, some commits are deployed again.
func (g *gen) deployments(p, env string, changes []change, runs *int) (out []attempt, first map[string]time.Time) {
	first = map[string]time.Time{}
	var (
		next     int      // first change not yet ready
		pending  []change // ready, not yet shipped here by a successful attempt
		lastHead string
		shipped  []string
	)
	every := []time.Duration{6 * time.Hour, 24 * time.Hour, 2 * 24 * time.Hour, 4 * 24 * time.Hour}[g.rng.IntN(4)]
	if env != "production" {
		every /= 2
	}
	t := g.start.Add(g.between(time.Hour, every))
	end := g.start.Add(g.span + 3*24*time.Hour)
	for t.Before(end) {
		// Ready: the changes committed by now, and now and then one committed a moment later
		// (a clock skew: a negative lead time) or at this very second (a lead time of zero).
		for next < len(changes) && !changes[next].at.After(t) {
			pending = append(pending, changes[next])
			next++
		}
		if next < len(changes) && g.chance(0.08) {
			if g.chance(0.5) {
				t = changes[next].at
			}
			pending = append(pending, changes[next])
			next++
		}
		var a attempt
		switch {
		case len(pending) > 0:
			a.ships = []string{pending[len(pending)-1].sha}
			for _, c := range pending[:len(pending)-1] {
				if g.chance(0.9) { // a commit left out of the list ships with a later deployment
					a.ships = append(a.ships, c.sha)
				}
			}
		case lastHead != "" && g.chance(0.2):
			a.ships = []string{lastHead} // a redeploy
			if len(shipped) > 1 && g.chance(0.3) {
				a.ships = []string{shipped[g.rng.IntN(len(shipped))]} // a rollback
			}
		default:
			t = t.Add(g.between(every/2, 2*every))
			continue
		}
		a.success = g.chance(0.8)
		if g.chance(0.6) {
			*runs++
			a.id = fmt.Sprintf("run-%d", *runs)
			if g.chance(0.3) {
				a.id = fmt.Sprint(1000 + *runs) // a number: sent as one, or as a string
			}
			if env != "production" && *runs > 1 && g.chance(0.3) {
				a.id = fmt.Sprintf("run-%d", *runs-1) // another environment's id, maybe
			}
		}
		a.at = t
		a.at = g.deployEvents(p, env, a)
		out = append(out, a)
		if !a.success {
			t = a.at.Add(g.between(5*time.Minute, 3*time.Hour)) // a retry
			continue
		}
		pending = slices.DeleteFunc(pending, func(c change) bool {
			if slices.Contains(a.ships, c.sha) {
				shipped = append(shipped, c.sha)
				first[c.sha] = a.at
				return true
			}
			return false
		})
		lastHead = a.ships[0]
		t = a.at.Add(g.between(every/2, 2*every))
	}
	return out, first
}

// deployEvents are the reports of one attempt; it returns the attempt's time, its latest
// report's.
func (g *gen) deployEvents(p, env string, a attempt) time.Time {
	event := func(ok bool) map[string]any {
		e := map[string]any{"type": "deploy", "pipeline_id": p, "environment": env, "commit_id": a.ships[0]}
		if len(a.ships) > 1 || g.chance(0.1) {
			commits := slices.Clone(a.ships[1:])
			if g.chance(0.15) {
				commits = append(commits, a.ships[0]) // the head listed again
			}
			if len(commits) > 0 && g.chance(0.1) {
				commits = append(commits, commits[0]) // a duplicate in the list
			}
			e["commits"] = commits
		}
		if a.id != "" {
			e["deployment_id"] = a.id
			var n int
			if _, err := fmt.Sscanf(a.id, "%d", &n); err == nil && g.chance(0.5) {
				e["deployment_id"] = n
			}
		}
		switch {
		case !ok:
			e["status"] = "failure"
		case g.chance(0.7):
			e["status"] = "success" // else the default
		}
		return e
	}
	at := g.instant(p, env, a.at)
	if a.id != "" && g.chance(0.3) {
		// One attempt reported twice: first the other outcome, then the final one.
		if earlier := g.instant(p, env, at.Add(-g.between(time.Minute, 40*time.Minute))); earlier.Before(at) {
			e := event(!a.success)
			if g.chance(0.3) {
				delete(e, "commits") // the first report names the head only: the attempt ships both's
			}
			g.emit(e, earlier)
		}
	}
	g.emit(event(a.success), at)
	return at
}

// incidentsIn generates a pipeline's incidents: two to six in production, up to two in each
// other environment, among that environment's attempts.
func (g *gen) incidentsIn(p string, envs []string, attempts map[string][]attempt, shas []string) {
	for _, env := range envs {
		k := 2 + g.rng.IntN(5)
		if env != "production" {
			k = g.rng.IntN(3)
		}
		for range k {
			g.incident(p, env, attempts[env], shas)
		}
	}
}

// incident generates one incident of a pipeline and environment: opened, maybe resolved,
// maybe reopened, maybe naming its cause.
func (g *gen) incident(p, env string, attempts []attempt, shas []string) {
	g.incidents++
	var id any = fmt.Sprintf("INC-%d", g.incidents) // unique across pipelines: an incident is (source, id)
	if g.chance(0.3) {
		id = 500 + g.incidents
	}
	cause := map[string]any{}
	switch r := g.rng.Float64(); {
	case r < 0.3: // no cause
	case r < 0.55 && len(attempts) > 0:
		var named []attempt
		for _, a := range attempts {
			if a.id != "" {
				named = append(named, a)
			}
		}
		if len(named) > 0 {
			cause["deployment_id"] = named[g.rng.IntN(len(named))].id
		}
	case r < 0.6:
		cause["deployment_id"] = "run-999999" // no deployment has it
	case r < 0.85:
		cause["commit_id"] = g.deployedSHA(attempts, shas)
	case r < 0.9:
		cause["commit_id"] = strings.Repeat("0f", 20) // no commit has it
	default:
		// A prefix: the shared 7 or 8 characters of twins (naming nothing), or, with ShortSHA,
		// a unique prefix of a commit.
		// The draws are made either way, so that a seed's history with and without ShortSHA
		// differs in these causes only.
		sha, short, n := g.deployedSHA(attempts, shas), g.chance(0.8), 7+g.rng.IntN(6)
		if g.shapes[ShortSHA] && short {
			cause["commit_id"] = sha[:n]
		} else if twin, ok := twinPrefix(shas); ok {
			cause["commit_id"] = twin
		} else {
			cause["commit_id"] = sha
		}
	}

	opened := g.start.Add(g.between(0, g.span))
	switch {
	case len(attempts) > 0 && g.chance(0.15):
		opened = attempts[g.rng.IntN(len(attempts))].at // opened the second a deployment was made
	case g.chance(0.1):
		opened = opened.Add(time.Duration(1+g.rng.IntN(999)) * time.Millisecond)
	}
	event := func(status string, withCause bool) map[string]any {
		e := map[string]any{"type": "incident_status_change", "pipeline_id": p, "environment": env,
			"incident_id": id, "status": status}
		if withCause {
			for k, v := range cause {
				e[k] = v
			}
		}
		return e
	}
	causeOn := g.rng.IntN(10) // 0-4: the opening only; 5-8: every event; 9: the resolution only
	onOpen, onResolve := causeOn <= 8, causeOn >= 5
	restore := []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}[g.rng.IntN(3)] // the tier bounds
	if g.chance(0.8) {
		restore = g.between(time.Minute, 3*24*time.Hour)
	}
	if g.chance(0.15) { // resolved the second a deployment was made
		for _, a := range attempts {
			if a.at.After(opened) {
				restore = a.at.Sub(opened)
				break
			}
		}
	}
	switch r := g.rng.Float64(); {
	case r < 0.07: // known only by its resolution: never opened
		g.emit(event("success", true), opened)
		return
	case r < 0.13: // resolved "before" it opened, and not since
		g.emit(event("success", onResolve), opened.Add(-g.between(time.Minute, 2*time.Hour)))
		g.emit(event("failure", onOpen), opened)
		return
	case r < 0.22: // still open
		g.emit(event("failure", true), opened)
		return
	}
	g.emit(event("failure", onOpen), opened)
	if g.chance(0.15) { // alerted again while open
		g.emit(event("failure", false), opened.Add(g.between(time.Second, restore)))
	}
	resolved := opened.Add(restore)
	g.emit(event("success", onResolve), resolved)
	if g.chance(0.15) { // reopened, and resolved again
		reopened := resolved.Add(g.between(time.Minute, 12*time.Hour))
		g.emit(event("failure", false), reopened)
		g.emit(event("success", false), reopened.Add(g.between(time.Minute, 6*time.Hour)))
	}
}

// deployedSHA is a commit a successful attempt shipped, most of the time, or any commit.
func (g *gen) deployedSHA(attempts []attempt, shas []string) string {
	var ok []attempt
	for _, a := range attempts {
		if a.success {
			ok = append(ok, a)
		}
	}
	if len(ok) > 0 && g.chance(0.85) {
		a := ok[g.rng.IntN(len(ok))]
		return a.ships[g.rng.IntN(len(a.ships))]
	}
	return shas[g.rng.IntN(len(shas))]
}

// twinPrefix is a 7-character prefix that two commits of the pipeline share, if any.
func twinPrefix(shas []string) (string, bool) {
	seen := map[string]bool{}
	for _, s := range shas {
		if seen[s[:7]] {
			return s[:7], true
		}
		seen[s[:7]] = true
	}
	return "", false
}

// deliveries deliver every event once, in a shuffled order, and some again: the same bytes,
// the same event rendered again, or straight onto the stream.
func (g *gen) deliveries() []Delivery {
	var all []json.RawMessage
	for i, e := range g.events {
		all = append(all, e)
		switch r := g.rng.Float64(); {
		case r < 0.1:
			all = append(all, e)
		case r < 0.15:
			again := map[string]any{}
			for k, v := range g.rendered[i] {
				again[k] = v
			}
			if at, ok := instantOf(again["timestamp"]); ok {
				again["timestamp"] = g.renderTime(at) // the same instant, maybe written otherwise
			}
			all = append(all, mustJSON(again))
		}
	}
	g.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var out []Delivery
	for _, w := range g.webhooks {
		out = append(out, w)
		switch r := g.rng.Float64(); {
		case r < 0.1:
			out = append(out, w) // redelivered
		case r < 0.15:
			again := w
			again.ID = g.guid() // the same body as another delivery
			out = append(out, again)
		}
	}
	for len(all) > 0 {
		n := min(len(all), 1+g.rng.IntN(60))
		d := Delivery{Events: all[:n]}
		switch r := g.rng.Float64(); {
		case r < 0.15:
			d.Mode = PostNDJSON
		case r < 0.3:
			d.Mode = Publish
		}
		out = append(out, d)
		all = all[n:]
	}
	g.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func instantOf(v any) (time.Time, bool) {
	switch t := v.(type) {
	case json.Number:
		secs, ms, _ := strings.Cut(t.String(), ".")
		s, err := strconv.ParseInt(secs, 10, 64)
		var m int64
		if err == nil && ms != "" {
			m, err = strconv.ParseInt(ms, 10, 64) // always three digits
		}
		return time.Unix(s, m*int64(time.Millisecond)).UTC(), err == nil
	case string:
		at, err := time.Parse(time.RFC3339Nano, t)
		return at, err == nil
	}
	return time.Time{}, false
}

// queries are the questions asked: random windows, each pipeline or all of them, each
// environment, every interval, every benchmark.
func (g *gen) queries(pipelines, envs []string) []Query {
	var out []Query
	for range 16 {
		var q Query
		switch r := g.rng.Float64(); {
		case r < 0.35:
		case r < 0.95:
			q.Pipeline = pipelines[g.rng.IntN(len(pipelines))]
		default:
			q.Pipeline = "nobody"
		}
		switch r := g.rng.Float64(); {
		case r < 0.15: // the default, production
		case r < 0.6:
			q.Environment = "production"
		case r < 0.95:
			q.Environment = envs[g.rng.IntN(len(envs))]
		default:
			q.Environment = "nowhere"
		}
		// Windows from an hour to the whole history and past it, starting anywhere around it.
		length := []time.Duration{time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour,
			g.between(time.Hour, 20*24*time.Hour), g.span + 10*24*time.Hour}[g.rng.IntN(7)]
		q.From = g.start.Add(-5 * 24 * time.Hour).Add(g.between(0, g.span+5*24*time.Hour))
		switch g.rng.IntN(3) {
		case 0:
			q.From = q.From.Truncate(24 * time.Hour)
			length = length.Round(24 * time.Hour)
			if length == 0 {
				length = 24 * time.Hour
			}
			q.Dates = g.chance(0.5)
		case 1:
			q.From = q.From.Truncate(time.Hour)
		}
		q.To = q.From.Add(length)
		if g.chance(0.25) { // a window that starts or ends on an event's very instant
			at := g.instants[g.rng.IntN(len(g.instants))]
			q.Dates = false
			if g.chance(0.5) {
				q.From, q.To = at, at.Add(length)
			} else {
				q.From, q.To = at.Add(-length), at
			}
		}
		if !q.Dates && g.chance(0.2) {
			q.Offset = zones[g.rng.IntN(len(zones))]
		}
		switch r := g.rng.Float64(); {
		case r < 0.2: // the default, all
		case r < 0.45:
			q.Interval = "all"
		case r < 0.75:
			q.Interval = "week"
		case r < 0.9:
			q.Interval = "day"
		default:
			q.Interval = "month"
		}
		// Every benchmark in turn, drawn from no random number: the histories and questions of
		// a seed stay what they were before benchmarks existed.
		q.Benchmark = []string{"", "2023", "2024"}[len(out)%3]
		out = append(out, q)
	}
	return out
}

// githubPipeline generates a GitHub repository's history: pushes to main (and, with
// GitHubMerge, pull requests merged by a merge commit), deployment statuses of main's head, and
// native incidents.
func (g *gen) githubPipeline(p string, envs []string) {
	type push struct {
		head    string
		at      time.Time
		commits []string
	}
	var (
		pushes []push
		shas   []string
		prs    int
	)
	commit := func(at time.Time) map[string]any {
		sha := g.sha(shas)
		shas = append(shas, sha)
		ts := at.UTC().Format(time.RFC3339)
		if g.chance(0.3) {
			ts = at.In(zones[g.rng.IntN(len(zones))]).Format(time.RFC3339) // as git writes it
		}
		g.instants = append(g.instants, at)
		return map[string]any{"id": sha, "timestamp": ts, "message": "change " + sha[:7]}
	}
	pushTo := func(ref string, at time.Time, commits []map[string]any) push {
		head := commits[len(commits)-1]["id"].(string)
		g.webhook("push", map[string]any{"ref": ref, "after": head, "commits": commits, "head_commit": commits[len(commits)-1],
			"repository": map[string]any{"full_name": p}})
		var ids []string
		for _, c := range commits {
			ids = append(ids, c["id"].(string))
		}
		return push{head: head, at: at, commits: ids}
	}

	t := g.start.Add(g.between(0, 12*time.Hour))
	for t.Before(g.start.Add(g.span)) {
		// A pull request merged by a merge commit (GitHubMerge), or commits pushed to main. The
		// draws are made either way, so that the rest of the history is the same.
		merge := g.chance(0.5) && g.shapes[GitHubMerge]
		k := 1 + g.rng.IntN(3)
		var (
			commits []map[string]any
			times   []time.Time
		)
		at := t
		for range k {
			at = at.Add(g.between(time.Minute, 5*time.Hour))
			commits, times = append(commits, commit(at)), append(times, at)
		}
		if !merge {
			pushes = append(pushes, pushTo("refs/heads/main", at, commits))
			t = at.Add(g.between(time.Hour, 2*24*time.Hour))
			continue
		}
		prs++
		branch := fmt.Sprintf("refs/heads/change-%d", prs)
		split := 1 + g.rng.IntN(len(commits))
		pushTo(branch, times[split-1], commits[:split])
		if split < len(commits) {
			pushTo(branch, at, commits[split:])
		}
		head := commits[len(commits)-1]["id"].(string)
		created := at.Add(g.between(time.Minute, 3*time.Hour)) // opened once its commits are pushed
		pr := func(action string, extra map[string]any) map[string]any {
			body := map[string]any{"number": prs, "created_at": created.UTC().Format(time.RFC3339),
				"head": map[string]any{"sha": head, "ref": strings.TrimPrefix(branch, "refs/heads/")}}
			for k, v := range extra {
				body[k] = v
			}
			return map[string]any{"action": action, "pull_request": body, "repository": map[string]any{"full_name": p}}
		}
		g.webhook("pull_request", pr("opened", nil))
		decided := latestOf(created, at)
		if g.chance(0.7) {
			decided = decided.Add(g.between(10*time.Minute, 24*time.Hour))
			g.instants = append(g.instants, decided)
			review := map[string]any{"action": "submitted", "review": map[string]any{"state": "approved",
				"submitted_at": decided.UTC().Format(time.RFC3339), "commit_id": head},
				"pull_request": pr("", nil)["pull_request"], "repository": map[string]any{"full_name": p}}
			g.webhook("pull_request_review", review)
		}
		merged := decided.Add(g.between(5*time.Minute, 24*time.Hour))
		m := commit(merged)
		g.webhook("pull_request", pr("closed", map[string]any{"merged": true, "merged_at": merged.UTC().Format(time.RFC3339),
			"merge_commit_sha": m["id"]}))
		pushes = append(pushes, pushTo("refs/heads/main", merged, append(commits, m)))
		t = merged.Add(g.between(time.Hour, 2*24*time.Hour))
	}

	attempts := map[string][]attempt{}
	for _, env := range envs {
		attempts[env] = g.githubDeployments(p, env, func(at time.Time) (string, []string) {
			var tip *push
			for i := range pushes {
				if !pushes[i].at.After(at) {
					tip = &pushes[i]
				}
			}
			if tip == nil {
				return "", nil
			}
			return tip.head, tip.commits
		})
	}
	g.incidentsIn(p, envs, attempts, shas)
}

// githubDeployments are an environment's GitHub deployments of main's head (tip gives it, and
// its push's commits, at a time), each told by deployment statuses.
func (g *gen) githubDeployments(p, env string, tip func(time.Time) (string, []string)) []attempt {
	var (
		out      []attempt
		deployed string
	)
	every := []time.Duration{6 * time.Hour, 24 * time.Hour, 2 * 24 * time.Hour}[g.rng.IntN(3)]
	for t := g.start.Add(g.between(time.Hour, every)); t.Before(g.start.Add(g.span + 3*24*time.Hour)); t = t.Add(g.between(every/2, 2*every)) {
		head, commits := tip(t)
		if head == "" || (head == deployed && !g.chance(0.2)) {
			continue
		}
		g.deployment++
		a := attempt{id: fmt.Sprint(7000000 + g.deployment), success: g.chance(0.8), ships: commits}
		status := func(state string, at time.Time) {
			g.instants = append(g.instants, at)
			g.webhook("deployment_status", map[string]any{"action": "created",
				"deployment_status": map[string]any{"id": 9000000 + len(g.webhooks), "state": state,
					"created_at": at.UTC().Format(time.RFC3339), "updated_at": at.UTC().Format(time.RFC3339)},
				"deployment": map[string]any{"id": 7000000 + g.deployment, "sha": head, "environment": env, "ref": "main"},
				"repository": map[string]any{"full_name": p}})
		}
		a.at = g.instant(p, env, t)
		if g.chance(0.3) {
			status([]string{"queued", "in_progress", "pending"}[g.rng.IntN(3)], a.at.Add(-time.Minute)) // not final: ignored
		}
		if g.chance(0.15) { // a final status, then another: the latest decides
			if earlier := g.instant(p, env, a.at.Add(-g.between(time.Minute, 30*time.Minute))); earlier.Before(a.at) {
				status(map[bool]string{true: "error", false: "success"}[a.success], earlier)
			}
		}
		final := "success"
		if !a.success {
			final = []string{"failure", "error"}[g.rng.IntN(2)]
		}
		status(final, a.at)
		out = append(out, a)
		if a.success {
			deployed = head
		}
	}
	return out
}

// webhook adds a GitHub delivery, most with a delivery id.
func (g *gen) webhook(name string, body map[string]any) {
	d := Delivery{Mode: GitHub, Name: name, Events: []json.RawMessage{mustJSON(body)}}
	if g.chance(0.9) {
		d.ID = g.guid()
	}
	g.webhooks = append(g.webhooks, d)
}

func (g *gen) guid() string {
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", g.rng.Uint32(), g.rng.IntN(1<<16), g.rng.IntN(1<<16), g.rng.IntN(1<<16), g.rng.Uint64()&(1<<48-1))
}

func latestOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
