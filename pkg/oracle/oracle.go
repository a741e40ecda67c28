// Package oracle is a reference implementation of the DORA contract (DORA.md and
// the decisions in docs/metrics.md's "How the metrics are computed"), in memory, for the property
// test that compares it with the metrics API.
//
// It is written from the contract and shares nothing with the SQL or the writer: it imports no
// DevOpstic package, keeps no tables, and computes every figure from plain facts on each call,
// with exact rational arithmetic. Its job is to be obviously right, not fast.
//
// Inputs come in two layers. The facts of DORA.md ("Facts the events give") are added with
// AddChangeTimes, Link, Push, AddDeployReport and AddIncidentReport; each is commutative and
// idempotent, so the facts are the same whatever order the events arrive in and however many
// times. Sources map their events to those facts: AddNative reads a native event (POST
// /events) as the API's documentation describes it, AddGitHub a GitHub delivery (push,
// pull_request, pull_request_review, deployment_status). Another source (GitLab, GitHub's
// incident issues) is one more such function; squash and rebase merges wait for issue 13 to
// decide what a change is for each source.
//
// Where DORA.md leaves room, the reference reads it so, and the metrics API agrees today:
//   - an incident's deployment_id names the attempts with that id in the incident's pipeline and
//     environment (a native deployment id is an attempt's name there);
//   - an incident known only by its resolution still names its cause; it has no opening, so it
//     counts in no time to restore, open incidents or rework;
//   - review and deployment lead time are over the changes lead time counts (those of a positive
//     lead time), and either may be negative (an approval after the deployment);
//   - an attempt ships the commits of all its reports.
//
// What the contract does not decide is refused with ErrConflict rather than guessed.
package oracle

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrConflict is returned when two inputs give one fact two values that the contract does not
// say how to merge (the same client id with different content, one incident in two
// environments, two reports of one attempt at the same instant with different statuses). A
// history that needs a rule the contract does not give is not a test of the contract.
var ErrConflict = errors.New("oracle: conflicting facts")

// History is the facts known so far. The zero value is not ready: use New.
type History struct {
	changes   map[commitKey]*changeTimes
	links     map[commitKey][]string // commit -> commits that are the same change (both ways)
	pushes    map[commitKey][]string // (pipeline, head) -> commits the push brought
	attempts  map[attemptKey]*attempt
	incidents map[incidentKey]*incident
	events    map[string]string // event identity -> its content, to find reused ids
}

// New returns an empty history.
func New() *History {
	return &History{
		changes:   map[commitKey]*changeTimes{},
		links:     map[commitKey][]string{},
		pushes:    map[commitKey][]string{},
		attempts:  map[attemptKey]*attempt{},
		incidents: map[incidentKey]*incident{},
		events:    map[string]string{},
	}
}

type commitKey struct{ pipeline, commit string }

// changeTimes are the earliest known times of one commit; nil when unknown.
type changeTimes struct {
	committed, submitted, approved *time.Time
	// mergedUnapproved is when a pull request of the commit was merged: its approval when no
	// review approved it.
	mergedUnapproved *time.Time
}

// attemptKey names one deploy attempt: its source's id for it (or the event's identity when
// the source gave none) within a source, pipeline and environment.
type attemptKey struct{ source, pipeline, environment, key string }

type report struct {
	at     time.Time
	status string
}

type attempt struct {
	deploymentID string // what an incident's deployment_id is compared with; "" when none
	reports      []report
	ships        map[string]bool // commit_id and commits of every report
}

type incidentKey struct{ source, id string }

type incident struct {
	pipeline, environment string
	opened, lastResolved  *time.Time
	causeDeployment       string
	causeCommit           string
}

// Statuses, as DORA.md counts them.
const (
	Success = "success"
	Failure = "failure"
)

// ChangeTimes are what one event says about one commit's times; zero times are unknown.
type ChangeTimes struct {
	Pipeline, Commit               string
	Committed, Submitted, Approved time.Time
	// MergedUnapproved is a pull request's merge: the change's approval unless a review
	// approved it (DORA.md: "a pull request merged without an approving review").
	MergedUnapproved time.Time
}

// AddChangeTimes records a commit as known, with whatever times the event gives. A change's
// times are the earliest known of each (DORA.md).
func (h *History) AddChangeTimes(c ChangeTimes) {
	k := commitKey{c.Pipeline, c.Commit}
	ct := h.changes[k]
	if ct == nil {
		ct = &changeTimes{}
		h.changes[k] = ct
	}
	ct.committed = earliest(ct.committed, c.Committed)
	ct.submitted = earliest(ct.submitted, c.Submitted)
	ct.approved = earliest(ct.approved, c.Approved)
	ct.mergedUnapproved = earliest(ct.mergedUnapproved, c.MergedUnapproved)
}

func earliest(have *time.Time, t time.Time) *time.Time {
	if t.IsZero() {
		return have
	}
	if have == nil || t.Before(*have) {
		return &t
	}
	return have
}

// Link records that two commits of a pipeline are one change (a merged pull request's head and
// its merge commit; the commits a squash merge replaced and the squash commit).
func (h *History) Link(pipeline, a, b string) {
	h.AddChangeTimes(ChangeTimes{Pipeline: pipeline, Commit: a})
	h.AddChangeTimes(ChangeTimes{Pipeline: pipeline, Commit: b})
	for _, p := range [][2]string{{a, b}, {b, a}} {
		k := commitKey{pipeline, p[0]}
		if !slices.Contains(h.links[k], p[1]) {
			h.links[k] = append(h.links[k], p[1])
		}
	}
}

// Push records that a push whose head is head brought commits: a deployment of head ships
// them (DORA.md: "for GitHub the commits of the push whose head is the deployed commit").
func (h *History) Push(pipeline, head string, commits []string) {
	k := commitKey{pipeline, head}
	for _, c := range commits {
		h.AddChangeTimes(ChangeTimes{Pipeline: pipeline, Commit: c})
		if !slices.Contains(h.pushes[k], c) {
			h.pushes[k] = append(h.pushes[k], c)
		}
	}
}

// DeployReport is one report of one deploy attempt.
type DeployReport struct {
	Source, Pipeline, Environment string
	// Key names the attempt: the source's deployment id, or the event's identity.
	Key string
	// DeploymentID is the deployment id the source gave ("" when none): what an incident names.
	DeploymentID string
	At           time.Time
	Status       string // Success or Failure
	// Ships are the commits the report lists: its commit_id and its commits.
	Ships []string
}

// AddDeployReport records one report of a deploy attempt. Several reports of one attempt are
// one deployment; the latest report decides its status and time (docs/api.md, Sending events).
func (h *History) AddDeployReport(r DeployReport) error {
	if r.Status != Success && r.Status != Failure {
		return fmt.Errorf("oracle: deploy status %q", r.Status)
	}
	k := attemptKey{r.Source, r.Pipeline, r.Environment, r.Key}
	a := h.attempts[k]
	if a == nil {
		a = &attempt{deploymentID: r.DeploymentID, ships: map[string]bool{}}
		h.attempts[k] = a
	}
	if a.deploymentID != r.DeploymentID {
		return fmt.Errorf("%w: attempt %v has deployment ids %q and %q", ErrConflict, k, a.deploymentID, r.DeploymentID)
	}
	for _, have := range a.reports {
		if have.at.Equal(r.At) && have.status != r.Status {
			return fmt.Errorf("%w: attempt %v reported %s and %s at %s", ErrConflict, k, have.status, r.Status, r.At)
		}
	}
	a.reports = append(a.reports, report{at: r.At, status: r.Status})
	for _, c := range r.Ships {
		a.ships[c] = true
		h.AddChangeTimes(ChangeTimes{Pipeline: r.Pipeline, Commit: c})
	}
	return nil
}

// IncidentReport is one event of one incident: it opens it (Failure) or resolves it (Success),
// and may name its cause.
type IncidentReport struct {
	Source, ID, Pipeline, Environment string
	At                                time.Time
	Status                            string
	CauseDeployment, CauseCommit      string
}

// AddIncidentReport records one event of an incident. The incident opens at its earliest
// opening and is resolved at its latest resolution after that (DORA.md).
func (h *History) AddIncidentReport(r IncidentReport) error {
	k := incidentKey{r.Source, r.ID}
	i := h.incidents[k]
	if i == nil {
		i = &incident{pipeline: r.Pipeline, environment: r.Environment}
		h.incidents[k] = i
	}
	if i.pipeline != r.Pipeline || i.environment != r.Environment {
		return fmt.Errorf("%w: incident %v in %s/%s and %s/%s", ErrConflict, k, i.pipeline, i.environment, r.Pipeline, r.Environment)
	}
	var err error
	if i.causeDeployment, err = sameOrNew(k, "deployment", i.causeDeployment, r.CauseDeployment); err != nil {
		return err
	}
	if i.causeCommit, err = sameOrNew(k, "commit", i.causeCommit, r.CauseCommit); err != nil {
		return err
	}
	if i.causeDeployment != "" && i.causeCommit != "" {
		return fmt.Errorf("%w: incident %v names both a deployment and a commit as its cause", ErrConflict, k)
	}
	switch r.Status {
	case Failure:
		i.opened = earliest(i.opened, r.At)
	case Success:
		if i.lastResolved == nil || r.At.After(*i.lastResolved) {
			at := r.At
			i.lastResolved = &at
		}
	default:
		return fmt.Errorf("oracle: incident status %q", r.Status)
	}
	return nil
}

func sameOrNew(k incidentKey, what, have, got string) (string, error) {
	if got == "" || got == have {
		return have, nil
	}
	if have != "" {
		return "", fmt.Errorf("%w: incident %v names the %ss %q and %q as its cause", ErrConflict, k, what, have, got)
	}
	return got, nil
}
