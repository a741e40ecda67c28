// Package gitlab verifies GitLab webhook deliveries and maps them to facts.
//
// Verify compares the X-Gitlab-Token header with the configured secrets before anything is
// parsed. Parse is a pure function of the delivery (its X-Gitlab-Event header and body) and of
// Options, which the ingest stamps into the stream message's headers, so the writer and every
// replay map a delivery exactly as the ingest judged it. Times come from the payload, never
// from the clock.
package gitlab

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/webhook"
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

// ErrToken: the token is missing or matches no configured secret.
var ErrToken = errors.New("bad token")

// ErrIgnored and ErrInvalid are webhook's: a delivery DevOpstic does not use (answered 202 so
// GitLab shows it green), and a delivery of a kind DevOpstic uses that lacks what it needs.
var ErrIgnored, ErrInvalid = webhook.ErrIgnored, webhook.ErrInvalid

// Verify compares the X-Gitlab-Token header with every secret in constant time (hashing both
// first, so that not even the secret's length leaks). No secret, no token: refused.
func Verify(secrets []string, token string) error {
	if token == "" {
		return fmt.Errorf("%w: no %s header", ErrToken, HeaderToken)
	}
	if !webhook.MatchToken(secrets, token) {
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

// Decode maps a delivery again from its stream message: its X-Gitlab-Event, and the Options
// the ingest mapped it with.
func Decode(h webhook.Header, body []byte) (fact.Set, error) {
	return webhook.Decode(h, HeaderOptions, func(opts Options) (fact.Set, error) {
		d, err := Parse(h.Get(HeaderEvent), body, opts)
		return d.Set, err
	})
}

// Delivery is a mapped delivery: its facts, and what could not be read but did not stop it.
type Delivery = webhook.Delivery

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

// kinds are the kinds DevOpstic maps (see Kind), and how each maps to facts.
var kinds = map[string]func(*mapper) error{
	"push":          (*mapper).push,
	"merge_request": (*mapper).mergeRequest,
	"deployment":    (*mapper).deployment,
	"issue":         (*mapper).issue,
	"pipeline":      (*mapper).pipelineRun,
	"job":           (*mapper).job,
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
	mapKind := kinds[kind]
	if mapKind == nil {
		// Before decoding: the hooks DevOpstic does not use have other shapes.
		return Delivery{}, fmt.Errorf("%w: DevOpstic does not use %s events", ErrIgnored, eventName)
	}
	if (kind == "pipeline" || kind == "job") && len(opts.DeployPipelines) == 0 {
		return Delivery{}, fmt.Errorf("%w: %s events count only for the names in DEVOPSTIC_GITLAB_DEPLOY_PIPELINES, and none is set", ErrIgnored, eventName)
	}
	var p payload
	if err := webhook.Unmarshal(body, opts.PipelineID, opts.Environment, &p); err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	m := mapper{opts: opts, p: &p, Mapper: webhook.Mapper{
		Source: Source, URLPipeline: opts.PipelineID, URLEnvironment: opts.Environment,
		Named: p.project(), NamedBy: "project.path_with_namespace",
	}}
	if err := mapKind(&m); err != nil {
		return Delivery{}, err
	}
	return m.Done(kind, body), nil
}

type label struct {
	Title string `json:"title"`
}

// payload holds the fields DevOpstic reads, of every hook it uses.
type payload struct {
	After             string           `json:"after"`
	CheckoutSHA       string           `json:"checkout_sha"`
	Commits           []webhook.Commit `json:"commits"`
	TotalCommitsCount int              `json:"total_commits_count"`
	Project           *struct {
		PathWithNamespace string `json:"path_with_namespace"`
		Name              string `json:"name"`
	} `json:"project"`
	ObjectAttributes *struct {
		ID              webhook.ID      `json:"id"`
		IID             webhook.ID      `json:"iid"`
		Action          string          `json:"action"`
		State           string          `json:"state"`
		CreatedAt       webhook.Time    `json:"created_at"`
		UpdatedAt       webhook.Time    `json:"updated_at"`
		ClosedAt        webhook.Time    `json:"closed_at"`
		MergeCommitSHA  string          `json:"merge_commit_sha"`
		SquashCommitSHA string          `json:"squash_commit_sha"`
		LastCommit      *webhook.Commit `json:"last_commit"`
		IssueType       string          `json:"issue_type"`
		Type            string          `json:"type"`
		Description     string          `json:"description"`
		Labels          []label         `json:"labels"`
		// Pipeline Hook
		Name       string       `json:"name"`
		Ref        string       `json:"ref"`
		SHA        string       `json:"sha"`
		Status     string       `json:"status"`
		FinishedAt webhook.Time `json:"finished_at"`
	} `json:"object_attributes"`
	Labels []label `json:"labels"`

	// Deployment Hook
	Status          string          `json:"status"`
	StatusChangedAt webhook.Time    `json:"status_changed_at"`
	DeploymentID    webhook.ID      `json:"deployment_id"`
	Environment     environmentName `json:"environment"`
	ShortSHA        string          `json:"short_sha"`
	CommitURL       string          `json:"commit_url"`

	// Job Hook
	BuildID         webhook.ID   `json:"build_id"`
	BuildName       string       `json:"build_name"`
	BuildStatus     string       `json:"build_status"`
	BuildFinishedAt webhook.Time `json:"build_finished_at"`
	SHA             string       `json:"sha"`
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

// project is the pipeline the payload names: its project's path (or name).
func (p *payload) project() string {
	if pr := p.Project; pr != nil {
		return cmp.Or(pr.PathWithNamespace, pr.Name)
	}
	return ""
}

type mapper struct {
	webhook.Mapper
	opts Options
	p    *payload
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
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	if err := m.Push(cmp.Or(p.CheckoutSHA, p.After), "checkout_sha nor after", p.Commits, ""); err != nil {
		return err
	}
	if p.TotalCommitsCount > len(p.Commits) {
		// GitLab lists at most 20 commits of a push; the others stay unknown until something
		// else names them.
		m.Warnings = append(m.Warnings, fmt.Sprintf("the push has %d commits and lists %d", p.TotalCommitsCount, len(p.Commits)))
	}
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
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	if oa.LastCommit == nil || oa.LastCommit.ID == "" {
		return fmt.Errorf("%w: object_attributes.last_commit.id is missing", ErrInvalid)
	}
	created, err := webhook.When("object_attributes.created_at", oa.CreatedAt)
	if err != nil {
		return err
	}
	number := m.PullRequest("object_attributes.iid", oa.IID)
	head := oa.LastCommit.ID
	change := fact.Change{PipelineID: m.Pipeline(), CommitID: head, PullRequestID: number}
	if t, err := event.ParseTime(oa.LastCommit.Timestamp.String()); err == nil {
		change.CommittedAt = &t
	} else if oa.LastCommit.Timestamp != "" {
		m.Warnings = append(m.Warnings, fmt.Sprintf("object_attributes.last_commit.timestamp: %v", err))
	}
	m.Set.Event.PullRequestID = number
	m.Set.Event.CommitID = head
	m.Set.Event.OccurredAt = created
	switch oa.Action {
	case "open", "reopen":
		change.SubmittedAt = &created
		m.Set.Changes = []fact.Change{change}
	case "approved", "approval":
		// GitLab sends no approval time; the merge request's updated_at is the nearest.
		approved, err := webhook.When("object_attributes.updated_at", oa.UpdatedAt)
		if err != nil {
			return err
		}
		change.ApprovedAt = &approved
		m.Set.Event.OccurredAt = approved
		m.Set.Changes = []fact.Change{change}
	case "close":
		// Abandoned: kept as an event, nothing about a change.
		m.Set.Event.Status = "closed"
	case "merge":
		merged, err := webhook.When("object_attributes.updated_at", oa.UpdatedAt)
		if err != nil {
			return err
		}
		m.Set.Event.Status = "merged"
		m.Set.Event.OccurredAt = merged
		// A merge approves the change when no approval did (DORA.md).
		change.SubmittedAt, change.MergedAt = &created, &merged
		m.Merge(change, oa.MergeCommitSHA, oa.SquashCommitSHA)
	}
	return nil
}

// finalStatus maps the statuses of GitLab's deployments, pipelines and jobs; "" for those that
// carry no deployment.
func finalStatus(status string) string {
	switch strings.ToLower(status) {
	case "success":
		return fact.StatusSuccess
	case "failed":
		return fact.StatusFailure
	}
	return ""
}

// commitURL ends with the deployed commit's full sha: .../-/commit/<sha>.
var commitURL = regexp.MustCompile(`/commit/([0-9a-fA-F]{7,64})/?$`)

func (m *mapper) deployment() error {
	p := m.p
	status := finalStatus(p.Status)
	switch {
	case p.Status == "":
		return fmt.Errorf("%w: status is missing", ErrInvalid)
	case status == "":
		return fmt.Errorf("%w: deployment status %q is not final", ErrIgnored, p.Status)
	}
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	// The Deployment Hook names its commit only in commit_url (and shortened in short_sha).
	var sha string
	if match := commitURL.FindStringSubmatch(p.CommitURL); match != nil {
		sha = match[1]
	} else if p.ShortSHA != "" {
		sha = p.ShortSHA
		m.Warnings = append(m.Warnings, "commit_url names no commit: the deployment ships short_sha "+p.ShortSHA)
	} else {
		return fmt.Errorf("%w: commit_url is missing", ErrInvalid)
	}
	at, err := webhook.When("status_changed_at", p.StatusChangedAt)
	if err != nil {
		return err
	}
	id := p.DeploymentID.String()
	m.Deploy(m.Environment(string(p.Environment)), id, id, status, at, sha)
	return nil
}

// run is a finished pipeline or job, as its hook describes it.
type run struct {
	kind, name, status, sha, id string
	finishedAt                  webhook.Time
	// field prefixes the payload's field names in errors: "object_attributes." or "build_".
	field, shaField string
}

func (m *mapper) pipelineRun() error {
	oa := m.p.ObjectAttributes
	if oa == nil {
		return fmt.Errorf("%w: object_attributes is missing", ErrInvalid)
	}
	// Pipelines have a name only when .gitlab-ci.yml gives one (workflow:name); else the ref.
	return m.ciDeployment(run{kind: "pipeline", name: cmp.Or(oa.Name, oa.Ref), status: oa.Status, sha: oa.SHA,
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
	status := finalStatus(r.status)
	switch {
	case r.status == "":
		return fmt.Errorf("%w: %sstatus is missing", ErrInvalid, r.field)
	case status == "":
		return fmt.Errorf("%w: %s status %q is neither success nor failed", ErrIgnored, r.kind, r.status)
	}
	if r.sha == "" {
		return fmt.Errorf("%w: %s is missing", ErrInvalid, r.shaField)
	}
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	at, err := webhook.When(r.field+"finished_at", r.finishedAt)
	if err != nil {
		return err
	}
	key := ""
	if r.id != "" {
		key = r.kind + ":" + r.id
	}
	m.Deploy(m.Environment(m.opts.DeployEnvironment), key, r.id, status, at, r.sha)
	return nil
}

func (m *mapper) isIncident() bool {
	oa := m.p.ObjectAttributes
	if strings.EqualFold(oa.IssueType, "incident") || strings.EqualFold(oa.Type, "incident") {
		return true
	}
	want := cmp.Or(m.opts.IncidentLabel, "incident")
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
		return fmt.Errorf("%w: the issue is not of type incident and has no %q label", ErrIgnored, cmp.Or(m.opts.IncidentLabel, "incident"))
	}
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	iid := oa.IID.String()
	if iid == "" {
		return fmt.Errorf("%w: object_attributes.iid is missing", ErrInvalid)
	}
	opened, err := webhook.When("object_attributes.created_at", oa.CreatedAt)
	if err != nil {
		return err
	}
	var resolved *time.Time
	closed := strings.EqualFold(oa.State, "closed") || (oa.State == "" && oa.ClosedAt != "")
	if closed && oa.Action != "reopen" {
		field, value := "object_attributes.closed_at", oa.ClosedAt
		if value == "" {
			// Older GitLab versions send no closed_at; the close is the last update.
			field, value = "object_attributes.updated_at", oa.UpdatedAt
		}
		at, err := webhook.When(field, value)
		if err != nil {
			return err
		}
		resolved = &at
	}
	// Keyed by the project, not the URL's pipeline_id: two projects sent to one pipeline keep
	// their issue numbers apart.
	m.Incident(cmp.Or(m.Named, m.Pipeline())+"#"+iid, opened, resolved, oa.Description)
	return nil
}
