// Package github verifies GitHub webhook deliveries and maps them to facts.
//
// Verify checks the signature on the raw bytes before anything is parsed. Parse is a pure
// function of the delivery (its event name and body) and of Options, which the ingest stamps
// into the stream message's headers, so the writer and every replay map a delivery exactly
// as the ingest judged it. Times come from the payload, never from the clock.
package github

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
)

// Source names GitHub in the tables and on the stream.
const Source = "github"

// Headers of a delivery kept on its stream message.
const (
	HeaderEvent    = "X-GitHub-Event"
	HeaderDelivery = "X-GitHub-Delivery"
	// HeaderOptions carries the Options in force when the delivery came in (JSON), so that the
	// writer, and every replay, maps it as the ingest judged it.
	HeaderOptions = "Devopstic-Github-Options"
)

// Errors of a delivery.
var (
	// ErrSignature: the signature is missing, malformed or does not match any secret.
	ErrSignature = errors.New("bad signature")
	// ErrIgnored: a delivery DevOpstic does not use (answered 202 so GitHub shows it green).
	ErrIgnored = errors.New("ignored")
	// ErrInvalid: a delivery of a kind DevOpstic uses that lacks what it needs.
	ErrInvalid = errors.New("invalid delivery")
)

// Verify checks X-Hub-Signature-256 (or, when only it is sent, the legacy X-Hub-Signature)
// against every secret, in constant time. No secret, no signature: refused.
func Verify(secrets []string, body []byte, sig256, sig1 string) error {
	var (
		newHash func() hash.Hash
		want    string
	)
	switch {
	case sig256 != "":
		newHash, want = sha256.New, strings.TrimPrefix(sig256, "sha256=")
		if want == sig256 {
			return fmt.Errorf("%w: X-Hub-Signature-256 must start with sha256=", ErrSignature)
		}
	case sig1 != "":
		newHash, want = sha1.New, strings.TrimPrefix(sig1, "sha1=")
		if want == sig1 {
			return fmt.Errorf("%w: X-Hub-Signature must start with sha1=", ErrSignature)
		}
	default:
		return fmt.Errorf("%w: no X-Hub-Signature-256 header", ErrSignature)
	}
	got, err := hex.DecodeString(want)
	if err != nil {
		return fmt.Errorf("%w: not hexadecimal", ErrSignature)
	}
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		mac := hmac.New(newHash, []byte(secret))
		mac.Write(body)
		if hmac.Equal(mac.Sum(nil), got) {
			return nil
		}
	}
	return fmt.Errorf("%w: it matches no configured secret", ErrSignature)
}

// Options are what the operator configured, and what the webhook's URL said, when the
// delivery came in.
type Options struct {
	// PipelineID and Environment override what the payload says (?pipeline_id=, ?environment=).
	PipelineID, Environment string
	// DeployWorkflows names the workflow runs that are deployments (DEVOPSTIC_GITHUB_DEPLOY_WORKFLOWS).
	DeployWorkflows []string
	// DeployEnvironment is where those workflows deploy (DEVOPSTIC_GITHUB_DEPLOY_ENVIRONMENT).
	DeployEnvironment string
	// IncidentLabel marks the issues that are incidents (DEVOPSTIC_GITHUB_INCIDENT_LABEL).
	IncidentLabel string
}

// Delivery is a mapped delivery: its facts, and what could not be read but did not stop it.
type Delivery struct {
	Set      fact.Set
	Warnings []string
}

// Parse maps a delivery of event (the X-GitHub-Event header) to facts. The returned Set's
// Event has Source, Kind, PipelineID, Environment and OccurredAt filled; the caller adds the
// id, receive time and stream sequence.
func Parse(eventName string, body []byte, opts Options) (Delivery, error) {
	if err := event.CheckDelivery(body, opts.PipelineID, opts.Environment); err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return Delivery{}, fmt.Errorf("%w: body is not a JSON object: %w", ErrInvalid, err)
	}
	m := mapper{opts: opts, p: &p, event: eventName}
	var err error
	switch eventName {
	case "push":
		err = m.push()
	case "pull_request":
		err = m.pullRequest()
	case "pull_request_review":
		err = m.review()
	case "deployment_status":
		err = m.deploymentStatus()
	case "workflow_run":
		err = m.workflowRun()
	case "issues":
		err = m.issue()
	case "":
		return Delivery{}, fmt.Errorf("%w: no X-GitHub-Event header", ErrInvalid)
	default:
		return Delivery{}, fmt.Errorf("%w: DevOpstic does not use %s events", ErrIgnored, eventName)
	}
	if err != nil {
		return Delivery{}, err
	}
	m.set.Event.Source = Source
	m.set.Event.Kind = eventName
	m.set.Event.PipelineID = m.pipeline()
	m.set.Event.Payload = body
	return Delivery{Set: m.set, Warnings: m.warnings}, nil
}

// payload holds the fields DevOpstic reads, of every event kind it uses.
type payload struct {
	Action     string `json:"action"`
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	HeadCommit *struct {
		ID        string `json:"id"`
		Timestamp string `json:"timestamp"`
	} `json:"head_commit"`
	Commits []struct {
		ID        string `json:"id"`
		Timestamp string `json:"timestamp"`
	} `json:"commits"`
	Repository *struct {
		FullName string `json:"full_name"`
		Name     string `json:"name"`
	} `json:"repository"`
	PullRequest *struct {
		Number         int64  `json:"number"`
		CreatedAt      string `json:"created_at"`
		MergedAt       string `json:"merged_at"`
		Merged         bool   `json:"merged"`
		MergeCommitSHA string `json:"merge_commit_sha"`
		Head           struct {
			SHA string `json:"sha"`
		} `json:"head"`
	} `json:"pull_request"`
	Review *struct {
		State       string `json:"state"`
		SubmittedAt string `json:"submitted_at"`
		CommitID    string `json:"commit_id"`
	} `json:"review"`
	Deployment *struct {
		ID          json.Number `json:"id"`
		SHA         string      `json:"sha"`
		Environment string      `json:"environment"`
	} `json:"deployment"`
	DeploymentStatus *struct {
		ID        json.Number `json:"id"`
		State     string      `json:"state"`
		CreatedAt string      `json:"created_at"`
		UpdatedAt string      `json:"updated_at"`
	} `json:"deployment_status"`
	// Minimal senders put these at the top level.
	State     string `json:"state"`
	UpdatedAt string `json:"updated_at"`
	CreatedAt string `json:"created_at"`

	WorkflowRun *struct {
		ID         json.Number `json:"id"`
		RunAttempt int64       `json:"run_attempt"`
		Name       string      `json:"name"`
		Path       string      `json:"path"`
		HeadSHA    string      `json:"head_sha"`
		Conclusion string      `json:"conclusion"`
		UpdatedAt  string      `json:"updated_at"`
	} `json:"workflow_run"`
	Workflow *struct {
		Name string `json:"name"`
	} `json:"workflow"`
	Issue *struct {
		Number    int64  `json:"number"`
		State     string `json:"state"`
		CreatedAt string `json:"created_at"`
		ClosedAt  string `json:"closed_at"`
		Body      string `json:"body"`
		Labels    []struct {
			Name string `json:"name"`
		} `json:"labels"`
	} `json:"issue"`
}

type mapper struct {
	opts     Options
	p        *payload
	event    string
	set      fact.Set
	warnings []string
}

// pipeline is the URL's pipeline_id, else the repository's full name (or name).
func (m *mapper) pipeline() string {
	if m.opts.PipelineID != "" {
		return m.opts.PipelineID
	}
	if r := m.p.Repository; r != nil {
		if r.FullName != "" {
			return r.FullName
		}
		return r.Name
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
		return fmt.Errorf("%w: repository.full_name is missing (or add ?pipeline_id= to the webhook URL)", ErrInvalid)
	}
	return nil
}

// when reads a required time.
func (m *mapper) when(field, value string) (time.Time, error) {
	if value == "" {
		return time.Time{}, fmt.Errorf("%w: %s is missing", ErrInvalid, field)
	}
	t, err := event.ParseTime(value)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %w", ErrInvalid, field, err)
	}
	return t, nil
}

func (m *mapper) push() error {
	p := m.p
	if p.Deleted {
		return fmt.Errorf("%w: a branch or tag deletion ships no change", ErrIgnored)
	}
	if len(p.Commits) == 0 {
		return fmt.Errorf("%w: a push without commits (a new branch or a tag) ships no change", ErrIgnored)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	head := p.After
	if p.HeadCommit != nil && p.HeadCommit.ID != "" {
		head = p.HeadCommit.ID
	}
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
		m.warnings = append(m.warnings, "neither head_commit.id nor after: a deployment cannot ship this push's commits")
	}
	m.set.Event.CommitID = head
	if p.HeadCommit != nil {
		if t, err := event.ParseTime(p.HeadCommit.Timestamp); err == nil {
			latest = t
		}
	}
	if latest.IsZero() {
		return fmt.Errorf("%w: no commit of the push has a readable timestamp", ErrInvalid)
	}
	m.set.Event.OccurredAt = latest
	return nil
}

func (m *mapper) pullRequest() error {
	pr := m.p.PullRequest
	switch m.p.Action {
	case "opened", "reopened", "ready_for_review", "closed":
	default:
		return fmt.Errorf("%w: pull_request %q", ErrIgnored, m.p.Action)
	}
	if pr == nil {
		return fmt.Errorf("%w: pull_request is missing", ErrInvalid)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	if pr.Head.SHA == "" {
		return fmt.Errorf("%w: pull_request.head.sha is missing", ErrInvalid)
	}
	created, err := m.when("pull_request.created_at", pr.CreatedAt)
	if err != nil {
		return err
	}
	pipeline := m.pipeline()
	number := pr.Number
	m.set.Event.PullRequestID = &number
	m.set.Event.CommitID = pr.Head.SHA
	m.set.Event.OccurredAt = created
	if m.p.Action != "closed" {
		m.set.Changes = []fact.Change{{PipelineID: pipeline, CommitID: pr.Head.SHA, PullRequestID: &number, SubmittedAt: &created}}
		return nil
	}
	if !pr.Merged {
		// Abandoned: kept as an event, nothing about a change.
		m.set.Event.Status = "closed"
		return nil
	}
	merged, err := m.when("pull_request.merged_at", pr.MergedAt)
	if err != nil {
		return err
	}
	m.set.Event.Status = "merged"
	m.set.Event.OccurredAt = merged
	// A merge approves the change when no review did; an earlier approving review wins anyway,
	// as the earliest approval is kept.
	m.set.Changes = []fact.Change{{PipelineID: pipeline, CommitID: pr.Head.SHA, PullRequestID: &number, SubmittedAt: &created, ApprovedAt: &merged}}
	if sha := pr.MergeCommitSHA; sha != "" && sha != pr.Head.SHA {
		m.set.Changes = append(m.set.Changes, fact.Change{PipelineID: pipeline, CommitID: sha, PullRequestID: &number, SubmittedAt: &created, ApprovedAt: &merged})
		m.set.Links = []fact.ChangeLink{{PipelineID: pipeline, CommitID: pr.Head.SHA, LinkedID: sha}}
	}
	return nil
}

func (m *mapper) review() error {
	r := m.p.Review
	if m.p.Action != "submitted" || r == nil || !strings.EqualFold(r.State, "approved") {
		return fmt.Errorf("%w: only approving reviews count", ErrIgnored)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	commit := r.CommitID
	var number *int64
	if pr := m.p.PullRequest; pr != nil {
		if commit == "" {
			commit = pr.Head.SHA
		}
		n := pr.Number
		number = &n
	}
	if commit == "" {
		return fmt.Errorf("%w: review.commit_id and pull_request.head.sha are missing", ErrInvalid)
	}
	at, err := m.when("review.submitted_at", r.SubmittedAt)
	if err != nil {
		return err
	}
	m.set.Event.CommitID, m.set.Event.PullRequestID, m.set.Event.OccurredAt = commit, number, at
	m.set.Changes = []fact.Change{{PipelineID: m.pipeline(), CommitID: commit, PullRequestID: number, ApprovedAt: &at}}
	return nil
}

// finalStatus maps GitHub's deployment states; "" for states that carry no deployment.
func finalStatus(state string) string {
	switch strings.ToLower(state) {
	case "success":
		return fact.StatusSuccess
	case "failure", "error":
		return fact.StatusFailure
	}
	return ""
}

func (m *mapper) deploymentStatus() error {
	p := m.p
	state, at := p.State, firstOf(p.UpdatedAt, p.CreatedAt)
	var statusID string
	if ds := p.DeploymentStatus; ds != nil {
		state = firstOf(ds.State, state)
		at = firstOf(ds.CreatedAt, ds.UpdatedAt, at)
		statusID = ds.ID.String()
	}
	if state == "" {
		return fmt.Errorf("%w: deployment_status.state is missing", ErrInvalid)
	}
	status := finalStatus(state)
	if status == "" {
		return fmt.Errorf("%w: deployment state %q is not final", ErrIgnored, state)
	}
	if p.Deployment == nil || p.Deployment.SHA == "" {
		return fmt.Errorf("%w: deployment.sha is missing", ErrInvalid)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	when, err := m.when("deployment_status.created_at", at)
	if err != nil {
		return err
	}
	env := m.environment(p.Deployment.Environment)
	id := firstOf(p.Deployment.ID.String(), statusID)
	key := id
	if key == "" {
		key = "sha:" + p.Deployment.SHA + "@" + when.Format(time.RFC3339Nano)
	}
	m.deployment(env, key, id, status, when, p.Deployment.SHA)
	return nil
}

func (m *mapper) workflowRun() error {
	run := m.p.WorkflowRun
	if m.p.Action != "completed" || run == nil {
		return fmt.Errorf("%w: only completed workflow runs can be deployments", ErrIgnored)
	}
	name := run.Name
	if w := m.p.Workflow; name == "" && w != nil {
		name = w.Name
	}
	if !slices.ContainsFunc(m.opts.DeployWorkflows, func(d string) bool {
		return strings.EqualFold(d, name) || (run.Path != "" && strings.EqualFold(d, run.Path))
	}) {
		return fmt.Errorf("%w: workflow %q is not in DEVOPSTIC_GITHUB_DEPLOY_WORKFLOWS", ErrIgnored, name)
	}
	var status string
	switch run.Conclusion {
	case "success":
		status = fact.StatusSuccess
	case "failure":
		status = fact.StatusFailure
	default:
		return fmt.Errorf("%w: conclusion %q is neither success nor failure", ErrIgnored, run.Conclusion)
	}
	if run.HeadSHA == "" {
		return fmt.Errorf("%w: workflow_run.head_sha is missing", ErrInvalid)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	when, err := m.when("workflow_run.updated_at", run.UpdatedAt)
	if err != nil {
		return err
	}
	id := run.ID.String()
	key := "run:" + id + "/" + strconv.FormatInt(max(run.RunAttempt, 1), 10)
	if id == "" {
		key = "sha:" + run.HeadSHA + "@" + when.Format(time.RFC3339Nano)
	}
	m.deployment(m.environment(m.opts.DeployEnvironment), key, id, status, when, run.HeadSHA)
	return nil
}

func (m *mapper) deployment(env, key, id, status string, at time.Time, sha string) {
	pipeline := m.pipeline()
	m.set.Event.Environment, m.set.Event.CommitID, m.set.Event.DeploymentID = env, sha, id
	m.set.Event.Status, m.set.Event.OccurredAt = status, at
	m.set.Deployments = []fact.Deployment{{
		Source: Source, PipelineID: pipeline, Environment: env, Key: key, DeploymentID: id,
		Status: status, DeployedAt: at, CommitID: sha, Commits: []string{sha},
	}}
	m.set.Changes = []fact.Change{{PipelineID: pipeline, CommitID: sha}}
}

// causeLine finds "root cause: X" or "caused by: X" in an issue's body, as Four Keys does.
var causeLine = regexp.MustCompile(`(?i)^\s*(?:root cause|caused by)\s*:\s*(\S+)`)

var commitSHA = regexp.MustCompile(`^[0-9a-fA-F]{7,64}$`)

func (m *mapper) issue() error {
	is := m.p.Issue
	if is == nil {
		return fmt.Errorf("%w: issue is missing", ErrInvalid)
	}
	label := m.opts.IncidentLabel
	if label == "" {
		label = "incident"
	}
	if !slices.ContainsFunc(is.Labels, func(l struct {
		Name string `json:"name"`
	}) bool {
		return strings.EqualFold(l.Name, label)
	}) {
		return fmt.Errorf("%w: the issue has no %q label", ErrIgnored, label)
	}
	if err := m.requirePipeline(); err != nil {
		return err
	}
	if is.Number == 0 {
		return fmt.Errorf("%w: issue.number is missing", ErrInvalid)
	}
	opened, err := m.when("issue.created_at", is.CreatedAt)
	if err != nil {
		return err
	}
	pipeline := m.pipeline()
	inc := fact.Incident{
		Source:      Source,
		IncidentID:  fmt.Sprintf("%s#%d", pipeline, is.Number),
		PipelineID:  pipeline,
		Environment: m.environment(""),
		OpenedAt:    &opened,
	}
	m.set.Event.OccurredAt = opened
	m.set.Event.Status = fact.StatusFailure
	if is.ClosedAt != "" && !strings.EqualFold(m.p.Action, "reopened") {
		closed, err := m.when("issue.closed_at", is.ClosedAt)
		if err != nil {
			return err
		}
		inc.ResolvedAt = &closed
		m.set.Event.OccurredAt = closed
		m.set.Event.Status = fact.StatusSuccess
	}
	scanner := bufio.NewScanner(strings.NewReader(is.Body))
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
