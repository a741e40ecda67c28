// Package gitlab verifies GitLab webhook deliveries and maps them to facts.
//
// Verify compares the X-Gitlab-Token header with the configured secrets before anything is
// parsed. Parse is a pure function of the delivery (its X-Gitlab-Event header and body) and of
// Options, which the ingest stamps into the stream message's headers, so the writer and every
// replay map a delivery exactly as the ingest judged it. Times come from the payload, never
// from the clock.
package gitlab

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
)

// Source names GitLab in the tables and on the stream.
const Source = "gitlab"

// Headers of a delivery kept on its stream message. The token itself is never kept.
const (
	HeaderEvent = "X-Gitlab-Event"
	HeaderUUID  = "X-Gitlab-Event-UUID"
	HeaderToken = "X-Gitlab-Token"
	// HeaderIdempotencyKey is stable across GitLab's retries of one delivery (GitLab 17.4+).
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderOptions carries the Options in force when the delivery came in (JSON).
	HeaderOptions = "Devopstic-Gitlab-Options"
)

// Errors of a delivery.
var (
	// ErrToken: the token is missing or matches no configured secret.
	ErrToken = errors.New("bad token")
	// ErrIgnored: a delivery DevOpstic does not use (answered 202 so GitLab shows it green).
	ErrIgnored = errors.New("ignored")
	// ErrInvalid: a delivery of a kind DevOpstic uses that lacks what it needs.
	ErrInvalid = errors.New("invalid delivery")
)

// Verify compares the X-Gitlab-Token header with every secret in constant time (hashing both
// first, so that not even the secret's length leaks). No secret, no token: refused.
func Verify(secrets []string, token string) error {
	if token == "" {
		return fmt.Errorf("%w: no %s header", ErrToken, HeaderToken)
	}
	got := sha256.Sum256([]byte(token))
	ok := 0
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		want := sha256.Sum256([]byte(secret))
		ok |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	if ok != 1 {
		return fmt.Errorf("%w: %s matches no configured secret", ErrToken, HeaderToken)
	}
	return nil
}

// Options are what the operator configured, and what the webhook's URL said, when the
// delivery came in.
type Options struct {
	// PipelineID and Environment override what the payload says (?pipeline_id=, ?environment=).
	PipelineID, Environment string
	// IncidentLabel marks the issues that are incidents (DEVOPSTIC_GITLAB_INCIDENT_LABEL).
	IncidentLabel string
	// DeployPipelines names the pipelines (by name, else ref) and jobs (by name) whose finished
	// runs are deployments (DEVOPSTIC_GITLAB_DEPLOY_PIPELINES). None: Pipeline and Job hooks
	// are ignored.
	DeployPipelines []string
	// DeployEnvironment is where they deploy (DEVOPSTIC_GITLAB_DEPLOY_ENVIRONMENT).
	DeployEnvironment string
}

// Delivery is a mapped delivery: its facts, and what could not be read but did not stop it.
type Delivery struct {
	Set      fact.Set
	Warnings []string
}

// Kind is the stream subject's last token for an X-Gitlab-Event value: "Push Hook" is "push".
// It is "" for the hooks DevOpstic does not use. Pipeline and job hooks have kinds, yet count
// only when Options.DeployPipelines names them.
func Kind(eventName string) string {
	switch eventName {
	case "Push Hook":
		return "push"
	case "Merge Request Hook":
		return "merge_request"
	case "Deployment Hook":
		return "deployment"
	case "Issue Hook", "Confidential Issue Hook":
		return "issue"
	case "Pipeline Hook":
		return "pipeline"
	case "Job Hook":
		return "job"
	}
	return ""
}

// Parse maps a delivery of eventName (the X-Gitlab-Event header) to facts. The returned Set's
// Event has Source, Kind, PipelineID and OccurredAt filled; the caller adds the id, receive
// time and stream sequence.
func Parse(eventName string, body []byte, opts Options) (Delivery, error) {
	if eventName == "" {
		return Delivery{}, fmt.Errorf("%w: no %s header", ErrInvalid, HeaderEvent)
	}
	kind := Kind(eventName)
	if eventName == "System Hook" {
		// System hooks name their kind in the body only.
		var k struct {
			ObjectKind string `json:"object_kind"`
		}
		if err := json.Unmarshal(body, &k); err != nil {
			return Delivery{}, fmt.Errorf("%w: body is not a JSON object: %w", ErrInvalid, err)
		}
		switch k.ObjectKind {
		case "push", "merge_request":
			kind = k.ObjectKind
		}
	}
	if kind == "" {
		// Before decoding: the hooks DevOpstic does not use have other shapes.
		return Delivery{}, fmt.Errorf("%w: DevOpstic does not use %s events", ErrIgnored, eventName)
	}
	if (kind == "pipeline" || kind == "job") && len(opts.DeployPipelines) == 0 {
		return Delivery{}, fmt.Errorf("%w: %s events count only for the names in DEVOPSTIC_GITLAB_DEPLOY_PIPELINES, and none is set", ErrIgnored, eventName)
	}
	if err := event.CheckDelivery(body, opts.PipelineID, opts.Environment); err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return Delivery{}, fmt.Errorf("%w: body is not a JSON object: %w", ErrInvalid, err)
	}
	m := mapper{opts: opts, p: &p}
	var err error
	switch kind {
	case "push":
		err = m.push()
	case "merge_request":
		err = m.mergeRequest()
	case "deployment":
		err = m.deployment()
	case "issue":
		err = m.issue()
	case "pipeline":
		err = m.pipelineRun()
	case "job":
		err = m.job()
	}
	if err != nil {
		return Delivery{}, err
	}
	m.set.Event.Source = Source
	m.set.Event.Kind = kind
	m.set.Event.PipelineID = m.pipeline()
	m.set.Event.Payload = body
	return Delivery{Set: m.set, Warnings: m.warnings}, nil
}

type commit struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
}

type label struct {
	Title string `json:"title"`
}

// payload holds the fields DevOpstic reads, of every hook it uses.
type payload struct {
	After             string   `json:"after"`
	CheckoutSHA       string   `json:"checkout_sha"`
	Commits           []commit `json:"commits"`
	TotalCommitsCount int      `json:"total_commits_count"`
	Project           *struct {
		PathWithNamespace string `json:"path_with_namespace"`
		Name              string `json:"name"`
	} `json:"project"`
	ObjectAttributes *struct {
		ID              json.Number `json:"id"`
		IID             json.Number `json:"iid"`
		Action          string      `json:"action"`
		State           string      `json:"state"`
		CreatedAt       string      `json:"created_at"`
		UpdatedAt       string      `json:"updated_at"`
		ClosedAt        string      `json:"closed_at"`
		MergeCommitSHA  string      `json:"merge_commit_sha"`
		SquashCommitSHA string      `json:"squash_commit_sha"`
		LastCommit      *commit     `json:"last_commit"`
		IssueType       string      `json:"issue_type"`
		Type            string      `json:"type"`
		Description     string      `json:"description"`
		Labels          []label     `json:"labels"`
		// Pipeline Hook
		Name       string `json:"name"`
		Ref        string `json:"ref"`
		SHA        string `json:"sha"`
		Status     string `json:"status"`
		FinishedAt string `json:"finished_at"`
	} `json:"object_attributes"`
	Labels []label `json:"labels"`

	// Deployment Hook
	Status          string          `json:"status"`
	StatusChangedAt string          `json:"status_changed_at"`
	DeploymentID    json.Number     `json:"deployment_id"`
	Environment     environmentName `json:"environment"`
	ShortSHA        string          `json:"short_sha"`
	CommitURL       string          `json:"commit_url"`

	// Job Hook
	BuildID         json.Number `json:"build_id"`
	BuildName       string      `json:"build_name"`
	BuildStatus     string      `json:"build_status"`
	BuildFinishedAt string      `json:"build_finished_at"`
	SHA             string      `json:"sha"`
}

// environmentName is the Deployment Hook's environment, a string, or the Job Hook's, an object
// with a name.
type environmentName string

func (e *environmentName) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*e = environmentName(s)
		return nil
	}
	var o struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("environment is neither a string nor an object with a name: %w", err)
	}
	*e = environmentName(o.Name)
	return nil
}

type mapper struct {
	opts     Options
	p        *payload
	set      fact.Set
	warnings []string
}

// pipeline is the URL's pipeline_id, else the project's path (or name).
func (m *mapper) pipeline() string {
	if m.opts.PipelineID != "" {
		return m.opts.PipelineID
	}
	return m.project()
}

func (m *mapper) project() string {
	if pr := m.p.Project; pr != nil {
		if pr.PathWithNamespace != "" {
			return pr.PathWithNamespace
		}
		return pr.Name
	}
	return ""
}

// environment is the URL's environment, else what the payload said, else production.
func (m *mapper) environment(fromPayload string) string {
	switch {
	case m.opts.Environment != "":
		return m.opts.Environment
	case fromPayload != "":
		return fromPayload
	default:
		return "production"
	}
}

func (m *mapper) requirePipeline() error {
	if m.pipeline() == "" {
		return fmt.Errorf("%w: project.path_with_namespace is missing (or add ?pipeline_id= to the webhook URL)", ErrInvalid)
	}
	return nil
}

// when reads a required time.
func when(field, value string) (time.Time, error) {
	if value == "" {
		return time.Time{}, fmt.Errorf("%w: %s is missing", ErrInvalid, field)
	}
	t, err := event.ParseTime(value)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %w", ErrInvalid, field, err)
	}
	return t, nil
}

// zeroSHA is the "after" of a branch deletion.
var zeroSHA = regexp.MustCompile(`^0+$`)

func (m *mapper) push() error {
	p := m.p
	if zeroSHA.MatchString(p.After) {
		return fmt.Errorf("%w: a branch deletion ships no change", ErrIgnored)
	}
	if len(p.Commits) == 0 {
		return fmt.Errorf("%w: a push without commits (a new branch) ships no change", ErrIgnored)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	head := firstOf(p.CheckoutSHA, p.After)
	pipeline := m.pipeline()
	var latest time.Time
	for i, c := range p.Commits {
		if c.ID == "" {
			return fmt.Errorf("%w: commits[%d].id is missing", ErrInvalid, i)
		}
		change := fact.Change{PipelineID: pipeline, CommitID: c.ID}
		if t, err := event.ParseTime(c.Timestamp); err == nil {
			change.CommittedAt = &t
			if t.After(latest) {
				latest = t
			}
		} else {
			// The change is still tracked; only its commit time is unknown.
			m.warnings = append(m.warnings, fmt.Sprintf("commits[%d].timestamp: %v", i, err))
		}
		m.set.Changes = append(m.set.Changes, change)
		if head != "" {
			m.set.PushCommits = append(m.set.PushCommits, fact.PushCommit{PipelineID: pipeline, HeadID: head, CommitID: c.ID})
		}
	}
	if head == "" {
		m.warnings = append(m.warnings, "neither checkout_sha nor after: a deployment cannot ship this push's commits")
	}
	if p.TotalCommitsCount > len(p.Commits) {
		// GitLab lists at most 20 commits of a push; the others stay unknown until something
		// else names them.
		m.warnings = append(m.warnings, fmt.Sprintf("the push has %d commits and lists %d", p.TotalCommitsCount, len(p.Commits)))
	}
	if latest.IsZero() {
		return fmt.Errorf("%w: no commit of the push has a readable timestamp", ErrInvalid)
	}
	m.set.Event.CommitID = head
	m.set.Event.OccurredAt = latest
	return nil
}

func (m *mapper) mergeRequest() error {
	oa := m.p.ObjectAttributes
	if oa == nil {
		return fmt.Errorf("%w: object_attributes is missing", ErrInvalid)
	}
	switch oa.Action {
	case "open", "reopen", "approved", "approval", "merge", "close":
	default:
		return fmt.Errorf("%w: merge request action %q", ErrIgnored, oa.Action)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	if oa.LastCommit == nil || oa.LastCommit.ID == "" {
		return fmt.Errorf("%w: object_attributes.last_commit.id is missing", ErrInvalid)
	}
	created, err := when("object_attributes.created_at", oa.CreatedAt)
	if err != nil {
		return err
	}
	var number *int64
	if n, err := strconv.ParseInt(oa.IID.String(), 10, 64); err == nil {
		number = &n
	}
	head := oa.LastCommit.ID
	change := fact.Change{PipelineID: m.pipeline(), CommitID: head, PullRequestID: number}
	if t, err := event.ParseTime(oa.LastCommit.Timestamp); err == nil {
		change.CommittedAt = &t
	} else if oa.LastCommit.Timestamp != "" {
		m.warnings = append(m.warnings, fmt.Sprintf("object_attributes.last_commit.timestamp: %v", err))
	}
	m.set.Event.PullRequestID = number
	m.set.Event.CommitID = head
	m.set.Event.OccurredAt = created
	switch oa.Action {
	case "open", "reopen":
		change.SubmittedAt = &created
		m.set.Changes = []fact.Change{change}
	case "approved", "approval":
		// GitLab sends no approval time; the merge request's updated_at is the nearest.
		approved, err := when("object_attributes.updated_at", oa.UpdatedAt)
		if err != nil {
			return err
		}
		change.ApprovedAt = &approved
		m.set.Event.OccurredAt = approved
		m.set.Changes = []fact.Change{change}
	case "close":
		// Abandoned: kept as an event, nothing about a change.
		m.set.Event.Status = "closed"
	case "merge":
		merged, err := when("object_attributes.updated_at", oa.UpdatedAt)
		if err != nil {
			return err
		}
		m.set.Event.Status = "merged"
		m.set.Event.OccurredAt = merged
		// A merge approves the change when no approval did; an earlier approval wins anyway,
		// as the earliest approval is kept.
		change.SubmittedAt, change.ApprovedAt = &created, &merged
		m.set.Changes = []fact.Change{change}
		for _, sha := range []string{oa.MergeCommitSHA, oa.SquashCommitSHA} {
			if sha == "" || sha == head || m.linked(sha) {
				continue
			}
			m.set.Changes = append(m.set.Changes, fact.Change{PipelineID: change.PipelineID, CommitID: sha, PullRequestID: number, SubmittedAt: &created, ApprovedAt: &merged})
			m.set.Links = append(m.set.Links, fact.ChangeLink{PipelineID: change.PipelineID, CommitID: head, LinkedID: sha})
		}
	}
	return nil
}

func (m *mapper) linked(sha string) bool {
	for _, l := range m.set.Links {
		if l.LinkedID == sha {
			return true
		}
	}
	return false
}

// commitURL ends with the deployed commit's full sha: .../-/commit/<sha>.
var commitURL = regexp.MustCompile(`/commit/([0-9a-fA-F]{7,64})/?$`)

func (m *mapper) deployment() error {
	p := m.p
	var status string
	switch strings.ToLower(p.Status) {
	case "success":
		status = fact.StatusSuccess
	case "failed":
		status = fact.StatusFailure
	case "":
		return fmt.Errorf("%w: status is missing", ErrInvalid)
	default:
		return fmt.Errorf("%w: deployment status %q is not final", ErrIgnored, p.Status)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	// The Deployment Hook names its commit only in commit_url (and shortened in short_sha).
	var sha string
	if match := commitURL.FindStringSubmatch(p.CommitURL); match != nil {
		sha = match[1]
	} else if p.ShortSHA != "" {
		sha = p.ShortSHA
		m.warnings = append(m.warnings, "commit_url names no commit: the deployment ships short_sha "+p.ShortSHA)
	} else {
		return fmt.Errorf("%w: commit_url is missing", ErrInvalid)
	}
	at, err := when("status_changed_at", p.StatusChangedAt)
	if err != nil {
		return err
	}
	id := p.DeploymentID.String()
	m.deploy(m.environment(string(p.Environment)), id, id, status, at, sha)
	return nil
}

// deploy records a deployment of sha; an empty key falls back to the commit and time.
func (m *mapper) deploy(env, key, id, status string, at time.Time, sha string) {
	if key == "" {
		key = "sha:" + sha + "@" + at.Format(time.RFC3339Nano)
	}
	pipeline := m.pipeline()
	m.set.Event.Environment, m.set.Event.CommitID, m.set.Event.DeploymentID = env, sha, id
	m.set.Event.Status, m.set.Event.OccurredAt = status, at
	m.set.Deployments = []fact.Deployment{{
		Source: Source, PipelineID: pipeline, Environment: env, Key: key, DeploymentID: id,
		Status: status, DeployedAt: at, CommitID: sha, Commits: []string{sha},
	}}
	m.set.Changes = []fact.Change{{PipelineID: pipeline, CommitID: sha}}
}

// run is a finished pipeline or job, as its hook describes it.
type run struct {
	kind, name, status, sha, finishedAt, id string
	// field prefixes the payload's field names in errors: "object_attributes." or "build_".
	field, shaField string
}

func (m *mapper) pipelineRun() error {
	oa := m.p.ObjectAttributes
	if oa == nil {
		return fmt.Errorf("%w: object_attributes is missing", ErrInvalid)
	}
	// Pipelines have a name only when .gitlab-ci.yml gives one (workflow:name); else the ref.
	return m.ciDeployment(run{kind: "pipeline", name: firstOf(oa.Name, oa.Ref), status: oa.Status, sha: oa.SHA,
		finishedAt: oa.FinishedAt, id: oa.ID.String(), field: "object_attributes.", shaField: "object_attributes.sha"})
}

func (m *mapper) job() error {
	p := m.p
	return m.ciDeployment(run{kind: "job", name: p.BuildName, status: p.BuildStatus, sha: p.SHA,
		finishedAt: p.BuildFinishedAt, id: p.BuildID.String(), field: "build_", shaField: "sha"})
}

// ciDeployment maps a finished pipeline or job that DeployPipelines names to a deployment to
// DeployEnvironment, as GitHub's workflow runs are.
func (m *mapper) ciDeployment(r run) error {
	if !slices.ContainsFunc(m.opts.DeployPipelines, func(d string) bool {
		d = strings.TrimSpace(d)
		return d != "" && strings.EqualFold(d, r.name)
	}) {
		return fmt.Errorf("%w: %s %q is not in DEVOPSTIC_GITLAB_DEPLOY_PIPELINES", ErrIgnored, r.kind, r.name)
	}
	var status string
	switch strings.ToLower(r.status) {
	case "success":
		status = fact.StatusSuccess
	case "failed":
		status = fact.StatusFailure
	case "":
		return fmt.Errorf("%w: %sstatus is missing", ErrInvalid, r.field)
	default:
		return fmt.Errorf("%w: %s status %q is neither success nor failed", ErrIgnored, r.kind, r.status)
	}
	if r.sha == "" {
		return fmt.Errorf("%w: %s is missing", ErrInvalid, r.shaField)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	at, err := when(r.field+"finished_at", r.finishedAt)
	if err != nil {
		return err
	}
	key := ""
	if r.id != "" {
		key = r.kind + ":" + r.id
	}
	m.deploy(m.environment(m.opts.DeployEnvironment), key, r.id, status, at, r.sha)
	return nil
}

// causeLine finds "root cause: X" or "caused by: X" in an issue's description, as for GitHub.
var causeLine = regexp.MustCompile(`(?i)^\s*(?:root cause|caused by)\s*:\s*(\S+)`)

var commitSHA = regexp.MustCompile(`^[0-9a-fA-F]{7,64}$`)

func (m *mapper) isIncident() bool {
	oa := m.p.ObjectAttributes
	if strings.EqualFold(oa.IssueType, "incident") || strings.EqualFold(oa.Type, "incident") {
		return true
	}
	want := m.opts.IncidentLabel
	if want == "" {
		want = "incident"
	}
	for _, labels := range [][]label{m.p.Labels, oa.Labels} {
		for _, l := range labels {
			if strings.EqualFold(l.Title, want) {
				return true
			}
		}
	}
	return false
}

func (m *mapper) issue() error {
	oa := m.p.ObjectAttributes
	if oa == nil {
		return fmt.Errorf("%w: object_attributes is missing", ErrInvalid)
	}
	if !m.isIncident() {
		return fmt.Errorf("%w: the issue is not of type incident and has no %q label", ErrIgnored, firstOf(m.opts.IncidentLabel, "incident"))
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	iid := oa.IID.String()
	if iid == "" {
		return fmt.Errorf("%w: object_attributes.iid is missing", ErrInvalid)
	}
	opened, err := when("object_attributes.created_at", oa.CreatedAt)
	if err != nil {
		return err
	}
	// Keyed by the project, not the URL's pipeline_id: two projects sent to one pipeline keep
	// their issue numbers apart.
	inc := fact.Incident{
		Source:      Source,
		IncidentID:  firstOf(m.project(), m.pipeline()) + "#" + iid,
		PipelineID:  m.pipeline(),
		Environment: m.environment(""),
		OpenedAt:    &opened,
	}
	m.set.Event.OccurredAt = opened
	m.set.Event.Status = fact.StatusFailure
	closed := strings.EqualFold(oa.State, "closed") || (oa.State == "" && oa.ClosedAt != "")
	if closed && oa.Action != "reopen" {
		field, value := "object_attributes.closed_at", oa.ClosedAt
		if value == "" {
			// Older GitLab versions send no closed_at; the close is the last update.
			field, value = "object_attributes.updated_at", oa.UpdatedAt
		}
		resolved, err := when(field, value)
		if err != nil {
			return err
		}
		inc.ResolvedAt = &resolved
		m.set.Event.OccurredAt = resolved
		m.set.Event.Status = fact.StatusSuccess
	}
	scanner := bufio.NewScanner(strings.NewReader(oa.Description))
	for scanner.Scan() {
		if match := causeLine.FindStringSubmatch(scanner.Text()); match != nil {
			if commitSHA.MatchString(match[1]) {
				inc.CauseCommitID = match[1]
			} else {
				inc.CauseDeploymentID = match[1]
			}
			break
		}
	}
	m.set.Event.IncidentID = inc.IncidentID
	m.set.Event.Environment = inc.Environment
	m.set.Event.CommitID = inc.CauseCommitID
	m.set.Event.DeploymentID = inc.CauseDeploymentID
	m.set.Incidents = []fact.Incident{inc}
	return nil
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
