// Package github verifies GitHub webhook deliveries and maps them to facts.
//
// Verify checks the signature on the raw bytes before anything is parsed. Parse is a pure
// function of the delivery (its event name and body) and of Options, which the ingest stamps
// into the stream message's headers, so the writer and every replay map a delivery exactly
// as the ingest judged it. Times come from the payload, never from the clock.
package github

import (
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/webhook"
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

// ErrIgnored and ErrInvalid are webhook's: a delivery DevOpstic does not use (answered 202 so
// GitHub shows it green), and a delivery of a kind DevOpstic uses that lacks what it needs.
var ErrIgnored, ErrInvalid = webhook.ErrIgnored, webhook.ErrInvalid

// ErrSignature: the signature is missing, malformed or does not match any secret.
var ErrSignature = errors.New("bad signature")

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
	if !webhook.MatchHMAC(newHash, secrets, body, got) {
		return fmt.Errorf("%w: it matches no configured secret", ErrSignature)
	}
	return nil
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

// Decode maps a delivery again from its stream message: its X-GitHub-Event, and the Options
// the ingest mapped it with.
func Decode(h webhook.Header, body []byte) (fact.Set, error) {
	return webhook.Decode(h, HeaderOptions, func(opts Options) (fact.Set, error) {
		d, err := Parse(h.Get(HeaderEvent), body, opts)
		return d.Set, err
	})
}

// Delivery is a mapped delivery: its facts, and what could not be read but did not stop it.
type Delivery = webhook.Delivery

// kinds are the events DevOpstic uses (X-GitHub-Event), and how each maps to facts.
var kinds = map[string]func(*mapper) error{
	"push":                (*mapper).push,
	"pull_request":        (*mapper).pullRequest,
	"pull_request_review": (*mapper).review,
	"deployment_status":   (*mapper).deploymentStatus,
	"workflow_run":        (*mapper).workflowRun,
	"issues":              (*mapper).issue,
}

// Parse maps a delivery of event (the X-GitHub-Event header) to facts. The returned Set's
// Event has Source, Kind, PipelineID, Environment and OccurredAt filled; the caller adds the
// id, receive time and stream sequence.
func Parse(eventName string, body []byte, opts Options) (Delivery, error) {
	var p payload
	if err := webhook.Unmarshal(body, opts.PipelineID, opts.Environment, &p); err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	mapKind := kinds[eventName]
	switch {
	case eventName == "":
		return Delivery{}, fmt.Errorf("%w: no X-GitHub-Event header", ErrInvalid)
	case mapKind == nil:
		return Delivery{}, fmt.Errorf("%w: DevOpstic does not use %s events", ErrIgnored, eventName)
	}
	m := mapper{opts: opts, p: &p, Mapper: webhook.Mapper{
		Source: Source, URLPipeline: opts.PipelineID, URLEnvironment: opts.Environment,
		Named: p.repository(), NamedBy: "repository.full_name",
	}}
	if err := mapKind(&m); err != nil {
		return Delivery{}, err
	}
	return m.Done(eventName, body), nil
}

// payload holds the fields DevOpstic reads, of every event kind it uses.
type payload struct {
	Action     string           `json:"action"`
	Ref        string           `json:"ref"`
	After      string           `json:"after"`
	Deleted    bool             `json:"deleted"`
	HeadCommit *webhook.Commit  `json:"head_commit"`
	Commits    []webhook.Commit `json:"commits"`
	Repository *struct {
		FullName string `json:"full_name"`
		Name     string `json:"name"`
	} `json:"repository"`
	PullRequest *struct {
		Number         webhook.ID   `json:"number"`
		CreatedAt      webhook.Time `json:"created_at"`
		MergedAt       webhook.Time `json:"merged_at"`
		Merged         bool         `json:"merged"`
		MergeCommitSHA string       `json:"merge_commit_sha"`
		Head           struct {
			SHA string `json:"sha"`
		} `json:"head"`
	} `json:"pull_request"`
	Review *struct {
		State       string       `json:"state"`
		SubmittedAt webhook.Time `json:"submitted_at"`
		CommitID    string       `json:"commit_id"`
	} `json:"review"`
	Deployment *struct {
		ID          webhook.ID `json:"id"`
		SHA         string     `json:"sha"`
		Environment string     `json:"environment"`
	} `json:"deployment"`
	DeploymentStatus *struct {
		ID        webhook.ID   `json:"id"`
		State     string       `json:"state"`
		CreatedAt webhook.Time `json:"created_at"`
		UpdatedAt webhook.Time `json:"updated_at"`
	} `json:"deployment_status"`
	// Minimal senders put these at the top level.
	State     string       `json:"state"`
	UpdatedAt webhook.Time `json:"updated_at"`
	CreatedAt webhook.Time `json:"created_at"`

	WorkflowRun *struct {
		ID         webhook.ID   `json:"id"`
		RunAttempt webhook.ID   `json:"run_attempt"`
		Name       string       `json:"name"`
		Path       string       `json:"path"`
		HeadSHA    string       `json:"head_sha"`
		Conclusion string       `json:"conclusion"`
		UpdatedAt  webhook.Time `json:"updated_at"`
	} `json:"workflow_run"`
	Workflow *struct {
		Name string `json:"name"`
	} `json:"workflow"`
	Issue *struct {
		Number    webhook.ID   `json:"number"`
		State     string       `json:"state"`
		CreatedAt webhook.Time `json:"created_at"`
		ClosedAt  webhook.Time `json:"closed_at"`
		Body      string       `json:"body"`
		Labels    []struct {
			Name string `json:"name"`
		} `json:"labels"`
	} `json:"issue"`
}

// repository is the pipeline the payload names: its repository's full name (or name).
func (p *payload) repository() string {
	if r := p.Repository; r != nil {
		return cmp.Or(r.FullName, r.Name)
	}
	return ""
}

type mapper struct {
	webhook.Mapper
	opts Options
	p    *payload
}

func (m *mapper) push() error {
	p := m.p
	if p.Deleted {
		return fmt.Errorf("%w: a branch or tag deletion ships no change", ErrIgnored)
	}
	if len(p.Commits) == 0 {
		return fmt.Errorf("%w: a push without commits (a new branch or a tag) ships no change", ErrIgnored)
	}
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	head := p.After
	var headTime webhook.Time
	if p.HeadCommit != nil {
		head = cmp.Or(p.HeadCommit.ID, head)
		headTime = p.HeadCommit.Timestamp
	}
	return m.Push(head, "head_commit.id nor after", p.Commits, headTime)
}

func (m *mapper) pullRequest() error {
	pr := m.p.PullRequest
	switch m.p.Action {
	// synchronize: a push to the pull request's branch; its new head is one of the pull
	// request's commits, whose push a squash merge replaces (docs/metrics.md).
	case "opened", "reopened", "ready_for_review", "synchronize", "closed":
	default:
		return fmt.Errorf("%w: pull_request %q", ErrIgnored, m.p.Action)
	}
	if pr == nil {
		return fmt.Errorf("%w: pull_request is missing", ErrInvalid)
	}
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	if pr.Head.SHA == "" {
		return fmt.Errorf("%w: pull_request.head.sha is missing", ErrInvalid)
	}
	created, err := webhook.When("pull_request.created_at", pr.CreatedAt)
	if err != nil {
		return err
	}
	number := m.PullRequest("pull_request.number", pr.Number)
	m.Set.Event.PullRequestID = number
	m.Set.Event.CommitID = pr.Head.SHA
	m.Set.Event.OccurredAt = created
	head := fact.Change{PipelineID: m.Pipeline(), CommitID: pr.Head.SHA, PullRequestID: number, SubmittedAt: &created}
	if m.p.Action != "closed" {
		m.Set.Changes = []fact.Change{head}
		return nil
	}
	if !pr.Merged {
		// Abandoned: kept as an event, nothing about a change.
		m.Set.Event.Status = "closed"
		return nil
	}
	merged, err := webhook.When("pull_request.merged_at", pr.MergedAt)
	if err != nil {
		return err
	}
	m.Set.Event.Status = "merged"
	m.Set.Event.OccurredAt = merged
	// A merge approves the change when no review did (DORA.md).
	head.MergedAt = &merged
	m.Merge(head, pr.MergeCommitSHA)
	return nil
}

func (m *mapper) review() error {
	r := m.p.Review
	if m.p.Action != "submitted" || r == nil || !strings.EqualFold(r.State, "approved") {
		return fmt.Errorf("%w: only approving reviews count", ErrIgnored)
	}
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	commit := r.CommitID
	var number *int64
	if pr := m.p.PullRequest; pr != nil {
		commit = cmp.Or(commit, pr.Head.SHA)
		number = m.PullRequest("pull_request.number", pr.Number)
	}
	if commit == "" {
		return fmt.Errorf("%w: review.commit_id and pull_request.head.sha are missing", ErrInvalid)
	}
	at, err := webhook.When("review.submitted_at", r.SubmittedAt)
	if err != nil {
		return err
	}
	m.Set.Event.CommitID, m.Set.Event.PullRequestID, m.Set.Event.OccurredAt = commit, number, at
	m.Set.Changes = []fact.Change{{PipelineID: m.Pipeline(), CommitID: commit, PullRequestID: number, ApprovedAt: &at}}
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
	state, at := p.State, cmp.Or(p.UpdatedAt, p.CreatedAt)
	var statusID webhook.ID
	if ds := p.DeploymentStatus; ds != nil {
		state = cmp.Or(ds.State, state)
		at = cmp.Or(ds.CreatedAt, ds.UpdatedAt, at)
		statusID = ds.ID
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
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	when, err := webhook.When("deployment_status.created_at", at)
	if err != nil {
		return err
	}
	// 10 and "10" are one deployment: both key it as 10.
	id := cmp.Or(p.Deployment.ID, statusID).String()
	m.Deploy(m.Environment(p.Deployment.Environment), id, id, status, when, p.Deployment.SHA)
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
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	when, err := webhook.When("workflow_run.updated_at", run.UpdatedAt)
	if err != nil {
		return err
	}
	// Each attempt of a run is a deployment attempt of its own; without a run id, the commit
	// and time key it.
	id, key := run.ID.String(), ""
	if id != "" {
		attempt, _ := run.RunAttempt.Number()
		key = "run:" + id + "/" + strconv.FormatInt(max(attempt, 1), 10)
	}
	m.Deploy(m.Environment(m.opts.DeployEnvironment), key, id, status, when, run.HeadSHA)
	return nil
}

func (m *mapper) issue() error {
	is := m.p.Issue
	if is == nil {
		return fmt.Errorf("%w: issue is missing", ErrInvalid)
	}
	label := cmp.Or(m.opts.IncidentLabel, "incident")
	if !slices.ContainsFunc(is.Labels, func(l struct {
		Name string `json:"name"`
	}) bool {
		return strings.EqualFold(l.Name, label)
	}) {
		return fmt.Errorf("%w: the issue has no %q label", ErrIgnored, label)
	}
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	if is.Number == "" || is.Number == "0" {
		return fmt.Errorf("%w: issue.number is missing", ErrInvalid)
	}
	opened, err := webhook.When("issue.created_at", is.CreatedAt)
	if err != nil {
		return err
	}
	var resolved *time.Time
	if is.ClosedAt != "" && !strings.EqualFold(m.p.Action, "reopened") {
		closed, err := webhook.When("issue.closed_at", is.ClosedAt)
		if err != nil {
			return err
		}
		resolved = &closed
	}
	m.Incident(m.Pipeline()+"#"+is.Number.String(), opened, resolved, is.Body)
	return nil
}
