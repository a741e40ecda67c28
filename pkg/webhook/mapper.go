package webhook

import (
	"bufio"
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
)

// Delivery is a mapped delivery: its facts, and what could not be read but did not stop it.
type Delivery struct {
	Set      fact.Set
	Warnings []string
}

// Mapper is a delivery being mapped to facts; a source's mapper embeds it. Every source
// resolves a delivery's pipeline and environment the same way: the webhook URL's ?pipeline_id=
// and ?environment= first, then what the payload names, then production for the environment.
type Mapper struct {
	// Source names the source in the facts: github, gitlab, ...
	Source string
	// URLPipeline and URLEnvironment are the webhook URL's ?pipeline_id= and ?environment=.
	URLPipeline, URLEnvironment string
	// Named is the pipeline the payload names (a repository, a project, a service); NamedBy is
	// the payload's field that names it, for the error when neither the URL nor it does.
	Named, NamedBy string

	Set      fact.Set
	Warnings []string
}

// Pipeline is the URL's pipeline_id, else the one the payload names.
func (m *Mapper) Pipeline() string {
	return cmp.Or(m.URLPipeline, m.Named)
}

// Environment is the URL's environment, else what the payload says, else production.
func (m *Mapper) Environment(fromPayload string) string {
	return cmp.Or(m.URLEnvironment, fromPayload, "production")
}

// RequirePipeline refuses a delivery that names no pipeline.
func (m *Mapper) RequirePipeline() error {
	if m.Pipeline() == "" {
		return fmt.Errorf("%w: %s is missing (or add ?pipeline_id= to the webhook URL)", ErrInvalid, m.NamedBy)
	}
	return nil
}

// Done completes the mapped event with what every delivery gives it (its source, kind,
// pipeline and raw body) and returns the delivery. The caller adds the event's id, receive time
// and stream sequence.
func (m *Mapper) Done(kind string, body []byte) Delivery {
	m.Set.Event.Source = m.Source
	m.Set.Event.Kind = kind
	m.Set.Event.PipelineID = m.Pipeline()
	m.Set.Event.Payload = body
	return Delivery{Set: m.Set, Warnings: m.Warnings}
}

// Commit is one commit of a push, as GitHub and GitLab list it.
type Commit struct {
	ID        string `json:"id"`
	Timestamp Time   `json:"timestamp"`
}

// Push maps a push of commits whose head is head: each commit is a change committed at its
// timestamp, which a deployment of head ships. The push happened at headTime when that reads
// (the head commit's time), else at its latest commit time. headFields name where the payload
// gives the head, for the warning when it gives none.
func (m *Mapper) Push(head, headFields string, commits []Commit, headTime Time) error {
	pipeline := m.Pipeline()
	var latest time.Time
	for i, c := range commits {
		if c.ID == "" {
			return fmt.Errorf("%w: commits[%d].id is missing", ErrInvalid, i)
		}
		change := fact.Change{PipelineID: pipeline, CommitID: c.ID}
		if t, err := event.ParseTime(c.Timestamp.String()); err == nil {
			change.CommittedAt = &t
			if t.After(latest) {
				latest = t
			}
		} else {
			// The change is still tracked; only its commit time is unknown.
			m.Warnings = append(m.Warnings, fmt.Sprintf("commits[%d].timestamp: %v", i, err))
		}
		m.Set.Changes = append(m.Set.Changes, change)
		if head != "" {
			m.Set.PushCommits = append(m.Set.PushCommits, fact.PushCommit{PipelineID: pipeline, HeadID: head, CommitID: c.ID})
		}
	}
	if head == "" {
		m.Warnings = append(m.Warnings, "neither "+headFields+": a deployment cannot ship this push's commits")
	}
	if t, err := event.ParseTime(headTime.String()); err == nil {
		latest = t
	}
	if latest.IsZero() {
		return fmt.Errorf("%w: no commit of the push has a readable timestamp", ErrInvalid)
	}
	m.Set.Event.CommitID, m.Set.Event.OccurredAt = head, latest
	return nil
}

// Merge maps a merged pull or merge request whose head commit is the change head: each commit
// that the merge made (a merge commit, a squash commit) is the same change, linked to the head,
// so that it keeps the times of the commits it replaced.
func (m *Mapper) Merge(head fact.Change, made ...string) {
	m.Set.Changes = []fact.Change{head}
	for _, sha := range made {
		if sha == "" || sha == head.CommitID || slices.ContainsFunc(m.Set.Links, func(l fact.ChangeLink) bool { return l.LinkedID == sha }) {
			continue
		}
		m.Set.Changes = append(m.Set.Changes, fact.Change{PipelineID: head.PipelineID, CommitID: sha,
			PullRequestID: head.PullRequestID, SubmittedAt: head.SubmittedAt, ApprovedAt: head.ApprovedAt,
			MergedAt: head.MergedAt})
		m.Set.Links = append(m.Set.Links, fact.ChangeLink{PipelineID: head.PipelineID, CommitID: head.CommitID, LinkedID: sha})
	}
}

// Deploy maps a deployment of sha to env at at: one attempt, keyed by key within its source,
// pipeline and environment, or when key is "" by its commit and time.
func (m *Mapper) Deploy(env, key, id, status string, at time.Time, sha string) {
	if key == "" {
		key = "sha:" + sha + "@" + at.Format(time.RFC3339Nano)
	}
	pipeline := m.Pipeline()
	m.Set.Event.Environment, m.Set.Event.CommitID, m.Set.Event.DeploymentID = env, sha, id
	m.Set.Event.Status, m.Set.Event.OccurredAt = status, at
	m.Set.Deployments = []fact.Deployment{{
		Source: m.Source, PipelineID: pipeline, Environment: env, Key: key, DeploymentID: id,
		Status: status, DeployedAt: at, CommitID: sha, Commits: []string{sha},
	}}
	m.Set.Changes = []fact.Change{{PipelineID: pipeline, CommitID: sha}}
}

// Incident maps an issue that is an incident, id: opened at opened, resolved at resolved unless
// that is nil, and caused by what its description names (see Cause).
func (m *Mapper) Incident(id string, opened time.Time, resolved *time.Time, description string) {
	inc := fact.Incident{
		Source:      m.Source,
		IncidentID:  id,
		PipelineID:  m.Pipeline(),
		Environment: m.Environment(""),
		OpenedAt:    &opened,
		ResolvedAt:  resolved,
	}
	m.Set.Event.OccurredAt, m.Set.Event.Status = opened, fact.StatusFailure
	if resolved != nil {
		m.Set.Event.OccurredAt, m.Set.Event.Status = *resolved, fact.StatusSuccess
	}
	inc.CauseCommitID, inc.CauseDeploymentID = Cause(description)
	m.Set.Event.IncidentID = inc.IncidentID
	m.Set.Event.Environment = inc.Environment
	m.Set.Event.CommitID = inc.CauseCommitID
	m.Set.Event.DeploymentID = inc.CauseDeploymentID
	m.Set.Incidents = []fact.Incident{inc}
}

// causeLine finds "root cause: X" or "caused by: X", as Four Keys does.
var causeLine = regexp.MustCompile(`(?i)^\s*(?:root cause|caused by)\s*:\s*(\S+)`)

// commitSHA tells a commit, or a prefix of one, from a deployment id.
var commitSHA = regexp.MustCompile(`^[0-9a-fA-F]{7,64}$`)

// Cause reads the cause that an incident's description names on its first line saying "root
// cause: X" or "caused by: X": the commit X when X is 7 to 64 hexadecimal digits, else the
// deployment X. Neither, when no line says so.
func Cause(description string) (commitID, deploymentID string) {
	scanner := bufio.NewScanner(strings.NewReader(description))
	for scanner.Scan() {
		if match := causeLine.FindStringSubmatch(scanner.Text()); match != nil {
			if commitSHA.MatchString(match[1]) {
				return match[1], ""
			}
			return "", match[1]
		}
	}
	return "", ""
}
