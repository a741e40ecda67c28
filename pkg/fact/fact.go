// Package fact holds what one stream message tells DevOpstic, in the shape the tables keep it:
// the raw event row and the changes, deployments and incidents it contributes to.
//
// Every source (native events, GitHub, ...) maps its message to a Set; the store writes a Set
// with commutative, idempotent upserts, so the tables are the same whatever order the sets
// arrive in and however often. A Set holds plain values and no behaviour: mapping lives with
// each source, merging lives in the store's SQL.
package fact

import (
	"encoding/json"
	"time"
)

// Deployment and incident statuses, as DORA.md counts them.
const (
	StatusSuccess = "success"
	StatusFailure = "failure"
)

// Set is everything one message contributes to the tables.
type Set struct {
	Event       Event
	Changes     []Change
	Deployments []Deployment
	Incidents   []Incident
	PushCommits []PushCommit
	Links       []ChangeLink
}

// Event is the raw event row: one per message, keyed by ID. The typed columns repeat what the
// payload says so that GET /events can filter without parsing JSON.
type Event struct {
	ID            string
	Source        string // native, github, ...
	Kind          string // commit, deploy, pull_request, ...
	PipelineID    string
	Environment   string
	CommitID      string
	Commits       []string
	IncidentID    string
	DeploymentID  string
	PullRequestID *int64
	Status        string
	OccurredAt    time.Time
	// TimeInferred says OccurredAt is the receive time because the source gave none.
	TimeInferred bool
	ReceivedAt   time.Time
	StreamSeq    uint64
	Payload      json.RawMessage
	// Headers are the message's headers, kept so that the events table alone can be mapped
	// again (devopstic rebuild) exactly as the stream message would be.
	Headers map[string][]string
}

// Change is what an event knows about one commit of one pipeline. Times that the event does
// not know are nil; the store keeps the earliest known value of each.
type Change struct {
	PipelineID    string
	CommitID      string
	PullRequestID *int64
	CommittedAt   *time.Time
	SubmittedAt   *time.Time
	ApprovedAt    *time.Time
	// MergedAt is when a pull request of the commit was merged: the change's approval when no
	// review approved it (DORA.md).
	MergedAt *time.Time
}

// Deployment is one deploy attempt to one environment. Key names the attempt within its source,
// pipeline and environment (the source's deployment id, or the event id when it has none).
// When several events name the same attempt, the latest one (by time, then failure before
// success, then event id) decides its status, time and head commit.
type Deployment struct {
	Source       string
	PipelineID   string
	Environment  string
	Key          string
	DeploymentID string
	Status       string
	DeployedAt   time.Time
	CommitID     string
	// Commits are every change the deployment ships, its head commit included.
	Commits []string
	EventID string
}

// Incident is what an event knows about one incident. OpenedAt is set by an event that opens
// it, ResolvedAt by one that resolves it; the store keeps the earliest opening and the latest
// resolution.
type Incident struct {
	Source            string
	IncidentID        string
	PipelineID        string
	Environment       string
	OpenedAt          *time.Time
	ResolvedAt        *time.Time
	CauseDeploymentID string
	CauseCommitID     string
}

// PushCommit says a push whose head is HeadID brought CommitID: a deployment of the head ships
// it, whichever arrives first.
type PushCommit struct {
	PipelineID string
	HeadID     string
	CommitID   string
}

// ChangeLink says two commits are one change, such as a merged pull request's head and merge
// commit: the change's times are the earliest of both (a squash merge keeps the times of the
// commits it replaced).
type ChangeLink struct {
	PipelineID string
	CommitID   string
	LinkedID   string
}
